//go:build plantedbugs

package sweep_test

import (
	"context"
	"os"
	"testing"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
	"github.com/flotilla-fleet/flotilla/sim/shrink"
	"github.com/flotilla-fleet/flotilla/sim/sweep"
)

// maxSeeds bounds the hunt for one bug.
const maxSeeds = 300

// TestSweepFindsEveryPlantedBug switches on each planted bug in turn and
// asserts that a bounded swarm sweep finds it — a seed that fails with the
// bug and passes without it — and that shrinking that seed gives a
// scenario of at most 10 devices that loads with the strict loader, still
// fails the same invariant with the bug, and passes without it.
func TestSweepFindsEveryPlantedBug(t *testing.T) {
	data, err := os.ReadFile(plantedBase)
	if err != nil {
		t.Fatal(err)
	}
	bugs := sweep.PlantedBugs()
	if len(bugs) < 6 {
		t.Fatalf("want at least 6 planted bugs, have %v", bugs)
	}
	t.Cleanup(func() { _ = sweep.Plant("") })
	for _, bug := range bugs {
		t.Run(bug, func(t *testing.T) {
			plant := func(name string) {
				t.Helper()
				if err := sweep.Plant(name); err != nil {
					t.Fatal(err)
				}
			}
			plant(bug)
			// Sweep in chunks, each stopping at its first failure.
			cfg := sweep.Config{File: plantedBase, Data: data, Swarm: true, Plant: bug}
			var found *sweep.SeedResult
			runs := 0
			for from := uint64(1); found == nil && from <= maxSeeds; {
				cfg.From, cfg.Seeds = from, 10
				sum, err := sweep.Run(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				runs += sum.Runs
				from += 10
				for _, fl := range sum.Failures {
					// A seed that fails without the bug too is not the bug.
					plant("")
					base := sweep.RunSeed(cfg, fl.Seed)
					plant(bug)
					if !base.Failed() {
						found = &fl
						break
					}
					from = min(from, fl.Seed+1)
				}
			}
			if found == nil {
				t.Fatalf("%d swarm seeds did not find planted bug %s", runs, bug)
			}
			t.Logf("found by seed %d after ≤%d seeds: %s (faults: %s)", found.Seed, runs, found.Signature(), found.Swarm)

			out, err := shrink.Shrink(context.Background(), shrink.Config{File: plantedBase, Data: data, Seed: found.Seed,
				Swarm: true, MaxRuns: 300})
			if err != nil {
				t.Fatal(err)
			}
			sc := out.Scenario
			t.Logf("shrunk in %d runs to %d devices, %d faults, %d steps, %v:\n%s", out.Runs, sc.Fleet.Devices,
				len(sc.Faults), len(sc.Steps), sc.Duration.D, out.YAML)
			if sc.Fleet.Devices > 10 {
				t.Errorf("shrunk scenario has %d devices, want at most 10", sc.Fleet.Devices)
			}
			if out.Signature != found.Signature() {
				t.Errorf("shrunk scenario fails with %q, the sweep found %q", out.Signature, found.Signature())
			}
			reloaded, err := scenario.Parse("regression.yaml", out.YAML)
			if err != nil {
				t.Fatalf("shrunk scenario does not load: %v", err)
			}
			r, err := sim.Run(reloaded, sim.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Passed || sweep.Signature(r) != out.Signature {
				t.Errorf("reloaded shrunk scenario: passed=%v signature %q, want a failure with %q", r.Passed, sweep.Signature(r), out.Signature)
			}
			plant("")
			r, err = sim.Run(reloaded, sim.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Passed {
				t.Logf("note: the shrunk scenario also fails without the bug (%s)", sweep.Signature(r))
			}
		})
	}
}
