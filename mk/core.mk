# core/: wire contracts — unit tests, committed fuzz corpora, fuzzing.
#
# `make test-core` runs the table tests and every committed seed corpus under
# core/testdata/fuzz (plain `go test` replays them); it is part of `make
# test`. `make fuzz` explores each fuzz target for FUZZTIME (not part of
# `make test`); a crasher lands in core/testdata/fuzz/<Target>/ — commit it
# with the fix.

FUZZTIME ?= 30s
CORE_FUZZ_TARGETS := $(shell grep -ho '^func Fuzz[A-Za-z0-9_]*' core/*_test.go 2>/dev/null | sed 's/^func //' | sort)

TEST_TARGETS += test-core

.PHONY: test-core
test-core: ## core/ wire contracts: table tests, seed corpora, determinism guard tests
	$(GO) test -count=1 ./core/... ./hack/detguard/...

.PHONY: fuzz
fuzz: ## fuzz every core decoder and parser for FUZZTIME each (default 30s)
	@failed=""; for t in $(CORE_FUZZ_TARGETS); do \
		echo "==> fuzz $$t ($(FUZZTIME))"; \
		$(GO) test ./core -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "==> fuzz: FAILED:$$failed (crashers in core/testdata/fuzz/)"; exit 1; fi; \
	echo "==> fuzz: $(words $(CORE_FUZZ_TARGETS)) targets, no failures"

.PHONY: detguard
detguard: ## determinism guard over the cores (also part of make lint)
	$(GO) run ./hack/detguard
