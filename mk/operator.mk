# Operator: CRDs (controller-gen), the decision core's benchmarks and the
# envtest suite (real kube-apiserver + etcd built from Go modules once per
# machine, embedded nats-server). See docs/operator.md.

ENVTEST_K8S_VERSION  ?= 1.37.2
ENVTEST_ETCD_VERSION ?= 3.6.16
ENVTEST_ASSETS := $(FLOTILLA_CACHE)/envtest/k8s-$(ENVTEST_K8S_VERSION)-etcd-$(ENVTEST_ETCD_VERSION)
CONTROLLER_GEN := $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen
CRD_DIR        := operator/config/crd

TEST_TARGETS  += test-envtest
BENCH_TARGETS += bench-operator

.PHONY: envtest-assets
envtest-assets: ## build kube-apiserver and etcd for envtest from Go modules (once per machine, cached)
	@if [ -x "$(ENVTEST_ASSETS)/etcd" ] && [ -x "$(ENVTEST_ASSETS)/kube-apiserver" ]; then \
		echo "envtest assets: $(ENVTEST_ASSETS) (cached)"; \
	else \
		start=$$(date +%s); \
		K8S_VERSION=$(ENVTEST_K8S_VERSION) ETCD_VERSION=$(ENVTEST_ETCD_VERSION) bash hack/envtest-binaries.sh; \
		echo "envtest assets built in $$(( $$(date +%s) - start ))s"; \
	fi

.PHONY: manifests
manifests: ## regenerate the CRDs (operator/config/crd), RBAC (operator/config/rbac) and deepcopy code with controller-gen
	$(CONTROLLER_GEN) object paths=./operator/api/... crd:crdVersions=v1 output:crd:artifacts:config=$(CRD_DIR)
	$(CONTROLLER_GEN) rbac:roleName=flotilla-operator paths=./operator/controller/... output:rbac:artifacts:config=operator/config/rbac

.PHONY: test-envtest
test-envtest: envtest-assets ## operator envtest suite (kube-apiserver + etcd + embedded NATS) and the CRD staleness check
	FLOTILLA_ENVTEST_ASSETS=$(ENVTEST_ASSETS) $(GO) test -tags envtest -count=1 -timeout 20m -v ./operator/controller/ ./cmd/flotilla-operator/ -ginkgo.v

.PHONY: bench-operator
bench-operator: ## operator core at 10k and 100k devices (load+place, heartbeat, state report, tick), medians of 3 (wall and CPU time)
	@mkdir -p $(OUT)
	$(GO) test -run '^$$' -bench . -benchmem -count 3 -timeout 30m ./operator/opcore/ | tee $(OUT)/bench-operator.txt
	@printf "%-40s %14s %14s %12s %10s %14s\n" "benchmark (median of 3)" ns/op cpu-ns/op B/op allocs/op live-B/device
	@awk '/^Benchmark/ { n = $$1; sub(/-[0-9]+$$/, "", n); names[n] = 1; \
	    for (i = 3; i < NF; i += 2) { k = n SUBSEP $$(i+1); v[k] = v[k] " " $$i } } \
	  function median(s,   a, c, j, t, x) { c = split(s, a, " "); \
	    for (j = 1; j <= c; j++) for (x = j + 1; x <= c; x++) if (a[x] + 0 < a[j] + 0) { t = a[j]; a[j] = a[x]; a[x] = t } \
	    return c ? a[int((c + 1) / 2)] : "-" } \
	  END { for (n in names) printf "%-40s %14s %14s %12s %10s %14s\n", n, median(v[n SUBSEP "ns/op"]), median(v[n SUBSEP "cpu-ns/op"]), median(v[n SUBSEP "B/op"]), median(v[n SUBSEP "allocs/op"]), ((n SUBSEP "live-B/device") in v) ? median(v[n SUBSEP "live-B/device"]) : "-" }' \
	  $(OUT)/bench-operator.txt | sort
