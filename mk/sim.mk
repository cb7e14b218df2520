# Simulator (sim/, scenarios/, cmd/flotilla sim): `make sim` runs the
# scenario library; test-sim runs its tests; bench-sim its benchmarks.

SIM_PKGS := ./sim/ ./sim/kernel/ ./sim/natsim/ ./sim/check/ ./sim/scenario/

TEST_TARGETS  += test-sim
BENCH_TARGETS += bench-sim

# Scenarios that take minutes are left out of `make sim` (run them by name,
# or `make sim SIM_SKIP=` for everything); the 100k run is issue 8's scale bar.
SIM_SKIP  ?= scale-100k
SIM_FILES := $(filter-out $(patsubst %,scenarios/%.yaml,$(SIM_SKIP)),$(sort $(wildcard scenarios/*.yaml))) \
             $(sort $(wildcard scenarios/regressions/*.yaml))

.PHONY: sim
sim: ## run the whole scenario library (fixed seed each), print the result table, write sim-report.html (+ .png, .svg)
	@mkdir -p $(OUT)
	@# Only the sim subcommand's files: make sim does not depend on the dashboard building.
	@CGO_ENABLED=0 $(GO) build -trimpath -o $(OUT)/flotilla-sim ./cmd/flotilla/main.go $(wildcard cmd/flotilla/sim*.go)
	$(OUT)/flotilla-sim sim run --report $(ROOT)/sim-report.html $(SIM_FILES)

.PHONY: test-sim
test-sim: ## simulator: unit tests, fidelity suite (sim NATS vs embedded nats-server), every scenario twice (GOMAXPROCS 1 and 2)
	$(GO) test -count=1 -tags integration -timeout 30m $(SIM_PKGS)

.PHONY: bench-sim
bench-sim: ## simulator benchmarks: kernel, sim NATS, whole scenarios (1k, 10k), medians of 5
	@mkdir -p $(OUT)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 -timeout 60m ./sim/kernel/ ./sim/natsim/ ./sim/ | tee $(OUT)/bench-sim.txt
	@printf "%-30s %14s %14s %14s %14s %12s\n" "benchmark (median of 5)" "events/s" "cpu-events/s" "wall s/op" "B/op" "B/device"
	@awk '/^Benchmark/ { n = $$1; sub(/-[0-9]+$$/, "", n); names[n] = 1; \
	    for (i = 3; i < NF; i += 2) { k = n SUBSEP $$(i+1); v[k] = v[k] " " $$i } } \
	  function median(s,   a, c, j, t, x) { c = split(s, a, " "); \
	    for (j = 1; j <= c; j++) for (x = j + 1; x <= c; x++) if (a[x] + 0 < a[j] + 0) { t = a[j]; a[j] = a[x]; a[x] = t } \
	    return c ? a[int((c + 1) / 2)] : "-" } \
	  END { for (n in names) printf "%-30s %14s %14s %14.3f %14s %12s\n", n, median(v[n SUBSEP "events/s"]), \
	      median(v[n SUBSEP "cpu-events/s"]), median(v[n SUBSEP "ns/op"]) / 1e9, median(v[n SUBSEP "B/op"]), \
	      median(v[n SUBSEP "B/device"]) }' \
	  $(OUT)/bench-sim.txt | sort
