//go:build simreal

package simreal

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
	"github.com/flotilla-fleet/flotilla/sim/check"
)

// observer watches the real run on the wire and feeds sim/check's checker:
// every KV write is a publish on $KV.<bucket>.<key>, which a core NATS
// subscription sees in the order the server received it (before any watch
// consumer delivers it), and so are the operator's commands and the
// agents' replies. All subscriptions share one channel, so the order of
// arrival is kept across subjects: a heartbeat is seen before the
// upgrade-stop the operator sent because of it.
type observer struct {
	start time.Time
	nc    *nats.Conn
	ch    chan *nats.Msg
	subs  []*nats.Subscription
	inbox *nats.Subscription // _INBOX.>: replies (and copies of consumer deliveries, ignored)
	done  chan struct{}

	// onPhase is told (outside the lock) when a device reports an upgrade
	// phase: the fault engine's triggers.
	onPhase func(device string, st core.UpgradeStatus)

	mu     sync.Mutex
	chk    *check.Checker
	raw    map[string]string // bucket/key → last value seen (gap fill after a reconnect)
	hb     map[string]hbSeen
	status map[string]core.UpgradeStatus
	marker map[string]core.UpgradeMarker
	armed  map[string]core.UpgradeStatus // device → last WaitingForStop status
	stops  map[string]stopSeen           // reply inbox → the upgrade-stop it answers
	stop   map[string]*stopSeen          // device → last upgrade-stop seen
	wire   uint64
	seen   map[string]int // what was observed, by kind (the suite checks the observer saw the rollout)
}

type hbSeen struct {
	at time.Time
	hb core.Heartbeat
}

type stopSeen struct {
	device  string
	req     core.CommandRequest
	replied bool // a successful reply was seen
}

var observedBuckets = []string{core.BucketDeviceHeartbeat, core.BucketAgentUpgradeStatus, core.BucketAgentUpgrade,
	core.BucketDesiredState, core.BucketDeviceState}

func newObserver(url string, chk *check.Checker) (*observer, error) {
	o := &observer{start: time.Now(), ch: make(chan *nats.Msg, 1<<16), done: make(chan struct{}), chk: chk,
		raw: map[string]string{}, hb: map[string]hbSeen{}, status: map[string]core.UpgradeStatus{},
		marker: map[string]core.UpgradeMarker{}, armed: map[string]core.UpgradeStatus{},
		stops: map[string]stopSeen{}, stop: map[string]*stopSeen{}, seen: map[string]int{}}
	nc, err := nats.Connect(url, nats.Name("simreal-observer"), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectHandler(func(*nats.Conn) { go o.fillGap() }))
	if err != nil {
		return nil, err
	}
	o.nc = nc
	subjects := []string{"device-commands.>", "_INBOX.>"}
	for _, b := range observedBuckets {
		subjects = append(subjects, "$KV."+b+".>")
	}
	for _, s := range subjects {
		sub, err := nc.ChanSubscribe(s, o.ch)
		if err != nil {
			nc.Close()
			return nil, err
		}
		_ = sub.SetPendingLimits(-1, -1)
		o.subs = append(o.subs, sub)
		if s == "_INBOX.>" {
			o.inbox = sub
		}
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	go o.loop()
	return o, nil
}

func (o *observer) close() {
	o.nc.Close()
	close(o.done)
}

func (o *observer) now() time.Duration { return time.Since(o.start) }

func (o *observer) loop() {
	for {
		select {
		case <-o.done:
			return
		case m := <-o.ch:
			o.handle(m, false)
		}
	}
}

// fillGap reads what KV holds after the observer reconnected: writes made
// while it was not yet subscribed again were not seen on the wire.
func (o *observer) fillGap() {
	js, err := jetstream.New(o.nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, b := range []string{core.BucketAgentUpgradeStatus, core.BucketAgentUpgrade, core.BucketDesiredState} {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			continue
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			continue
		}
		for k := range keys.Keys() {
			e, err := kv.Get(ctx, k)
			if err != nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			o.handle(&nats.Msg{Subject: "$KV." + b + "." + k, Data: e.Value()}, true)
		}
	}
}

// handle feeds one message to the checker. gap: a value read back from KV,
// fed only when it differs from the last one seen.
func (o *observer) handle(m *nats.Msg, gap bool) {
	var phase *core.UpgradeStatus
	var dev string
	if !gap && m.Sub == o.inbox && !strings.HasPrefix(m.Subject, "_INBOX.") {
		return // a watch delivery to some client's inbox: seen already as the write itself
	}
	o.mu.Lock()
	at := o.now()
	switch {
	case strings.HasPrefix(m.Subject, "$KV."):
		rest := strings.TrimPrefix(m.Subject, "$KV.")
		bucket, key, ok := strings.Cut(rest, ".")
		if !ok {
			break
		}
		del := m.Header != nil && m.Header.Get("KV-Operation") != ""
		rk := bucket + "/" + key
		if gap && o.raw[rk] == string(m.Data) {
			break
		}
		if del {
			delete(o.raw, rk)
		} else {
			o.raw[rk] = string(m.Data)
		}
		o.wire++
		if st, ok := o.kvEntry(at, bucket, key, m.Data, del, gap, m.Header); ok {
			phase, dev = &st, key
		}
	case strings.HasPrefix(m.Subject, "device-commands."):
		device, verb, err := core.ParseCommandSubject(m.Subject)
		if err != nil || verb != core.VerbUpgradeStop {
			break
		}
		req, err := core.DecodeCommandRequest(verb, m.Data)
		if err != nil || req.UpgradeStop == nil {
			break
		}
		o.seen["upgrade-stop"]++
		o.chk.StopSent(at, device, req.UpgradeStop.Attempt, req.UpgradeStop.TargetVersion)
		s := stopSeen{device: device, req: req}
		o.stop[device] = &s
		if m.Reply != "" {
			o.stops[m.Reply] = s
		}
	case strings.HasPrefix(m.Subject, "_INBOX."):
		s, ok := o.stops[m.Subject]
		if !ok {
			break
		}
		delete(o.stops, m.Subject)
		r, err := core.DecodeCommandReply(m.Data)
		if err != nil || r.Error != nil {
			break
		}
		if last := o.stop[s.device]; last != nil && last.req.UpgradeStop.Attempt == s.req.UpgradeStop.Attempt {
			last.replied = true
		}
		o.seen["upgrade-stop reply"]++
		o.chk.AttemptOver(s.device, s.req.UpgradeStop.Attempt, false)
	}
	o.mu.Unlock()
	if phase != nil && o.onPhase != nil {
		o.onPhase(dev, *phase)
	}
}

// kvEntry feeds one KV write; it returns the upgrade status when it was one.
func (o *observer) kvEntry(at time.Duration, bucket, key string, value []byte, del, gap bool, h nats.Header) (core.UpgradeStatus, bool) {
	c := o.chk
	switch bucket {
	case core.BucketDeviceHeartbeat:
		if del {
			return core.UpgradeStatus{}, false
		}
		hb, err := core.DecodeHeartbeat(value)
		if err != nil {
			return core.UpgradeStatus{}, false
		}
		o.seen["heartbeat"]++
		c.OperatorSawHeartbeat(key, hb)
		o.hb[key] = hbSeen{at: time.Now(), hb: hb}
		// The new version heartbeating ends the attempt in the operator's view.
		if m, ok := o.marker[key]; ok && hb.Attempt == 0 && hb.AgentVersion.Compare(m.TargetVersion) == 0 {
			c.AttemptOver(key, m.Attempt, false)
		}
	case core.BucketAgentUpgradeStatus:
		if del {
			delete(o.status, key)
			return core.UpgradeStatus{}, false
		}
		st, err := core.DecodeUpgradeStatus(value)
		if err != nil {
			return core.UpgradeStatus{}, false
		}
		o.status[key] = st
		o.seen["status "+string(st.Phase)]++
		switch st.Phase {
		case core.UpgradeWaitingForStop:
			o.armed[key] = st
		case core.UpgradeCommitted:
			c.AttemptOver(key, st.Attempt, false)
		case core.UpgradeFailed, core.UpgradeRolledBack:
			c.AttemptOver(key, st.Attempt, true)
		}
		return st, true
	case core.BucketAgentUpgrade:
		if del {
			delete(o.marker, key)
			return core.UpgradeStatus{}, false
		}
		m, err := core.DecodeUpgradeMarker(value)
		if err != nil {
			c.Fail(at, check.InvRollout, key, "the operator wrote an undecodable marker (read back from KV: %v, headers %v): %v", gap, h, err)
			return core.UpgradeStatus{}, false
		}
		o.marker[key] = m
		o.seen["marker"]++
		// Seen on the wire: it has reached KV.
		c.MarkerWritten(at, key, m.Rollout, m.Attempt)
		c.MarkerLanded(key, m.Attempt)
	case core.BucketDesiredState:
		if del {
			return core.UpgradeStatus{}, false
		}
		if dev, _, err := core.ParseDesiredStateKey(key); err == nil {
			c.DesiredWritten(at, dev, key, value)
		}
	case core.BucketDeviceState:
		if dev, dep, err := core.ParseDeviceStateKey(key); err == nil {
			if del {
				c.DeviceStateSeen(dev, dep, 0, "", true)
			} else if st, err := core.DecodeDeviceState(value); err == nil {
				c.DeviceStateSeen(st.Device, st.Deployment, st.Generation, st.Phase, false)
			}
		}
	}
	return core.UpgradeStatus{}, false
}

// operatorStep sees the operator core's inputs and effects (runner
// Options.Observe): the operator's own attempt time-outs are not on the
// wire. It runs before the effects are carried out, so a marker written
// because of a time-out is seen after it.
func (o *observer) operatorStep(_ time.Time, _ opcore.Input, effects []opcore.Effect) {
	for _, e := range effects {
		if p, ok := e.(opcore.PatchDeviceStatus); ok && p.Status.Upgrade.Phase == opcore.UpgradeTimedOut {
			o.mu.Lock()
			o.chk.AttemptOver(p.Name, p.Status.Upgrade.Attempt, true)
			o.mu.Unlock()
		}
	}
}

// agentExited judges an agent process that ended without the harness
// killing it (invariant 3): the checker is given what the process had
// announced (its last WaitingForStop), the upgrade-stop seen on the wire and
// whether it was answered, and the exit.
func (o *observer) agentExited(device, how string) {
	// The reply to an upgrade-stop is sent before the process exits; give
	// it a moment to arrive on the observer's connection.
	time.Sleep(300 * time.Millisecond)
	o.mu.Lock()
	defer o.mu.Unlock()
	at := o.now()
	p := &check.Proc{}
	if st, ok := o.armed[device]; ok {
		o.chk.AgentStep(at, device, p, nil, []agentcore.Effect{agentcore.PutUpgradeStatus{Status: st}})
	}
	var in agentcore.Input
	var effs []agentcore.Effect
	if s := o.stop[device]; s != nil {
		in = agentcore.CommandReceived{Handle: 1, Verb: core.VerbUpgradeStop, Request: s.req}
		if s.replied {
			effs = append(effs, agentcore.Reply{Handle: 1})
		}
	}
	effs = append(effs, agentcore.Exit{Reason: how})
	o.chk.AgentStep(at, device, p, in, effs)
	o.seen["agent exit"]++
}

// deviceSeen records a Device object as given to the operator.
func (o *observer) deviceSeen(name string, labels map[string]string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.chk.DeviceSeen(name, labels, false)
}

// rolloutSeen records an AgentRollout spec as given to the operator.
func (o *observer) rolloutSeen(spec opcore.AgentRolloutSpec) {
	st := spec.Rollout
	var th *check.Amount
	if st.FailureThreshold != nil {
		th = &check.Amount{Value: st.FailureThreshold.Value, Percent: st.FailureThreshold.Percent}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.chk.RolloutSeen(spec.Name, spec.Selector, check.Amount{Value: st.MaxUnavailable.Value, Percent: st.MaxUnavailable.Percent}, th)
}

// checkDisk checks invariant 1 on one device's disk.
func (o *observer) checkDisk(device string, d check.Disk) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.hb[device]; !ok {
		return // a fresh install preserves itself before its first heartbeat
	}
	o.chk.CheckDisk(o.now(), device, d)
}

// snapshot returns copies of what the observer knows about device.
func (o *observer) snapshot(device string) (hb hbSeen, hbOK bool, st core.UpgradeStatus, stOK bool, m core.UpgradeMarker, mOK bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	hb, hbOK = o.hb[device]
	st, stOK = o.status[device]
	m, mOK = o.marker[device]
	return
}

func (o *observer) violations() []check.Violation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]check.Violation(nil), o.chk.Violations...)
}

func (o *observer) counts() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.seen))
	for k, v := range o.seen {
		out[k] = v
	}
	return out
}
