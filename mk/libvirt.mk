# libvirt e2e: real VMs (QEMU, software emulation) with systemd and the real
# agent, upgraded vX → vX+1 → rollback through the operator. Root only.
# See docs/libvirt.md.

LIBVIRT_E2E_TIMEOUT ?= 40m
# Which specs: the five upgrade suites by default; 'probe' is the transport
# alone (a trivial guest service through a power cut and a reset).
LIBVIRT_E2E_LABELS ?= upgrade
# More Ginkgo arguments, e.g. LIBVIRT_E2E_ARGS='-ginkgo.focus=power'
LIBVIRT_E2E_ARGS ?=

.PHONY: libvirt-setup
libvirt-setup: ## install libvirt/QEMU/debootstrap when missing; start virtlogd + libvirtd when not running (root)
	@$(ROOT)/hack/libvirt-setup.sh

.PHONY: libvirt-image
libvirt-image: libvirt-setup ## build the e2e guest base (debootstrap + kernel + initramfs), cached by content hash
	@$(ROOT)/hack/libvirt-image.sh >/dev/null

.PHONY: e2e
e2e: libvirt-image ## libvirt e2e suites: two VMs, agent v1 → v2, failed self-test, crash rollback, power cut, reboot
	$(GO) test -v -tags e2e -count=1 -timeout $(LIBVIRT_E2E_TIMEOUT) ./libvirt/e2e -ginkgo.v -ginkgo.label-filter='$(LIBVIRT_E2E_LABELS)' $(LIBVIRT_E2E_ARGS)

.PHONY: test-e2e
test-e2e: e2e

.PHONY: libvirt-clean
libvirt-clean: ## remove e2e outputs and the cached VM images (the debootstrap package cache is kept)
	rm -rf $(OUT)/e2e
	rm -rf $(FLOTILLA_CACHE)/vm/base-* $(FLOTILLA_CACHE)/vm/disk-*.img

TEST_TARGETS += test-e2e

.PHONY: bench-vport
bench-vport: ## virtio-serial transport throughput (bridge + framing, no VM)
	$(GO) test -run '^$$' -bench . -benchtime 10x ./agent/transport/vport

BENCH_TARGETS += bench-vport
