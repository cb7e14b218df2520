# Agent: the device binary, its integration suite (real agent processes,
# embedded nats-server, the operator's runner) and its crash-point tests.

AGENT_VERSION ?= v0.0.0-dev
AGENT_LDFLAGS := -s -w -X main.version=$(AGENT_VERSION)

.PHONY: build-agent
build-agent: ## build the static device agent into bin/flotilla-agent (AGENT_VERSION=vX.Y.Z)
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(AGENT_LDFLAGS)' -o $(BIN)/flotilla-agent ./cmd/flotilla-agent
	@ls -l $(BIN)/flotilla-agent | awk '{printf "bin/flotilla-agent: %.1f MiB\n", $$5/1048576}'

.PHONY: test-agent
test-agent: ## agent unit tests and crash-point tests (real temp dirs, no network)
	$(GO) test -count=1 ./agent/journal/ ./agent/config/ ./agent/executor/ ./agent/runtime/ ./agent/shell/ ./cmd/flotilla-agent/

.PHONY: test-integration
test-integration: ## agent binaries v1..v6 against an embedded nats-server and the operator runner
	$(GO) test -tags integration -count=1 -timeout 20m -v ./agent/integration/ -ginkgo.v

TEST_TARGETS += test-integration

.PHONY: bench-agent
bench-agent: ## agent benchmarks: durable journal append (write + fsync)
	@mkdir -p $(OUT)
	$(GO) test -run '^$$' -bench . -benchtime 200x -count 5 ./agent/journal/ | tee $(OUT)/bench-agent.txt

BENCH_TARGETS += bench-agent
