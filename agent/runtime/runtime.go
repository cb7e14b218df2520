// Package runtime runs the workloads the agent core asks for, behind one
// seam (Runtime) with two implementations: Process (a versioned artifact run
// as a supervised process) and Podman (a container, when the podman binary
// exists). Manager routes each deployment to its runtime, serialises the
// operations of one deployment and reports status changes.
package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/flotilla-fleet/flotilla/core"
)

// Status is one deployment's workload as a runtime sees it.
type Status struct {
	Deployment string
	Generation int64
	Phase      core.WorkloadPhase // Running or Failed
	Err        string
}

// Runtime runs workloads of one kind.
type Runtime interface {
	Kind() core.Runtime
	// Start starts spec's workload, replacing one of the same deployment
	// with another spec; an identical running workload is left alone.
	Start(ctx context.Context, spec core.WorkloadSpec) error
	// Stop ends the deployment's workload; an absent one is not an error.
	Stop(ctx context.Context, deployment string) error
	// Logs returns up to n of the last lines of the workload's output.
	Logs(ctx context.Context, deployment string, n int) (lines []string, truncated bool, err error)
	// Running lists the deployments this runtime runs (including ones
	// adopted from an earlier agent process).
	Running() []string
}

// Manager dispatches workload effects to runtimes without blocking the
// caller: each deployment has a queue worked in order by one goroutine.
type Manager struct {
	runtimes map[core.Runtime]Runtime
	def      core.Runtime
	onStatus func(Status)
	log      *slog.Logger

	mu     sync.Mutex
	queues map[string]chan func()
	owner  map[string]core.Runtime // deployment → runtime it runs in
}

// NewManager returns a manager over runtimes; def is used when a spec names
// none. onStatus receives every status change, from any goroutine.
func NewManager(def core.Runtime, onStatus func(Status), log *slog.Logger, runtimes ...Runtime) *Manager {
	m := &Manager{runtimes: map[core.Runtime]Runtime{}, def: def, onStatus: onStatus, log: log,
		queues: map[string]chan func(){}, owner: map[string]core.Runtime{}}
	for _, r := range runtimes {
		m.runtimes[r.Kind()] = r
	}
	return m
}

// Adopter is a runtime that can take over workloads an earlier agent
// process left running.
type Adopter interface{ Adopt() []string }

// Adopt takes over running workloads (called once this process is the
// device's active agent) and returns their deployments.
func (m *Manager) Adopt() []string {
	var all []string
	for _, k := range m.Kinds() {
		a, ok := m.runtimes[k].(Adopter)
		if !ok {
			continue
		}
		deps := a.Adopt()
		m.mu.Lock()
		for _, d := range deps {
			m.owner[d] = k
		}
		m.mu.Unlock()
		all = append(all, deps...)
	}
	return all
}

// Kinds lists the available runtimes, sorted.
func (m *Manager) Kinds() []core.Runtime {
	var out []core.Runtime
	for k := range m.runtimes {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (m *Manager) enqueue(dep string, f func()) {
	m.mu.Lock()
	q, ok := m.queues[dep]
	if !ok {
		q = make(chan func(), 64)
		m.queues[dep] = q
		go func() {
			for f := range q {
				f()
			}
		}()
	}
	m.mu.Unlock()
	q <- f
}

// Start queues starting spec; the outcome arrives through onStatus.
func (m *Manager) Start(ctx context.Context, spec core.WorkloadSpec) {
	m.enqueue(spec.Deployment, func() {
		kind := spec.Runtime
		if kind == core.RuntimeDefault {
			kind = m.def
		}
		r, ok := m.runtimes[kind]
		if !ok {
			m.onStatus(Status{Deployment: spec.Deployment, Generation: spec.Generation, Phase: core.PhaseFailed,
				Err: fmt.Sprintf("runtime %q is not available on this device (have %v)", kind, m.Kinds())})
			return
		}
		m.mu.Lock()
		prev, had := m.owner[spec.Deployment]
		m.mu.Unlock()
		if had && prev != kind {
			if old := m.runtimes[prev]; old != nil {
				_ = old.Stop(ctx, spec.Deployment)
			}
		}
		if err := r.Start(ctx, spec); err != nil {
			m.onStatus(Status{Deployment: spec.Deployment, Generation: spec.Generation, Phase: core.PhaseFailed,
				Err: core.Truncate(err.Error(), core.MaxErrorLen)})
			return
		}
		m.mu.Lock()
		m.owner[spec.Deployment] = kind
		m.mu.Unlock()
	})
}

// Stop queues stopping the deployment's workload.
func (m *Manager) Stop(ctx context.Context, dep string) {
	m.enqueue(dep, func() {
		m.mu.Lock()
		kind, had := m.owner[dep]
		delete(m.owner, dep)
		m.mu.Unlock()
		if !had {
			return
		}
		if err := m.runtimes[kind].Stop(ctx, dep); err != nil && m.log != nil {
			m.log.Warn("stop workload", "deployment", dep, "err", err)
		}
	})
}

// StopExcept stops every running workload whose deployment is not in keep
// (workloads adopted from an earlier agent whose deployment is gone).
func (m *Manager) StopExcept(ctx context.Context, keep map[string]bool) []string {
	m.mu.Lock()
	var gone []string
	for d := range m.owner {
		if !keep[d] {
			gone = append(gone, d)
		}
	}
	m.mu.Unlock()
	sort.Strings(gone)
	for _, d := range gone {
		m.Stop(ctx, d)
	}
	return gone
}

// Logs reads a deployment's output (synchronously).
func (m *Manager) Logs(ctx context.Context, dep string, n int) ([]string, bool, error) {
	m.mu.Lock()
	kind, ok := m.owner[dep]
	m.mu.Unlock()
	if !ok {
		return nil, false, fmt.Errorf("deployment %q has no workload on this device", dep)
	}
	return m.runtimes[kind].Logs(ctx, dep, n)
}
