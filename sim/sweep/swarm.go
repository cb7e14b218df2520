package sweep

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// swarmStream separates the swarm's draws from the simulation's own
// streams (which are derived from the same seed by name).
const swarmStream = 0x5357_4152_4d21 // "SWARM!"

// Swarm replaces sc's faults with a mix drawn from seed ("swarm testing":
// every seed explores another corner) and returns a one-line description of
// the mix. Fault windows end early enough for the liveness phase; the
// expectations are reduced to convergence (outcome thresholds and fault
// counts of the hand-written mix do not hold for a drawn one), so a swarm
// run fails only on a broken invariant or on liveness.
func Swarm(sc *scenario.Scenario, seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, swarmStream))
	cw := sc.Expect.ConvergedWithin.D
	// Faults (and their recovery) must be over by this time.
	room := sc.Duration.D - cw - lastStep(sc)
	if room < time.Minute {
		room = time.Minute
	}
	horizon := lastStep(sc) + room*2/3
	start := firstStep(sc)
	n := 1 + rng.IntN(4)
	sc.Faults = nil
	var desc []string
	dur := func(lo, hi time.Duration) scenario.Duration {
		d, unit := lo+time.Duration(rng.Int64N(int64(hi-lo)+1)), time.Second
		if hi < 10*time.Second {
			unit = time.Millisecond
		}
		return scenario.Duration{D: max(lo, d.Round(unit)), Set: true}
	}
	pct := func(lo, hi int) scenario.Amount {
		return scenario.Amount{Value: float64(lo + rng.IntN(hi-lo+1)), Percent: true, Set: true}
	}
	phases := []string{"Staging", "Verifying", "CutoverReady", "WaitingForStop", "Reverting", "Committed"}
	for range n {
		var f scenario.Fault
		window := func(maxFor time.Duration) {
			at := dur(0, max(0, horizon-time.Minute))
			if rng.IntN(2) == 0 && start < horizon {
				at = dur(start, max(start, horizon-time.Minute)) // during the rollout
			}
			f.At = at
			f.For = dur(10*time.Second, max(10*time.Second, min(maxFor, horizon-at.D)))
		}
		switch rng.IntN(16) {
		case 0:
			f.Kind = scenario.FaultDrop
			f.Rate = scenario.Ratio{P: float64(1+rng.IntN(25)) / 100, Set: true}
			window(30 * time.Minute)
		case 1:
			f.Kind = scenario.FaultDuplicate
			f.Rate = scenario.Ratio{P: float64(1+rng.IntN(20)) / 100, Set: true}
			window(30 * time.Minute)
		case 2:
			f.Kind = scenario.FaultDelay
			f.Delay = dur(50*time.Millisecond, 5*time.Second)
			window(20 * time.Minute)
		case 3:
			f.Kind = scenario.FaultReorder
			f.Rate = scenario.Ratio{P: float64(5+rng.IntN(30)) / 100, Set: true}
			f.Delay = dur(100*time.Millisecond, 3*time.Second)
			window(20 * time.Minute)
		case 4:
			f.Kind = scenario.FaultPartition
			f.Devices = pct(1, 40)
			f.Direction = []string{"both", "in", "out"}[rng.IntN(3)]
			window(15 * time.Minute)
		case 5:
			f.Kind = scenario.FaultOutage
			window(5 * time.Minute)
		case 6:
			f.Kind = scenario.FaultOperatorCrash
			f.Down = dur(time.Second, 90*time.Second)
			if rng.IntN(2) == 0 {
				f.When = phases[rng.IntN(len(phases))]
			} else {
				f.At = dur(start, max(start, horizon))
			}
		case 7, 8:
			f.Kind = scenario.FaultPowerCut
			f.When = phases[rng.IntN(len(phases))]
			f.Devices = pct(5, 60)
			f.Down = dur(time.Second, 2*time.Minute)
			f.Lose = []string{"lost", "torn", "either"}[rng.IntN(3)]
			f.Count = 1 + rng.IntN(3)
		case 9:
			f.Kind = scenario.FaultAgentCrash
			f.When = phases[rng.IntN(len(phases))]
			f.Devices = pct(5, 60)
			f.Down = dur(time.Second, 30*time.Second)
			f.Count = 1 + rng.IntN(3)
		case 10:
			f.Kind = scenario.FaultOffline
			f.Devices = pct(1, 20)
			window(45 * time.Minute)
		case 13:
			f.Kind = scenario.FaultNATSRestart
			f.Down = dur(100*time.Millisecond, 10*time.Second)
			if rng.IntN(2) == 0 {
				f.When = phases[rng.IntN(len(phases))]
				f.Count = 1 + rng.IntN(3)
			} else {
				f.At = dur(start, max(start, horizon))
			}
		case 14:
			f.Kind = scenario.FaultAckLoss
			f.Rate = scenario.Ratio{P: float64(1+rng.IntN(40)) / 100, Set: true}
			window(20 * time.Minute)
		case 15:
			f.Kind = scenario.FaultDeadLink
			f.Devices = pct(1, 40)
			window(10 * time.Minute)
		case 12:
			f.Kind = scenario.FaultArtifact
			f.Behaviour = scenario.ArtifactBehaviours[1+rng.IntN(len(scenario.ArtifactBehaviours)-1)]
			f.Devices = pct(1, 30)
		case 11:
			if rng.IntN(2) == 0 {
				f.Kind = scenario.FaultClockJump
				f.By = dur(-10*time.Minute, 10*time.Minute)
				if f.By.D == 0 {
					f.By.D = time.Minute
				}
			} else {
				f.Kind = scenario.FaultClockDrift
				f.DriftPPM = 100 * (1 + rng.IntN(2000))
				if rng.IntN(2) == 0 {
					f.DriftPPM = -f.DriftPPM
				}
			}
			f.Devices = pct(1, 50)
			f.At = dur(0, horizon)
		}
		if f.Count == 0 {
			f.Count = 1
		}
		sc.Faults = append(sc.Faults, f)
		desc = append(desc, DescribeFault(f))
	}
	sc.Expect = scenario.Expect{Pos: sc.Expect.Pos, ConvergedWithin: sc.Expect.ConvergedWithin}
	if end := sc.FaultWindowEnd() + cw; end > sc.Duration.D {
		sc.Duration.D = end.Round(time.Minute) + time.Minute
	}
	return strings.Join(desc, "; ")
}

// DescribeFault is a fault as one short human-readable phrase.
func DescribeFault(f scenario.Fault) string {
	var b strings.Builder
	b.WriteString(f.Kind)
	if f.Rate.Set {
		fmt.Fprintf(&b, " rate=%g", f.Rate.P)
	}
	if f.Delay.Set {
		fmt.Fprintf(&b, " delay=%v", f.Delay.D)
	}
	if f.Devices.Set {
		fmt.Fprintf(&b, " devices=%s", f.Devices)
	}
	if f.Direction != "" && f.Direction != "both" {
		fmt.Fprintf(&b, " direction=%s", f.Direction)
	}
	if f.When != "" {
		fmt.Fprintf(&b, " when=%s", f.When)
	} else if f.At.Set {
		fmt.Fprintf(&b, " at=%v", f.At.D)
	}
	if f.For.Set {
		fmt.Fprintf(&b, " for=%v", f.For.D)
	}
	if f.Down.Set {
		fmt.Fprintf(&b, " down=%v", f.Down.D)
	}
	if f.Lose != "" && f.Lose != "either" {
		fmt.Fprintf(&b, " lose=%s", f.Lose)
	}
	if f.DriftPPM != 0 {
		fmt.Fprintf(&b, " drift=%dppm", f.DriftPPM)
	}
	if f.By.Set {
		fmt.Fprintf(&b, " by=%v", f.By.D)
	}
	if f.Count > 1 {
		fmt.Fprintf(&b, " count=%d", f.Count)
	}
	return b.String()
}

func lastStep(sc *scenario.Scenario) time.Duration {
	var end time.Duration
	for _, st := range sc.Steps {
		end = max(end, st.At.D)
	}
	return end
}

func firstStep(sc *scenario.Scenario) time.Duration {
	if len(sc.Steps) == 0 {
		return 0
	}
	first := sc.Steps[0].At.D
	for _, st := range sc.Steps {
		first = min(first, st.At.D)
	}
	return first
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
