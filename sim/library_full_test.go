//go:build integration

package sim_test

import (
	"path/filepath"
	"testing"

	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// TestLibrary runs every library scenario at full size twice, under
// GOMAXPROCS=1 and GOMAXPROCS=2, and asserts identical trace hashes and that
// the scenario meets its expectations with no invariant violated. The 10k
// scale scenario runs its double run on 2,000 devices (make sim runs it at
// full size).
func TestLibrary(t *testing.T) {
	for _, file := range libraryFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			sc, err := scenario.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			devices := 0
			if sc.Fleet.Devices > 2000 {
				devices = 2000
			}
			a := runWith(t, sc, 1, devices)
			b := runWith(t, sc, 2, devices)
			if a.TraceSHA256 != b.TraceSHA256 || a.Events != b.Events {
				t.Fatalf("GOMAXPROCS=1 and 2 disagree: %s (%d events) vs %s (%d events)\nreplay: %s",
					a.TraceSHA256, a.Events, b.TraceSHA256, b.Events, a.Replay)
			}
			for _, v := range a.Violations {
				t.Errorf("%s", v)
			}
			for _, e := range a.Expectations {
				if !e.Pass {
					t.Errorf("expectation %s: want %s, got %s", e.Name, e.Want, e.Got)
				}
			}
			if t.Failed() {
				t.Logf("seed %d; replay: %s", a.Seed, a.Replay)
			}
		})
	}
}
