package runcore

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// harness drives a Machine as a shell would, remembering the watches it was
// asked to create and the core inputs the machine delivered.
type harness struct {
	t       *testing.T
	m       *Machine
	now     time.Time
	inputs  []opcore.Input
	effects []opcore.Effect
	gen     map[string]uint64 // bucket → current watch generation
	last    []Action
	objs    []ApplyObject // object writes issued and not yet answered
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, now: t0, gen: map[string]uint64{}}
	cfg.Observe = func(_ time.Time, in opcore.Input, effs []opcore.Effect) {
		h.inputs = append(h.inputs, in)
		h.effects = append(h.effects, effs...)
	}
	cfg.Core.CreateDevices = false
	h.m = New(cfg)
	h.step(Start{})
	return h
}

func (h *harness) step(ev Event) []Action {
	h.t.Helper()
	out := slices.Clone(h.m.Step(h.now, ev)) // Step reuses its slice
	for _, a := range out {
		switch a := a.(type) {
		case CreateWatch:
			h.gen[a.Bucket] = a.Gen
		case ApplyObject:
			h.objs = append(h.objs, a)
		}
	}
	h.last = out
	return out
}

// finishObjects answers every object write out (and those they lead to)
// with err, returning every action that follows.
func (h *harness) finishObjects(err string) []Action {
	h.t.Helper()
	var all []Action
	for len(h.objs) > 0 {
		a := h.objs[0]
		h.objs = h.objs[1:]
		all = append(all, h.step(ObjectDone{Token: a.Token, Err: err})...)
	}
	return all
}

func (h *harness) advance(d time.Duration) []Action {
	h.now = h.now.Add(d)
	return h.step(TimerFired{})
}

// up connects, opens every bucket, replays every watch empty and syncs the
// caches: the operator is Converged.
func (h *harness) up() {
	h.t.Helper()
	out := h.step(Connected{})
	for _, a := range out {
		if ob, ok := a.(OpenBucket); ok {
			h.step(BucketOpened{Bucket: ob.Bucket})
		}
	}
	for _, b := range OperatorBuckets {
		h.step(WatchReplayed{Bucket: b, Gen: h.gen[b]})
	}
	h.step(Object{In: opcore.CachesSynced{}})
	if !h.m.Status().Converged {
		h.t.Fatal("not converged after up")
	}
}

func (h *harness) put(bucket, key string, value []byte, rev uint64) []Action {
	h.t.Helper()
	return h.step(WatchEntry{Bucket: bucket, Gen: h.gen[bucket], Key: key, Value: value, Revision: rev})
}

func render(a Action) string {
	switch a := a.(type) {
	case OpenBucket:
		return "OpenBucket " + a.Bucket
	case CreateWatch:
		return fmt.Sprintf("CreateWatch %s gen=%d from=%d", a.Bucket, a.Gen, a.From)
	case StopWatch:
		return fmt.Sprintf("StopWatch %s gen=%d", a.Bucket, a.Gen)
	case Write:
		if a.Delete {
			return fmt.Sprintf("Delete %s/%s", a.Bucket, a.Key)
		}
		return fmt.Sprintf("Write %s/%s", a.Bucket, a.Key)
	case Get:
		return fmt.Sprintf("Get %s/%s", a.Bucket, a.Key)
	case Request:
		return "Request " + a.Subject
	case ApplyObject:
		return fmt.Sprintf("ApplyObject %T", a.Effect)
	case Log:
		return "Log " + a.Msg
	case ArmTimer:
		return "ArmTimer +" + a.At.Sub(t0).String()
	}
	return fmt.Sprintf("%T", a)
}

// only renders the actions of the given kinds ("Write", "Get", ...).
func only(out []Action, kinds ...string) []string {
	var s []string
	for _, a := range out {
		r := render(a)
		for _, k := range kinds {
			if strings.HasPrefix(r, k+" ") {
				s = append(s, r)
			}
		}
	}
	return s
}

func find[T Action](out []Action) []T {
	var r []T
	for _, a := range out {
		if x, ok := a.(T); ok {
			r = append(r, x)
		}
	}
	return r
}

func eq(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func deployment(name string) opcore.DeploymentSpec {
	return opcore.DeploymentSpec{Name: name, Generation: 1,
		Selector: core.LabelSelector{MatchLabels: map[string]string{"site": "a"}},
		Workload: opcore.Workload{Name: name, Version: "1.0", Runtime: core.RuntimeProcess}}
}

func device(name string) opcore.Input {
	return opcore.DeviceUpsert{Device: opcore.DeviceRecord{Name: name, Labels: map[string]string{"site": "a"}}}
}

// placed converges with d1 and a deployment web, ticks, and returns the
// Write of d1.web.
func placed(t *testing.T, h *harness) Write {
	t.Helper()
	h.step(Object{In: device("d1")})
	h.up()
	h.step(Object{In: opcore.DeploymentUpsert{Spec: deployment("web")}})
	out := h.advance(time.Second)
	ws := find[Write](out)
	if len(ws) != 1 || ws[0].Key != "d1.web" {
		t.Fatalf("writes after placing: %v", only(out, "Write"))
	}
	return ws[0]
}

func TestNothingGoesToNATSBeforeConnectedAndBucketsOpen(t *testing.T) {
	h := newHarness(t, Config{})
	out := h.advance(10 * time.Second)
	eq(t, "disconnected", only(out, "OpenBucket", "CreateWatch", "Write"))
	out = h.step(Connected{})
	var want []string
	for _, b := range core.Buckets {
		want = append(want, "OpenBucket "+b)
	}
	eq(t, "on connect every bucket is opened", only(out, "OpenBucket"), want...)
	out = h.step(BucketOpened{Bucket: core.BucketDesiredState})
	eq(t, "an opened bucket is watched from the start", only(out, "CreateWatch"),
		"CreateWatch desired-state gen=1 from=0")
	if h.m.Status().BucketsReady {
		t.Fatal("buckets ready with one of them open")
	}
}

func TestBucketOpenFailureIsRetriedWithBackoff(t *testing.T) {
	h := newHarness(t, Config{RetryMin: time.Second})
	h.step(Connected{})
	out := h.step(BucketOpened{Bucket: core.BucketDeviceInfo, Err: "timeout"})
	if len(find[OpenBucket](out)) != 0 {
		t.Fatal("retried at once")
	}
	out = h.advance(time.Second)
	eq(t, "retry after back-off", only(out, "OpenBucket"), "OpenBucket device-info")
}

func TestWatchDeliversEachRevisionOnceAndReplayOnce(t *testing.T) {
	h := newHarness(t, Config{})
	h.up()
	hb, _ := core.Heartbeat{AgentVersion: core.MustParseVersion("v1.0.0"), Seq: 1}.Encode()
	h.inputs = nil
	h.put(core.BucketDeviceHeartbeat, "d1", hb, 5)
	h.put(core.BucketDeviceHeartbeat, "d1", hb, 5) // redelivered
	h.put(core.BucketDeviceHeartbeat, "d1", hb, 4) // older
	if len(h.inputs) != 1 {
		t.Fatalf("core saw %d inputs for revision 5, want 1", len(h.inputs))
	}
	// A reconnect recreates the watch from the revision after the last one.
	h.step(Disconnected{})
	out := h.step(Connected{})
	got := only(out, "StopWatch", "CreateWatch")
	if !contains(got, "StopWatch device-heartbeat gen=1") || !contains(got, "CreateWatch device-heartbeat gen=2 from=6") ||
		!contains(got, "CreateWatch desired-state gen=2 from=0") {
		t.Fatalf("reconnect: %v", got)
	}
	h.inputs = nil
	// The old watch's late entries are ignored; the new one's replay end is
	// not a second KVReplayed.
	h.step(WatchEntry{Bucket: core.BucketDeviceHeartbeat, Gen: 1, Key: "d1", Value: hb, Revision: 7})
	h.step(WatchReplayed{Bucket: core.BucketDeviceHeartbeat, Gen: 2})
	h.put(core.BucketDeviceHeartbeat, "d1", hb, 7)
	if len(h.inputs) != 1 {
		t.Fatalf("inputs after recreate: %#v", h.inputs)
	}
	if h.m.Status().WatchRestarts != 6 {
		t.Fatalf("watch restarts %d, want 6", h.m.Status().WatchRestarts)
	}
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func TestFailedWatchIsRecreatedFromLastRevisionWithBackoff(t *testing.T) {
	h := newHarness(t, Config{RetryMin: time.Second})
	h.up()
	hb, _ := core.Heartbeat{AgentVersion: core.MustParseVersion("v1.0.0"), Seq: 1}.Encode()
	h.put(core.BucketDeviceHeartbeat, "d1", hb, 9)
	out := h.step(WatchFailed{Bucket: core.BucketDeviceHeartbeat, Gen: 1, Err: "closed"})
	eq(t, "stopped, not recreated at once", only(out, "StopWatch", "CreateWatch"), "StopWatch device-heartbeat gen=1")
	out = h.advance(time.Second)
	eq(t, "recreated after back-off", only(out, "CreateWatch"), "CreateWatch device-heartbeat gen=2 from=10")
	out = h.step(WatchFailed{Bucket: core.BucketDeviceHeartbeat, Gen: 2, Err: "timeout"})
	out = append(out, h.advance(time.Second)...)
	eq(t, "second failure waits longer", only(out, "CreateWatch"))
	out = h.advance(time.Second)
	eq(t, "then recreated", only(out, "CreateWatch"), "CreateWatch device-heartbeat gen=3 from=10")
}

func TestWritesWaitInTheOutboxWhileDisconnectedNewestValueWins(t *testing.T) {
	h := newHarness(t, Config{})
	w := placed(t, h)
	h.step(Disconnected{})
	// The core goes on: a new generation while NATS is down.
	spec := deployment("web")
	spec.Generation, spec.Workload.Version = 2, "2.0"
	h.step(Object{In: opcore.DeploymentUpsert{Spec: spec}})
	out := h.advance(time.Second)
	eq(t, "no write while disconnected", only(out, "Write"))
	if h.m.Status().OutboxDepth != 1 {
		t.Fatalf("outbox depth %d", h.m.Status().OutboxDepth)
	}
	out = h.step(WriteDone{Token: w.Token, Outcome: Failed, Err: "connection closed"})
	out = append(out, h.advance(time.Minute)...)
	eq(t, "still no write while disconnected", only(out, "Write"))
	out = h.step(Connected{})
	ws := find[Write](out)
	if len(ws) != 1 || !strings.Contains(string(ws[0].Value), `"2.0"`) {
		t.Fatalf("after reconnect: %v", only(out, "Write"))
	}
	h.step(WriteDone{Token: ws[0].Token, Outcome: OK})
	if d := h.m.Status().OutboxDepth; d != 0 {
		t.Fatalf("outbox depth %d after the write landed", d)
	}
}

func TestUncertainWriteIsReconciledBeforeWritingAgain(t *testing.T) {
	h := newHarness(t, Config{})
	w := placed(t, h)
	out := h.step(WriteDone{Token: w.Token, Outcome: Uncertain, Err: "context deadline exceeded"})
	gets := find[Get](out)
	eq(t, "a timed-out write is checked", only(out, "Get", "Write"), "Get desired-state/d1.web")
	// It landed: done, nothing re-planned, the core never hears of a failure.
	out = h.step(GetDone{Token: gets[0].Token, Outcome: OK, Value: w.Value})
	eq(t, "landed", only(out, "Get", "Write"))
	for _, in := range h.inputs {
		if _, ok := in.(opcore.KVWriteFailed); ok {
			t.Fatal("core told of a failure for a write that landed")
		}
	}
	if s := h.m.Status(); s.OutboxDepth != 0 || s.Reconciles != 1 || s.ReconcileLand != 1 {
		t.Fatalf("status %+v", s)
	}
}

func TestUncertainWriteThatDidNotLandIsWrittenAgain(t *testing.T) {
	h := newHarness(t, Config{})
	w := placed(t, h)
	out := h.step(WriteDone{Token: w.Token, Outcome: Uncertain})
	g := find[Get](out)[0]
	out = h.step(GetDone{Token: g.Token, Outcome: NotFound})
	ws := find[Write](out)
	if len(ws) != 1 || string(ws[0].Value) != string(w.Value) {
		t.Fatalf("not landed: %v", only(out, "Write"))
	}
	// A Get that itself fails is retried after back-off.
	out = h.step(WriteDone{Token: ws[0].Token, Outcome: Uncertain})
	g = find[Get](out)[0]
	out = h.step(GetDone{Token: g.Token, Outcome: Uncertain})
	eq(t, "get failed", only(out, "Get", "Write"))
	out = h.advance(time.Second)
	eq(t, "get retried", only(out, "Get", "Write"), "Get desired-state/d1.web")
}

func TestNewerValueDuringReconcileIsWrittenAfterIt(t *testing.T) {
	h := newHarness(t, Config{})
	w := placed(t, h)
	out := h.step(WriteDone{Token: w.Token, Outcome: Uncertain})
	g := find[Get](out)[0]
	spec := deployment("web")
	spec.Generation, spec.Workload.Version = 2, "2.0"
	h.step(Object{In: opcore.DeploymentUpsert{Spec: spec}})
	out = h.advance(time.Second)
	eq(t, "nothing while the Get is out", only(out, "Write", "Get"))
	out = h.step(GetDone{Token: g.Token, Outcome: OK, Value: w.Value})
	ws := find[Write](out)
	if len(ws) != 1 || !strings.Contains(string(ws[0].Value), `"2.0"`) {
		t.Fatalf("newest after reconcile: %v", only(out, "Write"))
	}
}

func TestPermanentWriteFailureGoesToTheCore(t *testing.T) {
	h := newHarness(t, Config{})
	w := placed(t, h)
	h.inputs = nil
	h.step(WriteDone{Token: w.Token, Outcome: Permanent, Err: "nats: maximum payload exceeded"})
	if len(h.inputs) != 1 {
		t.Fatalf("inputs %#v", h.inputs)
	}
	if f, ok := h.inputs[0].(opcore.KVWriteFailed); !ok || f.Key != "d1.web" {
		t.Fatalf("inputs %#v", h.inputs)
	}
}

func TestDefiniteFailureIsRetriedWithBackoff(t *testing.T) {
	h := newHarness(t, Config{RetryMin: 2 * time.Second})
	w := placed(t, h)
	out := h.step(WriteDone{Token: w.Token, Outcome: Failed, Err: "no responders"})
	eq(t, "not at once", only(out, "Write", "Get"))
	out = h.advance(time.Second)
	eq(t, "not before the back-off", only(out, "Write", "Get"))
	out = h.advance(time.Second)
	eq(t, "after the back-off", only(out, "Write"), "Write desired-state/d1.web")
}

func TestWritesInFlightAreBounded(t *testing.T) {
	h := newHarness(t, Config{MaxWritesInFlight: 2})
	for i := 0; i < 5; i++ {
		h.step(Object{In: device(fmt.Sprintf("d%d", i))})
	}
	h.up()
	h.step(Object{In: opcore.DeploymentUpsert{Spec: deployment("web")}})
	out := h.advance(time.Second)
	ws := find[Write](out)
	if len(ws) != 2 || h.m.Status().OutboxDepth != 5 {
		t.Fatalf("%d writes issued, outbox %d", len(ws), h.m.Status().OutboxDepth)
	}
	out = h.step(WriteDone{Token: ws[0].Token, Outcome: OK})
	if len(find[Write](out)) != 1 {
		t.Fatalf("after one landed: %v", only(out, "Write"))
	}
}

func TestOutboxFullRefusesNewKeysToTheCore(t *testing.T) {
	h := newHarness(t, Config{MaxOutbox: 1})
	h.step(Object{In: device("d1")})
	h.step(Object{In: device("d2")})
	h.up()
	h.inputs = nil
	h.step(Object{In: opcore.DeploymentUpsert{Spec: deployment("web")}})
	h.advance(time.Second)
	var refused int
	for _, in := range h.inputs {
		if f, ok := in.(opcore.KVWriteFailed); ok && f.Err == "outbox full" {
			refused++
		}
	}
	if refused != 1 || h.m.Status().OutboxRefused != 1 {
		t.Fatalf("refused %d", refused)
	}
}

func TestCommandRepliesAreDecodedAndMatched(t *testing.T) {
	ping := core.CommandRequest{Verb: core.VerbPing, ID: "p1"}
	good, _ := core.CommandReply{Verb: core.VerbPing, ID: "p1", Ping: &core.PingResult{Device: "d1", AgentVersion: core.MustParseVersion("v1.0.0")}}.Encode()
	other, _ := core.CommandReply{Verb: core.VerbPing, ID: "p2", Ping: &core.PingResult{Device: "d1", AgentVersion: core.MustParseVersion("v1.0.0")}}.Encode()
	rejected, _ := core.ErrorReply(core.VerbPing, "p1", core.ErrCodeRejected, "no").Encode()
	for _, c := range []struct {
		name string
		ev   ReplyDone
		want core.ErrorCode
	}{
		{"ok", ReplyDone{Outcome: OK, Data: good}, ""},
		{"another request's reply", ReplyDone{Outcome: OK, Data: other}, core.ErrCodeBadReply},
		{"garbled", ReplyDone{Outcome: OK, Data: []byte("{")}, core.ErrCodeBadReply},
		{"agent error", ReplyDone{Outcome: OK, Data: rejected}, core.ErrCodeRejected},
		{"no responders", ReplyDone{Outcome: NoResponders}, core.ErrCodeOffline},
		{"timeout", ReplyDone{Outcome: Uncertain}, core.ErrCodeTimeout},
		{"closed", ReplyDone{Outcome: Failed, Err: "closed"}, core.ErrCodeInternal},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.up()
			h.m.now = h.now
			h.m.send(opcore.SendCommand{Device: "d1", Attempt: 3, Request: ping})
			reqs := find[Request](slices.Clone(h.m.out))
			if len(reqs) != 1 || reqs[0].Subject != core.CommandSubject("d1", core.VerbPing) {
				t.Fatalf("requests %v", reqs)
			}
			h.m.out = h.m.out[:0]
			h.inputs = nil
			c.ev.Token = reqs[0].Token
			h.step(c.ev)
			if len(h.inputs) != 1 {
				t.Fatalf("inputs %#v", h.inputs)
			}
			r := h.inputs[0].(opcore.CommandResult)
			if r.Code != c.want || r.Device != "d1" || r.Attempt != 3 || r.ID != "p1" {
				t.Fatalf("result %+v, want code %q", r, c.want)
			}
		})
	}
}

// stopFixture drives the core until it sends upgrade-stop to d1 and
// returns the actions of that step.
func stopFixture(t *testing.T, h *harness) []Action {
	t.Helper()
	h.step(Object{In: opcore.DeviceUpsert{Device: opcore.DeviceRecord{Name: "d1", Labels: map[string]string{"ring": "0"}}}})
	h.up()
	hb := func(v string, attempt uint32) []Action {
		b, _ := core.Heartbeat{AgentVersion: core.MustParseVersion(v), Seq: 1, UptimeSec: 1, Attempt: attempt}.Encode()
		rev := h.m.buckets[core.BucketDeviceHeartbeat].lastRev + 1
		return h.put(core.BucketDeviceHeartbeat, "d1", b, rev)
	}
	hb("v1.0.0", 0)
	h.step(Object{In: opcore.AgentRolloutUpsert{Spec: opcore.AgentRolloutSpec{Name: "r1", Generation: 1,
		Version: core.MustParseVersion("v1.1.0"), Selector: core.LabelSelector{MatchLabels: map[string]string{"ring": "0"}},
		Artifact: core.ArtifactRef{Object: "flotilla-agent/v1.1.0", SHA256: strings.Repeat("ab", 32), Size: 1000}}}})
	h.advance(time.Second)
	to := core.MustParseVersion("v1.1.0")
	st, _ := core.UpgradeStatus{Attempt: 1, Phase: core.UpgradeWaitingForStop, FromVersion: core.MustParseVersion("v1.0.0"),
		TargetVersion: &to, RunningVersion: core.MustParseVersion("v1.0.0"), At: h.now.UnixMilli()}.Encode()
	h.put(core.BucketAgentUpgradeStatus, "d1", st, 1)
	h.finishObjects("") // earlier writes of d1 are done
	return hb("v1.1.0", 1)
}

func TestUpgradeStopIsSentOnlyAfterStopSentAttemptIsDurable(t *testing.T) {
	h := newHarness(t, Config{})
	out := stopFixture(t, h)
	if len(find[Request](out)) != 0 {
		t.Fatalf("stop requested before its patch was written: %v", only(out, "Request", "ApplyObject"))
	}
	if len(h.objs) != 1 {
		t.Fatalf("object writes out: %v", h.objs)
	}
	if p, ok := h.objs[0].Effect.(opcore.PatchDeviceStatus); !ok || p.Status.Upgrade.StopSentAttempt != 1 {
		t.Fatalf("the write out is %+v, want d1's status with stopSentAttempt 1", h.objs[0].Effect)
	}
	out = h.finishObjects("")
	eq(t, "stop after the patch landed", only(out, "Request"), "Request device-commands.d1.upgrade-stop")
}

func TestUpgradeStopIsNotSentWhenItsPatchFails(t *testing.T) {
	h := newHarness(t, Config{})
	stopFixture(t, h)
	h.inputs = nil
	out := h.finishObjects("the object has been modified")
	eq(t, "no stop", only(out, "Request"))
	var res []opcore.CommandResult
	for _, in := range h.inputs {
		if r, ok := in.(opcore.CommandResult); ok {
			res = append(res, r)
		}
	}
	if len(res) != 1 || res[0].Verb != core.VerbUpgradeStop || res[0].Code != core.ErrCodeInternal || res[0].Attempt != 1 ||
		!res[0].NotSent {
		t.Fatalf("core told %+v", res)
	}
}

func TestStatusPatchesCoalescePerObjectWithBoundedParallelism(t *testing.T) {
	h := newHarness(t, Config{ObjectWriters: 1})
	h.up()
	h.m.now = h.now
	st := func(n int64) opcore.Effect {
		return opcore.PatchDeploymentStatus{Name: "web", Status: opcore.DeploymentStatus{ObservedGeneration: n}}
	}
	h.m.effects([]opcore.Effect{st(1)})
	h.m.pump()
	first := find[ApplyObject](h.m.out)
	h.m.out = h.m.out[:0]
	// While web's first patch is out, two more and one of db.
	h.m.effects([]opcore.Effect{st(2), st(3), opcore.PatchDeploymentStatus{Name: "db"}})
	h.m.pump()
	if n := len(find[ApplyObject](h.m.out)); n != 0 {
		t.Fatalf("%d writes beyond the bound of 1", n)
	}
	if len(first) != 1 || first[0].Effect.(opcore.PatchDeploymentStatus).Status.ObservedGeneration != 1 {
		t.Fatalf("first round %v", first)
	}
	out := h.step(ObjectDone{Token: first[0].Token})
	next := find[ApplyObject](out)
	if len(next) != 1 || next[0].Effect.(opcore.PatchDeploymentStatus).Name != "db" {
		t.Fatalf("second round (fifo across objects): %v", next)
	}
	out = h.step(ObjectDone{Token: next[0].Token})
	last := find[ApplyObject](out)
	if len(last) != 1 || last[0].Effect.(opcore.PatchDeploymentStatus).Status.ObservedGeneration != 3 {
		t.Fatalf("third round, the newest status of web: %v", last)
	}
	if h.m.Status().ObjectBacklog != 1 {
		t.Fatalf("backlog %d", h.m.Status().ObjectBacklog)
	}
}

func TestTicksFollowTheTimerAndWakeAt(t *testing.T) {
	h := newHarness(t, Config{Core: opcore.Config{TickInterval: time.Second}})
	if a := find[ArmTimer](h.last); len(a) != 1 || !a[0].At.Equal(t0.Add(time.Second)) {
		t.Fatalf("start arms %v", h.last)
	}
	h.inputs = nil
	h.advance(500 * time.Millisecond) // early: no tick
	h.advance(500 * time.Millisecond)
	ticks := 0
	for _, in := range h.inputs {
		if _, ok := in.(opcore.Tick); ok {
			ticks++
		}
	}
	if ticks != 1 {
		t.Fatalf("%d ticks, want 1", ticks)
	}
	if a := find[ArmTimer](h.last); len(a) != 1 || !a[0].At.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("re-armed %v", h.last)
	}
	h.m.wakeAt = t0.Add(1500 * time.Millisecond)
	out := h.step(Object{In: opcore.CachesSynced{}})
	if a := find[ArmTimer](out); len(a) != 1 || !a[0].At.Equal(h.m.wakeAt) {
		t.Fatalf("WakeAt not honoured: %v", out)
	}
}

func TestSameEventsSameActions(t *testing.T) {
	run := func() string {
		h := newHarness(t, Config{Seed: 7})
		w := placed(t, h)
		h.step(WriteDone{Token: w.Token, Outcome: Failed})
		h.step(Disconnected{})
		h.advance(3 * time.Second)
		h.step(Connected{})
		var b strings.Builder
		for _, a := range h.last {
			b.WriteString(render(a) + "\n")
		}
		return b.String()
	}
	if a, b := run(), run(); a != b {
		t.Fatalf("two runs differ:\n%s\n%s", a, b)
	}
}

func TestGuardedStopRidesAlongWhenANewerPatchReplacesIt(t *testing.T) {
	h := newHarness(t, Config{})
	h.up()
	h.m.now = h.now
	patch := func(stop uint32) opcore.PatchDeviceStatus {
		return opcore.PatchDeviceStatus{Name: "d1", Status: opcore.DeviceStatus{Upgrade: opcore.DeviceUpgrade{StopSentAttempt: stop}}}
	}
	stop := opcore.SendCommand{Device: "d1", Attempt: 1, Request: core.CommandRequest{Verb: core.VerbUpgradeStop, ID: "s1",
		UpgradeStop: &core.UpgradeStopArgs{Attempt: 1, TargetVersion: core.MustParseVersion("v1.1.0")}}}
	h.m.effects([]opcore.Effect{patch(0)}) // d1's earlier patch goes out
	h.m.pump()
	first := find[ApplyObject](slices.Clone(h.m.out))
	h.m.out = h.m.out[:0]
	// The guarded patch waits behind it, and a newer patch replaces it.
	h.m.effects([]opcore.Effect{patch(1), stop})
	h.m.effects([]opcore.Effect{patch(1)})
	h.m.pump()
	if n := len(find[Request](h.m.out)); n != 0 {
		t.Fatal("stop sent before its patch was written")
	}
	h.m.out = h.m.out[:0]
	out := h.step(ObjectDone{Token: first[0].Token})
	eq(t, "only the patch", only(out, "Request", "ApplyObject"), "ApplyObject opcore.PatchDeviceStatus")
	out = h.step(ObjectDone{Token: find[ApplyObject](out)[0].Token})
	eq(t, "the stop after the newer patch landed", only(out, "Request"), "Request device-commands.d1.upgrade-stop")
}

func TestReconnectRecreatesAWatchWaitingOutItsBackoff(t *testing.T) {
	h := newHarness(t, Config{RetryMin: time.Minute})
	h.up()
	h.step(WatchFailed{Bucket: core.BucketDeviceInfo, Gen: 1, Err: "closed"})
	h.step(Disconnected{})
	out := h.step(Connected{})
	if !contains(only(out, "CreateWatch"), "CreateWatch device-info gen=2 from=0") {
		t.Fatalf("reconnect: %v", only(out, "CreateWatch"))
	}
	out = h.advance(2 * time.Minute)
	eq(t, "the back-off timer does not create a second one", only(out, "CreateWatch"))
}
