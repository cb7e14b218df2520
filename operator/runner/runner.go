// Package runner wires the operator's decision core (opcore) to NATS
// (natsadapter) and to an object store: Kubernetes through controller-runtime
// (operator/controller), or the in-memory MemStore for tests that need no
// Kubernetes. It is the one entry point for running an operator:
//
//	ad, _ := natsadapter.New(ctx, nc, natsadapter.Options{CreateBuckets: true})
//	store := runner.NewMemStore()
//	r := runner.New(runner.Options{NATS: ad, Store: store})
//	go r.Run(ctx)
//
// One goroutine owns the core. Watch events, object events, command
// results and ticks are queued to it; it carries out effects in order:
// KV writes and object writes synchronously, commands asynchronously (their
// outcome comes back as an input).
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/internal/wallclock"
	"github.com/flotilla-fleet/flotilla/operator/natsadapter"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

// Store is the object side of the operator: Deployments, Devices and
// AgentRollouts.
type Store interface {
	// Run delivers every existing object as an *Upsert input, then
	// opcore.CachesSynced, then changes as they happen, until ctx ends.
	Run(ctx context.Context, sink func(opcore.Input)) error
	// Apply carries out an object effect: PatchDeploymentStatus,
	// PatchDeviceStatus, PatchAgentRolloutStatus, CreateDevice,
	// PatchDeviceLabels, RemoveFinalizer or Notice.
	Apply(ctx context.Context, e opcore.Effect) error
}

// Options configure a Runner.
type Options struct {
	NATS  *natsadapter.Adapter
	Store Store
	Core  opcore.Config
	// TickInterval between Tick inputs; default Core.TickInterval (1s).
	TickInterval time.Duration
	// CommandTimeout bounds each device command; default 5s.
	CommandTimeout time.Duration
	Clock          core.Clock
	Logger         *slog.Logger
	Metrics        *Metrics
	// ObjectWriters is how many goroutines write objects (statuses,
	// labels, finalizers, events) in parallel; writes to one object stay in
	// order. Default 4.
	ObjectWriters int
	// Observe, if set, sees every input and the effects it produced, on the
	// core's goroutine (tests, tracing).
	Observe func(now time.Time, in opcore.Input, effects []opcore.Effect)
}

// Runner runs one operator core.
type Runner struct {
	opts  Options
	core  *opcore.Operator
	in    chan opcore.Input
	calls chan func(*opcore.Operator)
	log   *slog.Logger
	wg    sync.WaitGroup

	converged atomic.Bool
	writer    *objectWriter
}

// Converged reports whether the core has passed its recovery latch (caches
// synced and KV replayed); a readiness probe.
func (r *Runner) Converged() bool { return r.converged.Load() }

// New builds a runner; Run starts it.
func New(opts Options) *Runner {
	if opts.Clock == nil {
		opts.Clock = wallclock.Clock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Core = opts.Core.WithDefaults()
	if opts.TickInterval <= 0 {
		opts.TickInterval = opts.Core.TickInterval
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = natsadapter.DefaultCommandTimeout
	}
	return &Runner{opts: opts, core: opcore.New(opts.Core), in: make(chan opcore.Input, 4096),
		calls: make(chan func(*opcore.Operator)), log: opts.Logger}
}

// Run is New(opts).Run(ctx).
func Run(ctx context.Context, opts Options) error { return New(opts).Run(ctx) }

// Inspect runs fn on the core's goroutine (read-only use: accessors such as
// Phase, DeploymentStatus, DeviceUpgrade). It waits for the runner.
func (r *Runner) Inspect(ctx context.Context, fn func(*opcore.Operator)) error {
	done := make(chan struct{})
	select {
	case r.calls <- func(o *opcore.Operator) { fn(o); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run runs the operator until ctx ends. It returns ctx's error, or the
// first failure of the NATS watch or the store.
func (r *Runner) Run(ctx context.Context) error {
	if r.opts.NATS == nil || r.opts.Store == nil {
		return errors.New("runner: NATS and Store are required")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); r.wg.Wait() }()
	sink := func(in opcore.Input) {
		select {
		case r.in <- in:
		case <-ctx.Done():
		}
	}
	errc := make(chan error, 2)
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		errc <- r.opts.NATS.Watch(ctx, []string{core.BucketDesiredState, core.BucketDeviceInfo,
			core.BucketDeviceState, core.BucketDeviceHeartbeat, core.BucketAgentUpgrade,
			core.BucketAgentUpgradeStatus}, sink)
	}()
	go func() {
		defer r.wg.Done()
		errc <- r.opts.Store.Run(ctx, sink)
	}()
	workers := r.opts.ObjectWriters
	if workers <= 0 {
		workers = 4
	}
	r.writer = newObjectWriter(ctx, r.opts.Store, workers, func(e opcore.Effect, err error) {
		if n, ok := e.(opcore.Notice); ok {
			r.log.Warn("record event failed", "kind", n.Kind, "name", n.Name, "reason", n.Reason, "err", err)
			return
		}
		r.log.Error("object write failed", "effect", fmt.Sprintf("%T", e), "err", err)
	}, &r.wg)
	tick := time.NewTicker(r.opts.TickInterval)
	defer tick.Stop()
	statsEvery := time.NewTicker(5 * time.Second)
	defer statsEvery.Stop()
	r.log.Info("operator starting", "phase", r.core.Phase())
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("operator: %w", err)
			}
		case in := <-r.in:
			r.step(ctx, in)
		case <-tick.C:
			r.step(ctx, opcore.Tick{})
		case <-statsEvery.C:
			if r.opts.Metrics != nil {
				r.opts.Metrics.observe(r.core.Stats(), r.core.Phase())
			}
		case fn := <-r.calls:
			fn(r.core)
		}
	}
}

func (r *Runner) step(ctx context.Context, in opcore.Input) {
	now := r.opts.Clock.Now()
	effects := r.core.Step(now, in)
	if !r.converged.Load() && r.core.Phase() == opcore.Converged {
		r.converged.Store(true)
		r.log.Info("operator converged")
		if r.opts.Metrics != nil {
			r.opts.Metrics.observe(r.core.Stats(), r.core.Phase())
		}
	}
	if r.opts.Observe != nil {
		r.opts.Observe(now, in, effects)
	}
	for i := 0; i < len(effects); i++ {
		e := effects[i]
		switch e := e.(type) {
		case opcore.PutKV:
			err := r.opts.NATS.Put(ctx, e.Bucket, e.Key, e.Value)
			r.opts.Metrics.kvOp("put", err)
			if err != nil {
				r.log.Error("KV put failed", "bucket", e.Bucket, "key", e.Key, "err", err)
				r.requeue(ctx, opcore.KVWriteFailed{Bucket: e.Bucket, Key: e.Key, Err: err.Error()})
			}
		case opcore.DeleteKV:
			err := r.opts.NATS.Delete(ctx, e.Bucket, e.Key)
			r.opts.Metrics.kvOp("delete", err)
			if err != nil {
				r.log.Error("KV delete failed", "bucket", e.Bucket, "key", e.Key, "err", err)
				r.requeue(ctx, opcore.KVWriteFailed{Bucket: e.Bucket, Key: e.Key, Delete: true, Err: err.Error()})
			}
		case opcore.SendCommand:
			r.send(ctx, e)
		case opcore.WakeAt:
			// The ticker is fine-grained enough.
		case opcore.PatchDeviceStatus:
			next, guarded := opcore.Effect(nil), false
			if i+1 < len(effects) {
				next = effects[i+1]
				if sc, ok := next.(opcore.SendCommand); ok && sc.Device == e.Name {
					guarded = true
				}
			}
			if !guarded {
				_ = r.writer.submit(e, false)
				continue
			}
			// A stop must not go out unless stopSentAttempt is recorded: a
			// restarted operator would send it again.
			sc := next.(opcore.SendCommand)
			i++
			if err := r.writer.submit(e, true); err != nil {
				r.log.Error("could not record stopSentAttempt; upgrade-stop not sent", "device", e.Name, "err", err)
				r.requeue(ctx, opcore.CommandResult{Device: sc.Device, Verb: sc.Request.Verb,
					ID: sc.Request.ID, Attempt: sc.Attempt, Code: core.ErrCodeInternal,
					Message: "not sent: could not record stopSentAttempt: " + err.Error()})
				continue
			}
			r.send(ctx, sc)
		case opcore.Notice:
			if e.Kind == "" {
				lvl := slog.LevelInfo
				if e.Warning {
					lvl = slog.LevelWarn
				}
				r.log.Log(ctx, lvl, e.Message, "reason", e.Reason)
				continue
			}
			_ = r.writer.submit(e, false)
		default:
			_ = r.writer.submit(e, false)
		}
	}
}

// requeue delivers an input produced while carrying out effects, without
// blocking the core's goroutine on its own queue.
func (r *Runner) requeue(ctx context.Context, in opcore.Input) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case r.in <- in:
		case <-ctx.Done():
		}
	}()
}

func (r *Runner) send(ctx context.Context, e opcore.SendCommand) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_, err := r.opts.NATS.Command(ctx, e.Device, e.Request, r.opts.CommandTimeout)
		code, msg := natsadapter.ErrorCode(err)
		r.opts.Metrics.command(string(e.Request.Verb), code)
		if err != nil {
			r.log.Warn("command failed", "device", e.Device, "verb", e.Request.Verb, "attempt", e.Attempt, "code", code, "err", msg)
		} else {
			r.log.Info("command ok", "device", e.Device, "verb", e.Request.Verb, "attempt", e.Attempt)
		}
		select {
		case r.in <- opcore.CommandResult{Device: e.Device, Verb: e.Request.Verb, ID: e.Request.ID,
			Attempt: e.Attempt, Code: code, Message: msg}:
		case <-ctx.Done():
		}
	}()
}
