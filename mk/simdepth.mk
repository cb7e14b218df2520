# Simulator depth (docs/sim-depth.md): seed sweeps, shrinking, planted bugs,
# and the simulator's benchmark table.
#   make test-simdepth   planted-bug test (every planted bug found by a bounded
#                        swarm sweep, each shrinks to <= 10 devices) and a
#                        240-seed sweep over small library scenarios
#   make bench-simdepth  one table: kernel, sim NATS, agent core, operator core,
#                        whole faulted upgrades at 1k / 10k / 100k devices,
#                        a 100-device 1-hour seed, idle memory per device
#   make sim-swarm       swarm sweep (faults drawn per seed) over a small
#                        scenario; not part of make test (it hunts real bugs)
TEST_TARGETS  += test-simdepth
BENCH_TARGETS += bench-simdepth

SIMDEPTH_SWEEP_SCENARIOS := clean-upgrade-1k crash-after-cutover partition-during-cutover \
	operator-crash-mid-cutover nats-outage hang-no-heartbeat
SIMDEPTH_SWEEP_SEEDS   ?= 40
SIMDEPTH_SWEEP_DEVICES ?= 30
SIMDEPTH_BENCH_COUNT   ?= 3
SIMDEPTH_BENCH_COUNT_100K ?= 3

.PHONY: test-simdepth
test-simdepth: ## planted-bug test + a 240-seed sweep over small scenarios (sweep, shrink, report unit tests run in test-unit)
	@mkdir -p $(OUT)
	$(GO) vet -tags plantedbugs ./agent/agentcore/ ./operator/opcore/ ./sim/sweep/ ./sim/shrink/ ./cmd/flotilla/
	$(GO) test -count=1 -tags plantedbugs -timeout 20m -run 'TestSweepFindsEveryPlantedBug' ./sim/sweep/
	@CGO_ENABLED=0 $(GO) build -trimpath -o $(OUT)/flotilla-sim ./cmd/flotilla/main.go $(wildcard cmd/flotilla/sim*.go)
	@# A production build carries no planted-bug code at all.
	@if $(GO) tool nm $(OUT)/flotilla-sim | grep -i planted; then echo "planted-bug symbols in a production build" >&2; exit 1; fi
	@for s in $(SIMDEPTH_SWEEP_SCENARIOS); do \
		echo "--- sweep scenarios/$$s.yaml: $(SIMDEPTH_SWEEP_SEEDS) seeds on $(SIMDEPTH_SWEEP_DEVICES) devices"; \
		$(OUT)/flotilla-sim sim sweep scenarios/$$s.yaml --seeds $(SIMDEPTH_SWEEP_SEEDS) --devices $(SIMDEPTH_SWEEP_DEVICES) --keep-going || exit 1; \
	done

.PHONY: sim-swarm
sim-swarm: ## swarm sweep: 500 seeds of sim/sweep/testdata/planted-base.yaml, faults drawn per seed, report in _out/
	@mkdir -p $(OUT)
	@CGO_ENABLED=0 $(GO) build -trimpath -o $(OUT)/flotilla-sim ./cmd/flotilla/main.go $(wildcard cmd/flotilla/sim*.go)
	$(OUT)/flotilla-sim sim sweep sim/sweep/testdata/planted-base.yaml --seeds 500 --swarm --keep-going --report $(OUT)/sim-swarm.html

# name % package % -test.bench regexp % runs (processes) % -test.benchtime
SIMDEPTH_BENCHES := \
	kernel:event%./sim/kernel/%^BenchmarkKernelEvents$$%1%1s \
	natsim:kv-put-watch%./sim/natsim/%^BenchmarkKVPutWatch$$%1%1s \
	agentcore:heartbeat-tick%./agent/agentcore/%^BenchmarkHeartbeatTick$$%1%1s \
	agentcore:full-upgrade%./agent/agentcore/%^BenchmarkFullUpgrade$$%1%1s \
	opcore:heartbeat@100k%./operator/opcore/%^BenchmarkHeartbeat$$/devices=100000$$%1%1s \
	opcore:tick@100k%./operator/opcore/%^BenchmarkTick$$/devices=100000$$%1%1s \
	scenario:faulted-upgrade-1k%./sim/sweep/%^BenchmarkFaultedUpgrade1k$$%$(SIMDEPTH_BENCH_COUNT)%1x \
	scenario:faulted-upgrade-10k%./sim/sweep/%^BenchmarkFaultedUpgrade10k$$%$(SIMDEPTH_BENCH_COUNT)%1x \
	scenario:faulted-upgrade-100k%./sim/sweep/%^BenchmarkFaultedUpgrade100k$$%$(SIMDEPTH_BENCH_COUNT_100K)%1x \
	scenario:seed-100dev-1h%./sim/sweep/%^BenchmarkSeed100x1h$$%$(SIMDEPTH_BENCH_COUNT)%3x \
	memory:idle-device-100k%./sim/sweep/%^BenchmarkIdleDevice100k$$%$(SIMDEPTH_BENCH_COUNT_100K)%1x

.PHONY: bench-simdepth
bench-simdepth: ## simulator benchmark table (medians): events/s, wall, peak RSS, bytes per device, from the kernel to 100k-device runs
	@mkdir -p $(OUT)/simdepth-bench
	@command -v /usr/bin/time >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time; }
	@[ -n "$(SIMDEPTH_BENCH_APPEND)" ] || rm -f $(OUT)/simdepth-bench/raw.txt
	@for pkg in ./sim/kernel/ ./sim/natsim/ ./agent/agentcore/ ./operator/opcore/ ./sim/sweep/; do \
		$(GO) test -c -o $(OUT)/simdepth-bench/$$(echo $$pkg | tr -c 'a-z\n' '_').test $$pkg; done
	@for spec in $(SIMDEPTH_BENCHES); do \
		IFS='%' read -r name pkg re runs bt <<<"$$spec"; \
		bin=$(OUT)/simdepth-bench/$$(echo $$pkg | tr -c 'a-z\n' '_').test; dir=$$(cd $$pkg && pwd); \
		for i in $$(seq $$runs); do \
			echo "--- $$name run $$i/$$runs" >&2; \
			cnt=5; [[ $$runs == 1 && $$bt != *x ]] || cnt=1; \
			out=$$( cd $$dir && /usr/bin/time -f 'maxrss-kib %M' $$bin -test.run '^$$' -test.bench "$$re" -test.benchtime $$bt -test.count $$cnt 2>&1 ) || { echo "$$out"; exit 1; }; \
			echo "$$out" | awk -v n="$$name" '/^Benchmark/ { $$1 = n; print } /^maxrss-kib/ { print n, "rss", $$2 }' >> $(OUT)/simdepth-bench/raw.txt; \
		done; \
	done
	@$(MAKE) --no-print-directory bench-simdepth-table

.PHONY: bench-simdepth-table
bench-simdepth-table: ## print the simulator benchmark table from _out/simdepth-bench/raw.txt (medians)
	@printf "\n%-30s %14s %14s %12s %13s %13s\n" "benchmark (median)" "events/s wall" "events/s CPU" "wall" "peak RSS MiB" "bytes/device"
	@awk '$$2 == "rss" { rss[$$1] = rss[$$1] " " $$3 / 1024; names[$$1] = 1; next } \
	  { n = $$1; names[n] = 1; for (i = 3; i < NF; i += 2) v[n SUBSEP $$(i+1)] = v[n SUBSEP $$(i+1)] " " $$i } \
	  function median(s,   a, c, j, t, x) { c = split(s, a, " "); \
	    for (j = 1; j <= c; j++) for (x = j + 1; x <= c; x++) if (a[x] + 0 < a[j] + 0) { t = a[j]; a[j] = a[x]; a[x] = t } \
	    return c ? a[int((c + 1) / 2)] : "" } \
	  function rate(ev, ns) { if (ev != "") return sprintf("%.0f", ev); if (ns != "") return sprintf("%.0f op", 1e9 / ns); return "-" } \
	  END { for (n in names) { \
	      ns = median(v[n SUBSEP "ns/op"]); \
	      w = median(v[n SUBSEP "wall-s"]); wall = (w != "") ? sprintf("%.2fs", w) : sprintf("%.0fns/op", ns); \
	      bd = median(v[n SUBSEP "B/device"]); if (bd == "") bd = median(v[n SUBSEP "live-B/device"]); if (bd == "") bd = "-"; else bd = sprintf("%.0f", bd); \
	      printf "%-30s %14s %14s %12s %13.0f %13s\n", n, rate(median(v[n SUBSEP "events/s"]), ns), \
	        rate(median(v[n SUBSEP "cpu-events/s"]), median(v[n SUBSEP "cpu-ns/op"])), wall, median(rss[n]), bd } }' \
	  $(OUT)/simdepth-bench/raw.txt | sort | tee $(OUT)/simdepth-bench/table.txt
	@awk '$$1 == "scenario:seed-100dev-1h" { for (i = 3; i < NF; i += 2) if ($$(i+1) == "seeds/CPU-h") print $$i }' \
	  $(OUT)/simdepth-bench/raw.txt | sort -n | awk '{ a[NR] = $$1 } END { if (NR) printf "\nsweep rate (100 devices, 1 simulated hour): %.0f seeds per CPU-hour (median of %d)\n", a[int((NR + 1) / 2)], NR }'
