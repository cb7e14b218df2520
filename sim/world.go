// Package sim is Flotilla's deterministic simulator: the production agent
// core on thousands of virtual devices and the production operator core,
// talking through a simulated NATS, under injected faults, in virtual time,
// with invariant checkers after every event.
//
// The parts: sim/kernel (event heap, seeded streams, trace hash),
// sim/natsim (KV, watch, request/reply, network), sim/check (invariants),
// sim/scenario (scenario files); this package wires the world: devices
// (device.go, disk.go), the operator and its object store (operator.go) and
// the fault engine (faults.go), and runs a scenario (Run).
package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/flotilla-fleet/flotilla/agent/link"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/sim/check"
	"github.com/flotilla-fleet/flotilla/sim/kernel"
	"github.com/flotilla-fleet/flotilla/sim/natsim"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Options adjust one run.
type Options struct {
	// Seed overrides the scenario's seed when SeedSet.
	Seed    uint64
	SeedSet bool
	// Devices overrides the fleet size when > 0.
	Devices int
	// Trace, when set, receives the human-readable trace.
	Trace kernel.TextSink
	// KeepGoing continues after the first violation (the run still fails).
	KeepGoing bool
}

// World is one simulation.
type World struct {
	// agentActs is the action buffer every agent link shares (sim/device.go).
	agentActs []link.Action
	linkSteps uint64
	sc        *scenario.Scenario
	k         *kernel.Kernel
	srv       *natsim.Server
	net       *natsim.Net
	chk       *check.Checker
	devs      []*Device
	op        *Operator
	store     *Store

	faults *Faults

	rngDev, rngFault *rand.Rand

	firedCounts map[string]uint64
	notices     uint64
	coreErrs    []string
	keepGoing   bool
	devicesOpt  int

	windowEnd   time.Duration
	convergedAt time.Duration
	converged   bool
	lastReport  []string

	agentRollouts    []string
	rolloutBehaviour map[string]uint8

	// deletions (delete.go)
	deletedDeps     []string      // Deployments deleted by a step
	deletedRollouts []*rolloutObj // AgentRollouts deleted by a step
	deletedDevs     int           // Device objects deleted by a step
	recreatedDevs   int           // Device objects created again from device-info
}

// New builds the world for a scenario.
func New(sc *scenario.Scenario, opt Options) (*World, error) {
	seed := sc.Seed
	if opt.SeedSet {
		seed = opt.Seed
	}
	n := sc.Fleet.Devices
	if opt.Devices > 0 {
		n = opt.Devices
	}
	k := kernel.New(seed)
	if opt.Trace != nil {
		k.SetTextSink(opt.Trace)
	}
	w := &World{sc: sc, k: k, srv: natsim.NewServer(), chk: check.New(), firedCounts: map[string]uint64{},
		rngDev: k.Stream("devices"), rngFault: k.Stream("faults"), keepGoing: opt.KeepGoing, devicesOpt: opt.Devices}
	w.faults = &Faults{w: w, rng: k.Stream("network"), latency: sc.Network.Latency.D, jitter: float64(sc.Network.Jitter.D)}
	w.net = natsim.NewNet(k, w.srv, w.faults)
	for _, b := range core.Buckets {
		h := 1
		if b == core.BucketAgentUpgradeStatus || b == core.BucketAgentUpgrade {
			h = 5
		}
		if _, err := w.srv.CreateBucket(b, h); err != nil {
			return nil, err
		}
	}
	if b, err := w.srv.Bucket(core.BucketAgentUpgrade); err == nil {
		b.Watch(">", natsim.WatchUpdates, 0, markerSink{w})
	}
	v0, err := core.ParseVersion(sc.Fleet.AgentVersion)
	if err != nil {
		return nil, err
	}
	w.store = &Store{byDevice: make(map[string]*devObj, n)}
	labelCache := map[string]map[string]string{}
	keys := core.SortedKeys(sc.Fleet.Labels)
	w.devs = make([]*Device, n)
	width := len(strconv.Itoa(n - 1))
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%0*d", sc.Fleet.Prefix, width, i)
		combo := ""
		for _, key := range keys {
			vals := sc.Fleet.Labels[key]
			combo += key + "=" + vals[i%len(vals)] + ","
		}
		labels, ok := labelCache[combo]
		if !ok {
			labels = map[string]string{}
			for _, key := range keys {
				vals := sc.Fleet.Labels[key]
				labels[key] = vals[i%len(vals)]
			}
			labelCache[combo] = labels
		}
		d := &Device{w: w, idx: int32(i), name: name, labels: labels, linkUp: true, chk: w.chk.Ref(name)}
		d.disk.versions = []verDir{{v: v0, complete: true, verified: true}}
		d.disk.current, d.disk.hasCurrent = v0, true
		w.devs[i] = d
		obj := &devObj{rec: opcore.DeviceRecord{Name: name, Labels: labels}, made: true}
		w.store.devices = append(w.store.devices, obj)
		w.store.byDevice[name] = obj
	}
	for _, dep := range sc.Deployments {
		w.store.deployments = append(w.store.deployments, &depObj{spec: deploymentSpec(dep, 1)})
	}
	sortDeps(w.store)
	op := sc.Operator
	w.op = &Operator{w: w, cfg: opcore.Config{
		OfflineAfter: op.OfflineAfter.D, AttemptTimeout: op.AttemptTimeout.D,
		CutoverTimeoutSec: int(op.CutoverTimeout.D / time.Second), TickInterval: op.Tick.D,
		CreateDevices: op.CreateDevices,
	}.WithDefaults()}
	w.windowEnd = sc.FaultWindowEnd()
	return w, nil
}

func sortDeps(s *Store) {
	slices.SortFunc(s.deployments, func(a, b *depObj) int {
		switch {
		case a.spec.Name < b.spec.Name:
			return -1
		case a.spec.Name > b.spec.Name:
			return 1
		}
		return 0
	})
}

func deploymentSpec(d scenario.Deployment, gen int64) opcore.DeploymentSpec {
	spec := opcore.DeploymentSpec{Name: d.Name, Generation: gen,
		Selector: core.LabelSelector{MatchLabels: d.Selector},
		Workload: opcore.Workload{Name: d.Workload.Name, Version: d.Workload.Version, Runtime: core.RuntimeProcess}}
	if d.Strategy != nil {
		spec.Rollout = Strategy(*d.Strategy)
	}
	return spec
}

func amount(a scenario.Amount) opcore.Amount {
	if !a.Set {
		return opcore.Amount{}
	}
	return opcore.Amount{Value: int(a.Value), Percent: a.Percent}
}

// Strategy converts a scenario's rollout strategy into the operator core's
// (the simulator and the sim-versus-real suite use this one conversion).
func Strategy(s scenario.Strategy) opcore.Strategy {
	out := opcore.Strategy{MaxUnavailable: amount(s.MaxUnavailable)}
	for _, wv := range s.Waves {
		out.Waves = append(out.Waves, amount(wv))
	}
	if s.FailureThreshold != nil {
		a := amount(*s.FailureThreshold)
		out.FailureThreshold = &a
	}
	return out
}

// ---- run ------------------------------------------------------------------------

// stepEvent applies one scenario step.
type stepEvent struct {
	w  *World
	st *scenario.Step
}

func (se *stepEvent) Handle(k *kernel.Kernel, _ *kernel.Event) { se.w.applyStep(se.st) }

type livenessProbe struct{ w *World }

func (lp *livenessProbe) Handle(k *kernel.Kernel, _ *kernel.Event) {
	w := lp.w
	if w.checkConverged() {
		if !w.converged {
			w.converged, w.convergedAt = true, k.Now()
			// Settle a little, then stop: nothing is left to happen.
			k.After(time.Minute, kernel.Event{Target: stopper{}})
		}
		return
	}
	if k.Now() >= w.windowEnd+w.sc.Expect.ConvergedWithin.D {
		w.chk.Fail(k.Now(), check.InvLiveness, "", "%s", w.livenessReport())
		k.Stop(nil)
		return
	}
	k.After(15*time.Second, kernel.Event{Target: lp})
}

type stopper struct{}

func (stopper) Handle(k *kernel.Kernel, _ *kernel.Event) { k.Stop(nil) }

// Run executes the scenario to its end, its first violation, or
// convergence after the fault window.
func (w *World) Run() *Result {
	w.schedule()
	w.k.Run(w.sc.Duration.D)
	return w.result()
}

// schedule puts the scenario on the heap: the fleet boots over the first
// seconds, the operator starts at once, then the steps, the faults and the
// liveness probe. Every way of running a world (Run, RunObserved) starts
// here, so they handle the same events in the same order.
func (w *World) schedule() {
	k := w.k
	for _, d := range w.devs {
		k.At(time.Duration(w.rngDev.Int64N(int64(5*time.Second))), kernel.Event{Target: d, Kind: dkBoot, A: 0})
	}
	k.At(0, kernel.Event{Target: w.op, Kind: okRestart})
	for i := range w.sc.Steps {
		k.At(w.sc.Steps[i].At.D, kernel.Event{Target: &stepEvent{w: w, st: &w.sc.Steps[i]}})
	}
	w.setupFaults()
	k.At(w.windowEnd, kernel.Event{Target: &livenessProbe{w: w}})
}

// checkStop stops the kernel at the first violation unless asked not to.
func (w *World) checkStop() {
	if w.chk.Failed() && !w.keepGoing && !w.k.Stopped() {
		w.k.Stop(nil)
	}
}

func (w *World) fired(kind string) { w.firedCounts[kind]++ }

func (w *World) coreError(d *Device, what string, err error) {
	name := "operator"
	if d != nil {
		name = d.name
	}
	if len(w.coreErrs) < 20 {
		w.coreErrs = append(w.coreErrs, fmt.Sprintf("%v %s: %s: %v", w.k.Now(), name, what, err))
	}
}

// behaviour is how the binary of version v behaves on d.
func (w *World) behaviour(d *Device, v core.Version) uint8 {
	for _, rs := range [2][]*rolloutObj{w.store.rollouts, w.deletedRollouts} {
		for i := len(rs) - 1; i >= 0; i-- {
			r := rs[i]
			if r.spec.Version.String() == v.String() {
				if d.artifact != 0 {
					return d.artifact - 1
				}
				return w.rolloutBehaviour[r.spec.Name]
			}
		}
	}
	return bHealthy
}

func (w *World) diskLatency() time.Duration {
	return time.Millisecond + time.Duration(w.rngDev.Int64N(int64(4*time.Millisecond)))
}
func (w *World) downloadTime() time.Duration {
	return 5*time.Second + time.Duration(w.rngDev.Int64N(int64(20*time.Second)))
}
func (w *World) selfTestTime() time.Duration {
	return time.Second + time.Duration(w.rngDev.Int64N(int64(2*time.Second)))
}
func (w *World) startTime() time.Duration {
	return 300*time.Millisecond + time.Duration(w.rngDev.Int64N(int64(time.Second)))
}
func (w *World) workloadDelay() time.Duration { return time.Second }
func (w *World) restartDelay() time.Duration  { return 2 * time.Second }

// ---- scenario steps -----------------------------------------------------------------

func artifactRef(v core.Version) core.ArtifactRef {
	sum := sha256.Sum256([]byte("flotilla-agent " + v.String()))
	return core.ArtifactRef{Object: core.ArtifactObjectName("flotilla-agent", v.String()),
		SHA256: hex.EncodeToString(sum[:]), Size: 12 << 20}
}

func (w *World) applyStep(st *scenario.Step) {
	s := w.store
	switch {
	case st.UpgradeAgent != nil:
		u := st.UpgradeAgent
		v, _ := core.ParseVersion(u.Version)
		spec := opcore.AgentRolloutSpec{Name: u.Name, Version: v, Artifact: artifactRef(v),
			Selector: core.LabelSelector{MatchLabels: u.Selector}, Rollout: Strategy(u.Strategy)}
		if w.rolloutBehaviour == nil {
			w.rolloutBehaviour = map[string]uint8{}
		}
		w.rolloutBehaviour[u.Name] = behaviourCodes[u.Artifact]
		r := s.rollout(u.Name)
		if r == nil {
			r = &rolloutObj{}
			s.rollouts = append(s.rollouts, r)
			w.agentRollouts = append(w.agentRollouts, u.Name)
			spec.Generation = 1
		} else {
			spec.Generation = r.spec.Generation + 1
		}
		r.spec = spec
		w.op.objectChanged(opcore.AgentRolloutUpsert{Spec: spec})
	case st.UpdateDeployment != nil:
		u := st.UpdateDeployment
		d := s.deployment(u.Name)
		if d == nil {
			return
		}
		d.spec.Generation++
		d.spec.Workload.Version = u.Version
		if u.Selector != nil {
			d.spec.Selector = core.LabelSelector{MatchLabels: u.Selector}
		}
		w.op.objectChanged(opcore.DeploymentUpsert{Spec: d.spec})
	case st.AddDeployment != nil:
		d := &depObj{spec: deploymentSpec(*st.AddDeployment, 1)}
		s.deployments = append(s.deployments, d)
		sortDeps(s)
		w.op.objectChanged(opcore.DeploymentUpsert{Spec: d.spec})
	case st.Blacklist != nil, st.Unblacklist != nil:
		sel, black := st.Blacklist, true
		if sel == nil {
			sel, black = st.Unblacklist, false
		}
		for _, i := range w.selectDevices(w.rngFault, sel.Devices, sel.Names, sel.Selector) {
			o := s.devices[i]
			o.rec.Blacklisted = black
			w.op.objectChanged(opcore.DeviceUpsert{Device: o.rec})
		}
	case st.SetLabels != nil:
		sl := st.SetLabels
		for _, i := range w.selectDevices(w.rngFault, sl.Devices, sl.Names, sl.Selector) {
			o := s.devices[i]
			nl := map[string]string{}
			for k, v := range o.rec.Labels {
				nl[k] = v
			}
			for k, v := range sl.Labels {
				if v == "" {
					delete(nl, k)
				} else {
					nl[k] = v
				}
			}
			o.rec.Labels = nl
			w.op.objectChanged(opcore.DeviceUpsert{Device: o.rec})
		}
	case st.DeleteDeployment != "":
		w.deleteDeployment(st.DeleteDeployment)
	case st.DeleteAgentRollout != "":
		w.deleteAgentRollout(st.DeleteAgentRollout)
	case st.DeleteDevices != nil:
		w.deleteDevices(st.DeleteDevices)
	}
}

func (w *World) noteHeartbeatSeen(device string, hb core.Heartbeat) {
	if o := w.store.byDevice[device]; o != nil {
		w.noteHeartbeatOf(o, hb)
	}
}

func (w *World) noteHeartbeatOf(o *devObj, hb core.Heartbeat) {
	up := o.status.Upgrade
	if up.Attempt != 0 && !up.Target.IsZero() && hb.Attempt == 0 && hb.AgentVersion.Compare(up.Target) == 0 {
		w.chk.AttemptOver(o.rec.Name, up.Attempt, false)
	}
}

// ---- convergence ------------------------------------------------------------------------

// deviceConverged reports whether d reached its desired state, and why not.
func (w *World) deviceConverged(d *Device) (bool, string) {
	labels, blacklisted := w.deviceLabels(d)
	if blacklisted {
		return true, ""
	}
	p := d.main
	if p == nil || !p.alive || !p.agent.Ready() {
		return false, "no active, ready agent"
	}
	if d.cand != nil && d.cand.alive {
		return false, "a candidate is still running"
	}
	markers, _ := w.srv.Bucket(core.BucketAgentUpgrade)
	statuses, _ := w.srv.Bucket(core.BucketAgentUpgradeStatus)
	for _, name := range w.agentRollouts {
		r := w.store.rollout(name)
		if !r.spec.Selector.Matches(labels) {
			continue
		}
		target := r.spec.Version
		if p.version.Compare(target) == 0 {
			continue
		}
		me, err := markers.Get(d.name)
		if err != nil {
			if w.store.rolloutPaused(name) {
				continue
			}
			return false, "no upgrade marker yet (rollout not paused)"
		}
		m, err := decodeMarker(me)
		if err != nil {
			return false, "undecodable marker"
		}
		se, err := statuses.Get(d.name)
		if err != nil {
			return false, "no upgrade status"
		}
		st, ok := se.Obj.(core.UpgradeStatus)
		if !ok || st.Attempt != m.Attempt {
			return false, fmt.Sprintf("status is for attempt %d, marker for %d", st.Attempt, m.Attempt)
		}
		if st.Phase != core.UpgradeFailed && st.Phase != core.UpgradeRolledBack {
			return false, fmt.Sprintf("attempt %d is %s, running %s", st.Attempt, st.Phase, p.version)
		}
	}
	if why := w.deviceObjectBack(d); why != "" {
		return false, why
	}
	if why := w.deletedDeploymentGone(d); why != "" {
		return false, why
	}
	for _, dep := range w.store.deployments {
		if dep.spec.Deleting || !dep.spec.Selector.Matches(labels) {
			continue
		}
		if hasCond(dep.status.Conditions, opcore.CondPaused) {
			continue
		}
		var wl *workload
		for i := range d.workloads {
			if d.workloads[i].dep == dep.spec.Name {
				wl = &d.workloads[i]
			}
		}
		if wl == nil || wl.version != dep.spec.Workload.Version {
			return false, "workload " + dep.spec.Name + " not running its desired version"
		}
		if p.agent.WorkloadPhase(dep.spec.Name) != core.PhaseRunning {
			return false, "workload " + dep.spec.Name + " not reported Running"
		}
	}
	return true, ""
}

func hasCond(cs []opcore.Condition, t string) bool {
	for _, c := range cs {
		if c.Type == t && c.Status {
			return true
		}
	}
	return false
}

func (w *World) checkConverged() bool {
	if !w.op.alive || w.op.core.Phase() != opcore.Converged {
		w.lastReport = []string{"operator not converged"}
		return false
	}
	var bad []string
	for _, d := range w.devs {
		if ok, why := w.deviceConverged(d); !ok {
			if len(bad) < 5 {
				bad = append(bad, d.name+": "+why)
			} else {
				bad = append(bad, "")
			}
		}
	}
	w.lastReport = bad
	return len(bad) == 0
}

func (w *World) livenessReport() string {
	n := len(w.lastReport)
	shown := slices.DeleteFunc(slices.Clone(w.lastReport), func(s string) bool { return s == "" })
	return fmt.Sprintf("%d device(s) did not converge within %v after the fault window (ended %v): %v",
		n, w.sc.Expect.ConvergedWithin.D, w.windowEnd, shown)
}
