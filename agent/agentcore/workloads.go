package agentcore

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// workload is one deployment's desired state on this device.
type workload struct {
	spec     core.WorkloadSpec
	revision uint64
	invalid  bool   // the newest value did not decode (errMsg says why)
	errMsg   string // why the deployment is Failed, when it is
	applied  bool   // StartWorkload emitted for spec in this process
	phase    core.WorkloadPhase
	reported string // LastError of the last report
	repGen   int64  // Generation of the last report
}

func (a *Agent) workload(dep string) *workload {
	if w := a.desired[dep]; w != nil {
		return w
	}
	if a.desired == nil {
		a.desired = make(map[string]*workload)
	}
	w := &workload{}
	a.desired[dep] = w
	i, _ := slices.BinarySearch(a.deps, dep)
	a.deps = slices.Insert(a.deps, i, dep)
	return w
}

func (a *Agent) dropWorkload(dep string) bool {
	if _, ok := a.desired[dep]; !ok {
		return false
	}
	delete(a.desired, dep)
	if i, ok := slices.BinarySearch(a.deps, dep); ok {
		a.deps = slices.Delete(a.deps, i, i+1)
	}
	return true
}

// owner reports whether this process owns workloads right now.
func (a *Agent) owner() bool { return a.role == RoleActive && a.ready }

func (a *Agent) onDesiredPut(now time.Time, p DesiredPut) {
	dep := p.Deployment
	if dep == "" {
		dep = p.Spec.Deployment
	}
	if core.ValidateDeploymentName(dep) != nil {
		a.log("warn", "desired state for an invalid deployment name ignored", "deployment", dep)
		return
	}
	old := a.desired[dep]
	if old != nil && p.Revision != 0 && p.Revision <= old.revision {
		return // replay or reordered delivery of an older value
	}
	w := a.workload(dep)
	spec := p.Spec
	if spec.Deployment == "" {
		spec.Deployment = dep
	}
	unchanged := old != nil && !w.invalid && w.applied && w.phase != core.PhaseFailed && specEqual(w.spec, spec)
	w.revision = p.Revision
	if unchanged {
		return
	}
	w.spec, w.invalid, w.errMsg, w.applied = spec, false, "", false
	if spec.Deployment != dep {
		w.invalid = true
		w.errMsg = "desired-state key names deployment " + dep + " but its value names " + spec.Deployment
	}
	if a.owner() {
		a.apply(now, dep, w)
	}
}

func (a *Agent) onDesiredInvalid(now time.Time, p DesiredInvalid) {
	if core.ValidateDeploymentName(p.Deployment) != nil {
		a.log("warn", "invalid desired state for an invalid deployment name ignored", "deployment", p.Deployment)
		return
	}
	old := a.desired[p.Deployment]
	if old != nil && p.Revision != 0 && p.Revision <= old.revision {
		return
	}
	w := a.workload(p.Deployment)
	w.revision = p.Revision
	w.invalid = true
	w.errMsg = "invalid desired state: " + p.Err
	// The workload already running (if any) is left alone: a bad value
	// must not take down what works.
	if a.owner() {
		a.apply(now, p.Deployment, w)
	}
}

func (a *Agent) onDesiredDeleted(d DesiredDeleted) {
	known := a.dropWorkload(d.Deployment)
	if a.owner() {
		a.emit(StopWorkload{Deployment: d.Deployment})
		a.emit(DeleteDeviceState{Deployment: d.Deployment})
		return
	}
	if (a.role == RoleActive || a.role == RoleCandidate) && (known || core.ValidateDeploymentName(d.Deployment) == nil) {
		// Start-up recovery is under way, or this is a candidate (the old
		// agent may have exited already, and workloads outlive agents):
		// stop it once ready, or once the candidate takes over.
		if i, ok := slices.BinarySearch(a.pendingStop, d.Deployment); !ok {
			a.pendingStop = slices.Insert(a.pendingStop, i, d.Deployment)
		}
	}
}

// apply brings one deployment towards its desired state.
func (a *Agent) apply(now time.Time, dep string, w *workload) {
	if w.invalid {
		a.report(now, dep, w, core.PhaseFailed, w.errMsg)
		return
	}
	spec := w.spec
	if spec.Runtime == core.RuntimeDefault {
		spec.Runtime = a.cfg.DefaultRuntime
	}
	if spec.Runtime != core.RuntimeDefault && len(a.cfg.Runtimes) > 0 && !slices.Contains(a.cfg.Runtimes, spec.Runtime) {
		names := make([]string, len(a.cfg.Runtimes))
		for i, r := range a.cfg.Runtimes {
			names[i] = string(r)
		}
		a.report(now, dep, w, core.PhaseFailed, "runtime "+string(spec.Runtime)+
			" is not available on this device (available: "+strings.Join(names, ", ")+")")
		return
	}
	if a.cutoverInProgress() {
		// Workload ownership may move to the new agent: apply when the
		// attempt ends (the new agent reconciles everything on commit).
		a.report(now, dep, w, core.PhasePending, "")
		return
	}
	w.applied = true
	a.emit(StartWorkload{Spec: spec})
	a.report(now, dep, w, core.PhaseApplying, "")
}

// report writes device-state for one deployment unless it says nothing new.
func (a *Agent) report(now time.Time, dep string, w *workload, phase core.WorkloadPhase, errMsg string) {
	if phase == w.phase && errMsg == w.reported && w.spec.Generation == w.repGen {
		return
	}
	w.phase, w.reported, w.repGen = phase, errMsg, w.spec.Generation
	a.emit(PutDeviceState{State: core.DeviceState{
		Schema:      core.SchemaVersion,
		Device:      a.cfg.Device,
		Deployment:  dep,
		Generation:  w.spec.Generation,
		Version:     w.spec.Version,
		Phase:       phase,
		LastEventAt: a.eventAt(now),
		LastError:   core.Truncate(errMsg, core.MaxErrorLen),
	}})
}

// reconcileAll applies every deployment not applied yet, in name order, and
// carries out deletions that arrived during start-up.
func (a *Agent) reconcileAll(now time.Time) {
	if !a.owner() {
		return
	}
	for _, dep := range a.pendingStop {
		a.emit(StopWorkload{Deployment: dep})
		a.emit(DeleteDeviceState{Deployment: dep})
	}
	a.pendingStop = nil
	for _, dep := range a.deps {
		w := a.desired[dep]
		if w.invalid {
			if w.phase != core.PhaseFailed {
				a.apply(now, dep, w)
			}
			continue
		}
		if !w.applied {
			a.apply(now, dep, w)
		}
	}
}

func (a *Agent) onWorkloadStatus(now time.Time, s WorkloadStatus) {
	if !a.owner() {
		return
	}
	w := a.desired[s.Deployment]
	if w == nil || w.invalid || !w.applied || s.Generation < w.spec.Generation {
		return // stopped, superseded or not started by this process
	}
	if !s.Phase.Valid() {
		a.log("warn", "workload status with an unknown phase ignored", "deployment", s.Deployment, "phase", string(s.Phase))
		return
	}
	errMsg := s.Err
	if s.Phase == core.PhaseFailed && errMsg == "" {
		errMsg = "workload failed"
	}
	if s.Phase != core.PhaseFailed {
		errMsg = ""
	}
	a.report(now, s.Deployment, w, s.Phase, errMsg)
}

// specEqual reports whether two specs ask for the same thing (without the
// encoding that WorkloadSpec.Equal does).
func specEqual(x, y core.WorkloadSpec) bool {
	if x.Deployment != y.Deployment || x.Generation != y.Generation || x.Name != y.Name ||
		x.Version != y.Version || x.Runtime != y.Runtime || x.Image != y.Image {
		return false
	}
	if (x.Artifact == nil) != (y.Artifact == nil) || x.Artifact != nil && *x.Artifact != *y.Artifact {
		return false
	}
	return slices.Equal(x.Args, y.Args) && maps.Equal(x.Env, y.Env)
}
