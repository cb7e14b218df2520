package sweep_test

import (
	"context"
	"os"
	"testing"

	"github.com/flotilla-fleet/flotilla/sim/scenario"
	"github.com/flotilla-fleet/flotilla/sim/shrink"
	"github.com/flotilla-fleet/flotilla/sim/sweep"
)

// plantedBase is a small scenario: 20 devices, a deployment, an agent
// upgrade, a blacklist and a workload update; the planted-bug test hunts
// in it with faults drawn per seed (swarm).
const plantedBase = "testdata/planted-base.yaml"

func small(t *testing.T) sweep.Config {
	t.Helper()
	data, err := os.ReadFile(plantedBase)
	if err != nil {
		t.Fatal(err)
	}
	return sweep.Config{File: plantedBase, Data: data, Devices: 8}
}

// A seed's run does not depend on the worker count or on what else runs:
// the trace hash of every seed is the same on 1 and on 3 workers, and
// seeds differ from each other.
func TestSweepIsDeterministicAcrossWorkers(t *testing.T) {
	cfg := small(t)
	cfg.From, cfg.Seeds, cfg.KeepGoing, cfg.Swarm = 1, 8, true, true
	hashes := func(par int) map[uint64]string {
		cfg.Parallel = par
		got := map[uint64]string{}
		cfg.OnResult = func(sr sweep.SeedResult) {
			if sr.Err != nil {
				t.Fatalf("seed %d: %v", sr.Seed, sr.Err)
			}
			got[sr.Seed] = sr.Result.TraceSHA256
		}
		sum, err := sweep.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Runs != 8 {
			t.Fatalf("ran %d seeds, want 8", sum.Runs)
		}
		return got
	}
	one, three := hashes(1), hashes(3)
	distinct := map[string]bool{}
	for seed, h := range one {
		if three[seed] != h {
			t.Errorf("seed %d: trace %s on 1 worker, %s on 3", seed, h, three[seed])
		}
		distinct[h] = true
	}
	if len(distinct) != len(one) {
		t.Errorf("only %d distinct traces for %d seeds", len(distinct), len(one))
	}
}

// Without --keep-going the sweep stops at the first failure and reports
// it with its replay command; with it, every seed runs.
func TestSweepStopsAtFirstFailure(t *testing.T) {
	cfg := small(t)
	// An expectation no run can meet: every seed fails.
	sc, err := scenario.Parse(cfg.File, cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	sc.Expect.RolloutPaused = new(bool)
	*sc.Expect.RolloutPaused = true
	cfg.Data, err = shrink.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.From, cfg.Seeds, cfg.Parallel = 100, 50, 1
	sum, err := sweep.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Runs != 1 || len(sum.Failures) != 1 || !sum.Stopped {
		t.Fatalf("runs=%d failures=%d stopped=%v, want it to stop after the first seed", sum.Runs, len(sum.Failures), sum.Stopped)
	}
	f := sum.Failures[0]
	if f.Seed != 100 || f.Signature() != "expectation rollout_paused" {
		t.Errorf("failure seed %d %q, want seed 100 expectation rollout_paused", f.Seed, f.Signature())
	}
	if want := "flotilla sim replay " + cfg.File + " --seed 100 --devices 8"; f.Result.Replay != want {
		t.Errorf("replay %q, want %q", f.Result.Replay, want)
	}
	cfg.KeepGoing, cfg.Seeds, cfg.Parallel = true, 4, 2
	sum, err = sweep.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Runs != 4 || len(sum.Failures) != 4 {
		t.Fatalf("keep-going: runs=%d failures=%d, want 4 and 4", sum.Runs, len(sum.Failures))
	}
}

// Swarm draws differ per seed, are the same for the same seed, and always
// make a scenario the strict loader accepts.
func TestSwarmDrawsValidScenarios(t *testing.T) {
	cfg := small(t)
	kinds := map[string]bool{}
	descs := map[string]bool{}
	for seed := uint64(1); seed <= 300; seed++ {
		sc, desc, err := sweep.Prepare(cfg.File, cfg.Data, seed, true)
		if err != nil {
			t.Fatal(err)
		}
		_, again, _ := sweep.Prepare(cfg.File, cfg.Data, seed, true)
		if desc != again {
			t.Fatalf("seed %d draws %q then %q", seed, desc, again)
		}
		descs[desc] = true
		for _, f := range sc.Faults {
			kinds[f.Kind] = true
		}
		y, err := shrink.Marshal(sc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := scenario.Parse("swarm.yaml", y); err != nil {
			t.Fatalf("seed %d (%s) makes an invalid scenario: %v\n%s", seed, desc, err, y)
		}
	}
	if len(descs) < 290 {
		t.Errorf("only %d distinct fault mixes in 300 seeds", len(descs))
	}
	for _, k := range scenario.FaultKinds {
		if !kinds[k] {
			t.Errorf("fault kind %s never drawn in 300 seeds", k)
		}
	}
}
