package sim

import (
	"errors"
	"slices"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/operator/runcore"
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

// Operator is the simulated operator: the production runner state machine
// (operator/runcore, which owns the decision core) over the simulated NATS
// (natsim's v2 calls, as nats.go shows itself) and the store. This file
// only carries out the machine's actions and feeds back their outcomes; it
// decides nothing. It can crash (memory lost, KV and objects kept) and
// restart.
type Operator struct {
	w     *World
	m     *runcore.Machine
	core  *opcore.Operator // m.Core()
	conn  *natsim.Conn
	alive bool
	gen   uint64
	reqs  map[uint64]runcore.Request // natsim request token → the action
	wgen  [8]uint64                  // watch id (index in opBuckets) → the machine's generation
	timer uint64                     // generation of the armed timer
	queue []runcore.Event            // outcomes known at once (object writes)
	busy  bool
	cfg   opcore.Config
	// crashes left for a phase trigger
	crashes int
}

// Operator event kinds.
const (
	okTimer uint16 = iota + 1
	okInput
	okRestart
	okCrash
	okBucket
)

var opBuckets = runcore.OperatorBuckets

// objectLatency is how long an object event takes to reach the operator
// (the informer's latency).
const objectLatency = 5 * time.Millisecond

func (o *Operator) start() {
	w := o.w
	o.gen++
	o.alive = true
	o.m = runcore.New(runcore.Config{Core: o.cfg, CreateBuckets: true, Seed: o.gen, Observe: o.observe})
	o.core = o.m.Core()
	o.reqs = map[uint64]runcore.Request{}
	o.wgen = [8]uint64{}
	o.conn = w.net.Dial(o, natsim.ConnOptions{Name: "flotilla-operator", ReconnectWait: time.Second})
	o.step(runcore.Start{})
	if o.conn.Up() {
		o.step(runcore.Connected{})
	}
	for _, d := range w.store.deployments {
		o.step(runcore.Object{In: opcore.DeploymentUpsert{Spec: d.spec}})
	}
	for _, d := range w.store.devices {
		if d.made {
			o.step(runcore.Object{In: opcore.DeviceUpsert{Device: d.rec}})
		}
	}
	for _, r := range w.store.rollouts {
		o.step(runcore.Object{In: opcore.AgentRolloutUpsert{Spec: r.spec}})
	}
	o.step(runcore.Object{In: opcore.CachesSynced{}})
}

func (o *Operator) crash() {
	if !o.alive {
		return
	}
	o.alive = false
	o.core, o.m = nil, nil
	o.conn.Close() // queued and in-flight writes are lost
	o.w.chk.MarkersLost()
	o.conn = nil
	o.reqs = nil
	o.queue = nil
	o.gen++
}

// Handle implements kernel.Handler.
func (o *Operator) Handle(k *kernel.Kernel, ev *kernel.Event) {
	switch ev.Kind {
	case okTimer:
		if o.alive && ev.A == o.gen && ev.B == o.timer {
			o.step(runcore.TimerFired{})
		}
	case okBucket:
		if o.alive && ev.A == o.gen {
			a := ev.P.(runcore.OpenBucket)
			res := runcore.BucketOpened{Bucket: a.Bucket}
			if !o.conn.Up() {
				res.Err = natsim.ErrTimeout.Error()
			} else if _, err := o.w.net.S.Bucket(a.Bucket); err != nil {
				res.Err = err.Error()
			}
			o.step(res)
		}
	case okInput:
		if o.alive {
			o.step(runcore.Object{In: ev.P.(opcore.Input)})
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
	o.w.k.After(objectLatency, kernel.Event{Target: o, Kind: okInput, P: in})
}

// step delivers ev to the machine and carries out its actions; outcomes
// known at once are delivered after, in order.
func (o *Operator) step(ev runcore.Event) {
	o.queue = append(o.queue, ev)
	if o.busy {
		return
	}
	o.busy = true
	for len(o.queue) > 0 && o.alive {
		ev := o.queue[0]
		o.queue = o.queue[1:]
		for _, a := range o.m.Step(kernel.Epoch.Add(o.w.k.Now()), ev) {
			if !o.alive {
				break
			}
			o.do(a)
		}
	}
	o.queue = o.queue[:0]
	o.busy = false
	o.w.checkStop()
}

// observe sees every core input and its effects (trace and checker).
func (o *Operator) observe(_ time.Time, in opcore.Input, effs []opcore.Effect) {
	w := o.w
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
	for _, e := range effs {
		if _, ok := e.(opcore.Notice); ok {
			w.notices++
		}
	}
	w.traceOperator(in, effs)
}

func bucketID(b string) int {
	for i, x := range opBuckets {
		if x == b {
			return i
		}
	}
	return -1
}

// do carries out one action.
func (o *Operator) do(a runcore.Action) {
	w := o.w
	now := w.k.Now()
	c := w.chk
	switch a := a.(type) {
	case runcore.Log:
	case runcore.ArmTimer:
		o.timer++
		w.k.At(max(a.At.Sub(kernel.Epoch), now), kernel.Event{Target: o, Kind: okTimer, A: o.gen, B: o.timer})
	case runcore.OpenBucket:
		d := time.Millisecond
		if !o.conn.Up() {
			d = a.Timeout
		}
		w.k.After(d, kernel.Event{Target: o, Kind: okBucket, A: o.gen, P: a})
	case runcore.CreateWatch:
		if id := bucketID(a.Bucket); id >= 0 {
			o.wgen[id] = a.Gen
			o.conn.WatchFrom(id, a.Bucket, ">", a.From, a.Timeout)
		}
	case runcore.StopWatch:
		if id := bucketID(a.Bucket); id >= 0 && o.wgen[id] == a.Gen {
			o.conn.StopWatch(id)
		}
	case runcore.Write:
		e := &natsim.Entry{Bucket: a.Bucket, Key: a.Key, Value: a.Value}
		if a.Delete {
			e.Op = natsim.OpDelete
		} else {
			switch a.Bucket {
			case core.BucketDesiredState:
				if dev, _, err := core.ParseDesiredStateKey(a.Key); err == nil {
					c.DesiredWritten(now, dev, a.Key, a.Value)
				}
			case core.BucketAgentUpgrade:
				// Judged with what the operator knew when it wrote; a write
				// lost with a crashing operator is forgotten (MarkersLost).
				if m, err := core.DecodeUpgradeMarker(a.Value); err == nil {
					e.Obj = m // the decoded value, so readers in the simulator skip a decode
					c.MarkerWritten(now, a.Key, m.Rollout, m.Attempt)
				} else {
					w.coreError(nil, "operator wrote an undecodable marker", err)
				}
			}
		}
		o.conn.Write(a.Token, e, a.Timeout)
	case runcore.Get:
		o.conn.Get(a.Token, a.Bucket, a.Key, a.Timeout)
	case runcore.Request:
		if a.Verb == core.VerbUpgradeStop {
			if r, err := core.DecodeCommandRequest(a.Verb, a.Data); err == nil && r.UpgradeStop != nil {
				c.StopSent(now, a.Device, r.UpgradeStop.Attempt, r.UpgradeStop.TargetVersion)
			}
		}
		o.reqs[o.conn.RequestBytes(a.Subject, a.Data, a.Timeout)] = a
	case runcore.ApplyObject:
		o.apply(a.Effect)
		o.queue = append(o.queue, runcore.ObjectDone{Token: a.Token})
	}
}

// apply writes an object effect to the store (the Kubernetes API).
func (o *Operator) apply(e opcore.Effect) {
	w := o.w
	now := w.k.Now()
	c := w.chk
	switch e := e.(type) {
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
			c.AttemptTimedOut(e.Name, e.Status.Upgrade.Attempt)
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
	}
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
	if !o.alive || id < 0 || id >= len(opBuckets) {
		return
	}
	b, gen := opBuckets[id], o.wgen[id]
	if e == nil {
		o.step(runcore.WatchReplayed{Bucket: b, Gen: gen})
		return
	}
	if o.m.WouldDeliver(b, gen, e.Rev) {
		o.sawEntry(b, e)
	}
	o.step(runcore.WatchEntry{Bucket: b, Gen: gen, Key: e.Key, Value: e.Value, Revision: e.Rev, Delete: e.Op != natsim.OpPut})
}

// sawEntry tells the checker about an entry that reaches the core.
func (o *Operator) sawEntry(b string, e *natsim.Entry) {
	w := o.w
	if e.Op != natsim.OpPut {
		if b == core.BucketDeviceState {
			if dev, dep, err := core.ParseDeviceStateKey(e.Key); err == nil {
				w.chk.DeviceStateSeen(dev, dep, 0, "", true)
			}
		}
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
}

// WatchFailed implements natsim.WatchClient.
func (o *Operator) WatchFailed(_ *natsim.Conn, id int, err error) {
	if o.alive && id >= 0 && id < len(opBuckets) {
		o.step(runcore.WatchFailed{Bucket: opBuckets[id], Gen: o.wgen[id], Err: err.Error()})
	}
}

// outcome classifies a natsim error as the runner's adapter classifies
// nats.go's (natsadapter.Classify).
func outcome(err error) runcore.Outcome {
	switch {
	case err == nil:
		return runcore.OK
	case errors.Is(err, natsim.ErrMaxPayload), errors.Is(err, natsim.ErrBadKey), errors.Is(err, natsim.ErrBucketNotFound):
		return runcore.Permanent
	case errors.Is(err, natsim.ErrNoResponders):
		return runcore.NoResponders
	case errors.Is(err, natsim.ErrBufferFull), errors.Is(err, natsim.ErrConnClosed):
		return runcore.Failed
	}
	return runcore.Uncertain
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// WriteDone implements natsim.WriteClient.
func (o *Operator) WriteDone(_ *natsim.Conn, token uint64, _ uint64, err error) {
	if o.alive {
		o.step(runcore.WriteDone{Token: token, Outcome: outcome(err), Err: errText(err)})
	}
}

// GetDone implements natsim.GetClient.
func (o *Operator) GetDone(_ *natsim.Conn, token uint64, e *natsim.Entry, err error) {
	if !o.alive {
		return
	}
	switch {
	case errors.Is(err, natsim.ErrKeyNotFound), err == nil && (e == nil || e.Op != natsim.OpPut):
		o.step(runcore.GetDone{Token: token, Outcome: runcore.NotFound})
	case err != nil:
		o.step(runcore.GetDone{Token: token, Outcome: outcome(err), Err: err.Error()})
	default:
		o.step(runcore.GetDone{Token: token, Outcome: runcore.OK, Value: e.Value})
	}
}

// Message implements natsim.Client (the operator subscribes to nothing).
func (o *Operator) Message(*natsim.Conn, int, *natsim.Msg) {}

// Reply implements natsim.Client: a command's outcome.
func (o *Operator) Reply(_ *natsim.Conn, tok uint64, m *natsim.Msg, err error) {
	if !o.alive {
		return
	}
	a, ok := o.reqs[tok]
	if !ok {
		return
	}
	delete(o.reqs, tok)
	ev := runcore.ReplyDone{Token: a.Token, Outcome: outcome(err), Err: errText(err)}
	if err == nil {
		ev.Data = m.Data // the agent's core-encoded reply
		if a.Verb == core.VerbUpgradeStop {
			if r, derr := core.DecodeCommandReply(ev.Data); derr == nil && r.Error == nil {
				o.w.chk.AttemptOver(a.Device, a.Attempt, false)
			}
		}
	}
	o.step(ev)
}

// ConnState implements natsim.Client.
func (o *Operator) ConnState(_ *natsim.Conn, up bool) {
	if !o.alive {
		return
	}
	if up {
		o.step(runcore.Connected{})
	} else {
		o.step(runcore.Disconnected{Err: "connection lost"})
	}
}

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
