# The simulation report (sim/report): browser test.
TEST_TARGETS += test-sim-report-browser

.PHONY: test-sim-report-browser
test-sim-report-browser: ## sim report opens in headless Chromium without errors; screenshot in _out/
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }
	$(GO) test -count=1 -tags browser -run TestReportOpensInHeadlessChromium ./sim/report
