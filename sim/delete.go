package sim

import (
	"slices"
	"strings"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/sim/kernel"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

// Deletions, as the Kubernetes API server and the production operator's
// object store do them (operator/controller/store.go, operator/runner/
// memstore.go):
//
//   - A Deployment carries the operator's finalizer: deleting it sets its
//     deletion timestamp (the API server bumps metadata.generation) and
//     the operator is delivered DeploymentUpsert{Deleting: true}; the core
//     deletes every desired-state key of it and returns RemoveFinalizer;
//     the object then goes and DeploymentDeleted is delivered.
//   - An AgentRollout or a Device has no finalizer: it goes at once and
//     AgentRolloutDeleted / DeviceDeleted is delivered.
//   - A deleted Device whose agent keeps reporting device-info stays known
//     to the core by its device-info labels; with CreateDevices (the
//     production default) the core asks for a new Device object, which
//     the store creates (CreateDevice), as the real store does.

// informerDelay is when the operator is delivered an object change
// (Operator.objectChanged); the checker learns of a deletion at the same
// instant, just before the operator does.
const informerDelay = 5 * time.Millisecond

// checkerEvent runs fn, scheduled just before the operator's delivery.
type checkerEvent struct{ fn func() }

func (ce checkerEvent) Handle(*kernel.Kernel, *kernel.Event) { ce.fn() }

// objectChange delivers in to the operator as the informer would, telling
// the checker first (chk may be nil).
func (w *World) objectChange(in opcore.Input, chk func()) {
	if chk != nil {
		w.k.After(informerDelay, kernel.Event{Target: checkerEvent{chk}})
	}
	w.op.objectChanged(in)
}

func (w *World) deleteDeployment(name string) {
	d := w.store.deployment(name)
	if d == nil || d.spec.Deleting {
		return
	}
	d.spec.Deleting = true
	d.spec.Generation++
	if !slices.Contains(w.deletedDeps, name) {
		w.deletedDeps = append(w.deletedDeps, name)
	}
	gen := d.spec.Generation
	w.objectChange(opcore.DeploymentUpsert{Spec: d.spec}, func() { w.chk.DeploymentDeleting(name, gen) })
}

func (w *World) deleteAgentRollout(name string) {
	s := w.store
	i := slices.IndexFunc(s.rollouts, func(r *rolloutObj) bool { return r.spec.Name == name })
	if i < 0 {
		return
	}
	// Binaries already downloaded keep their behaviour (World.behaviour).
	w.deletedRollouts = append(w.deletedRollouts, s.rollouts[i])
	s.rollouts = slices.Delete(s.rollouts, i, i+1)
	w.agentRollouts = slices.DeleteFunc(w.agentRollouts, func(n string) bool { return n == name })
	w.objectChange(opcore.AgentRolloutDeleted{Name: name}, func() { w.chk.RolloutGone(name) })
}

func (w *World) deleteDevices(sel *scenario.DeviceSelection) {
	s := w.store
	infos, _ := w.srv.Bucket(core.BucketDeviceInfo)
	for _, i := range w.selectDevices(w.rngFault, sel.Devices, sel.Names, sel.Selector) {
		o := s.devices[i]
		if !o.made {
			continue
		}
		o.made = false
		name := o.rec.Name
		delete(s.byDevice, name)
		w.deletedDevs++
		info := w.devs[i].labels
		_, err := infos.Get(core.DeviceInfoKey(name))
		hasInfo := err == nil
		w.objectChange(opcore.DeviceDeleted{Name: name}, func() { w.chk.DeviceDeleted(name, info, hasInfo) })
	}
}

// objectEffect is the object store's side of the operator effects that
// create or remove objects (sim/operator.go hands them here): the Deployment
// finalizer's removal and Device creation from device-info.
func (w *World) objectEffect(e opcore.Effect) {
	s := w.store
	switch e := e.(type) {
	case opcore.RemoveFinalizer:
		if e.Kind != opcore.KindDeployment {
			return
		}
		i := slices.IndexFunc(s.deployments, func(d *depObj) bool { return d.spec.Name == e.Name })
		if i < 0 || !s.deployments[i].spec.Deleting {
			return
		}
		s.deployments = slices.Delete(s.deployments, i, i+1)
		w.op.objectChanged(opcore.DeploymentDeleted{Name: e.Name})
	case opcore.CreateDevice:
		i, ok := slices.BinarySearchFunc(w.devs, e.Name, func(d *Device, name string) int { return strings.Compare(d.name, name) })
		if !ok {
			return // not a device of this fleet
		}
		o := s.devices[i]
		if o.made {
			return // AlreadyExists
		}
		o.made = true
		o.rec = opcore.DeviceRecord{Name: e.Name, Labels: e.Labels}
		o.status = opcore.DeviceStatus{}
		s.byDevice[e.Name] = o
		w.recreatedDevs++
		w.op.objectChanged(opcore.DeviceUpsert{Device: o.rec})
	}
}

// deviceLabels is how the operator places d: by its Device object, or, with
// the object deleted, by the labels its device-info carries, never
// blacklisted.
func (w *World) deviceLabels(d *Device) (map[string]string, bool) {
	o := w.store.devices[d.idx]
	if !o.made {
		return d.labels, false
	}
	return o.rec.Labels, o.rec.Blacklisted
}

// deviceObjectBack reports why d, a running device whose Device object was
// deleted, still has none although the operator creates objects from
// device-info (CreateDevices), or "".
func (w *World) deviceObjectBack(d *Device) string {
	if w.store.devices[d.idx].made || !w.op.cfg.CreateDevices {
		return ""
	}
	return "Device object deleted and not created again from device-info"
}

// deletedDeploymentGone reports why d still holds something of a deleted
// Deployment (its desired-state key, or the workload running), or "".
func (w *World) deletedDeploymentGone(d *Device) string {
	if len(w.deletedDeps) == 0 {
		return ""
	}
	desired, _ := w.srv.Bucket(core.BucketDesiredState)
	for _, name := range w.deletedDeps {
		if w.store.deployment(name) != nil && !w.store.deployment(name).spec.Deleting {
			continue // added again since
		}
		if _, err := desired.Get(core.DesiredStateKey(d.name, name)); err == nil {
			return "desired state of deleted deployment " + name + " is still in KV"
		}
		for _, wl := range d.workloads {
			if wl.dep == name {
				return "workload of deleted deployment " + name + " still running"
			}
		}
	}
	return ""
}
