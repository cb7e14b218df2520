package runcore

import (
	"errors"
	"fmt"

	"github.com/flotilla-fleet/flotilla/core"
)

// DecodeReply decodes a command reply and matches it to its request: a
// reply that does not decode, or answers another verb or request id, is an
// ErrBadReply; an agent's error reply is returned as its *core.CommandError.
// It is the one copy of this check (natsadapter.Command uses it too).
func DecodeReply(req core.CommandRequest, data []byte) (core.CommandReply, error) {
	reply, err := core.DecodeCommandReply(data)
	if err != nil {
		return core.CommandReply{}, err
	}
	if reply.Verb != req.Verb || (req.ID != "" && reply.ID != req.ID) {
		return core.CommandReply{}, &core.CommandError{Code: core.ErrCodeBadReply,
			Message: fmt.Sprintf("reply is for %s %q, want %s %q", reply.Verb, reply.ID, req.Verb, req.ID)}
	}
	if err := reply.Err(); err != nil {
		return reply, err
	}
	return reply, nil
}

// ErrorCode maps a command error onto the code opcore.CommandResult
// carries ("" for success).
func ErrorCode(err error) (core.ErrorCode, string) {
	if err == nil {
		return "", ""
	}
	var ce *core.CommandError
	if errors.As(err, &ce) {
		return ce.Code, ce.Message
	}
	return core.ErrCodeInternal, err.Error()
}
