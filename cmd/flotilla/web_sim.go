package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/kernel"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
	"github.com/flotilla-fleet/flotilla/web"
)

// maxSpeed bounds --speed (virtual seconds per wall-clock second).
const maxSpeed = 1e6

// sampleEvery is the wall-clock time between two censuses of a watched
// run: the pacing granularity.
const sampleEvery = 100 * time.Millisecond

// pacer samples a running simulation once per wall-clock tick and holds
// the simulation back so that virtual time runs speed times faster than
// real time. It is the sim.Observer of a watched run.
type pacer struct {
	ctx      context.Context
	svc      *web.CensusFleetService
	name     string
	seed     uint64
	end      time.Duration
	speed    float64
	step     time.Duration // virtual time between samples
	start    time.Time     // wall-clock start
	next     time.Duration
	versions map[string]int
	phases   map[core.AgentUpgradePhase]int
}

func (p *pacer) Next() time.Duration { return p.next }

func (p *pacer) Observe(w *sim.World, at time.Duration) {
	online := w.Census(p.versions, p.phases)
	p.svc.Update(web.Census{AsOf: kernel.Epoch.Add(at), Versions: p.versions, Phases: p.phases, Online: online,
		Note: fmt.Sprintf("Simulation of scenario %s at %s of %s, %g× real time (seed %d).",
			p.name, at.Truncate(time.Second), p.end, p.speed, p.seed)})
	p.next = at + p.step
	// Hold the simulation until the wall clock catches up. Once the
	// dashboard stops, the run finishes unpaced in the background.
	wait := time.Until(p.start.Add(time.Duration(float64(at) / p.speed)))
	if wait <= 0 || p.ctx.Err() != nil {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-p.ctx.Done():
	}
}

// startScenario runs a simulator scenario in scaled real time behind the
// dashboard: the overview shows the fleet's versions, upgrade phases and
// online count as the run goes.
func startScenario(ctx context.Context, file string, speed float64, devices int, log *slog.Logger) (web.FleetService, error) {
	if speed <= 0 || speed > maxSpeed {
		return nil, fmt.Errorf("--speed %g: must be above 0 and at most %g", speed, float64(maxSpeed))
	}
	sc, err := scenario.Load(file)
	if err != nil {
		return nil, err
	}
	w, err := sim.New(sc, sim.Options{Devices: devices})
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", file, err)
	}
	svc := web.NewCensusFleetService()
	p := &pacer{ctx: ctx, svc: svc, name: sc.Name, seed: sc.Seed, end: sc.Duration.D, speed: speed,
		step: max(100*time.Millisecond, time.Duration(speed*float64(sampleEvery))), start: time.Now(),
		versions: map[string]int{}, phases: map[core.AgentUpgradePhase]int{}}
	p.Observe(w, 0)
	go func() {
		res := w.RunObserved(p)
		versions, phases := map[string]int{}, map[core.AgentUpgradePhase]int{}
		online := w.Census(versions, phases)
		verdict := "passed"
		if !res.Passed {
			verdict = fmt.Sprintf("FAILED (%d violations; replay: %s)", len(res.Violations), res.Replay)
		}
		svc.Update(web.Census{AsOf: kernel.Epoch.Add(w.Now()), Versions: versions, Phases: phases, Online: online,
			Note: fmt.Sprintf("Simulation of scenario %s finished at %s: %s.", sc.Name, w.Now().Truncate(time.Second), verdict)})
		log.Info("simulation finished", "scenario", sc.Name, "passed", res.Passed, "replay", res.Replay)
	}()
	return svc, nil
}
