package sweep

import (
	"fmt"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/report"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// recObserver feeds a report.Recorder from a running world.
type recObserver struct {
	rec      *report.Recorder
	versions map[string]int
	phases   map[core.AgentUpgradePhase]int
}

func (o *recObserver) Next() time.Duration { return o.rec.Next() }

func (o *recObserver) Observe(w *sim.World, at time.Duration) {
	online := w.Census(o.versions, o.phases)
	o.rec.Sample(at, o.versions, o.phases, online)
}

// RunWithReport runs w (built from sc) while recording the curves of a
// report; the result is the same as w.Run()'s. wall is measured here.
func RunWithReport(w *sim.World, sc *scenario.Scenario, file string, seed uint64, replay string) (*sim.Result, report.Run) {
	obs := &recObserver{versions: map[string]int{}, phases: map[core.AgentUpgradePhase]int{}}
	rec := report.NewRecorder(report.Meta{Scenario: sc.Name, File: file, Seed: seed, Replay: replay}, report.Options{})
	obs.rec = rec
	scheduleMarks(rec, sc, w.FaultWindowEnd())
	t0 := time.Now()
	r := w.RunObserved(obs)
	wall := time.Since(t0)
	online := w.Census(obs.versions, obs.phases)
	rec.End(w.Now(), obs.versions, obs.phases, online)
	faultWindows(rec, sc, r, w.Now())
	if r.Replay == "" || replay != "" {
		r.Replay = replay
	}
	if len(r.Violations) > 0 {
		v := r.Violations[0]
		rec.Violate(report.Violation{Checker: v.Name, Message: v.String(), At: v.At, Seed: r.Seed, Replay: r.Replay})
	}
	for _, e := range r.Expectations {
		rec.Expect(report.Expectation{Name: e.Name, OK: e.Pass, Detail: fmt.Sprintf("want %s, got %s", e.Want, e.Got)})
	}
	run := rec.Finish(r.Events, wall, "")
	run.Devices = r.Devices
	r.WallSeconds = wall.Seconds()
	if wall > 0 {
		r.EventsPerS = float64(r.Events) / wall.Seconds()
	}
	return r, run
}

// scheduleMarks marks the scenario's steps and the start of the liveness
// phase.
func scheduleMarks(rec *report.Recorder, sc *scenario.Scenario, windowEnd time.Duration) {
	for _, st := range sc.Steps {
		rec.Mark(st.At.D, "step", stepLabel(st))
	}
	for _, f := range sc.Faults {
		if f.Kind == scenario.FaultOperatorCrash && f.When == "" {
			rec.Mark(f.At.D, "operator-crash", "operator crash")
			if f.Down.Set {
				rec.Mark(f.At.D+f.Down.D, "operator-restart", "operator restart")
			}
		}
	}
	rec.Mark(windowEnd, "liveness", "faults healed")
}

func stepLabel(st scenario.Step) string {
	switch {
	case st.UpgradeAgent != nil:
		return "upgrade_agent " + st.UpgradeAgent.Version
	case st.UpdateDeployment != nil:
		return "update_deployment " + st.UpdateDeployment.Name + " " + st.UpdateDeployment.Version
	case st.AddDeployment != nil:
		return "add_deployment " + st.AddDeployment.Name
	case st.Blacklist != nil:
		return "blacklist"
	case st.Unblacklist != nil:
		return "unblacklist"
	case st.SetLabels != nil:
		return "set_labels"
	}
	return "step"
}

// faultWindows derives the report's fault windows from the scenario (the
// schedule) and the run's hit counters (per kind: a kind's hits go to its
// first window). Phase-triggered faults have no fixed time: they are shown
// as a window over the rollout, from the first step to the end of the
// fault window.
func faultWindows(rec *report.Recorder, sc *scenario.Scenario, r *sim.Result, end time.Duration) {
	given := map[string]bool{}
	first := firstStep(sc)
	for _, f := range sc.Faults {
		target := faultTarget(f)
		win := report.FaultWindow{Kind: f.Kind, Target: target, Start: f.At.D, End: f.At.D + f.For.D}
		switch {
		case f.When != "":
			win.Start, win.End = max(first, f.At.D), max(first, sc.FaultWindowEnd())
			win.Target = target + " on entering " + f.When
		case f.Kind == scenario.FaultOperatorCrash || f.Kind == scenario.FaultPowerCut || f.Kind == scenario.FaultAgentCrash:
			win.End = f.At.D + f.Down.D
			if f.Rate.Set {
				win.End = f.At.D + f.For.D
			}
		case f.Kind == scenario.FaultArtifact:
			win.Start, win.End = 0, end
		case !f.For.Set:
			win.End = win.Start // clock jump, drift start
		}
		win.End = min(win.End, end)
		win.Start = min(win.Start, win.End)
		if !given[f.Kind] {
			win.Hits = r.FaultsFired[f.Kind]
			given[f.Kind] = true
		}
		rec.Fault(win)
	}
}

func faultTarget(f scenario.Fault) string {
	s := ""
	switch {
	case len(f.Names) > 0:
		s = fmt.Sprint(f.Names)
	case f.Devices.Set:
		s = f.Devices.String() + " of devices"
	}
	for _, k := range sortedKeys(f.Selector) {
		if s != "" {
			s += " "
		}
		s += k + "=" + f.Selector[k]
	}
	if s == "" {
		switch f.Kind {
		case scenario.FaultOutage, scenario.FaultNATSRestart:
			s = "nats"
		case scenario.FaultOperatorCrash:
			s = "operator"
		default:
			s = "all devices"
		}
	}
	return s
}
