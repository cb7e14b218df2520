# web/: the dashboard — handler tests, the headless-Chromium browser test,
# page-timing benchmarks at 10,000 mock devices, and the mock demo.

CHROMIUM ?= /usr/bin/chromium
WEB_ADDR ?= 127.0.0.1:18080
MOCK_DEVICES ?= 1000

TEST_TARGETS  += test-web test-web-envtest
BENCH_TARGETS += bench-web

.PHONY: chromium
chromium: ## install Debian's chromium when missing (used by the browser tests)
	@test -x $(CHROMIUM) || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

.PHONY: test-web
test-web: chromium ## dashboard: handler tests, then the browser test in headless Chromium (screenshots in web/testdata/screenshots/)
	$(GO) test -count=1 ./web/...
	$(GO) test -count=1 -run "TestWeb" ./cmd/flotilla/
	FLOTILLA_CHROMIUM=$(CHROMIUM) $(GO) test -count=1 -tags browser -timeout 5m -run 'InChromium' ./web/

.PHONY: test-web-envtest
test-web-envtest: envtest-assets ## dashboard's RealFleetService (kubeconfig, informer cache, patches) against a real kube-apiserver
	FLOTILLA_ENVTEST_ASSETS=$(ENVTEST_ASSETS) $(GO) test -count=1 -tags envtest -timeout 10m -run 'AgainstKubeAPIServer' ./web/

.PHONY: bench-web
bench-web: ## dashboard page timings at 10,000 mock devices, medians of 5
	@mkdir -p $(OUT)
	$(GO) test -run '^$$' -bench BenchmarkPages -benchmem -count 5 ./web/ | tee $(OUT)/bench-web.txt
	@printf "%-34s %10s %12s %10s\n" "page at 10,000 devices (median of 5)" ms/op B/op allocs/op
	@awk '/^BenchmarkPages/ { n = $$1; sub(/-[0-9]+$$/, "", n); sub(/^BenchmarkPages\//, "", n); \
	    ns[n] = ns[n] " " $$3; b[n] = b[n] " " $$5; a[n] = a[n] " " $$7 } \
	  function median(s,   x, c, j, k, t) { c = split(s, x, " "); \
	    for (j = 1; j <= c; j++) for (k = j + 1; k <= c; k++) if (x[k] + 0 < x[j] + 0) { t = x[j]; x[j] = x[k]; x[k] = t } \
	    return x[int((c + 1) / 2)] } \
	  END { for (n in ns) printf "%-34s %10.2f %12s %10s\n", n, median(ns[n]) / 1e6, median(b[n]), median(a[n]) }' \
	  $(OUT)/bench-web.txt | sort

.PHONY: web
web: ## serve the mock dashboard on WEB_ADDR (MOCK_DEVICES devices, live)
	$(GO) run ./cmd/flotilla web --mock --mock-devices $(MOCK_DEVICES) --addr $(WEB_ADDR)
