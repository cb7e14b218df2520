# Flotilla — the two commands are `make sim` and `make test`.
#
# Each area owns a fragment in mk/*.mk that defines its targets and appends
# its test target to TEST_TARGETS (run in order by `make test`) and its
# benchmark target to BENCH_TARGETS. Every target installs what it needs,
# idempotently.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
ROOT     := $(abspath .)
BIN      := $(ROOT)/bin
OUT      := $(ROOT)/_out
export FLOTILLA_CACHE ?= $(HOME)/.cache/flotilla
# Tags of the suites that need real parts; vet and lint see every file.
ALL_TAGS := envtest integration e2e browser plantedbugs

TEST_TARGETS  := lint test-unit
BENCH_TARGETS :=

include $(sort $(wildcard mk/*.mk))

.PHONY: help
help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

.PHONY: test
test: ## run every test: unit, fuzz corpora, sim seeds, envtest, NATS integration, libvirt e2e, browser
	@for t in $(TEST_TARGETS); do echo "==> make $$t"; $(MAKE) --no-print-directory $$t; done
	@echo "==> make test: all suites passed"

.PHONY: test-unit
test-unit: ## unit tests and committed fuzz corpora (no real parts)
	$(GO) test -count=1 ./...

.PHONY: lint
lint: ## go vet (all build tags) and the determinism guard over the cores
	$(GO) vet -tags '$(ALL_TAGS)' ./...
	$(GO) run ./hack/detguard

.PHONY: build
build: ## build every binary into bin/
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

.PHONY: bench
bench: $(BENCH_TARGETS) ## benchmarks (medians), printed as tables

.PHONY: clean
clean: ## remove build outputs (caches outside the tree are kept)
	rm -rf $(BIN) $(OUT)
