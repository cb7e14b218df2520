# libvirt e2e: real VMs (QEMU, software emulation) with systemd and the real
# agent, upgraded vX → vX+1 → rollback through the operator. Root only.
# See docs/libvirt.md.

LIBVIRT_E2E_TIMEOUT ?= 40m
# Ginkgo arguments, e.g. LIBVIRT_E2E_ARGS='-ginkgo.label-filter=probe'
LIBVIRT_E2E_ARGS ?=

.PHONY: libvirt-setup
libvirt-setup: ## install libvirt/QEMU/debootstrap when missing; start virtlogd + libvirtd when not running (root)
	@$(ROOT)/hack/libvirt-setup.sh

.PHONY: libvirt-image
libvirt-image: libvirt-setup ## build the e2e guest base (debootstrap + kernel + initramfs), cached by content hash
	@$(ROOT)/hack/libvirt-image.sh >/dev/null

.PHONY: e2e
e2e: libvirt-image ## libvirt e2e suites: two VMs, agent v1 → v2, failed self-test, crash rollback, power cut, reboot
	$(GO) test -v -tags e2e -count=1 -timeout $(LIBVIRT_E2E_TIMEOUT) ./libvirt/e2e -ginkgo.v $(LIBVIRT_E2E_ARGS)

.PHONY: test-e2e
test-e2e: e2e

.PHONY: libvirt-clean
libvirt-clean: ## remove e2e outputs and the cached VM images (the debootstrap package cache is kept)
	rm -rf $(OUT)/e2e
	rm -rf $(FLOTILLA_CACHE)/vm/base-* $(FLOTILLA_CACHE)/vm/disk-*.img

TEST_TARGETS += test-e2e
