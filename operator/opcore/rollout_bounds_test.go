package opcore

import "testing"

// TestRolloutPlanBounds covers the rollout's use of the wave planner: a
// timed-out attempt stays unavailable until a terminal status, and
// failures of devices that left the rollout keep counting.
func TestRolloutPlanBounds(t *testing.T) {
	one := Amount{Value: 1}
	cases := []struct {
		name      string
		phases    map[string]string
		gone      map[string]bool
		threshold *Amount
		canStart  int
		paused    bool
	}{
		{name: "timed-out device still holds the only slot",
			phases:   map[string]string{"a": string(UpgradeTimedOut), "b": PhaseWaiting, "c": PhaseWaiting},
			canStart: 0},
		{name: "failed device frees its slot",
			phases:   map[string]string{"a": "Failed", "b": PhaseWaiting, "c": PhaseWaiting},
			canStart: 1},
		{name: "blacklisted failed device still counts against the threshold",
			phases:    map[string]string{"b": "Failed", "c": PhaseWaiting},
			gone:      map[string]bool{"a": true},
			threshold: &one, paused: true},
		{name: "device that left still in flight does not count as failed",
			phases:    map[string]string{"b": "Failed", "c": PhaseWaiting},
			gone:      map[string]bool{"a": false},
			threshold: &one, canStart: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &rollout{targets: map[string]string{}, byPhase: map[string]int{}, gone: tc.gone,
				spec: AgentRolloutSpec{Rollout: Strategy{MaxUnavailable: one, FailureThreshold: tc.threshold}}}
			for n, ph := range tc.phases {
				r.targets[n] = ph
				adjustRollout(r, ph, 1)
			}
			p := r.plan()
			if p.CanStart != tc.canStart || p.Paused != tc.paused {
				t.Fatalf("plan: CanStart=%d Paused=%v, want CanStart=%d Paused=%v", p.CanStart, p.Paused, tc.canStart, tc.paused)
			}
		})
	}
}
