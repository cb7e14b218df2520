package sim

// Observation hooks for reports (sim/report), added by the simulator-depth
// work (issue 8): a run that pauses on a grid of simulated instants so a
// recorder can sample the fleet, without putting anything on the kernel's
// heap (the trace and its hash stay those of Run).

import (
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// Observer samples a running world (see RunObserved).
type Observer interface {
	// Next is the simulated time of the next sample owed.
	Next() time.Duration
	// Observe is called with every event up to at handled.
	Observe(w *World, at time.Duration)
}

// RunObserved is Run, pausing at obs.Next() each time to let obs sample
// the world. The events, the trace and the result are those of Run.
func (w *World) RunObserved(obs Observer) *Result {
	k := w.k
	w.schedule() // the same events, in the same order, as Run
	end := w.sc.Duration.D
	for t := obs.Next(); t < end && !k.Stopped(); t = obs.Next() {
		k.Run(t)
		if k.Stopped() {
			break
		}
		obs.Observe(w, t)
	}
	if !k.Stopped() {
		k.Run(end)
	}
	return w.result()
}

// Now is the simulated time.
func (w *World) Now() time.Duration { return w.k.Now() }

// Census counts the fleet into versions (the agent version each device is
// running; a device without a running agent counts under its current link)
// and phases (the upgrade phase its active agent last reported; Idle before
// any), both cleared first, and returns how many devices are online
// (powered, linked, with a running agent).
func (w *World) Census(versions map[string]int, phases map[core.AgentUpgradePhase]int) (online int) {
	clear(versions)
	clear(phases)
	for _, d := range w.devs {
		switch {
		case d.main != nil && d.main.alive:
			versions[d.main.version.String()]++
			if d.powered && d.linkUp && !d.blockIn && !d.blockOut {
				online++
			}
		case d.disk.hasCurrent:
			versions[d.disk.current.String()]++
		default:
			versions["none"]++
		}
		ph := d.lastPhase
		if ph == "" {
			ph = core.UpgradeIdle
		}
		phases[ph]++
	}
	return online
}

// FaultWindowEnd is when the liveness phase starts.
func (w *World) FaultWindowEnd() time.Duration { return w.windowEnd }
