# agent/agentcore: the agent's decision core — promise tests, crash-point
# property test, determinism test, benchmarks.

TEST_TARGETS  += test-agentcore
BENCH_TARGETS += bench-agentcore

.PHONY: test-agentcore
test-agentcore: ## agent core: protocol promise tests, crash-point and determinism tests
	$(GO) test -count=1 ./agent/agentcore/

.PHONY: bench-agentcore
bench-agentcore: ## agent core benchmarks (heartbeat tick, full upgrade, memory per agent), medians of 5
	@mkdir -p $(OUT)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./agent/agentcore/ | tee $(OUT)/bench-agentcore.txt
	@printf "%-28s %12s %12s %12s %10s %16s\n" "benchmark (median of 5)" ns/op cpu-ns/op B/op allocs/op extra
	@awk '/^Benchmark/ { n = $$1; sub(/-[0-9]+$$/, "", n); \
	    for (i = 3; i < NF; i += 2) { k = n SUBSEP $$(i+1); v[k] = v[k] " " $$i; units[$$(i+1)] = 1 } names[n] = 1 } \
	  function median(s,   a, c, j, t, x) { c = split(s, a, " "); \
	    for (j = 1; j <= c; j++) for (x = j + 1; x <= c; x++) if (a[x] + 0 < a[j] + 0) { t = a[j]; a[j] = a[x]; a[x] = t } \
	    return c ? a[int((c + 1) / 2)] : "-" } \
	  END { for (n in names) { extra = ""; \
	      if ((n SUBSEP "B/agent") in v) extra = median(v[n SUBSEP "B/agent"]) " B/agent"; \
	      if ((n SUBSEP "steps/op") in v) extra = median(v[n SUBSEP "steps/op"]) " steps/op"; \
	      cpu = ((n SUBSEP "cpu-ns/op") in v) ? median(v[n SUBSEP "cpu-ns/op"]) : "-"; \
	      printf "%-28s %12s %12s %12s %10s %16s\n", n, median(v[n SUBSEP "ns/op"]), cpu, median(v[n SUBSEP "B/op"]), median(v[n SUBSEP "allocs/op"]), extra } }' \
	  $(OUT)/bench-agentcore.txt | sort
