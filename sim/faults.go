package sim

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/sim/kernel"
	"github.com/flotilla-fleet/flotilla/sim/natsim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Artifact behaviours of a binary, by code (0 = healthy).
const (
	bHealthy uint8 = iota
	bCorrupt
	bSelfTest
	bCrashes
	bHangs
	bDiskFull
	bWrongHash
	bDownloadFails
)

var behaviourCodes = map[string]uint8{
	scenario.ArtifactHealthy: bHealthy, scenario.ArtifactCorrupt: bCorrupt, scenario.ArtifactSelfTest: bSelfTest,
	scenario.ArtifactCrashes: bCrashes, scenario.ArtifactHangs: bHangs, scenario.ArtifactDiskFull: bDiskFull,
	scenario.ArtifactWrongHash: bWrongHash, scenario.ArtifactDownloadKO: bDownloadFails,
}

// Fault hit-counter keys.
const (
	faultPowerCutKey      = scenario.FaultPowerCut
	faultAgentCrashKey    = scenario.FaultAgentCrash
	faultOperatorCrashKey = scenario.FaultOperatorCrash
)

// netFault is an active-window network fault.
type netFault struct {
	kind    string
	rate    float64
	delay   time.Duration
	from    time.Duration
	to      time.Duration
	targets []bool // nil: every link, the operator's included
}

// trigger is a fault fired when a device enters an upgrade phase.
type trigger struct {
	f       *scenario.Fault
	phase   core.AgentUpgradePhase
	targets []bool // nil: any device
	left    map[int32]int
	global  int // operator-crash: crashes left
}

// Faults is the fault engine: the network policy and the schedule.
type Faults struct {
	w        *World
	rng      *rand.Rand // network dice
	latency  time.Duration
	jitter   float64
	net      []*netFault
	triggers []*trigger
	// serverDowns counts the outages and restarts holding the server down
	// (they may overlap).
	serverDowns int
	// dead marks devices whose link is black-holed (dead-link); nil until
	// a dead-link fault starts.
	dead []bool
}

// Fate implements natsim.Policy.
func (f *Faults) Fate(c *natsim.Conn, dir natsim.Dir, stream bool) natsim.Fate {
	fate := natsim.Fate{Delay: f.latency}
	if f.jitter > 0 {
		fate.Delay += time.Duration(f.rng.ExpFloat64() * f.jitter)
	}
	if len(f.net) == 0 {
		return fate
	}
	now := f.w.k.Now()
	dev := int32(-1)
	if p, ok := c.Tag.(*Proc); ok {
		dev = p.dev.idx
	}
	for _, nf := range f.net {
		if now < nf.from || now >= nf.to {
			continue
		}
		if nf.targets != nil && (dev < 0 || !nf.targets[dev]) {
			continue
		}
		switch nf.kind {
		case scenario.FaultDrop:
			if f.rng.Float64() < nf.rate {
				fate.Drop = true
				f.w.fired(nf.kind)
			}
		case scenario.FaultDuplicate:
			if f.rng.Float64() < nf.rate {
				fate.Dup = true
				f.w.fired(nf.kind)
			}
		case scenario.FaultDelay:
			fate.Delay += nf.delay
			f.w.fired(nf.kind)
		case scenario.FaultReorder:
			if f.rng.Float64() < nf.rate {
				fate.Delay += time.Duration(f.rng.Int64N(int64(nf.delay) + 1))
				f.w.fired(nf.kind)
			}
		case scenario.FaultAckLoss:
			if dir == natsim.AckToClient && f.rng.Float64() < nf.rate {
				fate.Drop = true
				f.w.fired(nf.kind)
			}
		}
	}
	return fate
}

// selectDevices resolves a fault's or step's device selection, drawing
// from rng; the result is sorted by device index.
func (w *World) selectDevices(rng *rand.Rand, amount scenario.Amount, names []string, sel map[string]string) []int32 {
	var cand []int32
	for _, d := range w.devs {
		if len(names) > 0 && !slices.Contains(names, d.name) {
			continue
		}
		if !matches(sel, d.labels) {
			continue
		}
		cand = append(cand, d.idx)
	}
	n := amount.Of(len(cand))
	if n < len(cand) {
		for i := 0; i < n; i++ {
			j := i + rng.IntN(len(cand)-i)
			cand[i], cand[j] = cand[j], cand[i]
		}
		cand = cand[:n]
		slices.Sort(cand)
	}
	return cand
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (w *World) mask(idx []int32) []bool {
	m := make([]bool, len(w.devs))
	for _, i := range idx {
		m[i] = true
	}
	return m
}

// faultEvent is a scheduled fault action.
type faultEvent struct {
	w    *World
	f    *scenario.Fault
	devs []int32
	on   bool
}

// Handle implements kernel.Handler.
func (fe *faultEvent) Handle(k *kernel.Kernel, ev *kernel.Event) {
	w, f := fe.w, fe.f
	switch f.Kind {
	case scenario.FaultPartition:
		for _, i := range fe.devs {
			d := w.devs[i]
			if fe.on {
				w.fired(f.Kind)
				switch f.Direction {
				case "in":
					d.blockIn = true
				case "out":
					d.blockOut = true
				default:
					d.linkUp = false
				}
			} else {
				d.linkUp, d.blockIn, d.blockOut = true, false, false
			}
			d.applyLink()
		}
	case scenario.FaultOutage:
		if fe.on {
			w.fired(f.Kind)
		}
		w.serverDown(fe.on)
	case scenario.FaultNATSRestart:
		if fe.on {
			w.fired(f.Kind)
			w.serverDown(true)
			k.After(w.downOr(f, 2*time.Second), kernel.Event{Target: &faultEvent{w: w, f: f, on: false}})
		} else {
			w.serverDown(false)
		}
	case scenario.FaultDeadLink:
		if w.faults.dead == nil {
			w.faults.dead = make([]bool, len(w.devs))
		}
		for _, i := range fe.devs {
			if fe.on {
				w.fired(f.Kind)
			}
			w.faults.dead[i] = fe.on
			w.devs[i].applyLink()
		}
	case scenario.FaultOffline:
		for _, i := range fe.devs {
			w.fired(f.Kind)
			w.devs[i].powerOff(f.For.D)
		}
	case scenario.FaultClockDrift:
		for _, i := range fe.devs {
			d := w.devs[i]
			w.fired(f.Kind)
			d.offset += time.Duration(int64(k.Now()-d.driftFrom) / 1_000_000 * d.driftPPM)
			d.driftPPM, d.driftFrom = int64(f.DriftPPM), k.Now()
		}
	case scenario.FaultClockJump:
		for _, i := range fe.devs {
			w.fired(f.Kind)
			w.devs[i].offset += f.By.D
		}
	case scenario.FaultPowerCut:
		for _, i := range fe.devs {
			w.devs[i].powerCut(w.tornDice(f), w.downOr(f, 30*time.Second))
		}
	case scenario.FaultAgentCrash:
		for _, i := range fe.devs {
			w.devs[i].crash(w.downOr(f, 3*time.Second))
		}
	case scenario.FaultOperatorCrash:
		k.After(0, kernel.Event{Target: w.op, Kind: okCrash, B: uint64(w.downOr(f, 15*time.Second))})
	}
}

func (d *Device) applyLink() {
	for _, p := range []*Proc{d.main, d.cand} {
		if p != nil && p.alive && p.conn != nil {
			d.applyLinkTo(p.conn)
		}
	}
}

// applyLinkTo gives a connection of the device the link's current state:
// partitions, and a dead link (noticed only through missed pings).
func (d *Device) applyLinkTo(c *natsim.Conn) {
	dead := d.w.faults.dead != nil && d.w.faults.dead[d.idx]
	c.SetLink(d.linkUp, d.blockOut, d.blockIn)
	c.SetDeadLink(dead)
}

// serverDown holds the server down (on) or releases one hold: it runs when
// no outage or restart holds it.
func (w *World) serverDown(on bool) {
	if on {
		w.faults.serverDowns++
	} else if w.faults.serverDowns > 0 {
		w.faults.serverDowns--
	}
	w.net.SetServerUp(w.faults.serverDowns == 0)
}

func (w *World) downOr(f *scenario.Fault, def time.Duration) time.Duration {
	if f.Down.Set {
		return f.Down.D
	}
	return def
}

func (w *World) tornDice(f *scenario.Fault) bool {
	switch f.Lose {
	case "torn":
		return true
	case "lost":
		return false
	}
	return w.rngFault.IntN(2) == 0
}

// setupFaults schedules every fault of the scenario.
func (w *World) setupFaults() {
	for i := range w.sc.Faults {
		f := &w.sc.Faults[i]
		var devs []int32
		deviceFault := f.Devices.Set || len(f.Names) > 0 || len(f.Selector) > 0
		if deviceFault || !slices.Contains([]string{scenario.FaultDrop, scenario.FaultDelay, scenario.FaultDuplicate,
			scenario.FaultReorder, scenario.FaultOutage, scenario.FaultOperatorCrash, scenario.FaultNATSRestart,
			scenario.FaultAckLoss}, f.Kind) {
			devs = w.selectDevices(w.rngFault, f.Devices, f.Names, f.Selector)
		}
		from, to := f.At.D, f.At.D+f.For.D
		switch f.Kind {
		case scenario.FaultDrop, scenario.FaultDuplicate, scenario.FaultDelay, scenario.FaultReorder, scenario.FaultAckLoss:
			nf := &netFault{kind: f.Kind, rate: f.Rate.P, delay: f.Delay.D, from: from, to: to}
			if deviceFault {
				nf.targets = w.mask(devs)
			}
			w.faults.net = append(w.faults.net, nf)
		case scenario.FaultPartition, scenario.FaultOutage, scenario.FaultDeadLink:
			w.k.At(from, kernel.Event{Target: &faultEvent{w: w, f: f, devs: devs, on: true}})
			w.k.At(to, kernel.Event{Target: &faultEvent{w: w, f: f, devs: devs, on: false}})
		case scenario.FaultOffline, scenario.FaultClockDrift, scenario.FaultClockJump:
			w.k.At(from, kernel.Event{Target: &faultEvent{w: w, f: f, devs: devs, on: true}})
		case scenario.FaultDiskFull, scenario.FaultJournalCorrupt:
			w.scheduleDiskFault(f, devs) // disk.go
		case scenario.FaultArtifact:
			code := behaviourCodes[f.Behaviour]
			for _, i := range devs {
				w.devs[i].artifact = code + 1
			}
		case scenario.FaultPowerCut, scenario.FaultAgentCrash, scenario.FaultOperatorCrash, scenario.FaultNATSRestart:
			switch {
			case f.When != "":
				t := &trigger{f: f, phase: core.AgentUpgradePhase(f.When), left: map[int32]int{}, global: f.Count}
				if deviceFault || !global(f.Kind) {
					t.targets = w.mask(devs)
				}
				w.faults.triggers = append(w.faults.triggers, t)
			case f.Rate.Set && !global(f.Kind):
				// Poisson arrivals per device-hour over the window.
				for _, i := range devs {
					t := from
					for {
						t += time.Duration(w.rngFault.ExpFloat64() / f.Rate.P * float64(time.Hour))
						if t >= to {
							break
						}
						w.k.At(t, kernel.Event{Target: &faultEvent{w: w, f: f, devs: []int32{i}, on: true}})
					}
				}
			default:
				w.k.At(from, kernel.Event{Target: &faultEvent{w: w, f: f, devs: devs, on: true}})
			}
		}
	}
}

// global reports whether a triggered fault hits the whole system (the
// operator, the server) rather than the device that entered the phase.
func global(kind string) bool {
	return kind == scenario.FaultOperatorCrash || kind == scenario.FaultNATSRestart
}

// phaseEntered fires phase triggers when a device's active agent enters ph.
func (w *World) phaseEntered(d *Device, ph core.AgentUpgradePhase) {
	for _, t := range w.faults.triggers {
		if t.phase != ph || w.k.Now() < t.f.At.D {
			continue
		}
		if global(t.f.Kind) && t.targets == nil {
			if t.global <= 0 {
				continue
			}
			t.global--
			if t.f.Kind == scenario.FaultNATSRestart {
				w.k.After(0, kernel.Event{Target: &faultEvent{w: w, f: t.f, on: true}})
				continue
			}
			w.k.After(0, kernel.Event{Target: w.op, Kind: okCrash, B: uint64(w.downOr(t.f, 15*time.Second))})
			continue
		}
		if t.targets != nil && !t.targets[d.idx] {
			continue
		}
		n, seen := t.left[d.idx]
		if !seen {
			n = t.f.Count
		}
		if n <= 0 {
			continue
		}
		t.left[d.idx] = n - 1
		// Land anywhere in the next few milliseconds: sometimes before,
		// sometimes during the phase's first disk write.
		at := time.Duration(w.rngFault.Int64N(int64(4 * time.Millisecond)))
		w.k.After(at, kernel.Event{Target: &faultEvent{w: w, f: t.f, devs: []int32{d.idx}, on: true}})
	}
}
