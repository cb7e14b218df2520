package link

import (
	"errors"
	"slices"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
)

// Link is one agent process's protocol state. The zero value is not usable:
// call New.
type Link struct {
	device  string
	version string // of the running binary
	observe func(agentcore.Input, []agentcore.Effect)
	shared  *[]Action
	hbBuf   func(core.Heartbeat) ([]byte, any)
	timeout time.Duration
	core    Core
	now     time.Time
	acts    []Action

	// effect execution
	pending   []agentcore.Effect // rest of the batch after an inline effect
	inline    agentcore.Effect   // the inline effect out (nil: none)
	inbox     []agentcore.Input  // inputs waiting for the core
	started   bool               // Start delivered
	setUp     bool               // ActConnect emitted
	halted    bool               // the core asked to exit: it gets no more inputs
	exit      agentcore.Effect   // the Exit or Reexec waiting for the outbox
	gone      bool               // ActExit emitted: nothing more happens
	exitArmed bool               // TimerExit armed

	// candidate / active
	active          bool
	gcDone          bool
	desiredReplayed bool
	live            []string // deployments with a desired-state value, sorted

	// NATS
	conn, everConn bool
	out            outbox
	watches        [numWatches]watch
	bucketsAsked   []string // buckets with an ActCreateBucket out

	handles    []handle
	nextHandle uint64

	timerGen [NumTimers]uint32
	rng      uint64
}

// New returns a link for one process.
func New(cfg Config) *Link {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultTimeout
	}
	l := &Link{device: cfg.Device, version: cfg.Version.String(), observe: cfg.Observe, shared: cfg.Actions, hbBuf: cfg.HeartbeatBuf,
		timeout: cfg.WriteTimeout, core: cfg.Core, active: cfg.CandidateAttempt == 0, rng: cfg.Seed ^ 0x9e3779b97f4a7c15}
	if l.core == nil {
		l.core = agentcore.New(cfg.Agent)
	}
	l.watches[WatchDesired] = watch{bucket: core.BucketDesiredState, filter: core.DesiredStateDeviceFilter(cfg.Device)}
	l.watches[WatchMarker] = watch{bucket: core.BucketAgentUpgrade, filter: core.AgentUpgradeKey(cfg.Device)}
	return l
}

// Core returns the decision core the link drives.
func (l *Link) Core() Core { return l.core }

// Active reports whether this process is the device's active agent.
func (l *Link) Active() bool { return l.active }

// Connected reports the connection state last reported.
func (l *Link) Connected() bool { return l.conn }

// Pending is the number of KV writes not yet acknowledged.
func (l *Link) Pending() int { return len(l.out.items) }

// Exited reports whether ActExit was emitted.
func (l *Link) Exited() bool { return l.gone }

// Live returns the deployments with a desired-state value (sorted; do not
// modify).
func (l *Link) Live() []string { return l.live }

// Step feeds one event and returns the actions to carry out, in order. The
// returned slice is valid until the next Step.
func (l *Link) Step(now time.Time, ev Event) []Action {
	if l.shared != nil {
		l.acts = *l.shared
		defer func() { *l.shared, l.acts = l.acts, nil }()
	}
	l.acts = l.acts[:0]
	if l.gone {
		return l.acts
	}
	l.now = now
	l.forgetHandles()
	switch ev.Kind {
	case EvStart:
		l.started = true
		l.deliver(ev.In)
	case EvInput:
		l.deliver(ev.In)
	case EvDone:
		l.done(ev)
	case EvConn:
		l.connState(ev.Up)
	case EvWriteDone:
		l.writeDone(ev.Token, ev.Err)
	case EvBucketCreated:
		l.bucketCreated(ev.Bucket, ev.Err)
	case EvWatchEntry:
		l.watchEntry(ev.Watch, ev.Gen, ev.Entry)
	case EvWatchReplayed:
		l.watchReplayed(ev.Watch, ev.Gen, ev.Rev)
	case EvWatchFailed:
		l.watchFailed(ev.Watch, ev.Gen, ev.Err)
	case EvCommand:
		l.command(ev.Subject, ev.Data, ev.Reply)
	case EvCommandResult:
		l.respondTo(ev.Handle, ev.Result)
	case EvTimer:
		l.fired(ev.Timer, ev.Gen)
	case EvStop:
		if !l.halted {
			l.inline, l.pending = nil, nil
			l.effect(agentcore.Exit{Code: 0, Reason: "stopped"})
		}
	}
	l.pump()
	return l.acts
}

func (l *Link) emit(a Action) { l.acts = append(l.acts, a) }

func (l *Link) log(level, msg string, attrs ...any) {
	l.emit(Action{Kind: ActRun, Effect: agentcore.Log{Level: level, Msg: msg, Attrs: attrs}})
}

// deliver queues an input for the core.
func (l *Link) deliver(in agentcore.Input) {
	if l.halted || in == nil {
		return
	}
	l.inbox = append(l.inbox, in)
}

// pump steps the core with queued inputs and carries out its effects until
// an inline effect is out or nothing is left.
func (l *Link) pump() {
	for l.inline == nil && !l.gone {
		if len(l.pending) > 0 {
			l.runEffects()
			continue
		}
		if l.halted || len(l.inbox) == 0 || !l.started {
			break
		}
		in := l.inbox[0]
		copy(l.inbox, l.inbox[1:]) // a short queue: keep its array
		l.inbox[len(l.inbox)-1] = nil
		l.inbox = l.inbox[:len(l.inbox)-1]
		effs := l.core.Step(l.now, in)
		if l.observe != nil {
			l.observe(in, effs)
		}
		l.pending = effs
	}
	if l.inline == nil && l.started && !l.setUp && !l.halted && len(l.inbox) == 0 && len(l.pending) == 0 {
		// Start-up recovery is done (it may have re-executed instead):
		// now reach for NATS.
		l.setUp = true
		l.emit(Action{Kind: ActConnect})
		if l.active {
			l.emit(Action{Kind: ActBecomeActive})
		}
	}
}

// runEffects carries out l.pending in order, stopping after an inline one.
func (l *Link) runEffects() {
	for len(l.pending) > 0 && !l.gone {
		e := l.pending[0]
		l.pending = l.pending[1:]
		if l.effect(e) {
			return
		}
	}
	l.pending = nil
}

// effect carries out one core effect; it reports whether it handed out an
// inline action (nothing may follow it in this batch).
func (l *Link) effect(e agentcore.Effect) bool {
	switch e := e.(type) {
	case agentcore.AppendJournal, agentcore.SwapCurrent, agentcore.PreserveRunning, agentcore.RemoveVersion,
		agentcore.StartCandidate, agentcore.StopCandidate, agentcore.ReadJournal:
		l.inline = e
		l.emit(Action{Kind: ActInline, Effect: e})
		return true
	case agentcore.PutHeartbeat:
		var buf []byte
		var obj any
		if l.hbBuf != nil {
			buf, obj = l.hbBuf(e.Heartbeat)
		} else {
			hb := &heartbeatValue{hb: e.Heartbeat}
			buf, obj = hb.buf[:0], &hb.hb
		}
		b, err := e.Heartbeat.AppendEncode(buf)
		if err != nil {
			l.log("error", "encode heartbeat", "err", err)
			return false
		}
		l.put(core.BucketDeviceHeartbeat, core.HeartbeatKey(l.device), b, obj)
	case agentcore.PutDeviceInfo:
		b, err := e.Info.Encode()
		if l.encoded("device-info", err) {
			l.put(core.BucketDeviceInfo, core.DeviceInfoKey(l.device), b, e.Info)
		}
	case agentcore.PutDeviceState:
		b, err := e.State.Encode()
		if l.encoded("device-state", err) {
			l.put(core.BucketDeviceState, core.DeviceStateKey(l.device, e.State.Deployment), b, e.State)
		}
	case agentcore.DeleteDeviceState:
		l.out.put(l, core.BucketDeviceState, core.DeviceStateKey(l.device, e.Deployment), nil, nil, true)
	case agentcore.PutUpgradeStatus:
		b, err := e.Status.Encode()
		if l.encoded("upgrade-status", err) {
			l.put(core.BucketAgentUpgradeStatus, core.AgentUpgradeStatusKey(l.device), b, e.Status)
		}
		l.noteStatus(e.Status)
	case agentcore.ArmTimer:
		l.arm(coreTimer(e.Timer), e.After)
	case agentcore.CancelTimer:
		l.cancel(coreTimer(e.Timer))
	case agentcore.Reply:
		l.respondTo(e.Handle, e.Reply)
	case agentcore.Exit, agentcore.Reexec:
		l.halted = true
		l.pending = nil
		l.inbox = nil
		l.exit = e
		wait := ExitFlush
		if x, ok := e.(agentcore.Exit); ok && x.Reason == "stopped" || isReexec(e) {
			wait = ReexecFlush
		}
		if x, ok := e.(agentcore.Exit); ok && x.Reason != "stopped" {
			// The core exits only to hand the device over to its
			// committed successor, which owns these keys now: a retried
			// write of this process (an older status, a heartbeat of the
			// old version) must not land after the successor's.
			l.out.drop()
		}
		if !l.everConn || len(l.out.items) == 0 {
			l.finish()
		} else {
			l.exitArmed = true
			l.arm(TimerExit, wait)
		}
		return true
	default: // Download, SelfTest, StartWorkload, StopWorkload, FetchLogs, RunExec, Log
		l.emit(Action{Kind: ActRun, Effect: e})
	}
	return false
}

// heartbeatValue is a heartbeat write in one allocation: its bytes and the
// decoded value handed to the adapter as Obj.
type heartbeatValue struct {
	hb  core.Heartbeat
	buf [core.MaxHeartbeatBytes]byte
}

func (l *Link) encoded(what string, err error) bool {
	if err != nil {
		l.log("error", "encode for kv put", "value", what, "err", err)
		return false
	}
	return true
}

func (l *Link) put(bucket, key string, b []byte, obj any) { l.out.put(l, bucket, key, b, obj, false) }

// finish emits the exit the core asked for.
func (l *Link) finish() {
	if l.gone || l.exit == nil {
		return
	}
	a := Action{Kind: ActExit, Effect: l.exit}
	switch e := l.exit.(type) {
	case agentcore.Exit:
		a.Code = e.Code
	case agentcore.Reexec:
		a.Code = 4 // what is left if the exec fails
	}
	if l.exitArmed {
		l.cancel(TimerExit)
	}
	l.emit(a)
	l.gone = true
}

// done completes the inline effect out.
func (l *Link) done(ev Event) {
	e := l.inline
	if e == nil {
		return
	}
	l.inline = nil
	switch e := e.(type) {
	case agentcore.AppendJournal:
		if ev.Err != nil {
			// Without a durable journal no later step is safe: end the
			// process; the next start recovers from what is on disk.
			l.log("error", "journal append failed; exiting", "record", string(e.Record.Kind), "err", ev.Err)
			l.halted, l.pending, l.inbox = true, nil, nil
			l.exit = agentcore.Exit{Code: 3, Reason: "journal append failed"}
			l.finish()
		}
	case agentcore.SwapCurrent:
		l.deliver(agentcore.SwapDone{Attempt: e.Attempt, To: e.To, Err: errStr(ev.Err)})
	case agentcore.PreserveRunning:
		l.deliver(agentcore.PreserveDone{Version: e.Version, Err: errStr(ev.Err)})
	case agentcore.StartCandidate:
		l.deliver(agentcore.CandidateStarted{Attempt: e.Attempt, Err: errStr(ev.Err)})
	case agentcore.StopCandidate:
		if ev.Err != nil {
			l.log("warn", "stop candidate", "attempt", e.Attempt, "err", ev.Err)
		}
	case agentcore.RemoveVersion:
		if ev.Err != nil {
			l.log("warn", "remove version", "version", e.Version.String(), "err", ev.Err)
		}
	case agentcore.ReadJournal:
		if ev.Err != nil {
			l.log("warn", "journal read", "err", ev.Err)
		}
		l.deliver(agentcore.JournalRead{Records: ev.Records})
	}
}

// noteStatus infers from the core's upgrade status that a candidate has
// become the device's active agent: Committed of its own version.
func (l *Link) noteStatus(st core.UpgradeStatus) {
	if l.active || st.Phase != core.UpgradeCommitted || st.RunningVersion.String() != l.version {
		return
	}
	l.active = true
	l.log("info", "candidate committed: this process is now the active agent", "attempt", st.Attempt)
	if l.setUp {
		l.emit(Action{Kind: ActBecomeActive})
	}
	l.collectOrphans()
}

// collectOrphans stops adopted workloads without desired state, once this
// process is active and has replayed desired state.
func (l *Link) collectOrphans() {
	if l.gcDone || !l.active || !l.desiredReplayed {
		return
	}
	l.gcDone = true
	l.emit(Action{Kind: ActStopWorkloadsExcept, Deployments: slices.Clone(l.live)})
}

func (l *Link) setLive(dep string, live bool) {
	i, found := slices.BinarySearch(l.live, dep)
	switch {
	case live && !found:
		l.live = slices.Insert(l.live, i, dep)
	case !live && found:
		l.live = slices.Delete(l.live, i, i+1)
	}
}

// ---- timers ----------------------------------------------------------------

func coreTimer(t agentcore.TimerID) Timer {
	switch t {
	case agentcore.TimerHeartbeat:
		return TimerHeartbeat
	case agentcore.TimerInfo:
		return TimerInfo
	case agentcore.TimerCutover:
		return TimerCutover
	}
	return TimerCandidatePoll
}

// coreFired holds the core's timer inputs boxed once: a timer firing is the
// most frequent input.
var coreFired = [4]agentcore.Input{agentcore.TimerFired{Timer: agentcore.TimerHeartbeat},
	agentcore.TimerFired{Timer: agentcore.TimerInfo}, agentcore.TimerFired{Timer: agentcore.TimerCutover},
	agentcore.TimerFired{Timer: agentcore.TimerCandidatePoll}}

func (l *Link) arm(t Timer, after time.Duration) {
	l.timerGen[t]++
	l.emit(Action{Kind: ActArmTimer, Timer: t, Gen: l.timerGen[t], After: after})
}

func (l *Link) cancel(t Timer) {
	l.timerGen[t]++
	l.emit(Action{Kind: ActCancelTimer, Timer: t, Gen: l.timerGen[t]})
}

func (l *Link) fired(t Timer, gen uint32) {
	if t >= NumTimers || gen != l.timerGen[t] {
		return // re-armed or cancelled since
	}
	l.timerGen[t]++ // a timer fires once
	switch t {
	case TimerHeartbeat, TimerInfo, TimerCutover, TimerCandidatePoll:
		l.deliver(coreFired[t])
	case TimerOutbox:
		l.out.backoff = false
		l.out.kick(l)
	case TimerWatchDesired:
		l.retryWatch(WatchDesired)
	case TimerWatchMarker:
		l.retryWatch(WatchMarker)
	case TimerExit:
		l.log("warn", "exiting with KV writes not acknowledged", "pending", len(l.out.items))
		l.finish()
	}
}

// jitter returns d/2 plus up to d/2 (splitmix64 from Config.Seed).
func (l *Link) jitter(d time.Duration) time.Duration {
	l.rng += 0x9e3779b97f4a7c15
	z := l.rng
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return d/2 + time.Duration(z%uint64(d/2+1))
}

func isReexec(e agentcore.Effect) bool { _, ok := e.(agentcore.Reexec); return ok }

func errStr(err error) string {
	if err == nil {
		return ""
	}
	return core.Truncate(err.Error(), core.MaxErrorLen)
}

func isBucketNotFound(err error) bool { return errors.Is(err, ErrBucketNotFound) }
