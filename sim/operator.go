package sim

import (
	"errors"
	"slices"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/sim/check"
	"github.com/flotilla-fleet/flotilla/sim/kernel"
	"github.com/flotilla-fleet/flotilla/sim/natsim"
)

// Store is the in-memory object store standing in for the Kubernetes API:
// Deployments, Devices and AgentRollouts with their statuses. It survives an
// operator crash (etcd does); the operator's memory does not.
type Store struct {
	deployments []*depObj // sorted by name
	devices     []*devObj // index = device index
	rollouts    []*rolloutObj
	byDevice    map[string]*devObj
}

type depObj struct {
	spec   opcore.DeploymentSpec
	status opcore.DeploymentStatus
}

type devObj struct {
	rec    opcore.DeviceRecord
	status opcore.DeviceStatus
	made   bool
}

type rolloutObj struct {
	spec   opcore.AgentRolloutSpec
	status opcore.AgentRolloutStatus
}

func (s *Store) deployment(name string) *depObj {
	for _, d := range s.deployments {
		if d.spec.Name == name {
			return d
		}
	}
	return nil
}

func (s *Store) rollout(name string) *rolloutObj {
	for _, r := range s.rollouts {
		if r.spec.Name == name {
			return r
		}
	}
	return nil
}

// Operator is the operator shell: the production operator core over the
// store and a NATS connection. It can crash (memory lost, KV and objects
// kept) and restart.
type Operator struct {
	w     *World
	core  *opcore.Operator
	conn  *natsim.Conn
	alive bool
	gen   uint64
	reqs  map[uint64]opcore.SendCommand
	cfg   opcore.Config
	// crashes left for a phase trigger
	crashes int
}

// Operator event kinds.
const (
	okTick uint16 = iota + 1
	okInput
	okRestart
	okCrash
)

var opBuckets = []string{core.BucketDesiredState, core.BucketDeviceInfo, core.BucketDeviceState,
	core.BucketDeviceHeartbeat, core.BucketAgentUpgrade, core.BucketAgentUpgradeStatus}

func (o *Operator) start() {
	w := o.w
	o.gen++
	o.alive = true
	o.core = opcore.New(o.cfg)
	o.reqs = map[uint64]opcore.SendCommand{}
	o.conn = w.net.Connect(o)
	for i, b := range opBuckets {
		o.conn.Watch(i, b, ">", natsim.WatchLast, 0)
	}
	for _, d := range w.store.deployments {
		o.step(opcore.DeploymentUpsert{Spec: d.spec})
	}
	for _, d := range w.store.devices {
		if d.made {
			o.step(opcore.DeviceUpsert{Device: d.rec})
		}
	}
	for _, r := range w.store.rollouts {
		o.step(opcore.AgentRolloutUpsert{Spec: r.spec})
	}
	o.step(opcore.CachesSynced{})
	w.k.After(o.cfg.TickInterval, kernel.Event{Target: o, Kind: okTick, A: o.gen})
}

func (o *Operator) crash() {
	if !o.alive {
		return
	}
	o.alive = false
	o.core = nil
	o.conn.Close() // queued and in-flight writes are lost
	o.w.chk.MarkersLost()
	o.conn = nil
	o.reqs = nil
	o.gen++
}

// Handle implements kernel.Handler.
func (o *Operator) Handle(k *kernel.Kernel, ev *kernel.Event) {
	switch ev.Kind {
	case okTick:
		if !o.alive || ev.A != o.gen {
			return
		}
		o.step(opcore.Tick{})
		k.After(o.cfg.TickInterval, kernel.Event{Target: o, Kind: okTick, A: o.gen})
	case okInput:
		if o.alive {
			o.step(ev.P.(opcore.Input))
		}
	case okRestart:
		if !o.alive {
			o.start()
		}
	case okCrash:
		if o.alive {
			o.w.fired(faultOperatorCrashKey)
			o.crash()
			k.After(time.Duration(ev.B), kernel.Event{Target: o, Kind: okRestart})
		}
	}
}

// objectChanged delivers a store change to the operator after the
// informer's latency.
func (o *Operator) objectChanged(in opcore.Input) {
	o.w.k.After(5*time.Millisecond, kernel.Event{Target: o, Kind: okInput, P: in})
}

func (o *Operator) step(in opcore.Input) {
	w := o.w
	now := w.k.Now()
	c := w.chk
	switch in := in.(type) {
	case opcore.DeviceUpsert:
		c.DeviceSeen(in.Device.Name, in.Device.Labels, in.Device.Blacklisted)
	case opcore.DeploymentUpsert:
		c.DeploymentSeen(in.Spec.Name, in.Spec.Generation, in.Spec.Selector)
	case opcore.DeploymentDeleted:
		c.DeploymentGone(in.Name)
	case opcore.AgentRolloutUpsert:
		st := in.Spec.Rollout
		var th *check.Amount
		if st.FailureThreshold != nil {
			th = &check.Amount{Value: st.FailureThreshold.Value, Percent: st.FailureThreshold.Percent}
		}
		c.RolloutSeen(in.Spec.Name, in.Spec.Selector, check.Amount{Value: st.MaxUnavailable.Value, Percent: st.MaxUnavailable.Percent}, th)
	}
	effs := o.core.Step(kernel.Epoch.Add(now), in)
	w.traceOperator(in, effs)
	for _, e := range effs {
		if !o.alive {
			return
		}
		switch e := e.(type) {
		case opcore.PutKV:
			var obj any // the decoded value, so readers in the simulator skip a decode
			switch e.Bucket {
			case core.BucketDesiredState:
				if dev, _, err := core.ParseDesiredStateKey(e.Key); err == nil {
					c.DesiredWritten(now, dev, e.Key, e.Value)
				}
			case core.BucketAgentUpgrade:
				// Judged with what the operator knew when it decided; a write
				// lost with a crashing operator is forgotten (MarkersLost).
				if m, err := core.DecodeUpgradeMarker(e.Value); err == nil {
					obj = m
					c.MarkerWritten(now, e.Key, m.Rollout, m.Attempt)
				} else {
					w.coreError(nil, "operator wrote an undecodable marker", err)
				}
			}
			o.conn.Put(e.Bucket, e.Key, e.Value, obj)
		case opcore.DeleteKV:
			o.conn.Delete(e.Bucket, e.Key)
		case opcore.SendCommand:
			if e.Request.Verb == core.VerbUpgradeStop && e.Request.UpgradeStop != nil {
				c.StopSent(now, e.Device, e.Request.UpgradeStop.Attempt, e.Request.UpgradeStop.TargetVersion)
			}
			tok := o.conn.Request(core.CommandSubject(e.Device, e.Request.Verb), nil, e.Request, 5*time.Second)
			o.reqs[tok] = e
		case opcore.PatchDeploymentStatus:
			if d := w.store.deployment(e.Name); d != nil {
				d.status = e.Status
			}
			ct := e.Status.Counts
			c.DeploymentPatched(now, e.Name, e.Status.ObservedGeneration, check.Counts{Total: ct.Total,
				Succeeded: ct.Succeeded, Failed: ct.Failed, Pending: ct.Pending, Unreported: ct.Unreported, Waiting: ct.Waiting})
		case opcore.PatchDeviceStatus:
			if d := w.store.byDevice[e.Name]; d != nil {
				d.status = e.Status
				d.rec.StopSentAttempt = e.Status.Upgrade.StopSentAttempt
				d.rec.CurrentVersion = e.Status.CurrentVersion
				d.rec.LastSeen = e.Status.LastSeen
			}
			if e.Status.Upgrade.Phase == opcore.UpgradeTimedOut {
				c.AttemptOver(e.Name, e.Status.Upgrade.Attempt, true)
			}
		case opcore.PatchAgentRolloutStatus:
			if r := w.store.rollout(e.Name); r != nil {
				r.status = e.Status
			}
		case opcore.CreateDevice, opcore.RemoveFinalizer:
			w.objectEffect(e) // the object store's side (delete.go)
		case opcore.PatchDeviceLabels:
			if d := w.store.byDevice[e.Name]; d != nil {
				d.rec.Labels = mergeLabels(d.rec.Labels, e.Labels)
				o.objectChanged(opcore.DeviceUpsert{Device: d.rec})
			}
		case opcore.Notice:
			w.notices++
		}
	}
	w.checkStop()
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// WatchEntry implements natsim.Client.
func (o *Operator) WatchEntry(_ *natsim.Conn, id int, e *natsim.Entry) {
	if !o.alive {
		return
	}
	b := opBuckets[id]
	if e == nil {
		o.step(opcore.KVReplayed{Bucket: b})
		return
	}
	w := o.w
	if e.Op != natsim.OpPut {
		if b == core.BucketDeviceState {
			if dev, dep, err := core.ParseDeviceStateKey(e.Key); err == nil {
				w.chk.DeviceStateSeen(dev, dep, 0, "", true)
			}
		}
		o.step(opcore.KVDelete{Bucket: b, Key: e.Key, Revision: e.Rev})
		return
	}
	switch b {
	case core.BucketDeviceHeartbeat:
		if hw, ok := e.Obj.(*heartbeatWrite); ok {
			w.chk.OperatorSawHeartbeatRef(hw.dev.chk, hw.hb)
			w.noteHeartbeatOf(w.store.devices[hw.dev.idx], hw.hb)
			break
		}
		hb, _ := core.DecodeHeartbeat(e.Value)
		w.chk.OperatorSawHeartbeat(e.Key, hb)
		w.noteHeartbeatSeen(e.Key, hb)
	case core.BucketAgentUpgradeStatus:
		if st, ok := e.Obj.(core.UpgradeStatus); ok {
			switch st.Phase {
			case core.UpgradeCommitted:
				w.chk.AttemptOver(e.Key, st.Attempt, false)
			case core.UpgradeFailed, core.UpgradeRolledBack:
				w.chk.AttemptOver(e.Key, st.Attempt, true)
			}
		}
	case core.BucketDeviceState:
		if st, ok := e.Obj.(core.DeviceState); ok {
			w.chk.DeviceStateSeen(st.Device, st.Deployment, st.Generation, st.Phase, false)
		}
	}
	o.step(opcore.KVPut{Bucket: b, Key: e.Key, Value: e.Value, Revision: e.Rev})
}

// Message implements natsim.Client (the operator subscribes to nothing).
func (o *Operator) Message(*natsim.Conn, int, *natsim.Msg) {}

// Reply implements natsim.Client: a command's outcome.
func (o *Operator) Reply(_ *natsim.Conn, tok uint64, m *natsim.Msg, err error) {
	if !o.alive {
		return
	}
	cmd, ok := o.reqs[tok]
	if !ok {
		return
	}
	delete(o.reqs, tok)
	res := opcore.CommandResult{Device: cmd.Device, Verb: cmd.Request.Verb, ID: cmd.Request.ID, Attempt: cmd.Attempt}
	switch {
	case errors.Is(err, natsim.ErrNoResponders):
		res.Code, res.Message = core.ErrCodeOffline, err.Error()
	case err != nil:
		res.Code, res.Message = core.ErrCodeTimeout, err.Error()
	default:
		r, ok := m.Obj.(core.CommandReply)
		if !ok {
			var derr error
			r, derr = core.DecodeCommandReply(m.Data)
			if derr != nil {
				res.Code, res.Message = core.ErrCodeBadReply, derr.Error()
				break
			}
		}
		if r.Error != nil {
			res.Code, res.Message = r.Error.Code, r.Error.Message
		} else if cmd.Request.Verb == core.VerbUpgradeStop {
			o.w.chk.AttemptOver(cmd.Device, cmd.Attempt, false)
		}
	}
	o.step(res)
}

// ConnState implements natsim.Client.
func (o *Operator) ConnState(*natsim.Conn, bool) {}

// rolloutPaused reports whether the rollout's last status says paused.
func (s *Store) rolloutPaused(name string) bool {
	r := s.rollout(name)
	if r == nil {
		return false
	}
	i := slices.IndexFunc(r.status.Conditions, func(c opcore.Condition) bool { return c.Type == opcore.CondPaused })
	return i >= 0 && r.status.Conditions[i].Status
}

// markerSink sees every upgrade marker as the server stores it: a marker
// the operator wrote has started its device once it is in KV.
type markerSink struct{ w *World }

// WatchEntry implements natsim.WatchSink.
func (s markerSink) WatchEntry(_ *natsim.Watcher, e *natsim.Entry) {
	if e.Op != natsim.OpPut {
		return
	}
	m, err := decodeMarker(e)
	if err != nil {
		return
	}
	s.w.chk.MarkerLanded(e.Key, m.Attempt)
}
