package shell

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/agent/link"
)

// watch runs one creation of a KV watch, reporting its entries, the end of
// its replay (with the bucket's last revision when resuming) and its end.
func (n *natsSide) watch(w link.WatchID, gen uint32, bucket, filter string, from uint64, timeout time.Duration) {
	if c := n.watches[w].cancel; c != nil {
		c()
	}
	ctx, cancel := context.WithCancel(n.s.io)
	n.watches[w].gen, n.watches[w].cancel = gen, cancel
	push := n.s.push
	go func() {
		tctx, tcancel := context.WithTimeout(ctx, timeout)
		defer tcancel()
		kv, err := n.bucket(tctx, bucket)
		if err != nil {
			push(link.WatchFailed(w, gen, err))
			return
		}
		var opts []jetstream.WatchOpt
		var last uint64
		if from > 0 {
			opts = append(opts, jetstream.ResumeFromRevision(from))
			if st, err := kv.Status(tctx); err == nil {
				if si, ok := st.(*jetstream.KeyValueBucketStatus); ok {
					last = si.StreamInfo().State.LastSeq
				}
			}
		}
		watcher, err := kv.Watch(ctx, filter, opts...)
		if err != nil {
			push(link.WatchFailed(w, gen, kvErr(bucket, err)))
			return
		}
		defer watcher.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-watcher.Updates():
				switch {
				case !ok:
					if ctx.Err() == nil {
						push(link.WatchFailed(w, gen, errors.New("watcher closed")))
					}
					return
				case e == nil:
					push(link.WatchReplayed(w, gen, last))
				default:
					push(link.WatchEntry(w, gen, entry(e)))
				}
			}
		}
	}()
}

func entry(e jetstream.KeyValueEntry) link.Entry {
	le := link.Entry{Key: e.Key(), Value: e.Value(), Rev: e.Revision()}
	switch e.Operation() {
	case jetstream.KeyValueDelete:
		le.Op = link.OpDelete
	case jetstream.KeyValuePurge:
		le.Op = link.OpPurge
	}
	return le
}

func (n *natsSide) stopWatch(w link.WatchID, gen uint32) {
	if n.watches[w].gen == gen && n.watches[w].cancel != nil {
		n.watches[w].cancel()
		n.watches[w].cancel = nil
	}
}

// respond answers a command message (a request without a reply subject
// gets nothing).
func (n *natsSide) respond(reply any, data []byte) {
	m, ok := reply.(*nats.Msg)
	if !ok || m.Reply == "" {
		return
	}
	if err := m.Respond(data); err != nil {
		n.s.log.Warn("command reply", "subject", m.Subject, "err", err)
	}
}

// flushReplies makes sure replies reached the server before an exit.
func (n *natsSide) flushReplies() {
	if n.nc != nil && n.nc.Status() == nats.CONNECTED {
		_ = n.nc.FlushTimeout(2 * time.Second)
	}
}

func (n *natsSide) close() {
	for i := range n.watches {
		if c := n.watches[i].cancel; c != nil {
			c()
		}
	}
	if n.sub != nil {
		_ = n.sub.Unsubscribe()
	}
	if n.nc != nil {
		n.nc.Close()
	}
}
