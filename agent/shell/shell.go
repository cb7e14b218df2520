// Package shell is the agent's production shell: it owns one agent core
// (agentcore.Agent), feeds it inputs and carries out its effects against
// NATS (nats.go + JetStream KV), the filesystem (agent/journal,
// agent/executor) and the workload runtimes (agent/runtime).
//
// One goroutine — the event loop in Run — calls Step; every I/O goroutine
// (KV watches, the command subscription, timers, downloads, the candidate
// watcher, workload supervisors) only sends inputs to it over a channel.
// Effects run in the order the core returned them. Quick, local effects
// (journal appends, the symlink swap, starting or stopping the candidate)
// run inline, so an AppendJournal is fsynced before the next effect starts;
// their result inputs are queued and delivered right after the batch. Slow
// effects (downloads, self-tests, logs, exec, workload starts) run on their
// own goroutines and report back as inputs.
package shell

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/agent/executor"
	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/agent/runtime"
	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/internal/wallclock"
)

// Core is the decision core the shell drives (agentcore.Agent).
type Core interface {
	Step(now time.Time, in agentcore.Input) []agentcore.Effect
}

// Options wires one shell.
type Options struct {
	Device           string
	Version          core.Version
	CandidateAttempt uint32
	ExecAllowed      bool

	Core     Core
	NATS     NATSOptions
	Journal  *journal.Journal
	Executor *executor.Executor
	Workload *runtime.Manager
	// Detach is called before the process exits for an upgrade, so that
	// workloads outlive it (the next agent adopts them).
	Detach func()
	// AgentLog holds the agent's own recent log lines (logs command
	// without a deployment).
	AgentLog *runtime.Ring
	Log      *slog.Logger
	Clock    core.Clock
	BootID   string
	// Self is the path of the running binary (PreserveRunning copies it).
	Self string
	// Connected, when set, receives the connection once it exists (tests).
	Connected func(*nats.Conn)
}

// Shell runs the event loop.
type Shell struct {
	o      Options
	log    *slog.Logger
	inputs chan agentcore.Input
	done   chan struct{} // closed when Run returns
	stopMu sync.Once
	queued []agentcore.Input
	link   *link

	timers  map[agentcore.TimerID]*time.Timer
	timerGn map[agentcore.TimerID]uint64

	hmu     sync.Mutex
	handles map[uint64]pendingCmd
	nextH   uint64

	active     bool // this process is the device's active agent
	gcDone     bool
	stepTimes  map[string]time.Time // upgrade step start times, for the step log
	exitCode   int
	exitReason string
}

type pendingCmd struct {
	msg  *nats.Msg
	verb core.Verb
	id   string
	at   time.Time
}

// ErrReexecFailed is returned by Run when a Reexec effect could not replace
// the process.
var ErrReexecFailed = errors.New("re-exec failed")

// New prepares a shell.
func New(o Options) *Shell {
	if o.Clock == nil {
		o.Clock = wallclock.Clock{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Shell{o: o, log: o.Log, inputs: make(chan agentcore.Input, 1024), done: make(chan struct{}),
		timers: map[agentcore.TimerID]*time.Timer{}, timerGn: map[agentcore.TimerID]uint64{},
		handles: map[uint64]pendingCmd{}, stepTimes: map[string]time.Time{},
		active: o.CandidateAttempt == 0}
}

func (s *Shell) stop() { s.stopMu.Do(func() { close(s.done) }) }

// push hands an input to the event loop from any goroutine; after Run has
// returned it drops the input.
func (s *Shell) push(in agentcore.Input) {
	select {
	case s.inputs <- in:
	case <-s.done:
	}
}

// firedInput is how timer goroutines reach the loop. It carries the arming
// generation, so a fire that raced a re-arm or a cancel is dropped.
type firedInput struct {
	agentcore.TimerFired
	gen uint64
}

// Run delivers Start, connects to NATS and runs until ctx ends (returns 0)
// or the core emits Exit (returns its code). Reexec does not return.
func (s *Shell) Run(ctx context.Context) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer s.stop()
	start, err := s.startInput()
	if err != nil {
		return 1, err
	}
	s.log.Info("agent starting", "version", s.o.Version.String(),
		"candidate_attempt", s.o.CandidateAttempt, "current", verStr(start.Current), "journal_records", len(start.Journal))

	l := &link{device: s.o.Device, log: s.log.With("part", "nats"), push: s.push,
		kvs: map[string]jetstream.KeyValue{}, kick: make(chan struct{}), replayed: make(chan struct{}),
		live: map[string]bool{}}
	l.out = newOutbox(l)
	s.link = l

	// Start goes first: recovery may re-exec before anything touches NATS.
	if done, code := s.deliver(ctx, start); done {
		return code, nil
	}

	if s.o.NATS.Name == "" {
		s.o.NATS.Name = "flotilla-agent " + s.o.Device
	}
	nc, err := dialNATS(s.o.NATS, l)
	if err != nil {
		return 1, fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	l.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return 1, fmt.Errorf("jetstream: %w", err)
	}
	l.js = js
	if s.o.Executor != nil {
		if ms, ok := s.o.Executor.Source.(executor.MultiSource); ok && ms.Objects == nil {
			ms.Objects = executor.ObjectStoreSource{JS: func() jetstream.JetStream { return js }}
			s.o.Executor.Source = ms
		}
	}
	if s.o.Connected != nil {
		s.o.Connected(nc)
	}
	var wg sync.WaitGroup
	bg := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	defer func() {
		// Stop the I/O goroutines; none may stay blocked handing an input
		// to a loop that has ended.
		cancel()
		s.stop()
		wg.Wait()
	}()
	bg(func() { l.out.run(ctx) })
	bg(func() {
		l.runWatch(ctx, watchSpec{bucket: core.BucketDesiredState, filter: core.DesiredStateDeviceFilter(s.o.Device),
			handle: l.desiredEntry, onInit: func() { l.once.Do(func() { close(l.replayed) }) }})
	})
	bg(func() {
		l.runWatch(ctx, watchSpec{bucket: core.BucketAgentUpgrade, filter: core.AgentUpgradeKey(s.o.Device), handle: l.markerEntry})
	})
	sub, err := nc.Subscribe(core.CommandSubscription(s.o.Device), s.onCommand)
	if err != nil {
		return 1, fmt.Errorf("subscribe %s: %w", core.CommandSubscription(s.o.Device), err)
	}
	defer sub.Unsubscribe()
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	if s.active {
		s.becomeActive()
	}
	defer s.removePIDFile()

	for {
		select {
		case <-ctx.Done():
			s.stopTimers()
			s.log.Info("agent stopping", "reason", context.Cause(ctx))
			l.out.flush(context.Background(), 2*time.Second)
			return 0, nil
		case in := <-s.inputs:
			if done, code := s.deliver(ctx, in); done {
				return code, nil
			}
		case <-sweep.C:
			s.sweepHandles()
		case <-l.replayed:
			l.replayed = nil
			s.maybeCollectOrphans(ctx)
		}
	}
}

// deliver steps the core with in and every input its inline effects queue.
// It reports whether the process must end, and with which code.
func (s *Shell) deliver(ctx context.Context, in agentcore.Input) (bool, int) {
	s.queued = append(s.queued, in)
	for len(s.queued) > 0 {
		in := s.queued[0]
		s.queued = s.queued[1:]
		if f, ok := in.(firedInput); ok {
			if s.timerGn[f.Timer] != f.gen {
				continue // re-armed or cancelled since
			}
			delete(s.timers, f.Timer)
			in = f.TimerFired
		}
		effects := append([]agentcore.Effect(nil), s.o.Core.Step(s.o.Clock.Now(), in)...)
		for _, e := range effects {
			if done, code := s.execute(ctx, e); done {
				return true, code
			}
		}
	}
	return false, 0
}

func (s *Shell) queue(in agentcore.Input) { s.queued = append(s.queued, in) }

// execute carries out one effect.
func (s *Shell) execute(ctx context.Context, e agentcore.Effect) (bool, int) {
	switch e := e.(type) {
	case agentcore.AppendJournal:
		if err := s.o.Journal.Append(e.Record); err != nil {
			// Without a durable journal no later step is safe: end the
			// process; the next start recovers from what is on disk.
			s.log.Error("journal append failed; exiting", "record", e.Record.Kind, "err", err)
			return true, 3
		}
		s.log.Info("journal", "kind", e.Record.Kind, "attempt", e.Record.Attempt, "from", verStr(e.Record.From),
			"to", verStr(e.Record.To), "reason", e.Record.Reason)
	case agentcore.PutHeartbeat:
		s.put(core.BucketDeviceHeartbeat, core.HeartbeatKey(s.o.Device), e.Heartbeat.Encode)
	case agentcore.PutDeviceInfo:
		s.put(core.BucketDeviceInfo, core.DeviceInfoKey(s.o.Device), e.Info.Encode)
	case agentcore.PutDeviceState:
		s.put(core.BucketDeviceState, core.DeviceStateKey(s.o.Device, e.State.Deployment), e.State.Encode)
	case agentcore.DeleteDeviceState:
		s.link.out.put(core.BucketDeviceState, core.DeviceStateKey(s.o.Device, e.Deployment), nil, true)
	case agentcore.PutUpgradeStatus:
		s.put(core.BucketAgentUpgradeStatus, core.AgentUpgradeStatusKey(s.o.Device), e.Status.Encode)
		s.noteStatus(ctx, e.Status)
	case agentcore.ArmTimer:
		s.arm(e.Timer, e.After)
	case agentcore.CancelTimer:
		if t := s.timers[e.Timer]; t != nil {
			t.Stop()
		}
		s.timerGn[e.Timer]++
		delete(s.timers, e.Timer)
	case agentcore.StartWorkload:
		s.o.Workload.Start(ctx, e.Spec)
	case agentcore.StopWorkload:
		s.o.Workload.Stop(ctx, e.Deployment)
	case agentcore.Reply:
		s.reply(e.Handle, e.Reply)
	case agentcore.FetchLogs:
		go s.fetchLogs(ctx, e)
	case agentcore.RunExec:
		go s.runExec(ctx, e)
	case agentcore.Download:
		s.stepBegin("download")
		go func() {
			err := s.o.Executor.Download(ctx, e.Version, e.Artifact)
			s.stepEnd("download", e.Attempt, err)
			done := agentcore.DownloadDone{Attempt: e.Attempt}
			if err != nil {
				done.Err = core.Truncate(err.Error(), core.MaxErrorLen)
				done.Reason = core.ReasonDownloadFailed
				var fe *executor.FetchError
				if errors.As(err, &fe) {
					done.Reason = fe.Reason
				}
			}
			s.push(done)
		}()
	case agentcore.SelfTest:
		s.stepBegin("self-test")
		go func() {
			err := s.o.Executor.SelfTest(ctx, e.Version)
			s.stepEnd("self-test", e.Attempt, err)
			done := agentcore.SelfTestDone{Attempt: e.Attempt}
			if err != nil {
				done.Err = core.Truncate(err.Error(), core.MaxErrorLen)
			}
			s.push(done)
		}()
	case agentcore.PreserveRunning:
		err := s.o.Executor.Preserve(e.Version, s.o.Self)
		s.queue(agentcore.PreserveDone{Version: e.Version, Err: errStr(err)})
	case agentcore.SwapCurrent:
		s.stepBegin("swap")
		err := s.o.Executor.Swap(e.To)
		s.stepEnd("swap", e.Attempt, err)
		s.queue(agentcore.SwapDone{Attempt: e.Attempt, To: e.To, Err: errStr(err)})
	case agentcore.StartCandidate:
		s.stepBegin("start-candidate")
		attempt := e.Attempt
		err := s.o.Executor.StartCandidate(ctx, attempt, e.Version, func(detail string) {
			s.push(agentcore.CandidateExited{Attempt: attempt, Detail: core.Truncate(detail, core.MaxErrorLen)})
		})
		s.stepEnd("start-candidate", e.Attempt, err)
		s.stepBegin("cutover")
		s.queue(agentcore.CandidateStarted{Attempt: e.Attempt, Err: errStr(err)})
	case agentcore.StopCandidate:
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := s.o.Executor.StopCandidate(sctx, e.Attempt)
		cancel()
		if err != nil {
			s.log.Warn("stop candidate", "attempt", e.Attempt, "err", err)
		}
	case agentcore.RemoveVersion:
		if err := s.o.Executor.Remove(e.Version); err != nil {
			s.log.Warn("remove version", "version", e.Version.String(), "err", err)
		}
	case agentcore.ReadJournal:
		recs, err := s.o.Journal.Read()
		if err != nil {
			s.log.Warn("journal read", "err", err)
		}
		s.queue(agentcore.JournalRead{Records: recs})
	case agentcore.Exit:
		s.log.Info("exiting", "code", e.Code, "reason", e.Reason)
		s.stopTimers()
		s.link.flushReplies()
		s.link.out.flush(context.Background(), 3*time.Second)
		if s.o.Detach != nil {
			s.o.Detach()
		}
		return true, e.Code
	case agentcore.Reexec:
		s.log.Info("re-exec", "version", e.Version.String(), "reason", e.Reason)
		if s.link.nc != nil {
			s.link.out.flush(context.Background(), 2*time.Second)
		}
		if s.o.Detach != nil {
			s.o.Detach()
		}
		err := s.o.Executor.Reexec(e.Version)
		s.log.Error("re-exec failed; exiting", "err", err)
		return true, 4
	case agentcore.Log:
		s.log.Log(ctx, level(e.Level), e.Msg, e.Attrs...)
	default:
		s.log.Warn("unknown effect ignored", "effect", fmt.Sprintf("%T", e))
	}
	return false, 0
}

func (s *Shell) put(bucket, key string, enc func() ([]byte, error)) {
	b, err := enc()
	if err != nil {
		s.log.Error("encode for kv put", "bucket", bucket, "key", key, "err", err)
		return
	}
	s.link.out.put(bucket, key, b, false)
}

// noteStatus watches the core's upgrade status for two shell concerns: a
// candidate that has become the active agent, and step timing.
func (s *Shell) noteStatus(ctx context.Context, st core.UpgradeStatus) {
	if st.Phase == core.UpgradeWaitingForStop {
		s.stepEnd("cutover-armed", st.Attempt, nil)
		s.stepBegin("wait-for-stop")
	}
	if st.Phase == core.UpgradeCommitted && st.RunningVersion.String() == s.o.Version.String() && !s.active {
		s.active = true
		s.log.Info("candidate committed: this process is now the active agent", "attempt", st.Attempt)
		s.becomeActive()
		s.maybeCollectOrphans(ctx)
	}
}

// maybeCollectOrphans stops adopted workloads whose deployment no longer has
// desired state, once this process is active and has replayed desired state.
func (s *Shell) maybeCollectOrphans(ctx context.Context) {
	if s.gcDone || !s.active || s.link == nil || s.link.replayed != nil {
		return
	}
	s.gcDone = true
	if gone := s.o.Workload.StopExcept(ctx, s.link.Live()); len(gone) > 0 {
		s.log.Info("stopped workloads without desired state", "deployments", gone)
	}
}

func (s *Shell) stepBegin(step string) { s.stepTimes[step] = time.Now() }

// stepEnd logs how long an upgrade step took (the numbers in docs/agent.md
// come from these lines).
func (s *Shell) stepEnd(step string, attempt uint32, err error) {
	began, ok := s.stepTimes[step]
	if step == "cutover-armed" {
		began, ok = s.stepTimes["cutover"]
	}
	if !ok {
		return
	}
	s.log.Info("upgrade step", "step", step, "attempt", attempt, "ms", time.Since(began).Milliseconds(), "err", errStr(err))
}

func (s *Shell) arm(id agentcore.TimerID, after time.Duration) {
	if t := s.timers[id]; t != nil {
		t.Stop()
	}
	s.timerGn[id]++
	gen := s.timerGn[id]
	s.timers[id] = time.AfterFunc(after, func() { s.push(firedInput{agentcore.TimerFired{Timer: id}, gen}) })
}

func (s *Shell) stopTimers() {
	for id, t := range s.timers {
		t.Stop()
		s.timerGn[id]++
	}
	s.timers = map[agentcore.TimerID]*time.Timer{}
}

// ---- commands -------------------------------------------------------------

func (s *Shell) onCommand(m *nats.Msg) {
	_, verb, err := core.ParseCommandSubject(m.Subject)
	if err != nil {
		s.respond(m, core.ErrorReply(core.VerbPing, "", core.ErrCodeBadRequest, "%v", err))
		return
	}
	req, derr := core.DecodeCommandRequest(verb, m.Data)
	s.hmu.Lock()
	s.nextH++
	h := s.nextH
	s.handles[h] = pendingCmd{msg: m, verb: verb, id: req.ID, at: time.Now()}
	s.hmu.Unlock()
	in := agentcore.CommandReceived{Handle: h, Verb: verb, Request: req}
	if derr != nil {
		in.DecodeErr = core.Truncate(derr.Error(), core.MaxErrorLen)
	}
	s.push(in)
}

func (s *Shell) take(h uint64) (pendingCmd, bool) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	p, ok := s.handles[h]
	delete(s.handles, h)
	return p, ok
}

// sweepHandles forgets commands the core chose not to answer (a candidate
// ignores them; the old agent answers).
func (s *Shell) sweepHandles() {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	for h, p := range s.handles {
		if time.Since(p.at) > 5*time.Minute {
			delete(s.handles, h)
		}
	}
}

func (s *Shell) reply(h uint64, r core.CommandReply) {
	p, ok := s.take(h)
	if !ok {
		s.log.Warn("reply to an unknown command handle", "handle", h)
		return
	}
	s.respond(p.msg, r)
}

func (s *Shell) respond(m *nats.Msg, r core.CommandReply) {
	if m.Reply == "" {
		return
	}
	b, err := r.Encode()
	if err != nil {
		b, _ = core.ErrorReply(r.Verb, r.ID, core.ErrCodeInternal, "encode reply: %v", err).Encode()
	}
	if err := m.Respond(b); err != nil {
		s.log.Warn("command reply", "subject", m.Subject, "err", err)
	}
}

func (s *Shell) fetchLogs(ctx context.Context, e agentcore.FetchLogs) {
	n := core.ClampLogLines(e.Args.Lines)
	var lines []string
	var trunc bool
	var err error
	if e.Args.Deployment == "" {
		if s.o.AgentLog == nil {
			err = errors.New("the agent keeps no log buffer")
		} else {
			lines, trunc = s.o.AgentLog.Last(n)
		}
	} else {
		lines, trunc, err = s.o.Workload.Logs(ctx, e.Args.Deployment, n)
	}
	if err != nil {
		s.reply(e.Handle, core.ErrorReply(core.VerbLogs, e.ID, core.ErrCodeRejected, "%v", err))
		return
	}
	if lines == nil {
		lines = []string{}
	}
	s.reply(e.Handle, core.CommandReply{Schema: core.SchemaVersion, Verb: core.VerbLogs, ID: e.ID,
		Logs: &core.LogsResult{Lines: lines, Truncated: trunc}})
}

func (s *Shell) runExec(ctx context.Context, e agentcore.RunExec) {
	if !s.o.ExecAllowed {
		s.reply(e.Handle, core.ErrorReply(core.VerbExec, e.ID, core.ErrCodeDisabled, "exec is disabled in this agent's configuration"))
		return
	}
	res := runtime.Exec(ctx, e.Args)
	s.reply(e.Handle, core.CommandReply{Schema: core.SchemaVersion, Verb: core.VerbExec, ID: e.ID, Exec: &res})
}

// flushReplies makes sure replies reached the server before an exit.
func (l *link) flushReplies() {
	if l.nc != nil && l.nc.Status() == nats.CONNECTED {
		_ = l.nc.FlushTimeout(2 * time.Second)
	}
}

// ---- start-up -------------------------------------------------------------

func (s *Shell) startInput() (agentcore.Start, error) {
	lay := s.o.Executor.Layout
	if err := lay.Init(); err != nil {
		return agentcore.Start{}, err
	}
	recs, err := s.o.Journal.Read()
	if !journal.Usable(err) { // the decision the simulator's start-up shares
		return agentcore.Start{}, err
	}
	if err != nil {
		s.log.Error("journal has a corrupt record; continuing with the intact ones", "err", err)
	}
	cur, err := lay.CurrentVersion()
	if err != nil {
		s.log.Error("current link unreadable", "err", err)
	}
	inst, err := lay.Installed()
	if err != nil {
		return agentcore.Start{}, err
	}
	return agentcore.Start{BootID: s.o.BootID, CandidateAttempt: s.o.CandidateAttempt,
		Journal: recs, Current: cur, Installed: inst}, nil
}

func level(l string) slog.Level {
	switch l {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func errStr(err error) string {
	if err == nil {
		return ""
	}
	return core.Truncate(err.Error(), core.MaxErrorLen)
}

func verStr(v core.Version) string {
	if v.IsZero() {
		return ""
	}
	return v.String()
}

// BootID reads the kernel's boot id (empty when unavailable).
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Push hands an input to the event loop from any goroutine (workload status
// callbacks wired up by the caller).
func (s *Shell) Push(in agentcore.Input) { s.push(in) }

// becomeActive runs once this process is the device's agent: it takes
// over running workloads (a candidate never touches them) and records its
// PID.
func (s *Shell) becomeActive() {
	if deps := s.o.Workload.Adopt(); len(deps) > 0 {
		s.log.Info("adopted running workloads", "deployments", deps)
	}
	s.writePIDFile()
}

// pidFile is run/agent.pid: the PID of the device's active agent, for
// operators and test harnesses (the PID changes with every upgrade).
func (s *Shell) pidFile() string { return filepath.Join(s.o.Executor.Layout.RunDir(), "agent.pid") }

func (s *Shell) writePIDFile() {
	tmp := s.pidFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err == nil {
		_ = os.Rename(tmp, s.pidFile())
	}
}

// removePIDFile removes run/agent.pid if it still names this process.
func (s *Shell) removePIDFile() {
	if b, err := os.ReadFile(s.pidFile()); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(s.pidFile())
	}
}
