package runner

import (
	"context"
	"fmt"
	"sync"

	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

// MemStore is an in-memory object store: Deployments, Devices and
// AgentRollouts without Kubernetes. Tests and tools create and change
// objects with its methods and read the statuses the operator wrote.
// Deleting a Deployment marks it deleting; it disappears once the operator
// removes its finalizer, as in Kubernetes.
type MemStore struct {
	mu          sync.Mutex
	sink        func(opcore.Input)
	gen         map[string]int64
	deployments map[string]*MemDeployment
	devices     map[string]*MemDevice
	rollouts    map[string]*MemAgentRollout
	events      []opcore.Notice
	pending     []opcore.Input
}

// MemDeployment is a stored Deployment.
type MemDeployment struct {
	Spec   opcore.DeploymentSpec
	Status opcore.DeploymentStatus
}

// MemDevice is a stored Device.
type MemDevice struct {
	Record opcore.DeviceRecord
	Status opcore.DeviceStatus
}

// MemAgentRollout is a stored AgentRollout.
type MemAgentRollout struct {
	Spec   opcore.AgentRolloutSpec
	Status opcore.AgentRolloutStatus
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{gen: map[string]int64{}, deployments: map[string]*MemDeployment{},
		devices: map[string]*MemDevice{}, rollouts: map[string]*MemAgentRollout{}}
}

// Run implements Store.
func (m *MemStore) Run(ctx context.Context, sink func(opcore.Input)) error {
	m.mu.Lock()
	m.sink = sink
	var initial []opcore.Input
	for _, d := range m.deployments {
		initial = append(initial, opcore.DeploymentUpsert{Spec: d.Spec})
	}
	for _, d := range m.devices {
		initial = append(initial, opcore.DeviceUpsert{Device: d.Record})
	}
	for _, r := range m.rollouts {
		initial = append(initial, opcore.AgentRolloutUpsert{Spec: r.Spec})
	}
	m.mu.Unlock()
	for _, in := range initial {
		sink(in)
	}
	sink(opcore.CachesSynced{})
	<-ctx.Done()
	m.mu.Lock()
	m.sink = nil
	m.mu.Unlock()
	return nil
}

// send delivers in without holding the lock (the runner may be waiting for
// it inside Apply). Called with m.mu held; delivery happens in order on a
// goroutine per call site that needs it.
func (m *MemStore) send(in opcore.Input) {
	if m.sink != nil {
		m.pending = append(m.pending, in)
	}
}

// unlockAndFlush releases the lock and then delivers queued inputs.
func (m *MemStore) unlockAndFlush() {
	p := m.pending
	m.pending = nil
	sink := m.sink
	m.mu.Unlock()
	for _, in := range p {
		sink(in)
	}
}

func (m *MemStore) nextGen(kind, name string) int64 {
	m.gen[kind+"/"+name]++
	return m.gen[kind+"/"+name]
}

// PutDeployment creates or replaces a Deployment; Generation is assigned.
func (m *MemStore) PutDeployment(spec opcore.DeploymentSpec) {
	m.mu.Lock()
	defer m.unlockAndFlush()
	spec.Generation = m.nextGen("d", spec.Name)
	spec.Deleting = false
	d := m.deployments[spec.Name]
	if d == nil {
		d = &MemDeployment{}
		m.deployments[spec.Name] = d
	}
	d.Spec = spec
	m.send(opcore.DeploymentUpsert{Spec: spec})
}

// DeleteDeployment marks a Deployment deleting.
func (m *MemStore) DeleteDeployment(name string) {
	m.mu.Lock()
	defer m.unlockAndFlush()
	d := m.deployments[name]
	if d == nil {
		return
	}
	d.Spec.Deleting = true
	m.send(opcore.DeploymentUpsert{Spec: d.Spec})
}

// PutDevice creates or replaces a Device's labels and blacklist flag (its
// status is kept).
func (m *MemStore) PutDevice(name string, labels map[string]string, blacklisted bool) {
	m.mu.Lock()
	defer m.unlockAndFlush()
	d := m.devices[name]
	if d == nil {
		d = &MemDevice{}
		m.devices[name] = d
	}
	d.Record.Name, d.Record.Labels, d.Record.Blacklisted = name, labels, blacklisted
	m.send(opcore.DeviceUpsert{Device: d.Record})
}

// DeleteDevice deletes a Device.
func (m *MemStore) DeleteDevice(name string) {
	m.mu.Lock()
	defer m.unlockAndFlush()
	if _, ok := m.devices[name]; ok {
		delete(m.devices, name)
		m.send(opcore.DeviceDeleted{Name: name})
	}
}

// PutAgentRollout creates or replaces an AgentRollout.
func (m *MemStore) PutAgentRollout(spec opcore.AgentRolloutSpec) {
	m.mu.Lock()
	defer m.unlockAndFlush()
	spec.Generation = m.nextGen("r", spec.Name)
	r := m.rollouts[spec.Name]
	if r == nil {
		r = &MemAgentRollout{}
		m.rollouts[spec.Name] = r
	}
	r.Spec = spec
	m.send(opcore.AgentRolloutUpsert{Spec: spec})
}

// DeleteAgentRollout deletes an AgentRollout.
func (m *MemStore) DeleteAgentRollout(name string) {
	m.mu.Lock()
	defer m.unlockAndFlush()
	if _, ok := m.rollouts[name]; ok {
		delete(m.rollouts, name)
		m.send(opcore.AgentRolloutDeleted{Name: name})
	}
}

// Deployment returns a copy of a stored Deployment.
func (m *MemStore) Deployment(name string) (MemDeployment, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.deployments[name]
	if !ok {
		return MemDeployment{}, false
	}
	return *d, true
}

// Device returns a copy of a stored Device.
func (m *MemStore) Device(name string) (MemDevice, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.devices[name]
	if !ok {
		return MemDevice{}, false
	}
	return *d, true
}

// AgentRollout returns a copy of a stored AgentRollout.
func (m *MemStore) AgentRollout(name string) (MemAgentRollout, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rollouts[name]
	if !ok {
		return MemAgentRollout{}, false
	}
	return *r, true
}

// Events returns the notices recorded so far.
func (m *MemStore) Events() []opcore.Notice {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]opcore.Notice(nil), m.events...)
}

// Apply implements Store.
func (m *MemStore) Apply(_ context.Context, e opcore.Effect) error {
	m.mu.Lock()
	defer func() {
		// Inputs caused by an effect are delivered on a goroutine: the
		// caller is the runner's own loop.
		p, sink := m.pending, m.sink
		m.pending = nil
		m.mu.Unlock()
		if len(p) > 0 {
			go func() {
				for _, in := range p {
					sink(in)
				}
			}()
		}
	}()
	switch e := e.(type) {
	case opcore.PatchDeploymentStatus:
		d := m.deployments[e.Name]
		if d == nil {
			return fmt.Errorf("deployment %q not found", e.Name)
		}
		d.Status = e.Status
	case opcore.PatchDeviceStatus:
		d := m.devices[e.Name]
		if d == nil {
			return fmt.Errorf("device %q not found", e.Name)
		}
		d.Status = e.Status
		d.Record.StopSentAttempt = e.Status.Upgrade.StopSentAttempt
		d.Record.CurrentVersion = e.Status.CurrentVersion
		d.Record.LastSeen = e.Status.LastSeen
	case opcore.PatchAgentRolloutStatus:
		r := m.rollouts[e.Name]
		if r == nil {
			return fmt.Errorf("agent rollout %q not found", e.Name)
		}
		r.Status = e.Status
	case opcore.CreateDevice:
		if _, ok := m.devices[e.Name]; ok {
			return nil
		}
		d := &MemDevice{Record: opcore.DeviceRecord{Name: e.Name, Labels: e.Labels}}
		m.devices[e.Name] = d
		m.send(opcore.DeviceUpsert{Device: d.Record})
	case opcore.PatchDeviceLabels:
		d := m.devices[e.Name]
		if d == nil {
			return fmt.Errorf("device %q not found", e.Name)
		}
		labels := map[string]string{}
		for k, v := range d.Record.Labels {
			labels[k] = v
		}
		for k, v := range e.Labels {
			labels[k] = v
		}
		d.Record.Labels = labels
		m.send(opcore.DeviceUpsert{Device: d.Record})
	case opcore.RemoveFinalizer:
		if d := m.deployments[e.Name]; d != nil && d.Spec.Deleting {
			delete(m.deployments, e.Name)
			m.send(opcore.DeploymentDeleted{Name: e.Name})
		}
	case opcore.Notice:
		m.events = append(m.events, e)
	default:
		return fmt.Errorf("memstore: unexpected effect %T", e)
	}
	return nil
}
