package core

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Verb is a command an operator can send to a device.
type Verb string

const (
	VerbPing        Verb = "ping"
	VerbLogs        Verb = "logs"
	VerbExec        Verb = "exec"
	VerbUpgradeStop Verb = "upgrade-stop"
)

// Verbs lists every verb.
var Verbs = []Verb{VerbPing, VerbLogs, VerbExec, VerbUpgradeStop}

// Valid reports whether v is a known verb.
func (v Verb) Valid() bool { return slices.Contains(Verbs, v) }

func verbList() string {
	s := make([]string, len(Verbs))
	for i, v := range Verbs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

// Limits on command arguments. Requests outside them are clamped, not
// rejected: an operator asking for a million log lines gets MaxLogLines.
const (
	DefaultLogLines    = 100
	MaxLogLines        = 5000
	DefaultExecTimeout = 10_000    // ms
	MaxExecTimeout     = 300_000   // ms
	MaxExecOutput      = 256 << 10 // bytes, stdout and stderr together
	MaxExecArgs        = 64
)

// LogsArgs asks for the last Lines lines of a deployment's workload log (or
// the agent's own log when Deployment is empty).
type LogsArgs struct {
	Deployment string `json:"deployment,omitempty"`
	Lines      int    `json:"lines,omitempty"`
}

// ExecArgs runs a command on the device (only when the agent's config allows
// it) with a deadline and an output cap.
type ExecArgs struct {
	Command   []string `json:"command"`
	TimeoutMS int      `json:"timeout_ms,omitempty"`
	MaxOutput int      `json:"max_output,omitempty"`
}

// UpgradeStopArgs tells the old agent of an attempt that the operator has
// seen the new version's heartbeat and that it may exit.
type UpgradeStopArgs struct {
	Attempt       uint32  `json:"attempt"`
	TargetVersion Version `json:"target_version"`
}

// CommandRequest is the body of a request on device-commands.<device>.<verb>.
// Exactly the argument field of its verb is set (none for ping).
type CommandRequest struct {
	Schema      int              `json:"schema"`
	Verb        Verb             `json:"verb"`
	ID          string           `json:"id,omitempty"` // caller's request id, echoed in the reply
	Logs        *LogsArgs        `json:"logs,omitempty"`
	Exec        *ExecArgs        `json:"exec,omitempty"`
	UpgradeStop *UpgradeStopArgs `json:"upgrade_stop,omitempty"`
}

// Validate checks the request and clamps its limits into range.
func (r *CommandRequest) Validate() error {
	if !r.Verb.Valid() {
		return fieldErr("verb", "unknown verb %q (want one of %s)", r.Verb, verbList())
	}
	if len(r.ID) > 128 {
		return fieldErr("id", "longer than 128 bytes")
	}
	set := 0
	for _, p := range []bool{r.Logs != nil, r.Exec != nil, r.UpgradeStop != nil} {
		if p {
			set++
		}
	}
	want := map[Verb]bool{VerbPing: r.Logs == nil && r.Exec == nil && r.UpgradeStop == nil,
		VerbLogs: r.Logs != nil, VerbExec: r.Exec != nil, VerbUpgradeStop: r.UpgradeStop != nil}
	if set > 1 || !want[r.Verb] {
		if r.Verb == VerbPing {
			return fieldErr("verb", "ping takes no arguments")
		}
		return fieldErr(argsField(r.Verb), "required for verb %s (and no other argument object)", r.Verb)
	}
	switch r.Verb {
	case VerbLogs:
		if r.Logs.Deployment != "" {
			if err := ValidateDeploymentName(r.Logs.Deployment); err != nil {
				return fieldErr("logs.deployment", "%v", err)
			}
		}
		r.Logs.Lines = ClampLogLines(r.Logs.Lines)
	case VerbExec:
		if len(r.Exec.Command) == 0 || r.Exec.Command[0] == "" {
			return fieldErr("exec.command", "must name a program")
		}
		if len(r.Exec.Command) > MaxExecArgs {
			return fieldErr("exec.command", "more than %d arguments", MaxExecArgs)
		}
		r.Exec.TimeoutMS = clamp(r.Exec.TimeoutMS, DefaultExecTimeout, 1, MaxExecTimeout)
		r.Exec.MaxOutput = clamp(r.Exec.MaxOutput, MaxExecOutput, 1, MaxExecOutput)
	case VerbUpgradeStop:
		if r.UpgradeStop.Attempt == 0 {
			return fieldErr("upgrade_stop.attempt", "must be at least 1")
		}
		if r.UpgradeStop.TargetVersion.IsZero() {
			return fieldErr("upgrade_stop.target_version", "required")
		}
	}
	return nil
}

func argsField(v Verb) string {
	if v == VerbUpgradeStop {
		return "upgrade_stop"
	}
	return string(v)
}

// ClampLogLines maps a requested line count into [1, MaxLogLines]; zero or
// negative means DefaultLogLines.
func ClampLogLines(n int) int { return clamp(n, DefaultLogLines, 1, MaxLogLines) }

func clamp(n, def, lo, hi int) int {
	if n <= 0 {
		n = def
	}
	return max(lo, min(n, hi))
}

// Encode validates (clamping limits) and marshals the request.
func (r CommandRequest) Encode() ([]byte, error) {
	r.Schema = SchemaVersion
	// Validate clamps the argument objects: clamp copies, never the
	// caller's (possibly shared) values.
	if r.Logs != nil {
		l := *r.Logs
		r.Logs = &l
	}
	if r.Exec != nil {
		e := *r.Exec
		r.Exec = &e
	}
	return encode("command request", &r)
}

// DecodeCommandRequest parses a request that arrived on the subject of verb;
// a body whose verb disagrees with the subject is rejected.
func DecodeCommandRequest(verb Verb, data []byte) (CommandRequest, error) {
	var r CommandRequest
	if err := decode("command request", "schema", data, &r); err != nil {
		return CommandRequest{}, err
	}
	if r.Verb != verb {
		return CommandRequest{}, &DecodeError{Kind: "command request", Field: "verb",
			Err: fmt.Errorf("body says %q but the subject says %q", r.Verb, verb)}
	}
	return r, nil
}

// ErrorCode classifies a failed command.
type ErrorCode string

const (
	// Set by the caller's side:
	ErrCodeOffline  ErrorCode = "offline"   // no agent subscribed (no responders)
	ErrCodeTimeout  ErrorCode = "timeout"   // no reply before the deadline
	ErrCodeBadReply ErrorCode = "bad-reply" // a reply that does not decode
	// Set by the agent in a reply:
	ErrCodeRejected   ErrorCode = "rejected"    // understood but refused (state does not allow it)
	ErrCodeBadRequest ErrorCode = "bad-request" // the request does not decode
	ErrCodeDisabled   ErrorCode = "disabled"    // the verb is disabled by configuration (exec)
	ErrCodeInternal   ErrorCode = "internal"    // the agent failed to carry it out
)

var errorCodes = []ErrorCode{ErrCodeOffline, ErrCodeTimeout, ErrCodeBadReply, ErrCodeRejected,
	ErrCodeBadRequest, ErrCodeDisabled, ErrCodeInternal}

// Valid reports whether c is a known code.
func (c ErrorCode) Valid() bool { return slices.Contains(errorCodes, c) }

// CommandError is a typed command failure, usable with errors.Is against the
// Err* sentinels below.
type CommandError struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message,omitempty"`
}

func (e *CommandError) Error() string {
	if e.Message == "" {
		return "command failed: " + string(e.Code)
	}
	return fmt.Sprintf("command failed: %s: %s", e.Code, e.Message)
}

// Is matches any CommandError with the same code.
func (e *CommandError) Is(target error) bool {
	var t *CommandError
	return errors.As(target, &t) && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrOffline    = &CommandError{Code: ErrCodeOffline}
	ErrTimeout    = &CommandError{Code: ErrCodeTimeout}
	ErrBadReply   = &CommandError{Code: ErrCodeBadReply}
	ErrRejected   = &CommandError{Code: ErrCodeRejected}
	ErrBadRequest = &CommandError{Code: ErrCodeBadRequest}
	ErrDisabled   = &CommandError{Code: ErrCodeDisabled}
	ErrInternal   = &CommandError{Code: ErrCodeInternal}
)

// PingResult answers ping.
type PingResult struct {
	Device       string  `json:"device"`
	AgentVersion Version `json:"agent_version"`
	UptimeSec    uint32  `json:"uptime_s"`
	// Candidate is set when the replying agent is an upgrade candidate.
	Candidate bool `json:"candidate,omitempty"`
}

// LogsResult answers logs.
type LogsResult struct {
	Lines     []string `json:"lines"`
	Truncated bool     `json:"truncated,omitempty"` // more lines existed
}

// ExecResult answers exec.
type ExecResult struct {
	ExitCode  int    `json:"exit_code"`
	Stdout    string `json:"stdout,omitempty"`
	Stderr    string `json:"stderr,omitempty"`
	Truncated bool   `json:"truncated,omitempty"` // output hit the cap
	TimedOut  bool   `json:"timed_out,omitempty"`
}

// UpgradeStopResult answers upgrade-stop: the old agent committed the
// attempt and exits right after replying.
type UpgradeStopResult struct {
	Attempt        uint32  `json:"attempt"`
	CommittedTo    Version `json:"committed_to"`
	ExitingVersion Version `json:"exiting_version"`
}

// CommandReply is the body of every reply: Error, or the result of the verb.
type CommandReply struct {
	Schema      int                `json:"schema"`
	Verb        Verb               `json:"verb"`
	ID          string             `json:"id,omitempty"`
	Error       *CommandError      `json:"error,omitempty"`
	Ping        *PingResult        `json:"ping,omitempty"`
	Logs        *LogsResult        `json:"logs,omitempty"`
	Exec        *ExecResult        `json:"exec,omitempty"`
	UpgradeStop *UpgradeStopResult `json:"upgrade_stop,omitempty"`
}

// Validate checks that the reply carries an error or the verb's result.
func (r *CommandReply) Validate() error {
	if !r.Verb.Valid() {
		return fieldErr("verb", "unknown verb %q", r.Verb)
	}
	// A zero version would encode as "v0.0.0" and decode as a different
	// value: results that carry versions must carry real ones.
	if r.Ping != nil && r.Ping.AgentVersion.IsZero() {
		return fieldErr("ping.agent_version", "required")
	}
	if u := r.UpgradeStop; u != nil {
		switch {
		case u.Attempt == 0:
			return fieldErr("upgrade_stop.attempt", "must be at least 1")
		case u.CommittedTo.IsZero():
			return fieldErr("upgrade_stop.committed_to", "required")
		case u.ExitingVersion.IsZero():
			return fieldErr("upgrade_stop.exiting_version", "required")
		}
	}
	if r.Error != nil {
		if !r.Error.Code.Valid() {
			return fieldErr("error.code", "unknown error code %q", r.Error.Code)
		}
		return nil
	}
	ok := map[Verb]bool{VerbPing: r.Ping != nil, VerbLogs: r.Logs != nil, VerbExec: r.Exec != nil,
		VerbUpgradeStop: r.UpgradeStop != nil}[r.Verb]
	if !ok {
		return fieldErr(argsField(r.Verb), "missing result for verb %s", r.Verb)
	}
	if r.Exec != nil && len(r.Exec.Stdout)+len(r.Exec.Stderr) > MaxExecOutput {
		return fieldErr("exec", "output exceeds %d bytes", MaxExecOutput)
	}
	return nil
}

// Err returns the reply's error as a Go error, or nil.
func (r CommandReply) Err() error {
	if r.Error == nil {
		return nil
	}
	return r.Error
}

// Encode validates and marshals the reply.
func (r CommandReply) Encode() ([]byte, error) {
	r.Schema = SchemaVersion
	return encode("command reply", &r)
}

// DecodeCommandReply parses a reply; a reply that does not decode is an
// ErrBadReply for the caller.
func DecodeCommandReply(data []byte) (CommandReply, error) {
	var r CommandReply
	if err := decode("command reply", "schema", data, &r); err != nil {
		return CommandReply{}, &CommandError{Code: ErrCodeBadReply, Message: err.Error()}
	}
	return r, nil
}

// ErrorReply builds the reply for a failed request.
func ErrorReply(verb Verb, id string, code ErrorCode, format string, args ...any) CommandReply {
	if !verb.Valid() {
		verb = VerbPing
	}
	return CommandReply{Schema: SchemaVersion, Verb: verb, ID: id,
		Error: &CommandError{Code: code, Message: Truncate(fmt.Sprintf(format, args...), MaxErrorLen)}}
}
