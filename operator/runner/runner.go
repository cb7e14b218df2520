// Package runner is the operator's production adapter: it carries out the
// actions of the runner state machine (operator/runcore, which owns the
// decision core) over nats.go and an object store — Kubernetes through
// controller-runtime (operator/controller), or the in-memory MemStore for
// tests that need no Kubernetes — and turns what happens into events. It
// holds no decisions:
//
//	nc, _ := natsadapter.Connect(url) // retries forever, never fails on a down server
//	r := runner.New(runner.Options{NATS: nc, Store: runner.NewMemStore()})
//	go r.Run(ctx)
//
// One goroutine steps the machine; every NATS call and object write runs on
// a goroutine of its own and reports back as an event, so nothing blocks the
// core: it keeps ticking and serving while NATS is down.
package runner

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/internal/wallclock"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/operator/runcore"
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
	// NATS is the connection (natsadapter.Connect); it may be down, even at
	// start.
	NATS  *nats.Conn
	Store Store
	Core  opcore.Config
	// TickInterval between Tick inputs; default Core.TickInterval (1s).
	TickInterval time.Duration
	// CommandTimeout bounds each device command; WriteTimeout each KV write
	// and Get. Default 5s each.
	CommandTimeout, WriteTimeout time.Duration
	// ObjectWriters bounds object writes in parallel (one per object at a
	// time). Default 4.
	ObjectWriters int
	// Storage and Replicas of buckets the runner creates.
	Storage  jetstream.StorageType
	Replicas int
	Clock    core.Clock
	Logger   *slog.Logger
	Metrics  *Metrics
	// Observe, if set, sees every core input and the effects it produced,
	// on the runner's goroutine (tests, tracing).
	Observe func(now time.Time, in opcore.Input, effects []opcore.Effect)
}

// Runner runs one operator.
type Runner struct {
	opts   Options
	m      *runcore.Machine
	ev     chan runcore.Event
	calls  chan func(*opcore.Operator)
	log    *slog.Logger
	wg     sync.WaitGroup
	status atomic.Pointer[runcore.Status]
	x      *executor
}

// New builds a runner; Run starts it.
func New(opts Options) *Runner {
	if opts.Clock == nil {
		opts.Clock = wallclock.Clock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TickInterval > 0 {
		opts.Core.TickInterval = opts.TickInterval
	}
	r := &Runner{opts: opts, ev: make(chan runcore.Event, 4096), calls: make(chan func(*opcore.Operator)), log: opts.Logger}
	observe := opts.Observe
	r.m = runcore.New(runcore.Config{Core: opts.Core, CreateBuckets: true, CommandTimeout: opts.CommandTimeout,
		WriteTimeout: opts.WriteTimeout, ObjectWriters: opts.ObjectWriters,
		Seed: uint64(opts.Clock.Now().UnixNano()),
		Observe: func(now time.Time, in opcore.Input, effs []opcore.Effect) {
			if res, ok := in.(opcore.CommandResult); ok {
				opts.Metrics.command(string(res.Verb), res.Code)
			}
			if observe != nil {
				observe(now, in, effs)
			}
		}})
	st := r.m.Status()
	r.status.Store(&st)
	opts.Metrics.setSource(r.Status)
	return r
}

// Run is New(opts).Run(ctx).
func Run(ctx context.Context, opts Options) error { return New(opts).Run(ctx) }

// Status is the machine's NATS status as of its last step.
func (r *Runner) Status() runcore.Status { return *r.status.Load() }

// Converged reports whether the core has passed its recovery latch (caches
// synced and KV replayed).
func (r *Runner) Converged() bool { return r.Status().Converged }

// Ready is the readiness check: nil once converged with NATS connected.
func (r *Runner) Ready() error {
	s := r.Status()
	switch {
	case !s.Connected:
		return errors.New("NATS disconnected")
	case !s.Converged:
		return errors.New("operator is " + string(opcore.Recovering))
	}
	return nil
}

// Inspect runs fn on the runner's goroutine (read-only use of the core:
// Phase, DeploymentStatus, DeviceUpgrade, ...). It waits for the runner.
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
// store's failure; NATS being down is never an error.
func (r *Runner) Run(ctx context.Context) error {
	if r.opts.NATS == nil || r.opts.Store == nil {
		return errors.New("runner: NATS and Store are required")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); r.wg.Wait() }()
	r.x = newExecutor(ctx, r)
	storeErr := make(chan error, 1)
	r.goDo(func() {
		storeErr <- r.opts.Store.Run(ctx, func(in opcore.Input) { r.post(ctx, runcore.Object{In: in}) })
	})
	r.goDo(func() { r.x.watchConn(ctx) })
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	statsEvery := time.NewTicker(5 * time.Second)
	defer statsEvery.Stop()
	r.log.Info("operator starting", "phase", r.m.Core().Phase())
	r.step(runcore.Start{}, timer)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-storeErr:
			if err != nil && ctx.Err() == nil {
				return err
			}
		case ev := <-r.ev:
			r.step(ev, timer)
		case <-timer.C:
			r.step(runcore.TimerFired{}, timer)
		case <-statsEvery.C:
			r.opts.Metrics.observe(r.m.Core().Stats(), r.m.Core().Phase())
		case fn := <-r.calls:
			fn(r.m.Core())
		}
	}
}

func (r *Runner) step(ev runcore.Event, timer *time.Timer) {
	wasConverged := r.Status().Converged
	for _, a := range r.m.Step(r.opts.Clock.Now(), ev) {
		if at, ok := a.(runcore.ArmTimer); ok {
			timer.Reset(max(0, at.At.Sub(r.opts.Clock.Now())))
			continue
		}
		r.x.do(a)
	}
	st := r.m.Status()
	r.status.Store(&st)
	if st.Converged && !wasConverged {
		r.log.Info("operator converged")
		r.opts.Metrics.observe(r.m.Core().Stats(), r.m.Core().Phase())
	}
}

// post delivers an event to the runner's goroutine.
func (r *Runner) post(ctx context.Context, ev runcore.Event) {
	select {
	case r.ev <- ev:
	case <-ctx.Done():
	}
}

func (r *Runner) goDo(f func()) {
	r.wg.Add(1)
	go func() { defer r.wg.Done(); f() }()
}
