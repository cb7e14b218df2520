package link

import (
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
)

// handle is a command waiting for the core's answer.
type handle struct {
	h     uint64
	reply any // the adapter's reply handle
	at    time.Time
}

// command decodes a request and hands it to the core under a new handle. A
// subject that does not parse is answered at once.
func (l *Link) command(subject string, data []byte, reply any) {
	_, verb, err := core.ParseCommandSubject(subject)
	if err != nil {
		l.respond(reply, core.ErrorReply(core.VerbPing, "", core.ErrCodeBadRequest, "%v", err))
		return
	}
	if l.halted {
		return // exiting: the next agent answers
	}
	req, derr := core.DecodeCommandRequest(verb, data)
	l.nextHandle++
	l.handles = append(l.handles, handle{h: l.nextHandle, reply: reply, at: l.now})
	in := agentcore.CommandReceived{Handle: l.nextHandle, Verb: verb, Request: req}
	if derr != nil {
		in.DecodeErr = core.Truncate(derr.Error(), core.MaxErrorLen)
	}
	l.deliver(in)
}

// respondTo answers the command of handle h.
func (l *Link) respondTo(h uint64, r core.CommandReply) {
	for i := range l.handles {
		if l.handles[i].h == h {
			reply := l.handles[i].reply
			l.handles = append(l.handles[:i], l.handles[i+1:]...)
			l.respond(reply, r)
			return
		}
	}
	l.log("warn", "reply to an unknown command handle", "handle", h)
}

func (l *Link) respond(reply any, r core.CommandReply) {
	b, err := r.Encode()
	if err != nil {
		b, _ = core.ErrorReply(r.Verb, r.ID, core.ErrCodeInternal, "encode reply: %v", err).Encode()
	}
	l.emit(Action{Kind: ActRespond, Reply: reply, Data: b})
}

// forgetHandles drops commands the core chose not to answer (a candidate
// ignores them; the old agent answers) once HandleTTL has passed.
func (l *Link) forgetHandles() {
	n := 0
	for n < len(l.handles) && l.now.Sub(l.handles[n].at) > HandleTTL {
		n++
	}
	if n > 0 {
		l.handles = append(l.handles[:0], l.handles[n:]...)
	}
}
