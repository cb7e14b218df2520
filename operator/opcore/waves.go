package opcore

import "fmt"

// WavePlan is the wave planner's answer for one rollout: how many more
// devices may start now, and why not more. The same planner drives
// Deployments (workload rollouts) and AgentRollouts (agent upgrades).
type WavePlan struct {
	// CanStart is how many devices may start now (never negative).
	CanStart int
	// Limit is the number of started devices the current wave allows.
	Limit int
	// MaxInFlight is the resolved maxUnavailable.
	MaxInFlight int
	// Threshold is the resolved failure threshold (-1 when unset).
	Threshold int
	// Paused is set by a manual pause or by failures beyond the threshold.
	Paused      bool
	PauseReason string // "ManualPause" or "FailureThresholdExceeded"
	Waves       []WaveStatus
}

// Pause reasons.
const (
	ReasonManualPause      = "ManualPause"
	ReasonFailureThreshold = "FailureThresholdExceeded"
)

// PlanWaves decides how many of total targeted devices may start, given how
// many have started, how many of those are done (succeeded or failed) and
// how many failed.
//
// Wave i covers the started positions (end(i-1), end(i)]; a wave's size is
// its share of total (percentages round up); devices beyond the listed
// waves form one more, final wave.
// Devices of wave i+1 start only when done reaches end(i). At most
// MaxInFlight devices are started and not done at once. When more than the
// failure threshold have failed, or the strategy is paused, nothing starts.
func PlanWaves(s Strategy, total, started, done, failed int) WavePlan {
	p := WavePlan{Threshold: -1}
	ends := waveEnds(s.Waves, total)
	p.Limit = total
	for _, e := range ends {
		if done < e {
			p.Limit = e
			break
		}
	}
	p.MaxInFlight = total
	if !s.MaxUnavailable.IsZero() {
		p.MaxInFlight = s.MaxUnavailable.Value
		if s.MaxUnavailable.Percent {
			p.MaxInFlight = max(1, s.MaxUnavailable.Value*total/100)
		}
	}
	if s.FailureThreshold != nil {
		p.Threshold = s.FailureThreshold.Value
		if s.FailureThreshold.Percent {
			p.Threshold = s.FailureThreshold.Value * total / 100
		}
	}
	switch {
	case s.Paused:
		p.Paused, p.PauseReason = true, ReasonManualPause
	case p.Threshold >= 0 && failed > p.Threshold:
		p.Paused, p.PauseReason = true, ReasonFailureThreshold
	}
	if !p.Paused {
		inFlight := started - done
		p.CanStart = max(0, min(p.Limit-started, p.MaxInFlight-inFlight))
		if plantedBuild && planted(BugMaxUnavailableOffByOne) {
			p.CanStart = max(0, min(p.Limit-started, p.MaxInFlight-inFlight+1))
		}
	}
	prev := 0
	for i, e := range ends {
		size := e - prev
		w := WaveStatus{Index: i + 1, Devices: size,
			Started: clampInt(started-prev, 0, size), Done: clampInt(done-prev, 0, size)}
		switch {
		case size > 0 && w.Done == size:
			w.Phase = WaveComplete
		case w.Started > 0:
			w.Phase = WaveInProgress
		default:
			w.Phase = WavePending
		}
		p.Waves = append(p.Waves, w)
		prev = e
	}
	return p
}

// waveEnds returns the cumulative end position of each wave; the last one is
// always total.
func waveEnds(waves []Amount, total int) []int {
	if len(waves) == 0 {
		return []int{total}
	}
	ends := make([]int, 0, len(waves))
	end := 0
	for _, w := range waves {
		size := w.Value
		if w.Percent {
			size = (w.Value*total + 99) / 100
		}
		end = min(total, end+max(0, size))
		ends = append(ends, end)
	}
	if end < total {
		ends = append(ends, total)
	}
	return ends
}

func clampInt(n, lo, hi int) int { return max(lo, min(n, hi)) }

// validateStrategy names the first bad field of a strategy.
func validateStrategy(s Strategy) error {
	check := func(field string, a Amount) error {
		if a.Value < 0 {
			return fmt.Errorf("%s: must not be negative, got %d", field, a.Value)
		}
		if a.Percent && a.Value > 100 {
			return fmt.Errorf("%s: percentage over 100%% (%d%%)", field, a.Value)
		}
		return nil
	}
	for i, w := range s.Waves {
		if err := check(fmt.Sprintf("rollout.waves[%d]", i), w); err != nil {
			return err
		}
		if w.Value == 0 {
			return fmt.Errorf("rollout.waves[%d]: a wave must hold at least one device or 1%%", i)
		}
	}
	if err := check("rollout.maxUnavailable", s.MaxUnavailable); err != nil {
		return err
	}
	if s.FailureThreshold != nil {
		if err := check("rollout.failureThreshold", *s.FailureThreshold); err != nil {
			return err
		}
	}
	return nil
}
