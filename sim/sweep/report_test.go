package sweep_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/report"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
	"github.com/flotilla-fleet/flotilla/sim/shrink"
	"github.com/flotilla-fleet/flotilla/sim/sweep"
)

// Recording a report does not change the run: for every library scenario
// (on 40 devices) the trace hash, the events and the verdict are those of
// a plain run, and the report's curves account for the whole fleet.
func TestReportDoesNotChangeTheRun(t *testing.T) {
	files, _ := filepath.Glob("../../scenarios/*.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			sc, err := scenario.Load(f)
			if err != nil {
				t.Skipf("does not load: %v", err)
			}
			opt := sim.Options{Devices: 40}
			plain, err := sim.Run(sc, opt)
			if err != nil {
				t.Fatal(err)
			}
			w, err := sim.New(sc, opt)
			if err != nil {
				t.Fatal(err)
			}
			r, run := sweep.RunWithReport(w, sc, f, sc.Seed, sim.ReplayCommand(f, sc.Seed))
			if r.TraceSHA256 != plain.TraceSHA256 || r.Events != plain.Events || r.Passed != plain.Passed {
				t.Fatalf("with a report: hash %s events %d passed %v; plain: %s %d %v",
					r.TraceSHA256, r.Events, r.Passed, plain.TraceSHA256, plain.Events, plain.Passed)
			}
			if len(run.Times) < 2 || run.Devices != 40 {
				t.Fatalf("report has %d samples for %d devices", len(run.Times), run.Devices)
			}
			for j := range run.Times {
				total := 0
				for i := range run.Phases.Keys {
					total += run.Phases.Values[i][j]
				}
				if total != 40 {
					t.Fatalf("sample %d: phases add up to %d devices, want 40", j, total)
				}
			}
			if want := report.Pass; !r.Passed {
				want = report.Fail
				if run.Result != want {
					t.Fatalf("report says %s for a failing run", run.Result)
				}
			} else if run.Result != want {
				t.Fatalf("report says %s for a passing run", run.Result)
			}
		})
	}
}

// A sweep with Report keeps the failing seeds' runs (with their violation
// and replay command) and the first passing one, and they render.
func TestSweepReportKeepsFailuresAndFirstPass(t *testing.T) {
	cfg := small(t)
	cfg.From, cfg.Seeds, cfg.KeepGoing, cfg.Report, cfg.Parallel = 1, 6, true, true, 2
	sc, _ := scenario.Parse(cfg.File, cfg.Data)
	sum, err := sweep.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	runs := sum.Reports()
	if len(runs) != len(sum.Failures)+1 {
		t.Fatalf("%d report runs for %d failures (+1 pass)", len(runs), len(sum.Failures))
	}
	last := runs[len(runs)-1]
	if last.Result != report.Pass || last.Seed != sum.FirstPass.Seed || last.Scenario != sc.Name {
		t.Fatalf("last report run: %s seed %d %s", last.Result, last.Seed, last.Scenario)
	}
	var buf bytes.Buffer
	if err := report.WriteHTML(&buf, report.Report{Runs: runs}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), cfg.Replay(last.Seed)) {
		t.Errorf("report does not show the replay command %q", cfg.Replay(last.Seed))
	}

	// Every seed failing (an expectation no run meets): every run is kept.
	paused := true
	sc.Expect.RolloutPaused = &paused
	if cfg.Data, err = shrink.Marshal(sc); err != nil {
		t.Fatal(err)
	}
	cfg.Seeds = 3
	sum, err = sweep.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	runs = sum.Reports()
	if len(runs) != 3 {
		t.Fatalf("%d report runs for 3 failing seeds", len(runs))
	}
	for _, run := range runs {
		failed := false
		for _, e := range run.Expectations {
			failed = failed || (e.Name == "rollout_paused" && !e.OK)
		}
		if run.Result != report.Fail || !failed || run.Replay != cfg.Replay(run.Seed) {
			t.Errorf("seed %d: result %s, rollout_paused failed %v, replay %q", run.Seed, run.Result, failed, run.Replay)
		}
	}
}
