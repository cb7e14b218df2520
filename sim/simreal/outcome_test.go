package simreal

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/sim/check"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Every suite scenario loads and passes in the simulator on its own (the
// real half needs the simreal tag: make test-simreal).
func TestScenariosPassInTheSimulator(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	if len(files) < 6 {
		t.Fatalf("want the six suite scenarios, found %v", files)
	}
	for _, f := range files {
		sc, err := scenario.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		o, res, err := RunSim(sc)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Passed || !o.Converged || len(o.Devices) != sc.Fleet.Devices {
			t.Errorf("%s: passed=%v converged=%v devices=%d: %+v %v", f, res.Passed, o.Converged, len(o.Devices),
				res.Expectations, res.Violations)
		}
	}
}

func TestDiffIsSemantic(t *testing.T) {
	base := func() *Outcome {
		return &Outcome{Converged: true, Devices: map[string]Device{
			"dev-0": {Version: "v2.0.0", Phase: core.UpgradeCommitted, Attempt: 1},
			"dev-1": {Version: "v1.0.0", Phase: core.UpgradeRolledBack, Reason: "Interrupted", Attempt: 1},
		}, Rollouts: map[string][]string{"to-v2": {"Complete"}}, Notes: []string{"converged at 3s"}}
	}
	same := base()
	same.Notes = []string{"converged at 90s"}
	d := same.Devices["dev-1"]
	d.Reason, d.Attempt = "CutoverTimeout", 2 // reported, not compared
	same.Devices["dev-1"] = d
	if diff := Diff(base(), same); len(diff) != 0 {
		t.Fatalf("timings, reasons and attempts must not count: %v", diff)
	}
	for name, mutate := range map[string]func(o *Outcome){
		"agent version":    func(o *Outcome) { o.Devices["dev-0"] = Device{Version: "v1.0.0", Phase: core.UpgradeCommitted} },
		"upgrade phase":    func(o *Outcome) { o.Devices["dev-1"] = Device{Version: "v1.0.0", Phase: core.UpgradeFailed} },
		"conditions":       func(o *Outcome) { o.Rollouts["to-v2"] = []string{"Paused"} },
		"only in":          func(o *Outcome) { delete(o.Devices, "dev-1") },
		"did not converge": func(o *Outcome) { o.Converged = false },
		"violated": func(o *Outcome) {
			o.Violations = []check.Violation{{Invariant: check.InvStopAfterHB, Name: check.Names[check.InvStopAfterHB]}}
		},
	} {
		o := base()
		mutate(o)
		diff := Diff(base(), o)
		if len(diff) != 1 || !strings.Contains(diff[0], name) {
			t.Errorf("%s: want one difference naming it, got %v", name, diff)
		}
	}
}
