package shell

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/agent/executor"
	"github.com/flotilla-fleet/flotilla/agent/link"
	"github.com/flotilla-fleet/flotilla/agent/runtime"
	"github.com/flotilla-fleet/flotilla/core"
)

// inline carries out an effect the link wants completed before anything
// after it (journal append, swap, preserve, candidate start/stop, removal,
// journal read) and returns the event that reports it.
func (s *Shell) inline(e agentcore.Effect) link.Event {
	switch e := e.(type) {
	case agentcore.AppendJournal:
		err := s.o.Journal.Append(e.Record)
		if err == nil {
			s.log.Info("journal", "kind", e.Record.Kind, "attempt", e.Record.Attempt, "from", verStr(e.Record.From),
				"to", verStr(e.Record.To), "reason", e.Record.Reason)
		}
		return link.Done(err)
	case agentcore.SwapCurrent:
		began := time.Now()
		err := s.o.Executor.Swap(e.To)
		s.stepLog("swap", e.Attempt, began, err)
		return link.Done(err)
	case agentcore.PreserveRunning:
		return link.Done(s.o.Executor.Preserve(e.Version, s.o.Self))
	case agentcore.StartCandidate:
		began := time.Now()
		attempt := e.Attempt
		err := s.o.Executor.StartCandidate(s.io, attempt, e.Version, func(detail string) {
			s.push(link.Input(agentcore.CandidateExited{Attempt: attempt, Detail: core.Truncate(detail, core.MaxErrorLen)}))
		})
		s.stepLog("start-candidate", e.Attempt, began, err)
		return link.Done(err)
	case agentcore.StopCandidate:
		ctx, cancel := context.WithTimeout(s.io, 15*time.Second)
		defer cancel()
		return link.Done(s.o.Executor.StopCandidate(ctx, e.Attempt))
	case agentcore.RemoveVersion:
		return link.Done(s.o.Executor.Remove(e.Version))
	case agentcore.ReadJournal:
		return link.JournalDone(s.o.Journal.Read())
	}
	return link.Done(fmt.Errorf("unknown inline effect %T", e))
}

// run starts an asynchronous effect; its result comes back as an event.
func (s *Shell) run(e agentcore.Effect) {
	switch e := e.(type) {
	case agentcore.Log:
		s.log.Log(s.io, level(e.Level), e.Msg, e.Attrs...)
	case agentcore.StartWorkload:
		s.o.Workload.Start(s.io, e.Spec)
	case agentcore.StopWorkload:
		s.o.Workload.Stop(s.io, e.Deployment)
	case agentcore.Download:
		go func() {
			began := time.Now()
			err := s.o.Executor.Download(s.io, e.Version, e.Artifact)
			s.stepLog("download", e.Attempt, began, err)
			done := agentcore.DownloadDone{Attempt: e.Attempt}
			if err != nil {
				done.Err = core.Truncate(err.Error(), core.MaxErrorLen)
				done.Reason = core.ReasonDownloadFailed
				var fe *executor.FetchError
				if errors.As(err, &fe) {
					done.Reason = fe.Reason
				}
			}
			s.push(link.Input(done))
		}()
	case agentcore.SelfTest:
		go func() {
			began := time.Now()
			err := s.o.Executor.SelfTest(s.io, e.Version)
			s.stepLog("self-test", e.Attempt, began, err)
			s.push(link.Input(agentcore.SelfTestDone{Attempt: e.Attempt, Err: errStr(err)}))
		}()
	case agentcore.FetchLogs:
		go func() { s.push(link.CommandResult(e.Handle, s.logs(e))) }()
	case agentcore.RunExec:
		go func() {
			res := runtime.Exec(s.io, e.Args)
			s.push(link.CommandResult(e.Handle, core.CommandReply{Schema: core.SchemaVersion, Verb: core.VerbExec, ID: e.ID, Exec: &res}))
		}()
	default:
		s.log.Warn("unknown effect ignored", "effect", fmt.Sprintf("%T", e))
	}
}

func (s *Shell) logs(e agentcore.FetchLogs) core.CommandReply {
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
		lines, trunc, err = s.o.Workload.Logs(s.io, e.Args.Deployment, n)
	}
	if err != nil {
		return core.ErrorReply(core.VerbLogs, e.ID, core.ErrCodeRejected, "%v", err)
	}
	if lines == nil {
		lines = []string{}
	}
	return core.CommandReply{Schema: core.SchemaVersion, Verb: core.VerbLogs, ID: e.ID,
		Logs: &core.LogsResult{Lines: lines, Truncated: trunc}}
}

// stepLog logs how long an upgrade step took (the numbers in docs/agent.md
// come from these lines).
func (s *Shell) stepLog(step string, attempt uint32, began time.Time, err error) {
	s.log.Info("upgrade step", "step", step, "attempt", attempt, "ms", time.Since(began).Milliseconds(), "err", errStr(err))
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
