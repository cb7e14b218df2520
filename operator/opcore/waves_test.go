package opcore

import "testing"

func TestPlanWaves(t *testing.T) {
	th := func(v int, pct bool) *Amount { return &Amount{Value: v, Percent: pct} }
	tests := []struct {
		name                         string
		s                            Strategy
		total, started, done, failed int
		canStart, limit              int
		paused                       bool
		reason                       string
	}{
		{name: "no waves: everything at once", total: 10, canStart: 10, limit: 10},
		{name: "first wave by count", s: Strategy{Waves: []Amount{{Value: 2}}}, total: 10, canStart: 2, limit: 2},
		{name: "first wave not done", s: Strategy{Waves: []Amount{{Value: 2}}}, total: 10, started: 2, done: 1, canStart: 0, limit: 2},
		{name: "first wave done: the rest", s: Strategy{Waves: []Amount{{Value: 2}}}, total: 10, started: 2, done: 2, canStart: 8, limit: 10},
		{name: "percent rounds up", s: Strategy{Waves: []Amount{{Value: 10, Percent: true}, {Value: 50, Percent: true}}}, total: 15, canStart: 2, limit: 2},
		{name: "second percent wave", s: Strategy{Waves: []Amount{{Value: 10, Percent: true}, {Value: 50, Percent: true}}}, total: 15, started: 2, done: 2, canStart: 8, limit: 10},
		{name: "maxUnavailable count", s: Strategy{MaxUnavailable: Amount{Value: 3}}, total: 10, started: 2, canStart: 1, limit: 10},
		{name: "maxUnavailable percent at least 1", s: Strategy{MaxUnavailable: Amount{Value: 5, Percent: true}}, total: 10, canStart: 1, limit: 10},
		{name: "manual pause", s: Strategy{Paused: true}, total: 10, canStart: 0, limit: 10, paused: true, reason: ReasonManualPause},
		{name: "threshold not exceeded", s: Strategy{FailureThreshold: th(1, false)}, total: 10, started: 5, done: 1, failed: 1, canStart: 5, limit: 10},
		{name: "threshold exceeded", s: Strategy{FailureThreshold: th(1, false)}, total: 10, started: 5, done: 2, failed: 2, canStart: 0, limit: 10, paused: true, reason: ReasonFailureThreshold},
		{name: "percent threshold rounds down", s: Strategy{FailureThreshold: th(10, true)}, total: 15, started: 5, done: 2, failed: 2, canStart: 0, limit: 15, paused: true, reason: ReasonFailureThreshold},
		{name: "zero threshold pauses on first failure", s: Strategy{FailureThreshold: th(0, false)}, total: 3, started: 1, done: 1, failed: 1, canStart: 0, limit: 3, paused: true, reason: ReasonFailureThreshold},
		{name: "no devices", s: Strategy{Waves: []Amount{{Value: 1}}}, total: 0, canStart: 0, limit: 0},
		{name: "wave larger than fleet", s: Strategy{Waves: []Amount{{Value: 50}}}, total: 3, canStart: 3, limit: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := PlanWaves(tc.s, tc.total, tc.started, tc.done, tc.failed)
			if p.CanStart != tc.canStart || p.Limit != tc.limit || p.Paused != tc.paused || p.PauseReason != tc.reason {
				t.Fatalf("got canStart=%d limit=%d paused=%v %q, want %d %d %v %q",
					p.CanStart, p.Limit, p.Paused, p.PauseReason, tc.canStart, tc.limit, tc.paused, tc.reason)
			}
			sum := 0
			for _, w := range p.Waves {
				sum += w.Devices
			}
			if sum != tc.total {
				t.Fatalf("waves hold %d devices, want %d", sum, tc.total)
			}
		})
	}
}

func TestValidateStrategyNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		s    Strategy
		want string
	}{
		{Strategy{Waves: []Amount{{Value: 120, Percent: true}}}, "rollout.waves[0]: percentage over 100% (120%)"},
		{Strategy{Waves: []Amount{{Value: 0}}}, "rollout.waves[0]: a wave must hold at least one device or 1%"},
		{Strategy{MaxUnavailable: Amount{Value: -1}}, "rollout.maxUnavailable: must not be negative, got -1"},
		{Strategy{FailureThreshold: &Amount{Value: 101, Percent: true}}, "rollout.failureThreshold: percentage over 100% (101%)"},
	} {
		err := validateStrategy(tc.s)
		if err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	if err := validateStrategy(Strategy{Waves: []Amount{{Value: 1}, {Value: 100, Percent: true}}}); err != nil {
		t.Errorf("valid strategy rejected: %v", err)
	}
}
