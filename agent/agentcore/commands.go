package agentcore

import (
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// onCommand answers a request on device-commands.<device>.<verb>. Only the
// active agent answers; a candidate (and a retired one) stays silent, since
// both processes subscribe to the same subjects.
func (a *Agent) onCommand(now time.Time, c CommandReceived) {
	if plantedBuild && planted(BugCandidateObeysStop) && a.role == RoleCandidate && c.Verb == core.VerbUpgradeStop && c.Request.UpgradeStop != nil {
		a.plantedCandidateStop(c)
		return
	}
	if a.role != RoleActive {
		return
	}
	if c.DecodeErr != "" {
		a.reply(c.Handle, core.ErrorReply(c.Verb, "", core.ErrCodeBadRequest, "%s", c.DecodeErr))
		return
	}
	req := c.Request
	// Validate clamps in place: work on copies, not the caller's values.
	if req.Logs != nil {
		l := *req.Logs
		req.Logs = &l
	}
	if req.Exec != nil {
		e := *req.Exec
		req.Exec = &e
	}
	if req.Verb != c.Verb {
		a.reply(c.Handle, core.ErrorReply(c.Verb, req.ID, core.ErrCodeBadRequest,
			"body says verb %q but it arrived on the %q subject", req.Verb, c.Verb))
		return
	}
	if err := req.Validate(); err != nil { // also clamps limits into range
		if req.Verb == core.VerbUpgradeStop {
			return // not addressed to anyone armed: ignored without a reply
		}
		a.reply(c.Handle, core.ErrorReply(c.Verb, req.ID, core.ErrCodeBadRequest, "%v", err))
		return
	}
	if req.Verb == core.VerbUpgradeStop {
		a.onUpgradeStop(c)
		return
	}
	if !a.ready {
		a.reply(c.Handle, core.ErrorReply(req.Verb, req.ID, core.ErrCodeRejected, "agent is starting up"))
		return
	}
	switch req.Verb {
	case core.VerbPing:
		a.reply(c.Handle, core.CommandReply{Schema: core.SchemaVersion, Verb: core.VerbPing, ID: req.ID,
			Ping: &core.PingResult{Device: a.cfg.Device, AgentVersion: a.cfg.Version, UptimeSec: a.uptime(now)}})
	case core.VerbLogs:
		args := *req.Logs
		args.Lines = core.ClampLogLines(args.Lines)
		a.emit(FetchLogs{Handle: c.Handle, ID: req.ID, Args: args})
	case core.VerbExec:
		if !a.cfg.ExecAllowed {
			a.reply(c.Handle, core.ErrorReply(core.VerbExec, req.ID, core.ErrCodeDisabled,
				"exec is disabled on device %s", a.cfg.Device))
			return
		}
		args := *req.Exec
		args.Command = append([]string(nil), args.Command...)
		a.emit(RunExec{Handle: c.Handle, ID: req.ID, Args: args})
	}
}

func (a *Agent) reply(h uint64, r core.CommandReply) {
	a.emit(Reply{Handle: h, Reply: r})
}
