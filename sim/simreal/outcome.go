// Package simreal is the sim-versus-real differential suite: small
// scenarios (testdata/*.yaml) run once in the simulator and once with real
// agent processes, a real nats-server the harness stops and restarts, and
// the real operator runner; what the real run observes feeds sim/check's
// invariants, and the two outcomes must agree (make test-simreal).
//
// This file is the part both runs share: the outcome of a run and the
// semantic comparison (versions, phases, rollout state, violations; never
// timings). The real harness is behind the build tag simreal.
package simreal

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/check"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Device is where one device ended.
type Device struct {
	// Version the active agent runs; "none" when no agent runs.
	Version string
	// Phase of the last upgrade status in KV ("" when none was written).
	Phase core.AgentUpgradePhase
	// Reason and Attempt of that status (reported, not compared).
	Reason  core.UpgradeReason
	Attempt uint32
}

func (d Device) String() string {
	s := d.Version + " " + string(d.Phase)
	if d.Phase == "" {
		s = d.Version + " (no status)"
	}
	if d.Reason != "" {
		s += "/" + string(d.Reason)
	}
	return s
}

// Outcome is what a run ended with.
type Outcome struct {
	Converged bool
	Devices   map[string]Device
	// Rollouts: the conditions set on each AgentRollout's status, only
	// those the comparison judges (Paused, Complete), sorted.
	Rollouts    map[string][]string
	Violations  []check.Violation
	FaultsFired map[string]uint64
	// Observed counts what the real run's observer fed the checker, by
	// kind (heartbeat, marker, status <phase>, upgrade-stop, ...).
	Observed map[string]int
	// Notes are facts worth reporting that are not compared (timings).
	Notes []string
	// Missed lists phase-triggered faults of a real run that landed after
	// the device had left the phase: the run did not test the scenario.
	Missed []string
}

// judgedConditions are the rollout conditions compared between the runs.
var judgedConditions = []string{opcore.CondPaused, opcore.CondComplete}

// RolloutConditions keeps the judged conditions of cs (Status true), sorted.
func RolloutConditions(cs []opcore.Condition) []string {
	var out []string
	for _, c := range cs {
		if c.Status && slices.Contains(judgedConditions, c.Type) {
			out = append(out, c.Type)
		}
	}
	sort.Strings(out)
	return out
}

// RunSim runs sc in the simulator and returns its outcome.
func RunSim(sc *scenario.Scenario) (*Outcome, *sim.Result, error) {
	w, err := sim.New(sc, sim.Options{})
	if err != nil {
		return nil, nil, err
	}
	res := w.Run()
	o := &Outcome{Converged: w.Converged(), Devices: map[string]Device{}, Rollouts: map[string][]string{},
		Violations: res.Violations, FaultsFired: res.FaultsFired}
	for name, d := range w.DeviceOutcomes() {
		dev := Device{Version: d.Version}
		if d.HasStatus {
			dev.Phase, dev.Reason, dev.Attempt = d.Status.Phase, d.Status.Reason, d.Status.Attempt
		}
		o.Devices[name] = dev
	}
	for name, cs := range w.RolloutConditions() {
		var keep []string
		for _, c := range cs {
			if slices.Contains(judgedConditions, c) {
				keep = append(keep, c)
			}
		}
		o.Rollouts[name] = keep
	}
	o.Notes = append(o.Notes, fmt.Sprintf("sim: %d events, converged at %.1fs simulated", res.Events, res.ConvergedAtSeconds))
	return o, res, nil
}

// Diff compares two outcomes semantically and returns every difference
// (empty: they agree). Each run must also be violation-free and converged.
func Diff(simO, realO *Outcome) []string {
	var out []string
	for _, r := range []struct {
		name string
		o    *Outcome
	}{{"sim", simO}, {"real", realO}} {
		if !r.o.Converged {
			out = append(out, r.name+" run did not converge")
		}
		for _, v := range r.o.Violations {
			out = append(out, r.name+" run: "+v.String())
		}
	}
	names := map[string]bool{}
	for n := range simO.Devices {
		names[n] = true
	}
	for n := range realO.Devices {
		names[n] = true
	}
	for _, n := range core.SortedKeys(names) {
		s, sok := simO.Devices[n]
		r, rok := realO.Devices[n]
		switch {
		case !sok || !rok:
			out = append(out, fmt.Sprintf("device %s: only in the %s run", n, map[bool]string{true: "sim", false: "real"}[sok]))
		case s.Version != r.Version:
			out = append(out, fmt.Sprintf("device %s: agent version sim %s, real %s (sim: %s; real: %s)", n, s.Version, r.Version, s, r))
		case s.Phase != r.Phase:
			out = append(out, fmt.Sprintf("device %s: upgrade phase sim %q, real %q (sim: %s; real: %s)", n, s.Phase, r.Phase, s, r))
		}
	}
	ro := map[string]bool{}
	for n := range simO.Rollouts {
		ro[n] = true
	}
	for n := range realO.Rollouts {
		ro[n] = true
	}
	for _, n := range core.SortedKeys(ro) {
		s, r := strings.Join(simO.Rollouts[n], ","), strings.Join(realO.Rollouts[n], ",")
		if s != r {
			out = append(out, fmt.Sprintf("rollout %s: conditions sim [%s], real [%s]", n, s, r))
		}
	}
	return out
}

// Table renders both outcomes side by side, for reports.
func Table(simO, realO *Outcome) string {
	var b strings.Builder
	names := map[string]bool{}
	for n := range simO.Devices {
		names[n] = true
	}
	for n := range realO.Devices {
		names[n] = true
	}
	fmt.Fprintf(&b, "%-10s %-36s %-36s\n", "device", "sim", "real")
	for _, n := range core.SortedKeys(names) {
		fmt.Fprintf(&b, "%-10s %-36s %-36s\n", n, simO.Devices[n], realO.Devices[n])
	}
	ro := map[string]bool{}
	for n := range simO.Rollouts {
		ro[n] = true
	}
	for n := range realO.Rollouts {
		ro[n] = true
	}
	for _, n := range core.SortedKeys(ro) {
		fmt.Fprintf(&b, "%-10s %-36s %-36s\n", "rollout "+n, "["+strings.Join(simO.Rollouts[n], ",")+"]",
			"["+strings.Join(realO.Rollouts[n], ",")+"]")
	}
	fmt.Fprintf(&b, "faults fired: sim %v, real %v\n", simO.FaultsFired, realO.FaultsFired)
	return b.String()
}
