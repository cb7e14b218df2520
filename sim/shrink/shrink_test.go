package shrink

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
	"github.com/flotilla-fleet/flotilla/sim/sweep"
)

// A failure that does not depend on the fleet, the faults or the artifact
// shrinks to one device with no faults, and the written YAML reloads
// strictly and fails the same way.
func TestShrinkReducesToTheEssentials(t *testing.T) {
	sc, err := scenario.Load("../../scenarios/partition-during-cutover.yaml")
	if err != nil {
		t.Skipf("library scenario does not load: %v", err)
	}
	// Demand that the rollout pauses: no run of this scenario does.
	paused := true
	sc.Expect.RolloutPaused = &paused
	data, err := Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	out, err := Shrink(context.Background(), Config{File: "x.yaml", Data: data, Seed: 3, Devices: 60, Log: &log, Name: "paused-regression"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s\n%s", log.String(), out.YAML)
	got := out.Scenario
	if out.Signature != "expectation rollout_paused" {
		t.Errorf("signature %q", out.Signature)
	}
	if got.Fleet.Devices != 1 || len(got.Faults) != 0 {
		t.Errorf("shrunk to %d devices and %d faults, want 1 and 0", got.Fleet.Devices, len(got.Faults))
	}
	if got.Name != "paused-regression" || got.Seed != 3 {
		t.Errorf("name %q seed %d", got.Name, got.Seed)
	}
	if len(got.Expect.AgentVersion) != 0 || got.Expect.RolloutPaused == nil {
		t.Errorf("expectations not reduced to the failing one: %+v", got.Expect)
	}
	if got.Duration.D >= sc.Duration.D {
		t.Errorf("horizon %v not shorter than %v", got.Duration.D, sc.Duration.D)
	}
	re, err := scenario.Parse("regression.yaml", out.YAML)
	if err != nil {
		t.Fatalf("written scenario does not load: %v", err)
	}
	r, err := sim.Run(re, sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Passed || sweep.Signature(r) != out.Signature {
		t.Errorf("reloaded: passed=%v %q", r.Passed, sweep.Signature(r))
	}
}

// A safety violation keeps its invariant while shrinking: the signature is
// the invariant, not whatever else happens to fail in a smaller world.
func TestShrinkKeepsTheInvariant(t *testing.T) {
	data, err := os.ReadFile("../../scenarios/regressions/swarm-seed125.yaml")
	if err != nil {
		t.Skip("no regression scenario to shrink")
	}
	sc, err := scenario.Parse("r.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sim.Run(sc, sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Passed {
		t.Skip("the regression passes now (fixed): nothing to shrink")
	}
	out, err := Shrink(context.Background(), Config{File: "r.yaml", Data: data, Seed: sc.Seed})
	if err != nil {
		t.Fatal(err)
	}
	if out.Signature != sweep.Signature(r) || out.Scenario.Fleet.Devices > sc.Fleet.Devices {
		t.Errorf("shrunk to %q with %d devices from %q with %d", out.Signature, out.Scenario.Fleet.Devices, sweep.Signature(r), sc.Fleet.Devices)
	}
}

func TestShrinkRefusesAPassingRun(t *testing.T) {
	data, err := os.ReadFile("../sweep/testdata/planted-base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Shrink(context.Background(), Config{File: "b.yaml", Data: data, Seed: 1, Devices: 5})
	if err == nil || !strings.Contains(err.Error(), "passes") {
		t.Fatalf("err = %v, want 'passes: nothing to shrink'", err)
	}
}
