// Package check holds the simulator's invariant checkers. They are separate
// from the simulated world: the world reports what happened (a disk changed,
// an agent stepped, the operator wrote a key or sent a command) and the
// checkers judge it, after every event.
//
// Safety invariants (SIMULATOR.md):
//  1. A device always has a verified, runnable agent version on disk and a
//     current link pointing at one (also across power cuts).
//  2. The operator sends upgrade-stop only after it observed a heartbeat of
//     the new version (and attempt) from that device.
//  3. An agent exits only on an armed upgrade-stop; it never stops itself.
//  4. A rollout never has more devices in flight than its maxUnavailable;
//     past the failure threshold it starts no new device.
//  5. A blacklisted device receives no new desired state.
//  6. Aggregated Deployment counts equal the sum of device states once the
//     dirty set is flushed.
package check

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
)

// Invariant numbers and names.
const (
	InvDisk        = 1
	InvStopAfterHB = 2
	InvNoSelfStop  = 3
	InvRollout     = 4
	InvBlacklist   = 5
	InvCounts      = 6
	InvLiveness    = 7
)

// Names of the invariants, indexed by number.
var Names = [...]string{"", "verified-current", "stop-after-heartbeat", "no-self-stop", "rollout-bounds",
	"blacklist-respected", "deployment-counts", "liveness"}

// Violation is one broken invariant.
type Violation struct {
	Invariant int           `json:"invariant"`
	Name      string        `json:"name"`
	At        time.Duration `json:"-"`
	AtSeconds float64       `json:"at_seconds"`
	Device    string        `json:"device,omitempty"`
	Message   string        `json:"message"`
}

func (v Violation) String() string {
	d := ""
	if v.Device != "" {
		d = " device " + v.Device
	}
	return fmt.Sprintf("invariant %d (%s) violated at %v%s: %s", v.Invariant, v.Name, v.At, d, v.Message)
}

// Checker accumulates violations. Its methods are the observations the world
// reports.
type Checker struct {
	Violations []Violation
	// Max bounds how many violations are kept (the run stops at the first
	// by default; the world decides).
	Max int

	devs    map[string]*devState
	rollout map[string]*rolloutState
	deps    map[string]*depState
}

// New returns an empty checker.
func New() *Checker {
	return &Checker{Max: 100, devs: map[string]*devState{}, rollout: map[string]*rolloutState{}, deps: map[string]*depState{}}
}

// Failed reports whether any invariant was violated.
func (c *Checker) Failed() bool { return len(c.Violations) > 0 }

func (c *Checker) fail(at time.Duration, inv int, dev, format string, args ...any) {
	if len(c.Violations) >= c.Max {
		return
	}
	c.Violations = append(c.Violations, Violation{Invariant: inv, Name: Names[inv], At: at, AtSeconds: at.Seconds(),
		Device: dev, Message: fmt.Sprintf(format, args...)})
}

// Fail records a violation found by the world (liveness, expectations).
func (c *Checker) Fail(at time.Duration, inv int, dev, format string, args ...any) {
	c.fail(at, inv, dev, format, args...)
}

type devState struct {
	// operator's view (inputs delivered to the operator)
	hbVersion   core.Version
	hbAttempt   uint32
	blacklisted bool
	labels      map[string]string
	known       bool
	// markers the operator wrote: attempt → rollout
	markerAttempt uint32
	markerRollout string
	markerDone    bool // attempt over in the operator's view
	markerFailed  bool
	// markerTimedOut: the attempt is over only by the operator's own
	// time-out, a provisional failure the agent's outcome still settles.
	markerTimedOut bool
	desired        map[string]string // desired-state key → value last written
	seenNew        map[uint32]core.Version
	// pending: the marker write has not reached KV yet; prev is what to
	// restore if it never does (the operator crashed with it queued).
	pending bool
	prev    markerState
}

type markerState struct {
	attempt                uint32
	rollout                string
	done, failed, timedOut bool
}

// MarkerLanded records that the marker for attempt reached KV.
func (c *Checker) MarkerLanded(device string, attempt uint32) {
	if d := c.devs[device]; d != nil && d.markerAttempt == attempt {
		d.pending = false
	}
}

// MarkersLost forgets marker writes that never reached KV: the operator
// crashed with them queued, so those devices were never started.
func (c *Checker) MarkersLost() {
	for name, d := range c.devs {
		if !d.pending {
			continue
		}
		if r := c.rollout[d.markerRollout]; r != nil {
			delete(r.inFlight, name)
		}
		d.pending = false
		p := d.prev
		d.markerAttempt, d.markerRollout, d.markerDone, d.markerFailed, d.markerTimedOut = p.attempt, p.rollout, p.done, p.failed, p.timedOut
		if r := c.rollout[p.rollout]; r != nil && !p.done && p.attempt != 0 {
			r.inFlight[name] = true
		}
	}
}

func (c *Checker) dev(name string) *devState {
	d := c.devs[name]
	if d == nil {
		d = &devState{}
		c.devs[name] = d
	}
	return d
}

// ---- 1. verified current ---------------------------------------------------------

// Disk is what invariant 1 needs to know about a device's disk.
type Disk interface {
	// Current returns where the current link points (ok=false: missing).
	Current() (core.Version, bool)
	// Runnable reports whether versions/<v> is complete and verified
	// (preserved from a running agent, or passed its self-test).
	Runnable(v core.Version) bool
}

// CheckDisk checks invariant 1 on one device's disk.
func (c *Checker) CheckDisk(at time.Duration, device string, d Disk) {
	v, ok := d.Current()
	if !ok {
		c.fail(at, InvDisk, device, "the current link is missing")
		return
	}
	if !d.Runnable(v) {
		c.fail(at, InvDisk, device, "current points at %s, which is not a complete, verified version", v)
	}
}

// ---- 2. upgrade-stop only after the new heartbeat ---------------------------------------

// DeviceRef is the checker's record of one device, for callers that would
// otherwise look it up by name on every heartbeat.
type DeviceRef struct{ d *devState }

// Ref returns the record of device, creating it (not yet known: no rollout
// or deployment counts it before DeviceSeen).
func (c *Checker) Ref(device string) DeviceRef { return DeviceRef{c.dev(device)} }

// OperatorSawHeartbeat records a heartbeat delivered to the operator.
func (c *Checker) OperatorSawHeartbeat(device string, hb core.Heartbeat) {
	c.OperatorSawHeartbeatRef(c.Ref(device), hb)
}

// OperatorSawHeartbeatRef is OperatorSawHeartbeat by reference.
func (c *Checker) OperatorSawHeartbeatRef(r DeviceRef, hb core.Heartbeat) {
	d := r.d
	d.hbVersion, d.hbAttempt = hb.AgentVersion, hb.Attempt
	if hb.Attempt != 0 {
		if d.seenNew == nil {
			d.seenNew = map[uint32]core.Version{}
		}
		d.seenNew[hb.Attempt] = hb.AgentVersion
	}
}

// StopSent checks invariant 2 when the operator sends upgrade-stop.
func (c *Checker) StopSent(at time.Duration, device string, attempt uint32, target core.Version) {
	d := c.dev(device)
	v, ok := d.seenNew[attempt]
	if !ok {
		c.fail(at, InvStopAfterHB, device, "upgrade-stop for attempt %d sent before the operator saw any heartbeat of that attempt", attempt)
		return
	}
	if v.Compare(target) != 0 {
		c.fail(at, InvStopAfterHB, device, "upgrade-stop for attempt %d (target %s) sent after a heartbeat of version %s", attempt, target, v)
	}
}

// ---- 3. no self-stop ---------------------------------------------------------------------

// Proc is the checker's per-process memory for invariant 3: what the process
// itself last announced. The world keeps one per agent process.
type Proc struct {
	Candidate     bool
	armedAttempt  uint32
	armedTarget   core.Version
	armed         bool
	exited        bool
	statusAttempt uint32
}

// AgentStep checks invariant 3 for one Step of one process: an Exit effect is
// allowed only in answer to an upgrade-stop for exactly the attempt and
// version the process was armed for (it announced WaitingForStop), after
// the Reply to it.
func (c *Checker) AgentStep(at time.Duration, device string, p *Proc, in agentcore.Input, effects []agentcore.Effect) {
	wasArmed, armA, armT := p.armed, p.armedAttempt, p.armedTarget
	replied := false
	var stopHandle uint64
	validStop := false
	if cr, ok := in.(agentcore.CommandReceived); ok && cr.Verb == core.VerbUpgradeStop && cr.Request.UpgradeStop != nil {
		stopHandle = cr.Handle
		validStop = wasArmed && cr.Request.UpgradeStop.Attempt == armA &&
			cr.Request.UpgradeStop.TargetVersion.Compare(armT) == 0
	}
	for _, e := range effects {
		switch e := e.(type) {
		case agentcore.PutUpgradeStatus:
			s := e.Status
			if s.Phase == core.UpgradeWaitingForStop && s.TargetVersion != nil {
				p.armed, p.armedAttempt, p.armedTarget = true, s.Attempt, *s.TargetVersion
			} else {
				p.armed = false
			}
		case agentcore.Reply:
			if e.Handle == stopHandle && stopHandle != 0 {
				replied = true
			}
		case agentcore.Exit:
			switch {
			case p.Candidate:
				c.fail(at, InvNoSelfStop, device, "a candidate process exited (%s)", e.Reason)
			case !validStop:
				c.fail(at, InvNoSelfStop, device, "agent exited (%s) on %T without an armed upgrade-stop for its attempt", e.Reason, in)
			case !replied:
				c.fail(at, InvNoSelfStop, device, "agent exited on upgrade-stop before replying to it")
			}
			p.exited = true
		}
	}
}

// ---- 4. rollout bounds ---------------------------------------------------------------------

type rolloutState struct {
	maxInFlight int
	threshold   int // -1 none
	// Bounds given as amounts are resolved against the targeted devices
	// the operator has been told about (selector match, not blacklisted).
	selector  *core.LabelSelector
	maxAmount Amount
	thrAmount *Amount
	total     int
	inFlight  map[string]bool
	failed    map[string]bool
}

// Amount mirrors opcore.Amount: a count or a percentage.
type Amount struct {
	Value   int
	Percent bool
}

func (c *Checker) rolloutOf(name string) *rolloutState {
	r := c.rollout[name]
	if r == nil {
		r = &rolloutState{maxInFlight: 1 << 30, threshold: -1, inFlight: map[string]bool{}, failed: map[string]bool{}}
		c.rollout[name] = r
	}
	return r
}

// RolloutBounds records fixed bounds for a rollout: at most maxInFlight
// devices started and not done; when more than threshold have failed
// (threshold < 0: never) no new device starts.
func (c *Checker) RolloutBounds(name string, maxInFlight, threshold int) {
	r := c.rolloutOf(name)
	r.selector = nil
	r.maxInFlight, r.threshold = maxInFlight, threshold
}

// RolloutSeen records a rollout spec as delivered to the operator, with
// its bounds as amounts (the semantics of opcore.Strategy: maxUnavailable
// percentages round down but never below 1, zero means unbounded; threshold
// percentages round down; nil threshold: never pause).
func (c *Checker) RolloutSeen(name string, sel core.LabelSelector, maxUnavailable Amount, threshold *Amount) {
	r := c.rolloutOf(name)
	r.selector, r.maxAmount, r.thrAmount = &sel, maxUnavailable, threshold
	r.total = 0
	for _, d := range c.devs {
		if r.targets(d) {
			r.total++
		}
	}
	r.resolve()
}

func (r *rolloutState) targets(d *devState) bool {
	return r.selector != nil && d.known && !d.blacklisted && r.selector.Matches(d.labels)
}

func (r *rolloutState) resolve() {
	if r.selector == nil {
		return
	}
	r.maxInFlight = r.total
	if m := r.maxAmount; m.Value != 0 || m.Percent {
		r.maxInFlight = m.Value
		if m.Percent {
			r.maxInFlight = max(1, m.Value*r.total/100)
		}
	}
	r.threshold = -1
	if t := r.thrAmount; t != nil {
		r.threshold = t.Value
		if t.Percent {
			r.threshold = t.Value * r.total / 100
		}
	}
}

// MarkerWritten checks invariant 4 when the operator writes an upgrade marker.
// A rewrite of the attempt already recorded is not a new start.
func (c *Checker) MarkerWritten(at time.Duration, device, rollout string, attempt uint32) {
	d := c.dev(device)
	if d.markerAttempt == attempt && d.markerRollout == rollout {
		return
	}
	if d.blacklisted {
		c.fail(at, InvBlacklist, device, "upgrade marker (attempt %d) written for a blacklisted device", attempt)
	}
	r := c.rolloutOf(rollout)
	if r.threshold >= 0 && len(r.failed) > r.threshold {
		c.fail(at, InvRollout, device, "rollout %s started a device with %d failed, past its failure threshold %d",
			rollout, len(r.failed), r.threshold)
	}
	if prev := c.rollout[d.markerRollout]; prev != nil {
		delete(prev.inFlight, device)
	}
	if !d.pending {
		d.prev = markerState{d.markerAttempt, d.markerRollout, d.markerDone, d.markerFailed, d.markerTimedOut}
	}
	d.pending = true
	d.markerAttempt, d.markerRollout, d.markerDone, d.markerFailed, d.markerTimedOut = attempt, rollout, false, false, false
	delete(r.failed, device)
	r.inFlight[device] = true
	if len(r.inFlight) > r.maxInFlight {
		c.fail(at, InvRollout, device, "rollout %s has %d devices in flight, more than maxUnavailable %d (in flight: %s)",
			rollout, len(r.inFlight), r.maxInFlight, sample(r.inFlight, 5))
	}
}

// AttemptOver records that, in the operator's view (a status it was
// delivered, the new version heartbeating, or the stop's reply), a device's
// attempt ended. After the operator's own time-out (AttemptTimedOut) the
// agent's outcome still settles the attempt: a success takes the failure
// back, as the operator counts the device Succeeded once it committed.
func (c *Checker) AttemptOver(device string, attempt uint32, failed bool) {
	d := c.dev(device)
	if d.markerAttempt != attempt {
		return
	}
	if d.markerDone {
		if !d.markerTimedOut {
			return
		}
		d.markerTimedOut = false
		r := c.rollout[d.markerRollout]
		// A device that left its rollout keeps the failure it had when it
		// left (opcore: rollout.gone).
		if failed || d.blacklisted || r == nil || (r.selector != nil && !r.selector.Matches(d.labels)) {
			return
		}
		d.markerFailed = false
		delete(r.failed, device)
		return
	}
	d.markerDone, d.markerFailed = true, failed
	if r := c.rollout[d.markerRollout]; r != nil {
		delete(r.inFlight, device)
		if failed {
			r.failed[device] = true
		}
	}
}

// AttemptTimedOut records that the operator timed out a device's attempt
// (no status progress within its attempt timeout): in its view the device
// failed until its agent reports how the attempt ended (AttemptOver). The
// operator keeps the device's maxUnavailable slot meanwhile; this checker
// frees it, judging only the bound it can be sure of.
func (c *Checker) AttemptTimedOut(device string, attempt uint32) {
	d := c.dev(device)
	if d.markerAttempt != attempt || d.markerDone {
		return
	}
	c.AttemptOver(device, attempt, true)
	d.markerTimedOut = true
}

// ---- 5. blacklist ---------------------------------------------------------------------------

// DeviceSeen records a Device object as delivered to the operator.
func (c *Checker) DeviceSeen(name string, labels map[string]string, blacklisted bool) {
	c.setDevice(name, true, labels, blacklisted)
}

// DeviceDeleted records that a Device object's deletion was delivered to
// the operator. The operator goes on placing a device it has device-info
// for, by the labels device-info carries and never blacklisted (opcore:
// relabel); one without device-info it forgets.
func (c *Checker) DeviceDeleted(name string, infoLabels map[string]string, hasInfo bool) {
	c.setDevice(name, hasInfo, infoLabels, false)
}

func (c *Checker) setDevice(name string, known bool, labels map[string]string, blacklisted bool) {
	d := c.dev(name)
	if d.known == known && d.blacklisted == blacklisted && sameLabels(d.labels, labels) {
		return
	}
	for _, dep := range c.deps {
		if dep.targets(d) {
			dep.total--
			dep.add(dep.states[name], -1)
		}
	}
	for _, r := range c.rollout {
		if r.targets(d) {
			r.total--
		}
	}
	d.known, d.blacklisted, d.labels = known, blacklisted, labels
	for _, r := range c.rollout {
		if r.targets(d) {
			r.total++
		}
		r.resolve()
	}
	if blacklisted || !known {
		// A blacklisted (or forgotten) device leaves its rollout: it no longer counts
		// against maxUnavailable; a failure it had (or has later, for the
		// attempt the rollout started) still counts against the threshold.
		if r := c.rollout[d.markerRollout]; r != nil {
			delete(r.inFlight, name)
		}
	}
	for _, dep := range c.deps {
		if dep.targets(d) {
			dep.total++
			dep.add(dep.states[name], 1)
		}
	}
}

// DesiredWritten checks invariant 5 when the operator writes a desired-state
// value for a device. Rewriting the same value is not new desired state.
func (c *Checker) DesiredWritten(at time.Duration, device, key string, value []byte) {
	d := c.dev(device)
	if d.desired == nil {
		d.desired = map[string]string{}
	}
	old, had := d.desired[key]
	d.desired[key] = string(value)
	if d.blacklisted && (!had || old != string(value)) {
		c.fail(at, InvBlacklist, device, "new desired state %s written for a blacklisted device", key)
	}
}

// ---- 6. deployment counts --------------------------------------------------------------------

type depState struct {
	name       string
	generation int64
	// deletingFrom is the generation at which the Deployment became
	// deleting (0: it is not): from then on it targets no device.
	deletingFrom int64
	selector     core.LabelSelector
	states       map[string]stateRec // device → last report seen by the operator
	total        int
	running      int
	failed       int
	pending      int
}

type stateRec struct {
	gen   int64
	phase core.WorkloadPhase
}

// DeploymentSeen records a Deployment spec as delivered to the operator.
func (c *Checker) DeploymentSeen(name string, generation int64, sel core.LabelSelector) {
	dep := c.deps[name]
	if dep == nil {
		dep = &depState{name: name, states: map[string]stateRec{}}
		c.deps[name] = dep
	}
	dep.generation, dep.selector = generation, sel
	dep.recount(c)
}

// DeploymentDeleting records that the Deployment is being deleted from
// generation gen on (its deletion timestamp is set): the operator places it
// on no device once it is delivered that generation.
func (c *Checker) DeploymentDeleting(name string, gen int64) {
	dep := c.deps[name]
	if dep == nil {
		return
	}
	dep.deletingFrom = gen
	dep.recount(c)
}

// RolloutGone forgets an agent rollout (its object was deleted).
func (c *Checker) RolloutGone(name string) { delete(c.rollout, name) }

// DeploymentGone forgets a deployment.
func (c *Checker) DeploymentGone(name string) { delete(c.deps, name) }

// DeviceStateSeen records a device-state value delivered to the operator
// (deleted: the key was deleted).
func (c *Checker) DeviceStateSeen(device, deployment string, gen int64, phase core.WorkloadPhase, deleted bool) {
	dep := c.deps[deployment]
	if dep == nil {
		dep = &depState{name: deployment, states: map[string]stateRec{}, generation: -1}
		c.deps[deployment] = dep
	}
	d := c.dev(device)
	targeted := dep.targets(d)
	if targeted {
		dep.add(dep.states[device], -1)
	}
	if deleted {
		delete(dep.states, device)
	} else {
		dep.states[device] = stateRec{gen: gen, phase: phase}
	}
	if targeted {
		dep.add(dep.states[device], 1)
	}
}

func (dep *depState) targets(d *devState) bool {
	if dep.deletingFrom > 0 && dep.generation >= dep.deletingFrom {
		return false
	}
	return dep.generation >= 0 && d.known && !d.blacklisted && dep.selector.Matches(d.labels)
}

func (dep *depState) add(s stateRec, n int) {
	if s.gen != dep.generation || s.phase == "" {
		return
	}
	switch s.phase {
	case core.PhaseRunning:
		dep.running += n
	case core.PhaseFailed:
		dep.failed += n
	case core.PhasePending, core.PhaseApplying:
		dep.pending += n
	}
}

func (dep *depState) recount(c *Checker) {
	dep.total, dep.running, dep.failed, dep.pending = 0, 0, 0, 0
	if dep.generation < 0 {
		return
	}
	for name, d := range c.devs {
		if !dep.targets(d) {
			continue
		}
		dep.total++
		dep.add(dep.states[name], 1)
	}
}

// Counts is what a Deployment status patch claims.
type Counts struct {
	Total, Succeeded, Failed, Pending, Unreported, Waiting int
}

// DeploymentPatched checks invariant 6 when the operator flushes a
// Deployment's status for generation gen.
func (c *Checker) DeploymentPatched(at time.Duration, name string, gen int64, got Counts) {
	if sum := got.Succeeded + got.Failed + got.Pending + got.Unreported + got.Waiting; sum != got.Total {
		c.fail(at, InvCounts, "", "deployment %s: counts sum to %d but total is %d (%+v)", name, sum, got.Total, got)
		return
	}
	dep := c.deps[name]
	if dep == nil || dep.generation != gen {
		return // a status for a generation the operator was not given yet
	}
	want := Counts{Total: dep.total, Succeeded: dep.running, Failed: dep.failed, Pending: dep.pending}
	if got.Total != want.Total || got.Succeeded != want.Succeeded || got.Failed != want.Failed || got.Pending != want.Pending {
		c.fail(at, InvCounts, "", "deployment %s gen %d: status says total=%d succeeded=%d failed=%d pending=%d, device states say total=%d running=%d failed=%d pending=%d",
			name, gen, got.Total, got.Succeeded, got.Failed, got.Pending, want.Total, want.Succeeded, want.Failed, want.Pending)
	}
}

// sample names up to n keys of a set, sorted.
func sample(set map[string]bool, n int) string {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > n {
		keys = append(keys[:n], "...")
	}
	return strings.Join(keys, ", ")
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
