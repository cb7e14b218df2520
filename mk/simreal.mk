# Sim-versus-real differential suite (sim/simreal): small scenarios
# (sim/simreal/testdata) run once in the simulator and once with real agent
# processes (flotilla-agent built at v1 and v2), a real nats-server the
# harness stops and restarts, and the real operator runner; the real run's
# observations feed sim/check's invariants and both outcomes must agree.
# The agent binaries are built per run (Go's build cache makes that cheap).

# More Ginkgo arguments, e.g. SIMREAL_ARGS='-ginkgo.focus=power'
SIMREAL_ARGS ?=

ALL_TAGS     += simreal
TEST_TARGETS += test-simreal

.PHONY: test-simreal
test-simreal: ## sim versus real: each sim/simreal scenario in the simulator and with real agents, nats-server and operator
	$(GO) test -tags simreal -count=1 -timeout 20m -v ./sim/simreal/ -ginkgo.v $(SIMREAL_ARGS)
