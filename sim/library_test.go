package sim_test

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// libraryFiles lists the scenario library: the curated scenarios and the
// shrunk regressions that sweeps found (scenarios/regressions/).
func libraryFiles(t testing.TB) []string {
	files, err := filepath.Glob("../scenarios/*.yaml")
	if err != nil || len(files) < 12 {
		t.Fatalf("scenario library: %d files (%v), want at least 12", len(files), err)
	}
	regressions, err := filepath.Glob("../scenarios/regressions/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return append(files, regressions...)
}

// runWith runs one scenario under a GOMAXPROCS setting.
func runWith(t testing.TB, sc *scenario.Scenario, procs, devices int) *sim.Result {
	t.Helper()
	old := runtime.GOMAXPROCS(procs)
	defer runtime.GOMAXPROCS(old)
	r, err := sim.Run(sc, sim.Options{Devices: devices})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestLibraryIsDeterministicSmall is the fast form of the library check that
// plain `go test ./...` runs: every scenario on a small fleet, twice (under
// GOMAXPROCS=1 and 2), with identical trace hashes and no invariant
// violated. The full-size run with expectations is library_full_test.go
// (build tag integration, `make test-sim`).
func TestLibraryIsDeterministicSmall(t *testing.T) {
	for _, file := range libraryFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			sc, err := scenario.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			if sc.Duration.D > 0 && sc.Fleet.HeartbeatInterval.D > 0 && sc.Duration.D/sc.Fleet.HeartbeatInterval.D > 2000 {
				t.Skip("long simulated horizon; covered by the full library run")
			}
			// Small scenarios (the shrunk regressions) run at their own size:
			// their timing bounds are tuned to it.
			devices := 30
			if sc.Fleet.Devices <= devices {
				devices = 0
			}
			a := runWith(t, sc, 1, devices)
			b := runWith(t, sc, 2, devices)
			if a.TraceSHA256 != b.TraceSHA256 || a.Events != b.Events {
				t.Fatalf("same seed, different runs: %s (%d events) vs %s (%d events)\nreplay: %s",
					a.TraceSHA256, a.Events, b.TraceSHA256, b.Events, a.Replay)
			}
			if len(a.Violations) > 0 {
				t.Fatalf("invariant violated on %d devices: %v\nreplay: %s", max(devices, sc.Fleet.Devices), a.Violations[0], a.Replay)
			}
		})
	}
}

func TestDifferentSeedsDiverge(t *testing.T) {
	sc, err := scenario.Load("../scenarios/flaky-network.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := sim.Run(sc, sim.Options{Devices: 20, Seed: 1, SeedSet: true})
	b, _ := sim.Run(sc, sim.Options{Devices: 20, Seed: 2, SeedSet: true})
	if a.TraceSHA256 == b.TraceSHA256 {
		t.Fatal("seeds 1 and 2 produced the same trace: the seed does not reach the dice")
	}
}
