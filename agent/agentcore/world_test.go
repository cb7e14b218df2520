package agentcore

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// This file is a tiny executor for tests: one device (disk: journal, current
// link, versions/), the agent processes on it, a runtime, and an operator
// that sends upgrade-stop exactly as the protocol says. It carries effects
// out in order, feeds results back as inputs, and can crash or cut power
// after any effect.

var (
	v1 = core.MustParseVersion("v1.0.0")
	v2 = core.MustParseVersion("v1.1.0")
	v3 = core.MustParseVersion("v1.2.0")
	t0 = time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)
)

func marker(attempt uint32, to core.Version) core.UpgradeMarker {
	return core.UpgradeMarker{
		Schema: core.SchemaVersion, Attempt: attempt, TargetVersion: to,
		Artifact: core.ArtifactRef{Object: "flotilla-agent/" + to.String(),
			SHA256: strings.Repeat("ab", 32), Size: 1 << 20},
		CutoverTimeoutSec: 60,
	}
}

func testConfig(v core.Version) Config {
	return Config{
		Device:         "dev-1",
		Labels:         map[string]string{"site": "a"},
		Version:        v,
		Runtimes:       []core.Runtime{core.RuntimeProcess},
		DefaultRuntime: core.RuntimeProcess,
	}
}

// behaviour scripts the executor and the operator.
type behaviour struct {
	downloadErr    string
	downloadReason core.UpgradeReason
	selfTestErr    string
	swapErr        string // the swap to the target fails
	startErr       string // StartCandidate fails
	candidateCrash bool   // the candidate exits right after it starts
	candidateHangs bool   // the candidate's heartbeats never reach the operator
	operatorSilent bool   // the operator never sends upgrade-stop
	preserveErr    string
}

type crashMode int

const (
	crashNone         crashMode = iota
	crashPowerCut               // every process dies; the device boots from current
	crashPowerCutTorn           // as crashPowerCut, and the crash-point effect itself is lost
	crashAgent                  // only the process that emitted the effect dies; systemd restarts the main unit from current
)

type proc struct {
	name   string
	a      *Agent
	alive  bool
	timers map[TimerID]time.Time
}

type delivery struct {
	p  *proc
	in Input
}

type world struct {
	t   testing.TB
	now time.Time
	beh behaviour

	// Disk.
	journal     []Record
	current     core.Version
	prevCurrent core.Version
	installed   []core.Version

	procs []*proc
	queue []delivery

	// KV as the agents see it.
	marker    core.UpgradeMarker
	hasMarker bool
	desired   map[string]core.WorkloadSpec

	// What the operator and the checkers observed.
	statuses   []core.UpgradeStatus
	heartbeats []core.Heartbeat
	states     map[string]core.DeviceState
	replies    []Reply
	exits      []string
	stopsSent  map[uint32]bool
	sawNewHB   map[uint32]bool
	running    map[string]core.WorkloadSpec // the runtime
	trace      []string
	record     bool
	effects    []string // every effect, %#v, when record is set

	// Crash injection.
	effectN   int
	crashAt   int
	crashMode crashMode
	crashed   bool
	nextH     uint64
	steps     int
}

func newWorld(t testing.TB) *world {
	return &world{t: t, now: t0, desired: map[string]core.WorkloadSpec{}, states: map[string]core.DeviceState{},
		stopsSent: map[uint32]bool{}, sawNewHB: map[uint32]bool{}, running: map[string]core.WorkloadSpec{}}
}

// preserved gives the disk a device that already ran v (journal + versions/).
func (w *world) preserved(v core.Version) *world {
	w.journal = []Record{{Kind: RecInstalled, To: v}}
	w.current = v
	w.installed = []core.Version{v}
	return w
}

// boot starts a process of version v from the disk.
func (w *world) boot(v core.Version, candidate uint32) *proc {
	name := "main:" + v.String()
	if candidate != 0 {
		name = fmt.Sprintf("cand%d:%s", candidate, v)
	}
	p := &proc{name: name, a: New(testConfig(v)), alive: true, timers: map[TimerID]time.Time{}}
	w.procs = append(w.procs, p)
	w.deliver(p, Start{BootID: "boot", CandidateAttempt: candidate,
		Journal: slices.Clone(w.journal), Current: w.current, Installed: slices.Clone(w.installed)})
	if !p.alive {
		return p
	}
	// KV watches replay on start.
	for _, dep := range core.SortedKeys(w.desired) {
		w.queue = append(w.queue, delivery{p, DesiredPut{Deployment: dep, Spec: w.desired[dep], Revision: 1}})
	}
	if w.hasMarker {
		w.queue = append(w.queue, delivery{p, MarkerPut{Marker: w.marker}})
	}
	return p
}

func (w *world) active() *proc {
	var act *proc
	for _, p := range w.procs {
		if p.alive && p.a.Role() == RoleActive {
			if act != nil {
				w.t.Fatalf("two active agents: %s and %s", act.name, p.name)
			}
			act = p
		}
	}
	return act
}

func (w *world) alive() []*proc {
	var out []*proc
	for _, p := range w.procs {
		if p.alive {
			out = append(out, p)
		}
	}
	return out
}

// putMarker writes the marker and delivers it to every live agent.
func (w *world) putMarker(m core.UpgradeMarker) {
	w.marker, w.hasMarker = m, true
	for _, p := range w.alive() {
		w.queue = append(w.queue, delivery{p, MarkerPut{Marker: m}})
	}
}

func (w *world) putDesired(spec core.WorkloadSpec, rev uint64) {
	w.desired[spec.Deployment] = spec
	for _, p := range w.alive() {
		w.queue = append(w.queue, delivery{p, DesiredPut{Deployment: spec.Deployment, Spec: spec, Revision: rev}})
	}
}

func (w *world) send(in Input) {
	for _, p := range w.alive() {
		w.queue = append(w.queue, delivery{p, in})
	}
}

func (w *world) deliver(p *proc, in Input) {
	if !p.alive {
		return
	}
	w.steps++
	if w.steps > 100000 {
		w.t.Fatalf("world does not settle")
	}
	effs := slices.Clone(p.a.Step(w.now, in))
	for i, e := range effs {
		if !p.alive {
			return
		}
		if _, ok := e.(Exit); ok {
			r, isReply := Effect(nil), false
			if i > 0 {
				r = effs[i-1]
				_, isReply = r.(Reply)
			}
			if !isReply || r.(Reply).Reply.UpgradeStop == nil || r.(Reply).Reply.Error != nil {
				w.t.Fatalf("%s exits without replying ok to an armed upgrade-stop first: %#v", p.name, effs)
			}
		}
		w.exec(p, e)
		w.effectN++
		if w.crashAt > 0 && w.effectN == w.crashAt && !w.crashed {
			w.crash(p, e)
			return
		}
		w.checkDisk()
	}
}

// crash kills processes after effect e of p and boots the device again.
func (w *world) crash(p *proc, e Effect) {
	w.crashed = true
	w.trace = append(w.trace, fmt.Sprintf("CRASH(%d) after %T by %s", w.crashMode, e, p.name))
	if w.crashMode == crashPowerCutTorn {
		switch e.(type) {
		case AppendJournal: // torn last record: the reader drops it
			w.journal = w.journal[:len(w.journal)-1]
		case SwapCurrent: // rename(2) not yet durable
			w.current = w.prevCurrent
		}
	}
	switch w.crashMode {
	case crashPowerCut, crashPowerCutTorn:
		for _, q := range w.procs {
			q.alive = false
		}
		w.queue = nil
		w.running = map[string]core.WorkloadSpec{}
		w.checkDisk()
		w.boot(w.current, 0)
		return
	}
	// One process dies. A dead candidate is reported to the old agent that
	// started it; otherwise systemd restarts the main unit from current
	// when no agent is left.
	p.alive = false
	w.queue = slices.DeleteFunc(w.queue, func(d delivery) bool { return !d.p.alive })
	if c := p.a.CandidateAttempt(); c != 0 {
		for _, q := range w.alive() {
			if q.a.CandidateAttempt() == 0 && q.a.Role() == RoleActive {
				w.queue = append(w.queue, delivery{q, CandidateExited{Attempt: c, Detail: "crashed"}})
				return
			}
		}
	}
	for _, q := range w.alive() {
		if q.a.CandidateAttempt() == 0 {
			return // the main unit still runs
		}
	}
	w.checkDisk()
	w.boot(w.current, 0)
}

func (w *world) exec(p *proc, e Effect) {
	w.trace = append(w.trace, fmt.Sprintf("%s %T %s", p.name, e, brief(e)))
	if w.record {
		b, err := json.Marshal(e)
		if err != nil {
			w.t.Fatalf("effect %T does not marshal: %v", e, err)
		}
		w.effects = append(w.effects, fmt.Sprintf("%s %T %s", p.name, e, b))
	}
	switch e := e.(type) {
	case AppendJournal:
		w.journal = append(w.journal, e.Record)
	case PutHeartbeat:
		h := e.Heartbeat
		w.heartbeats = append(w.heartbeats, h)
		if h.Attempt != 0 && w.beh.candidateHangs {
			return
		}
		if w.hasMarker && h.Attempt == w.marker.Attempt && sameVersion(h.AgentVersion, w.marker.TargetVersion) {
			w.sawNewHB[h.Attempt] = true
		}
		w.maybeStop()
	case PutUpgradeStatus:
		w.statuses = append(w.statuses, e.Status)
		if err := e.Status.Validate(); err != nil {
			w.t.Fatalf("%s wrote an invalid status %v: %v", p.name, e.Status, err)
		}
		w.maybeStop()
	case PutDeviceState:
		if err := e.State.Validate(); err != nil {
			w.t.Fatalf("%s wrote an invalid device state: %v", p.name, err)
		}
		w.states[e.State.Deployment] = e.State
	case DeleteDeviceState:
		delete(w.states, e.Deployment)
	case PutDeviceInfo:
		if err := e.Info.Validate(); err != nil {
			w.t.Fatalf("%s wrote invalid device info: %v", p.name, err)
		}
	case ArmTimer:
		p.timers[e.Timer] = w.now.Add(e.After)
	case CancelTimer:
		delete(p.timers, e.Timer)
	case StartWorkload:
		w.running[e.Spec.Deployment] = e.Spec
		w.queue = append(w.queue, delivery{p, WorkloadStatus{Deployment: e.Spec.Deployment,
			Generation: e.Spec.Generation, Phase: core.PhaseRunning}})
	case StopWorkload:
		delete(w.running, e.Deployment)
	case Reply:
		w.replies = append(w.replies, e)
	case Download:
		if w.beh.downloadErr != "" {
			w.queue = append(w.queue, delivery{p, DownloadDone{Attempt: e.Attempt, Err: w.beh.downloadErr, Reason: w.beh.downloadReason}})
			return
		}
		w.addInstalled(e.Version)
		w.queue = append(w.queue, delivery{p, DownloadDone{Attempt: e.Attempt}})
	case SelfTest:
		w.queue = append(w.queue, delivery{p, SelfTestDone{Attempt: e.Attempt, Err: w.beh.selfTestErr}})
	case PreserveRunning:
		if w.beh.preserveErr != "" {
			w.queue = append(w.queue, delivery{p, PreserveDone{Version: e.Version, Err: w.beh.preserveErr}})
			return
		}
		w.addInstalled(e.Version)
		if w.current.IsZero() {
			w.current = e.Version
		}
		w.queue = append(w.queue, delivery{p, PreserveDone{Version: e.Version}})
	case SwapCurrent:
		w.prevCurrent = w.current
		if !slices.ContainsFunc(w.installed, func(v core.Version) bool { return sameVersion(v, e.To) }) {
			w.t.Fatalf("%s swaps current to %s, which is not installed", p.name, e.To)
		}
		if w.beh.swapErr != "" && w.hasMarker && sameVersion(e.To, w.marker.TargetVersion) {
			w.queue = append(w.queue, delivery{p, SwapDone{Attempt: e.Attempt, To: e.To, Err: w.beh.swapErr}})
			return
		}
		w.current = e.To
		w.queue = append(w.queue, delivery{p, SwapDone{Attempt: e.Attempt, To: e.To}})
	case StartCandidate:
		if w.beh.startErr != "" {
			w.queue = append(w.queue, delivery{p, CandidateStarted{Attempt: e.Attempt, Err: w.beh.startErr}})
			return
		}
		c := w.boot(e.Version, e.Attempt)
		w.queue = append(w.queue, delivery{p, CandidateStarted{Attempt: e.Attempt}})
		if w.beh.candidateCrash {
			c.alive = false
			w.queue = append(w.queue, delivery{p, CandidateExited{Attempt: e.Attempt, Detail: "exit status 2"}})
		}
	case StopCandidate:
		for _, q := range w.alive() {
			if q.a.CandidateAttempt() == e.Attempt && q != p {
				q.alive = false
				w.queue = append(w.queue, delivery{p, CandidateExited{Attempt: e.Attempt, Detail: "stopped"}})
			}
		}
	case RemoveVersion:
		if sameVersion(e.Version, w.current) {
			w.t.Fatalf("%s removes the current version %s", p.name, e.Version)
		}
		w.installed = slices.DeleteFunc(w.installed, func(v core.Version) bool { return sameVersion(v, e.Version) })
	case ReadJournal:
		w.queue = append(w.queue, delivery{p, JournalRead{Records: slices.Clone(w.journal)}})
	case Exit:
		p.alive = false
		w.exits = append(w.exits, p.name)
	case Reexec:
		p.alive = false
		w.boot(e.Version, 0)
	case FetchLogs, RunExec, Log:
	default:
		w.t.Fatalf("unknown effect %T", e)
	}
}

func brief(e Effect) string {
	switch e := e.(type) {
	case AppendJournal:
		return fmt.Sprintf("%s(%d)", e.Record.Kind, e.Record.Attempt)
	case PutUpgradeStatus:
		return fmt.Sprintf("%s(%d %s)", e.Status.Phase, e.Status.Attempt, e.Status.Reason)
	case SwapCurrent:
		return e.To.String()
	case Reexec:
		return e.Version.String()
	}
	return ""
}

func (w *world) addInstalled(v core.Version) {
	if !slices.ContainsFunc(w.installed, func(x core.Version) bool { return sameVersion(x, v) }) {
		w.installed = append(w.installed, v)
	}
}

// maybeStop is the operator: upgrade-stop only after it saw the new
// version's heartbeat for the attempt while the status says WaitingForStop.
func (w *world) maybeStop() {
	if !w.hasMarker || w.beh.operatorSilent || len(w.statuses) == 0 {
		return
	}
	A := w.marker.Attempt
	st := w.statuses[len(w.statuses)-1]
	if w.stopsSent[A] || !w.sawNewHB[A] || st.Phase != core.UpgradeWaitingForStop || st.Attempt != A {
		return
	}
	w.stopsSent[A] = true
	w.send(stopCmd(w, A, w.marker.TargetVersion))
}

func stopCmd(w *world, attempt uint32, to core.Version) CommandReceived {
	w.nextH++
	return CommandReceived{Handle: w.nextH, Verb: core.VerbUpgradeStop, Request: core.CommandRequest{
		Schema: core.SchemaVersion, Verb: core.VerbUpgradeStop, ID: "stop",
		UpgradeStop: &core.UpgradeStopArgs{Attempt: attempt, TargetVersion: to}}}
}

// checkDisk is the simulator's safety invariant 1: current points at a
// version that is installed and verified by the journal.
func (w *world) checkDisk() {
	js := Replay(w.journal)
	if len(js.Verified) == 0 {
		return // fresh install before the running binary is preserved
	}
	if w.current.IsZero() || !js.IsVerified(w.current) ||
		!slices.ContainsFunc(w.installed, func(v core.Version) bool { return sameVersion(v, w.current) }) {
		w.t.Fatalf("disk invariant broken: current=%s installed=%v verified=%v\ntrace:\n%s",
			w.current, w.installed, js.Verified, strings.Join(w.trace, "\n"))
	}
}

// run delivers queued inputs and fires one-shot timers (cutover, candidate
// poll) in time order until nothing is left to do.
func (w *world) run() {
	for {
		for len(w.queue) > 0 {
			d := w.queue[0]
			w.queue = w.queue[1:]
			w.deliver(d.p, d.in)
		}
		var next *proc
		var nextID TimerID
		var at time.Time
		for _, p := range w.alive() {
			for _, id := range []TimerID{TimerCutover, TimerCandidatePoll} {
				if t, ok := p.timers[id]; ok && (next == nil || t.Before(at)) {
					next, nextID, at = p, id, t
				}
			}
		}
		if next == nil {
			return
		}
		delete(next.timers, nextID)
		if at.After(w.now) {
			w.now = at
		}
		w.deliver(next, TimerFired{Timer: nextID})
	}
}

// settled asserts the end state every run must reach: no attempt in flight,
// one active agent running the journal's version, current pointing at it,
// a consistent journal.
func (w *world) settled() *proc {
	w.t.Helper()
	if err := CheckJournal(w.journal); err != nil {
		w.t.Fatalf("inconsistent journal: %v\n%s", err, w.dump())
	}
	js := Replay(w.journal)
	if js.InFlight() {
		w.t.Fatalf("attempt %d still in flight (%s)\n%s", js.LastAttempt, js.Last, w.dump())
	}
	act := w.active()
	if act == nil || !act.a.Ready() {
		w.t.Fatalf("no ready active agent\n%s", w.dump())
	}
	if !sameVersion(act.a.Version(), js.Want) || !sameVersion(w.current, js.Want) {
		w.t.Fatalf("active agent %s, current %s, journal wants %s\n%s", act.a.Version(), w.current, js.Want, w.dump())
	}
	for _, p := range w.alive() {
		if p != act && p.a.Role() != RoleRetired {
			w.t.Fatalf("stray process %s (%s)\n%s", p.name, p.a.Role(), w.dump())
		}
	}
	w.checkDisk()
	return act
}

func (w *world) dump() string {
	var b strings.Builder
	for _, r := range w.journal {
		fmt.Fprintf(&b, "journal: %s a=%d %s→%s %s\n", r.Kind, r.Attempt, r.From, r.To, r.Reason)
	}
	fmt.Fprintf(&b, "current=%s installed=%v\n", w.current, w.installed)
	b.WriteString(strings.Join(w.trace, "\n"))
	return b.String()
}

func (w *world) lastStatus() core.UpgradeStatus {
	if len(w.statuses) == 0 {
		w.t.Fatalf("no status written")
	}
	return w.statuses[len(w.statuses)-1]
}

func (w *world) phases() []core.AgentUpgradePhase {
	var out []core.AgentUpgradePhase
	for _, s := range w.statuses {
		if len(out) == 0 || out[len(out)-1] != s.Phase {
			out = append(out, s.Phase)
		}
	}
	return out
}

func journalKinds(rs []Record) []RecordKind {
	var out []RecordKind
	for _, r := range rs {
		out = append(out, r.Kind)
	}
	return out
}
