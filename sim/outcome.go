package sim

// Per-device outcomes of a finished run, for the sim-versus-real
// differential suite (sim/simreal): what a real run can observe too.

import (
	"slices"

	"github.com/flotilla-fleet/flotilla/core"
)

// DeviceOutcome is where one device ended.
type DeviceOutcome struct {
	// Version is the agent version the device's active agent runs ("none"
	// when no agent is running).
	Version string
	// Status is the last upgrade status in KV (zero when none was written).
	Status core.UpgradeStatus
	// HasStatus reports whether any upgrade status was written.
	HasStatus bool
}

// DeviceOutcomes returns every device's outcome, by device name.
func (w *World) DeviceOutcomes() map[string]DeviceOutcome {
	out := make(map[string]DeviceOutcome, len(w.devs))
	statuses, _ := w.srv.Bucket(core.BucketAgentUpgradeStatus)
	for _, d := range w.devs {
		o := DeviceOutcome{Version: "none"}
		if d.main != nil && d.main.alive {
			o.Version = d.main.version.String()
		}
		if statuses != nil {
			if e, err := statuses.Get(d.name); err == nil {
				if s, ok := e.Obj.(core.UpgradeStatus); ok {
					o.Status, o.HasStatus = s, true
				} else if s, err := core.DecodeUpgradeStatus(e.Value); err == nil {
					o.Status, o.HasStatus = s, true
				}
			}
		}
		out[d.name] = o
	}
	return out
}

// DeviceLabels returns the labels the scenario gave each device, by name.
func (w *World) DeviceLabels() map[string]map[string]string {
	out := make(map[string]map[string]string, len(w.devs))
	for _, d := range w.devs {
		out[d.name] = d.labels
	}
	return out
}

// RolloutConditions returns the conditions set (Status true) on each
// AgentRollout's last status, by rollout name, sorted.
func (w *World) RolloutConditions() map[string][]string {
	out := map[string][]string{}
	for _, r := range w.store.rollouts {
		var cs []string
		for _, c := range r.status.Conditions {
			if c.Status {
				cs = append(cs, c.Type)
			}
		}
		slices.Sort(cs)
		out[r.spec.Name] = cs
	}
	return out
}

// Converged reports whether the run converged after its fault window.
func (w *World) Converged() bool { return w.converged }
