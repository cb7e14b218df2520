// Package shell is the agent's production adapter: it carries out the
// actions of one agent/link state machine (which owns the agentcore
// decision core) against NATS (nats.go + JetStream KV), the filesystem
// (agent/journal, agent/executor), the workload runtimes (agent/runtime)
// and timers, and feeds what happened back as link events.
//
// One goroutine — the event loop in Run — calls Step; every I/O goroutine
// (KV writes and watches, the command subscription, timers, downloads, the
// candidate watcher, workload supervisors) only sends events to it over a
// channel. The shell holds no decisions: retries, revisions, ordering,
// command handles and who is the active agent are the link's (see
// docs/adr/0101-agent-link-state-machine.md).
package shell

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/agent/executor"
	"github.com/flotilla-fleet/flotilla/agent/journal"
	"github.com/flotilla-fleet/flotilla/agent/link"
	"github.com/flotilla-fleet/flotilla/agent/runtime"
	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/internal/wallclock"
)

// Core is the decision core the shell's link drives (agentcore.Agent).
type Core = link.Core

// Options wires one shell.
type Options struct {
	Device           string
	Version          core.Version
	CandidateAttempt uint32
	ExecAllowed      bool // the core decides; kept for the caller's configuration

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
	lk     *link.Link
	events chan link.Event
	done   chan struct{} // closed when Run returns
	stopMu sync.Once
	io     context.Context // NATS and executor calls; ends after Run
	nats   natsSide
	timers [link.NumTimers]*time.Timer
}

// ErrReexecFailed is returned by Run when a Reexec could not replace the
// process.
var ErrReexecFailed = errors.New("re-exec failed")

// New prepares a shell.
func New(o Options) *Shell {
	if o.Clock == nil {
		o.Clock = wallclock.Clock{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Shell{o: o, log: o.Log, events: make(chan link.Event, 1024), done: make(chan struct{})}
	s.lk = link.New(link.Config{Device: o.Device, Version: o.Version, CandidateAttempt: o.CandidateAttempt,
		Core: o.Core, Seed: uint64(time.Now().UnixNano())})
	s.nats.s = s
	return s
}

func (s *Shell) stop() { s.stopMu.Do(func() { close(s.done) }) }

// push hands an event to the event loop from any goroutine; after Run has
// returned it drops the event.
func (s *Shell) push(ev link.Event) {
	select {
	case s.events <- ev:
	case <-s.done:
	}
}

// Push hands a core input to the event loop from any goroutine (workload
// status callbacks wired up by the caller).
func (s *Shell) Push(in agentcore.Input) { s.push(link.Input(in)) }

// Run delivers Start and runs until ctx ends (returns 0 once the outbox
// drained, at most 2 s) or the core emits Exit (returns its code). A
// successful Reexec does not return.
func (s *Shell) Run(ctx context.Context) (int, error) {
	io, cancelIO := context.WithCancel(context.Background())
	s.io = io
	defer func() {
		s.stopTimers()
		s.nats.close()
		cancelIO()
		s.stop()
	}()
	defer s.removePIDFile()
	start, err := s.startInput()
	if err != nil {
		return 1, err
	}
	s.log.Info("agent starting", "version", s.o.Version.String(),
		"candidate_attempt", s.o.CandidateAttempt, "current", verStr(start.Current), "journal_records", len(start.Journal))
	stopping := ctx.Done()
	ev := link.Started(start)
	for {
		if end, code, err := s.handle(ev); end {
			return code, err
		}
		select {
		case <-stopping:
			s.log.Info("agent stopping", "reason", context.Cause(ctx))
			stopping = nil
			ev = link.Stop()
		case ev = <-s.events:
		}
	}
}

// handle steps the link with ev and carries out its actions; an inline
// action's result is stepped in at once. It reports whether the process
// must end.
func (s *Shell) handle(ev link.Event) (bool, int, error) {
	for {
		acts := s.lk.Step(s.o.Clock.Now(), ev)
		var next link.Event
		for i := range acts {
			r, end, code, err := s.do(&acts[i])
			if end {
				return true, code, err
			}
			if r.Kind != 0 {
				next = r
			}
		}
		if next.Kind == 0 {
			return false, 0, nil
		}
		ev = next
	}
}

// do carries out one action. An inline action returns the event that
// reports it.
func (s *Shell) do(a *link.Action) (link.Event, bool, int, error) {
	switch a.Kind {
	case link.ActConnect:
		if err := s.nats.connect(); err != nil {
			return link.Event{}, true, 1, err
		}
	case link.ActBecomeActive:
		if deps := s.o.Workload.Adopt(); len(deps) > 0 {
			s.log.Info("adopted running workloads", "deployments", deps)
		}
		s.writePIDFile()
	case link.ActWrite:
		s.nats.write(a.Token, a.Bucket, a.Key, a.Value, a.Delete, a.Timeout)
	case link.ActCreateBucket:
		s.nats.createBucket(a.Bucket, a.Timeout)
	case link.ActCreateWatch:
		s.nats.watch(a.Watch, a.Gen, a.Bucket, a.Filter, a.From, a.Timeout)
	case link.ActStopWatch:
		s.nats.stopWatch(a.Watch, a.Gen)
	case link.ActRespond:
		s.nats.respond(a.Reply, a.Data)
	case link.ActArmTimer:
		if t := s.timers[a.Timer]; t != nil {
			t.Stop()
		}
		id, gen := a.Timer, a.Gen
		s.timers[a.Timer] = time.AfterFunc(a.After, func() { s.push(link.Fired(id, gen)) })
	case link.ActCancelTimer:
		if t := s.timers[a.Timer]; t != nil {
			t.Stop()
			s.timers[a.Timer] = nil
		}
	case link.ActRun:
		s.run(a.Effect)
	case link.ActInline:
		return s.inline(a.Effect), false, 0, nil
	case link.ActStopWorkloadsExcept:
		keep := make(map[string]bool, len(a.Deployments))
		for _, d := range a.Deployments {
			keep[d] = true
		}
		if gone := s.o.Workload.StopExcept(s.io, keep); len(gone) > 0 {
			s.log.Info("stopped workloads without desired state", "deployments", gone)
		}
	case link.ActExit:
		code, err := s.exit(a)
		return link.Event{}, true, code, err
	}
	return link.Event{}, false, 0, nil
}

func (s *Shell) exit(a *link.Action) (int, error) {
	s.stopTimers()
	s.nats.flushReplies()
	if s.o.Detach != nil {
		s.o.Detach()
	}
	if r, ok := a.Effect.(agentcore.Reexec); ok {
		s.log.Info("re-exec", "version", r.Version.String(), "reason", r.Reason)
		err := s.o.Executor.Reexec(r.Version)
		s.log.Error("re-exec failed; exiting", "err", fmt.Errorf("%w: %w", ErrReexecFailed, err))
		return a.Code, nil
	}
	if x, ok := a.Effect.(agentcore.Exit); ok {
		s.log.Info("exiting", "code", x.Code, "reason", x.Reason)
	}
	return a.Code, nil
}

func (s *Shell) stopTimers() {
	for i, t := range s.timers {
		if t != nil {
			t.Stop()
			s.timers[i] = nil
		}
	}
}
