package sim

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/sim/check"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Expectation is one `expect:` line and whether it held.
type Expectation struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Pass bool   `json:"pass"`
}

// Result is the outcome of one run; its JSON form is the command line's
// --json output.
type Result struct {
	Scenario    string  `json:"scenario"`
	File        string  `json:"file"`
	Seed        uint64  `json:"seed"`
	Devices     int     `json:"devices"`
	Events      uint64  `json:"events"`
	SimSeconds  float64 `json:"sim_seconds"`
	WallSeconds float64 `json:"wall_seconds"`
	EventsPerS  float64 `json:"events_per_second"`
	TraceSHA256 string  `json:"trace_sha256"`
	TraceRecs   uint64  `json:"trace_records"`

	Violations         []check.Violation `json:"violations"`
	Expectations       []Expectation     `json:"expectations"`
	FinalAgentVersions map[string]int    `json:"final_agent_versions"`
	FaultsFired        map[string]uint64 `json:"faults_fired"`
	Network            map[string]uint64 `json:"network"`
	UpgradeOutcomes    map[string]int    `json:"upgrade_outcomes"`
	ConvergedAtSeconds float64           `json:"converged_at_seconds,omitempty"`
	CoreErrors         []string          `json:"core_errors,omitempty"`
	Passed             bool              `json:"passed"`
	Replay             string            `json:"replay"`
}

func (w *World) result() *Result {
	k := w.k
	r := &Result{Scenario: w.sc.Name, File: w.sc.File, Seed: k.Seed(), Devices: len(w.devs), Events: k.Events(),
		SimSeconds: k.Now().Seconds(), TraceSHA256: k.TraceHash(), TraceRecs: k.TraceRecords(),
		Violations: w.chk.Violations, FinalAgentVersions: map[string]int{}, FaultsFired: map[string]uint64{},
		UpgradeOutcomes: map[string]int{},
		CoreErrors:      w.coreErrs}
	if r.Violations == nil {
		r.Violations = []check.Violation{}
	}
	for k, v := range w.firedCounts {
		r.FaultsFired[k] = v
	}
	st := w.net.Stats
	r.Network = map[string]uint64{"dropped": st.Dropped, "duplicated": st.Duplicated, "queued": st.Queued,
		"resumed": st.Resumed, "no_responders": st.NoResponders, "timeouts": st.Timeouts}
	if w.converged {
		r.ConvergedAtSeconds = w.convergedAt.Seconds()
	}
	rolledBack, failed := 0, 0
	statuses, _ := w.srv.Bucket(core.BucketAgentUpgradeStatus)
	for _, d := range w.devs {
		v := "none"
		if d.main != nil && d.main.alive {
			v = d.main.version.String()
		}
		r.FinalAgentVersions[v]++
		if e, err := statuses.Get(d.name); err == nil {
			if s, ok := e.Obj.(core.UpgradeStatus); ok {
				key := string(s.Phase)
				if s.Reason != "" {
					key += "/" + string(s.Reason)
				}
				r.UpgradeOutcomes[key]++
				switch s.Phase {
				case core.UpgradeRolledBack:
					rolledBack++
				case core.UpgradeFailed:
					failed++
				}
			}
		}
	}
	n := len(w.devs)
	ex := w.sc.Expect
	add := func(name, want, got string, pass bool) {
		r.Expectations = append(r.Expectations, Expectation{Name: name, Want: want, Got: got, Pass: pass})
	}
	add("converged_within", ex.ConvergedWithin.D.String(), convergedGot(w), w.converged)
	vers := make([]string, 0, len(ex.AgentVersion))
	for v := range ex.AgentVersion {
		vers = append(vers, v)
	}
	sort.Strings(vers)
	for _, v := range vers {
		t := ex.AgentVersion[v]
		got := r.FinalAgentVersions[v]
		add("agent_version "+v, t.Raw, fmt.Sprintf("%d/%d", got, n), t.Holds(got, n))
	}
	if t := ex.RolledBack; t != nil {
		add("rolled_back", t.Raw, fmt.Sprintf("%d/%d", rolledBack, n), t.Holds(rolledBack, n))
	}
	if t := ex.UpgradeFailed; t != nil {
		add("upgrade_failed", t.Raw, fmt.Sprintf("%d/%d", failed, n), t.Holds(failed, n))
	}
	if t := ex.WorkloadsRunning; t != nil {
		got, total := w.workloadsRunning()
		add("workloads_running", t.Raw, fmt.Sprintf("%d/%d", got, total), t.Holds(got, total))
	}
	if ex.RolloutPaused != nil {
		paused := false
		for _, name := range w.agentRollouts {
			paused = paused || w.store.rolloutPaused(name)
		}
		add("rollout_paused", strconv.FormatBool(*ex.RolloutPaused), strconv.FormatBool(paused), paused == *ex.RolloutPaused)
	}
	kinds := make([]string, 0, len(ex.FaultsFired))
	for k := range ex.FaultsFired {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, kd := range kinds {
		t := ex.FaultsFired[kd]
		got := int(w.firedCounts[kd])
		add("faults_fired "+kd, t.Raw, strconv.Itoa(got), t.Holds(got, n)) // percentages: of the fleet
	}
	r.Passed = len(r.Violations) == 0
	for _, e := range r.Expectations {
		r.Passed = r.Passed && e.Pass
	}
	r.Replay = ReplayCommand(w.sc.File, r.Seed)
	if w.devicesOpt > 0 {
		r.Replay += " --devices " + strconv.Itoa(w.devicesOpt)
	}
	return r
}

func convergedGot(w *World) string {
	if !w.converged {
		return "not converged"
	}
	return fmt.Sprintf("at %v (%v after the fault window)", w.convergedAt, w.convergedAt-w.windowEnd)
}

func (w *World) workloadsRunning() (got, total int) {
	for _, d := range w.devs {
		labels, blacklisted := w.deviceLabels(d)
		if blacklisted {
			continue
		}
		for _, dep := range w.store.deployments {
			if dep.spec.Deleting || !dep.spec.Selector.Matches(labels) {
				continue
			}
			total++
			for _, wl := range d.workloads {
				if wl.dep == dep.spec.Name && wl.version == dep.spec.Workload.Version {
					got++
				}
			}
		}
	}
	return got, total
}

// ReplayCommand is the one-line command that replays a run.
func ReplayCommand(file string, seed uint64) string {
	return fmt.Sprintf("flotilla sim replay %s --seed %d", file, seed)
}

// Run loads nothing and runs sc with opt: a convenience for tests.
func Run(sc *scenario.Scenario, opt Options) (*Result, error) {
	w, err := New(sc, opt)
	if err != nil {
		return nil, err
	}
	return w.Run(), nil
}
