package runner

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/operator/natsadapter"
	"github.com/flotilla-fleet/flotilla/operator/runcore"
)

// executor carries out runcore actions: each NATS call and object write on
// a goroutine of its own, its outcome posted back as an event.
type executor struct {
	ctx     context.Context
	r       *Runner
	js      jetstream.JetStream
	mu      sync.Mutex
	kv      map[string]jetstream.KeyValue
	watches map[string]context.CancelFunc // bucket → the current watch's stop
}

func newExecutor(ctx context.Context, r *Runner) *executor {
	js, _ := jetstream.New(r.opts.NATS) // fails only on invalid options
	return &executor{ctx: ctx, r: r, js: js, kv: map[string]jetstream.KeyValue{}, watches: map[string]context.CancelFunc{}}
}

func (x *executor) post(ev runcore.Event) { x.r.post(x.ctx, ev) }

func (x *executor) bucket(name string) jetstream.KeyValue {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.kv[name]
}

// do carries out one action (ArmTimer is the runner's).
func (x *executor) do(a runcore.Action) {
	r := x.r
	switch a := a.(type) {
	case runcore.Log:
		r.log.Log(x.ctx, a.Level, a.Msg, a.Args...)
	case runcore.OpenBucket:
		r.goDo(func() {
			ctx, cancel := context.WithTimeout(x.ctx, a.Timeout)
			defer cancel()
			kv, err := natsadapter.OpenBucket(ctx, x.js, a.Bucket, a.Create, r.opts.Storage, r.opts.Replicas)
			if err != nil {
				x.post(runcore.BucketOpened{Bucket: a.Bucket, Err: err.Error()})
				return
			}
			x.mu.Lock()
			x.kv[a.Bucket] = kv
			x.mu.Unlock()
			x.post(runcore.BucketOpened{Bucket: a.Bucket})
		})
	case runcore.CreateWatch:
		ctx, cancel := context.WithCancel(x.ctx)
		x.watches[a.Bucket] = cancel
		r.goDo(func() { x.watch(ctx, cancel, a) })
	case runcore.StopWatch:
		if stop := x.watches[a.Bucket]; stop != nil {
			stop()
			delete(x.watches, a.Bucket)
		}
	case runcore.Write:
		r.goDo(func() {
			ctx, cancel := context.WithTimeout(x.ctx, a.Timeout)
			defer cancel()
			var err error
			kv := x.bucket(a.Bucket)
			switch {
			case kv == nil:
				err = jetstream.ErrBucketNotFound
			case a.Delete:
				if err = kv.Delete(ctx, a.Key); errors.Is(err, jetstream.ErrKeyNotFound) {
					err = nil
				}
			default:
				_, err = kv.Put(ctx, a.Key, a.Value)
			}
			op := "put"
			if a.Delete {
				op = "delete"
			}
			r.opts.Metrics.kvOp(op, err)
			x.post(runcore.WriteDone{Token: a.Token, Outcome: natsadapter.Classify(err), Err: errString(err)})
		})
	case runcore.Get:
		r.goDo(func() {
			ctx, cancel := context.WithTimeout(x.ctx, a.Timeout)
			defer cancel()
			kv := x.bucket(a.Bucket)
			if kv == nil {
				x.post(runcore.GetDone{Token: a.Token, Outcome: runcore.Failed, Err: "bucket not open"})
				return
			}
			e, err := kv.Get(ctx, a.Key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				x.post(runcore.GetDone{Token: a.Token, Outcome: runcore.NotFound})
			case err != nil:
				x.post(runcore.GetDone{Token: a.Token, Outcome: natsadapter.Classify(err), Err: err.Error()})
			default:
				x.post(runcore.GetDone{Token: a.Token, Outcome: runcore.OK, Value: e.Value()})
			}
		})
	case runcore.Request:
		r.goDo(func() {
			ctx, cancel := context.WithTimeout(x.ctx, a.Timeout)
			defer cancel()
			msg, err := r.opts.NATS.RequestWithContext(ctx, a.Subject, a.Data)
			switch {
			case err == nil:
				x.post(runcore.ReplyDone{Token: a.Token, Outcome: runcore.OK, Data: msg.Data})
			case errors.Is(err, nats.ErrNoResponders):
				x.post(runcore.ReplyDone{Token: a.Token, Outcome: runcore.NoResponders, Err: err.Error()})
			default:
				x.post(runcore.ReplyDone{Token: a.Token, Outcome: natsadapter.Classify(err), Err: err.Error()})
			}
		})
	case runcore.ApplyObject:
		r.goDo(func() {
			err := r.opts.Store.Apply(x.ctx, a.Effect)
			x.post(runcore.ObjectDone{Token: a.Token, Err: errString(err)})
		})
	}
}

// watch creates one watch (failing it if creation outlasts its timeout) and
// forwards its entries until it is stopped or ends.
func (x *executor) watch(ctx context.Context, cancel context.CancelFunc, a runcore.CreateWatch) {
	kv := x.bucket(a.Bucket)
	if kv == nil {
		x.post(runcore.WatchFailed{Bucket: a.Bucket, Gen: a.Gen, Err: "bucket not open"})
		return
	}
	var opts []jetstream.WatchOpt
	if a.From > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(a.From))
	}
	t := time.AfterFunc(a.Timeout, cancel)
	w, err := kv.WatchAll(ctx, opts...)
	t.Stop()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		x.post(runcore.WatchFailed{Bucket: a.Bucket, Gen: a.Gen, Err: err.Error()})
		return
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				if ctx.Err() == nil {
					x.post(runcore.WatchFailed{Bucket: a.Bucket, Gen: a.Gen, Err: "watch closed"})
				}
				return
			case e == nil:
				x.post(runcore.WatchReplayed{Bucket: a.Bucket, Gen: a.Gen})
			default:
				x.post(runcore.WatchEntry{Bucket: a.Bucket, Gen: a.Gen, Key: e.Key(), Value: e.Value(),
					Revision: e.Revision(), Delete: e.Operation() != jetstream.KeyValuePut})
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
