package link

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// scriptCore stands in for agentcore.Agent: it records inputs and answers
// each with the effects its script gives for the input's type.
type scriptCore struct {
	inputs []agentcore.Input
	script func(in agentcore.Input) []agentcore.Effect
}

func (c *scriptCore) Step(_ time.Time, in agentcore.Input) []agentcore.Effect {
	c.inputs = append(c.inputs, in)
	if c.script == nil {
		return nil
	}
	return c.script(in)
}

type harness struct {
	t    *testing.T
	l    *Link
	c    *scriptCore
	now  time.Time
	acts []Action // actions of the last step (copied)
}

func newHarness(t *testing.T, cfg Config, script func(agentcore.Input) []agentcore.Effect) *harness {
	t.Helper()
	c := &scriptCore{script: script}
	if cfg.Device == "" {
		cfg.Device = "dev"
	}
	if cfg.Version.IsZero() {
		cfg.Version = core.MustParseVersion("v1.0.0")
	}
	cfg.Core = c
	h := &harness{t: t, l: New(cfg), c: c, now: t0}
	return h
}

func (h *harness) step(ev Event) []Action {
	h.acts = append([]Action(nil), h.l.Step(h.now, ev)...)
	return h.acts
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d) }

// started delivers Start and connects.
func (h *harness) started() {
	h.t.Helper()
	acts := h.step(Started(agentcore.Start{}))
	if find(acts, ActConnect) == nil {
		h.t.Fatalf("no ActConnect after start: %v", kinds(acts))
	}
	h.step(Conn(true))
}

func find(acts []Action, k ActionKind) *Action {
	for i := range acts {
		if acts[i].Kind == k {
			return &acts[i]
		}
	}
	return nil
}

func all(acts []Action, k ActionKind) []Action {
	var out []Action
	for _, a := range acts {
		if a.Kind == k {
			out = append(out, a)
		}
	}
	return out
}

func kinds(acts []Action) []ActionKind {
	out := make([]ActionKind, len(acts))
	for i, a := range acts {
		out[i] = a.Kind
	}
	return out
}

func hb(seq uint32) agentcore.Effect {
	return agentcore.PutHeartbeat{Heartbeat: core.Heartbeat{AgentVersion: core.MustParseVersion("v1.0.0"), Seq: seq}}
}

// emitOnInput: a core that answers a WorkloadStatus with the effects given.
func onWorkload(effs ...agentcore.Effect) func(agentcore.Input) []agentcore.Effect {
	return func(in agentcore.Input) []agentcore.Effect {
		if _, ok := in.(agentcore.WorkloadStatus); ok {
			return effs
		}
		return nil
	}
}

func decodeHB(t *testing.T, a *Action) uint32 {
	t.Helper()
	h, err := core.DecodeHeartbeat(a.Value)
	if err != nil {
		t.Fatal(err)
	}
	return h.Seq
}

func TestOutbox(t *testing.T) {
	t.Run("a write made while disconnected is sent after reconnect", func(t *testing.T) {
		h := newHarness(t, Config{}, onWorkload(hb(1)))
		h.step(Started(agentcore.Start{}))
		if a := find(h.step(Input(agentcore.WorkloadStatus{})), ActWrite); a != nil {
			t.Fatalf("wrote while never connected: %+v", a)
		}
		a := find(h.step(Conn(true)), ActWrite)
		if a == nil || a.Bucket != core.BucketDeviceHeartbeat || decodeHB(t, a) != 1 || a.Timeout != DefaultTimeout {
			t.Fatalf("after connect: %+v", h.acts)
		}
		// The write times out during an outage; it is sent again after the
		// reconnect, not before.
		h.step(Conn(false))
		if acts := h.step(WriteDone(a.Token, errors.New("timeout"))); find(acts, ActWrite) != nil {
			t.Fatalf("retried while disconnected: %v", kinds(acts))
		}
		h.advance(time.Minute)
		h.step(Fired(TimerOutbox, h.l.timerGen[TimerOutbox]))
		if find(h.acts, ActWrite) != nil {
			t.Fatal("a stale back-off timer wrote while disconnected")
		}
		b := find(h.step(Conn(true)), ActWrite)
		if b == nil || decodeHB(t, b) != 1 {
			t.Fatalf("not resent after reconnect: %v", kinds(h.acts))
		}
		h.step(WriteDone(b.Token, nil))
		if h.l.Pending() != 0 {
			t.Fatalf("pending %d after the acknowledgement", h.l.Pending())
		}
	})

	t.Run("an offline agent publishes only the newest value of each key", func(t *testing.T) {
		seq := uint32(0)
		h := newHarness(t, Config{}, func(in agentcore.Input) []agentcore.Effect {
			if _, ok := in.(agentcore.WorkloadStatus); ok {
				seq++
				return []agentcore.Effect{hb(seq), agentcore.PutDeviceState{State: core.DeviceState{Device: "dev", Deployment: "web", Generation: int64(seq), Phase: core.PhaseRunning, LastEventAt: 1}}}
			}
			return nil
		})
		h.step(Started(agentcore.Start{}))
		for i := 0; i < 5; i++ {
			h.step(Input(agentcore.WorkloadStatus{}))
		}
		if h.l.Pending() != 2 {
			t.Fatalf("pending %d, want 2 keys", h.l.Pending())
		}
		a := find(h.step(Conn(true)), ActWrite)
		if len(all(h.acts, ActWrite)) != 1 {
			t.Fatalf("want one write in flight, got %v", kinds(h.acts))
		}
		if decodeHB(t, a) != 5 {
			t.Fatalf("first write is heartbeat seq %d, want 5", decodeHB(t, a))
		}
		b := find(h.step(WriteDone(a.Token, nil)), ActWrite)
		st, _ := core.DecodeDeviceState(b.Value)
		if b.Bucket != core.BucketDeviceState || st.Generation != 5 {
			t.Fatalf("second write %+v", b)
		}
		if find(h.step(WriteDone(b.Token, nil)), ActWrite) != nil || h.l.Pending() != 0 {
			t.Fatal("more than two writes for two keys")
		}
	})

	t.Run("a value replaced while its write is in flight is written again", func(t *testing.T) {
		seq := uint32(0)
		h := newHarness(t, Config{}, func(in agentcore.Input) []agentcore.Effect {
			if _, ok := in.(agentcore.WorkloadStatus); !ok {
				return nil
			}
			seq++
			return []agentcore.Effect{hb(seq)}
		})
		h.started()
		a := find(h.step(Input(agentcore.WorkloadStatus{})), ActWrite)
		h.step(Input(agentcore.WorkloadStatus{}))
		if find(h.acts, ActWrite) != nil {
			t.Fatal("two writes in flight")
		}
		b := find(h.step(WriteDone(a.Token, nil)), ActWrite)
		if b == nil || decodeHB(t, b) != seq {
			t.Fatalf("newer value not written: %v", kinds(h.acts))
		}
	})

	t.Run("a failed write is retried with growing, jittered back-off", func(t *testing.T) {
		h := newHarness(t, Config{Seed: 7}, onWorkload(hb(1)))
		h.started()
		a := find(h.step(Input(agentcore.WorkloadStatus{})), ActWrite)
		var delays []time.Duration
		for i := 0; i < 8; i++ {
			arm := find(h.step(WriteDone(a.Token, errors.New("nats: timeout"))), ActArmTimer)
			if arm == nil || arm.Timer != TimerOutbox {
				t.Fatalf("no back-off timer: %v", kinds(h.acts))
			}
			delays = append(delays, arm.After)
			h.advance(arm.After)
			a = find(h.step(Fired(TimerOutbox, arm.Gen)), ActWrite)
			if a == nil {
				t.Fatal("no retry when the back-off timer fired")
			}
		}
		if delays[0] < 50*time.Millisecond || delays[0] > 100*time.Millisecond ||
			delays[7] < 2500*time.Millisecond || delays[7] > 5*time.Second || delays[3] <= delays[0] {
			t.Fatalf("back-off %v", delays)
		}
		if h.l.Pending() != 1 {
			t.Fatal("the write was lost while retrying")
		}
	})

	t.Run("a write to a missing bucket creates the bucket, then lands", func(t *testing.T) {
		h := newHarness(t, Config{}, onWorkload(hb(1)))
		h.started()
		a := find(h.step(Input(agentcore.WorkloadStatus{})), ActWrite)
		cb := find(h.step(WriteDone(a.Token, ErrBucketNotFound)), ActCreateBucket)
		if cb == nil || cb.Bucket != core.BucketDeviceHeartbeat {
			t.Fatalf("no bucket creation: %v", kinds(h.acts))
		}
		b := find(h.step(BucketCreated(cb.Bucket, nil)), ActWrite)
		if b == nil || b.Bucket != core.BucketDeviceHeartbeat {
			t.Fatalf("no write after the bucket was created: %v", kinds(h.acts))
		}
	})
}

func TestWatches(t *testing.T) {
	desiredEntry := func(dep, version string, rev uint64) Entry {
		b, _ := core.WorkloadSpec{Deployment: dep, Name: "w", Version: version, Args: []string{"/bin/true"}}.Encode()
		return Entry{Key: "dev." + dep, Value: b, Rev: rev}
	}
	creates := func(acts []Action) map[WatchID]Action {
		out := map[WatchID]Action{}
		for _, a := range all(acts, ActCreateWatch) {
			out[a.Watch] = a
		}
		return out
	}

	t.Run("both watches are created on connect, from the start", func(t *testing.T) {
		h := newHarness(t, Config{}, nil)
		h.step(Started(agentcore.Start{}))
		cw := creates(h.step(Conn(true)))
		d, m := cw[WatchDesired], cw[WatchMarker]
		if d.Bucket != core.BucketDesiredState || d.Filter != core.DesiredStateDeviceFilter("dev") || d.From != 0 ||
			m.Bucket != core.BucketAgentUpgrade || m.Filter != core.AgentUpgradeKey("dev") || m.From != 0 {
			t.Fatalf("creations %+v", cw)
		}
	})

	t.Run("a watch is recreated from the last revision after a reconnect", func(t *testing.T) {
		h := newHarness(t, Config{}, nil)
		h.started()
		d := creates(h.acts)[WatchDesired]
		h.step(WatchEntry(WatchDesired, d.Gen, desiredEntry("web", "1", 41)))
		h.step(WatchReplayed(WatchDesired, d.Gen, 41))
		h.step(Conn(false))
		acts := h.step(Conn(true))
		nd := creates(acts)[WatchDesired]
		if nd.From != 42 || nd.Gen == d.Gen {
			t.Fatalf("recreated %+v, want from 42 with a new generation", nd)
		}
		if s := find(acts, ActStopWatch); s == nil || s.Gen != d.Gen {
			t.Fatalf("old creation not stopped: %v", kinds(acts))
		}
		// An entry of the old creation is ignored; so is a repeat.
		h.step(WatchEntry(WatchDesired, d.Gen, desiredEntry("web", "2", 43)))
		h.step(WatchEntry(WatchDesired, nd.Gen, desiredEntry("web", "1", 41)))
		h.step(WatchEntry(WatchDesired, nd.Gen, desiredEntry("web", "3", 44)))
		var got []string
		for _, in := range h.c.inputs {
			if p, ok := in.(agentcore.DesiredPut); ok {
				got = append(got, p.Spec.Version)
			}
		}
		if !reflect.DeepEqual(got, []string{"1", "3"}) {
			t.Fatalf("delivered versions %v, want [1 3]", got)
		}
	})

	t.Run("a failed watch is recreated with back-off while connected, at reconnect otherwise", func(t *testing.T) {
		h := newHarness(t, Config{}, nil)
		h.started()
		m := creates(h.acts)[WatchMarker]
		arm := find(h.step(WatchFailed(WatchMarker, m.Gen, errors.New("nats: timeout"))), ActArmTimer)
		if arm == nil || arm.Timer != TimerWatchMarker || arm.After < 125*time.Millisecond || arm.After > 250*time.Millisecond {
			t.Fatalf("back-off %+v", h.acts)
		}
		h.advance(arm.After)
		m2 := creates(h.step(Fired(TimerWatchMarker, arm.Gen)))[WatchMarker]
		if m2.Gen != m.Gen+1 {
			t.Fatalf("not recreated: %v", kinds(h.acts))
		}
		h.step(Conn(false))
		if acts := h.step(WatchFailed(WatchMarker, m2.Gen, errors.New("nats: timeout"))); len(all(acts, ActArmTimer)) != 0 {
			t.Fatalf("back-off armed while disconnected: %v", kinds(acts))
		}
		if _, ok := creates(h.step(Conn(true)))[WatchMarker]; !ok {
			t.Fatal("not recreated at reconnect")
		}
	})

	t.Run("a missing bucket is created before the watch", func(t *testing.T) {
		h := newHarness(t, Config{}, nil)
		h.started()
		d := creates(h.acts)[WatchDesired]
		cb := find(h.step(WatchFailed(WatchDesired, d.Gen, ErrBucketNotFound)), ActCreateBucket)
		if cb == nil || cb.Bucket != core.BucketDesiredState {
			t.Fatalf("no bucket creation: %v", kinds(h.acts))
		}
		if _, ok := creates(h.step(BucketCreated(core.BucketDesiredState, nil)))[WatchDesired]; !ok {
			t.Fatal("watch not created after the bucket")
		}
	})

	t.Run("bucket revisions that went backwards replay the bucket whole", func(t *testing.T) {
		h := newHarness(t, Config{}, nil)
		h.started()
		d := creates(h.acts)[WatchDesired]
		h.step(WatchEntry(WatchDesired, d.Gen, desiredEntry("web", "1", 100)))
		h.step(WatchReplayed(WatchDesired, d.Gen, 100))
		h.step(Conn(false))
		d2 := creates(h.step(Conn(true)))[WatchDesired]
		if d2.From != 101 {
			t.Fatalf("resume from %d", d2.From)
		}
		d3 := creates(h.step(WatchReplayed(WatchDesired, d2.Gen, 3)))[WatchDesired]
		if d3.From != 0 || d3.Gen != d2.Gen+1 {
			t.Fatalf("want a whole replay, got %+v", d3)
		}
		h.step(WatchEntry(WatchDesired, d3.Gen, desiredEntry("web", "9", 2)))
		if p, ok := h.c.inputs[len(h.c.inputs)-1].(agentcore.DesiredPut); !ok || p.Spec.Version != "9" {
			t.Fatalf("the re-created bucket's entry was not delivered: %#v", h.c.inputs)
		}
	})
}

func TestCommands(t *testing.T) {
	pingCore := func(in agentcore.Input) []agentcore.Effect {
		if c, ok := in.(agentcore.CommandReceived); ok && c.Verb == core.VerbPing && c.DecodeErr == "" {
			return []agentcore.Effect{agentcore.Reply{Handle: c.Handle, Reply: core.CommandReply{Schema: core.SchemaVersion,
				Verb: core.VerbPing, ID: c.Request.ID, Ping: &core.PingResult{Device: "dev", AgentVersion: core.MustParseVersion("v1.0.0")}}}}
		}
		return nil
	}
	t.Run("a command is decoded, handed to the core and its reply sent as bytes to its reply handle", func(t *testing.T) {
		h := newHarness(t, Config{}, pingCore)
		h.started()
		body, _ := core.CommandRequest{Verb: core.VerbPing, ID: "x1"}.Encode()
		r := find(h.step(Command(core.CommandSubject("dev", core.VerbPing), body, "inbox-1")), ActRespond)
		if r == nil || r.Reply != "inbox-1" {
			t.Fatalf("no reply: %v", kinds(h.acts))
		}
		rep, err := core.DecodeCommandReply(r.Data)
		if err != nil || rep.ID != "x1" || rep.Ping == nil {
			t.Fatalf("reply %+v %v", rep, err)
		}
		if len(h.l.handles) != 0 {
			t.Fatal("handle kept after the reply")
		}
	})
	t.Run("an unknown verb is answered bad-request without the core", func(t *testing.T) {
		h := newHarness(t, Config{}, pingCore)
		h.started()
		n := len(h.c.inputs)
		r := find(h.step(Command("device-commands.dev.reboot", []byte("{}"), 1)), ActRespond)
		rep, _ := core.DecodeCommandReply(r.Data)
		if rep.Error == nil || rep.Error.Code != core.ErrCodeBadRequest || len(h.c.inputs) != n {
			t.Fatalf("reply %+v", rep)
		}
	})
	t.Run("a body that does not decode reaches the core with DecodeErr", func(t *testing.T) {
		h := newHarness(t, Config{}, pingCore)
		h.started()
		h.step(Command(core.CommandSubject("dev", core.VerbPing), []byte("not json"), 1))
		c, ok := h.c.inputs[len(h.c.inputs)-1].(agentcore.CommandReceived)
		if !ok || c.DecodeErr == "" {
			t.Fatalf("input %#v", h.c.inputs[len(h.c.inputs)-1])
		}
	})
	t.Run("a command the core never answers is forgotten", func(t *testing.T) {
		h := newHarness(t, Config{}, nil)
		h.started()
		body, _ := core.CommandRequest{Verb: core.VerbPing, ID: "x1"}.Encode()
		h.step(Command(core.CommandSubject("dev", core.VerbPing), body, 1))
		h.advance(HandleTTL)
		h.step(Conn(true))
		if len(h.l.handles) != 1 {
			t.Fatal("forgotten too early")
		}
		h.advance(time.Second)
		h.step(Conn(true))
		if len(h.l.handles) != 0 {
			t.Fatal("not forgotten after the TTL")
		}
	})
	t.Run("logs are answered through the reply path when the adapter reports them", func(t *testing.T) {
		h := newHarness(t, Config{}, func(in agentcore.Input) []agentcore.Effect {
			if c, ok := in.(agentcore.CommandReceived); ok {
				return []agentcore.Effect{agentcore.FetchLogs{Handle: c.Handle, ID: c.Request.ID}}
			}
			return nil
		})
		h.started()
		body, _ := core.CommandRequest{Verb: core.VerbLogs, ID: "l1"}.Encode()
		run := find(h.step(Command(core.CommandSubject("dev", core.VerbLogs), body, "r")), ActRun)
		fl := run.Effect.(agentcore.FetchLogs)
		r := find(h.step(CommandResult(fl.Handle, core.CommandReply{Schema: 1, Verb: core.VerbLogs, ID: fl.ID,
			Logs: &core.LogsResult{Lines: []string{"a"}}})), ActRespond)
		rep, _ := core.DecodeCommandReply(r.Data)
		if r.Reply != "r" || rep.Logs == nil || rep.Logs.Lines[0] != "a" {
			t.Fatalf("reply %+v", rep)
		}
	})
}

func TestEffectOrder(t *testing.T) {
	rec := agentcore.Record{Kind: agentcore.RecBegin, Attempt: 1}
	v2 := core.MustParseVersion("v2.0.0")
	t.Run("an inline effect completes before the effect after it", func(t *testing.T) {
		h := newHarness(t, Config{}, onWorkload(agentcore.AppendJournal{Record: rec},
			agentcore.SwapCurrent{Attempt: 1, To: v2}, hb(1)))
		h.started()
		acts := h.step(Input(agentcore.WorkloadStatus{}))
		if len(acts) != 1 || acts[0].Kind != ActInline {
			t.Fatalf("want only the journal append, got %v", kinds(acts))
		}
		// An input arriving meanwhile waits.
		n := len(h.c.inputs)
		h.step(Input(agentcore.SelfTestDone{Attempt: 1}))
		if len(h.c.inputs) != n {
			t.Fatal("the core was stepped while an inline effect was out")
		}
		acts = h.step(Done(nil))
		if len(acts) != 1 || acts[0].Effect.(agentcore.SwapCurrent).To.String() != "v2.0.0" {
			t.Fatalf("after the append: %v", kinds(acts))
		}
		acts = h.step(Done(errors.New("rename: no such file")))
		if find(acts, ActWrite) == nil {
			t.Fatalf("the heartbeat did not follow the swap: %v", kinds(acts))
		}
		// The swap's result, then the queued input, reach the core.
		sd, ok := h.c.inputs[len(h.c.inputs)-2].(agentcore.SelfTestDone)
		sw, ok2 := h.c.inputs[len(h.c.inputs)-1].(agentcore.SwapDone)
		if !ok || !ok2 || sd.Attempt != 1 || sw.Err == "" || sw.To.String() != "v2.0.0" {
			t.Fatalf("inputs %#v", h.c.inputs[n:])
		}
	})
	t.Run("a failed journal append ends the process with status 3", func(t *testing.T) {
		h := newHarness(t, Config{}, onWorkload(agentcore.AppendJournal{Record: rec}, hb(1)))
		h.started()
		h.step(Input(agentcore.WorkloadStatus{}))
		x := find(h.step(Done(errors.New("no space left on device"))), ActExit)
		if x == nil || x.Code != 3 || find(h.acts, ActWrite) != nil {
			t.Fatalf("after a failed append: %v", kinds(h.acts))
		}
		if acts := h.step(Input(agentcore.WorkloadStatus{})); len(acts) != 0 {
			t.Fatalf("actions after the exit: %v", kinds(acts))
		}
	})
	t.Run("start-up recovery runs before NATS is reached", func(t *testing.T) {
		h := newHarness(t, Config{}, func(in agentcore.Input) []agentcore.Effect {
			if _, ok := in.(agentcore.Start); ok {
				return []agentcore.Effect{agentcore.AppendJournal{Record: rec}}
			}
			return nil
		})
		if acts := h.step(Started(agentcore.Start{})); find(acts, ActConnect) != nil {
			t.Fatal("connected before the recovery's journal append completed")
		}
		if find(h.step(Done(nil)), ActConnect) == nil || find(h.acts, ActBecomeActive) == nil {
			t.Fatalf("after recovery: %v", kinds(h.acts))
		}
	})
	t.Run("a re-exec at start-up happens without connecting", func(t *testing.T) {
		h := newHarness(t, Config{}, func(in agentcore.Input) []agentcore.Effect {
			return []agentcore.Effect{agentcore.Reexec{Version: v2}}
		})
		acts := h.step(Started(agentcore.Start{}))
		if len(acts) != 1 || acts[0].Kind != ActExit || acts[0].Effect.(agentcore.Reexec).Version.String() != "v2.0.0" {
			t.Fatalf("acts %v", kinds(acts))
		}
	})
	t.Run("a stop waits for the outbox to drain, at most ReexecFlush", func(t *testing.T) {
		h := newHarness(t, Config{}, onWorkload(hb(1)))
		h.started()
		w := find(h.step(Input(agentcore.WorkloadStatus{})), ActWrite)
		arm := find(h.step(Stop()), ActArmTimer)
		if w == nil || arm == nil || arm.Timer != TimerExit || arm.After != ReexecFlush || find(h.acts, ActExit) != nil {
			t.Fatalf("acts %v", kinds(h.acts))
		}
		if x := find(h.step(WriteDone(w.Token, nil)), ActExit); x == nil || x.Code != 0 {
			t.Fatalf("no exit once drained: %v", kinds(h.acts))
		}
		h2 := newHarness(t, Config{}, onWorkload(hb(1)))
		h2.started()
		h2.step(Input(agentcore.WorkloadStatus{}))
		arm = find(h2.step(Stop()), ActArmTimer)
		h2.advance(ReexecFlush)
		if find(h2.step(Fired(TimerExit, arm.Gen)), ActExit) == nil {
			t.Fatal("no exit at the flush deadline")
		}
	})
	t.Run("an agent handing over to its successor drops its unacknowledged writes", func(t *testing.T) {
		// Found by the simulator (scenarios/regressions/flaky-network-seed118.yaml):
		// the old agent retried a timed-out WaitingForStop status after its
		// successor had written Committed; the operator saw the upgrade
		// regress and timed it out.
		h := newHarness(t, Config{}, func(in agentcore.Input) []agentcore.Effect {
			switch in.(type) {
			case agentcore.WorkloadStatus:
				return []agentcore.Effect{agentcore.PutUpgradeStatus{Status: core.UpgradeStatus{Schema: 1, Attempt: 1,
					Phase: core.UpgradeWaitingForStop, FromVersion: core.MustParseVersion("v1.0.0"), TargetVersion: &v2,
					RunningVersion: core.MustParseVersion("v1.0.0"), At: 1}}}
			case agentcore.SelfTestDone:
				return []agentcore.Effect{agentcore.Exit{Code: 0, Reason: "upgrade attempt 1 committed"}}
			}
			return nil
		})
		h.started()
		w := find(h.step(Input(agentcore.WorkloadStatus{})), ActWrite)
		h.step(WriteDone(w.Token, errors.New("nats: timeout"))) // it may have landed, or not
		x := find(h.step(Input(agentcore.SelfTestDone{})), ActExit)
		if x == nil || x.Code != 0 || find(h.acts, ActWrite) != nil {
			t.Fatalf("the old agent did not exit at once without writing: %v", kinds(h.acts))
		}
	})
}

func TestActiveAndOrphans(t *testing.T) {
	v2 := core.MustParseVersion("v2.0.0")
	committed := func(running core.Version) agentcore.Effect {
		return agentcore.PutUpgradeStatus{Status: core.UpgradeStatus{Schema: 1, Attempt: 1, Phase: core.UpgradeCommitted, RunningVersion: running}}
	}
	spec := func(dep string) []byte {
		b, _ := core.WorkloadSpec{Deployment: dep, Name: "w", Version: "1", Args: []string{"/bin/true"}}.Encode()
		return b
	}
	replay := func(h *harness, deps ...string) {
		var gen uint32
		for _, a := range all(h.acts, ActCreateWatch) {
			if a.Watch == WatchDesired {
				gen = a.Gen
			}
		}
		for i, d := range deps {
			h.step(WatchEntry(WatchDesired, gen, Entry{Key: "dev." + d, Value: spec(d), Rev: uint64(i + 1)}))
		}
		h.step(WatchEntry(WatchDesired, gen, Entry{Key: "dev.gone", Op: OpDelete, Rev: 99}))
		h.step(WatchReplayed(WatchDesired, gen, 99))
	}

	t.Run("an active agent collects orphans once desired state is replayed, live deployments sorted", func(t *testing.T) {
		h := newHarness(t, Config{}, nil)
		h.started()
		replay(h, "web", "db", "cache")
		x := find(h.acts, ActStopWorkloadsExcept)
		if x == nil || !reflect.DeepEqual(x.Deployments, []string{"cache", "db", "web"}) {
			t.Fatalf("collection %+v", h.acts)
		}
		h.step(Conn(false))
		h.step(Conn(true))
		if d := all(h.acts, ActCreateWatch); len(d) == 0 {
			t.Fatal("no recreation")
		}
		replay(h, "web")
		if find(h.acts, ActStopWorkloadsExcept) != nil {
			t.Fatal("collected twice")
		}
	})

	t.Run("a candidate becomes active on Committed of its own version only", func(t *testing.T) {
		h := newHarness(t, Config{CandidateAttempt: 1, Version: v2}, func(in agentcore.Input) []agentcore.Effect {
			if ws, ok := in.(agentcore.WorkloadStatus); ok {
				return []agentcore.Effect{committed(core.MustParseVersion(ws.Deployment))}
			}
			return nil
		})
		if find(h.step(Started(agentcore.Start{CandidateAttempt: 1})), ActBecomeActive) != nil {
			t.Fatal("a candidate started active")
		}
		h.step(Conn(true))
		replay(h, "web")
		if find(h.acts, ActStopWorkloadsExcept) != nil {
			t.Fatal("a candidate collected workloads")
		}
		h.step(Input(agentcore.WorkloadStatus{Deployment: "v1.0.0"}))
		if find(h.acts, ActBecomeActive) != nil || h.l.Active() {
			t.Fatal("active on another version's commit")
		}
		h.step(Input(agentcore.WorkloadStatus{Deployment: "v2.0.0"}))
		if find(h.acts, ActBecomeActive) == nil || !h.l.Active() {
			t.Fatalf("not active on its own commit: %v", kinds(h.acts))
		}
		if x := find(h.acts, ActStopWorkloadsExcept); x == nil || !reflect.DeepEqual(x.Deployments, []string{"web"}) {
			t.Fatalf("collection %+v", x)
		}
	})
}

func TestSameSeedSameRun(t *testing.T) {
	run := func(seed uint64) []time.Duration {
		h := newHarness(t, Config{Seed: seed}, onWorkload(hb(1)))
		h.started()
		a := find(h.step(Input(agentcore.WorkloadStatus{})), ActWrite)
		var out []time.Duration
		for i := 0; i < 6; i++ {
			arm := find(h.step(WriteDone(a.Token, errors.New("x"))), ActArmTimer)
			out = append(out, arm.After)
			a = find(h.step(Fired(TimerOutbox, arm.Gen)), ActWrite)
		}
		return out
	}
	if a, b := run(1), run(1); !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different back-off: %v %v", a, b)
	}
	if a, b := run(1), run(2); reflect.DeepEqual(a, b) {
		t.Fatalf("different seeds, same jitter: %v", a)
	}
}

func TestWithTheRealCore(t *testing.T) {
	l := New(Config{Device: "dev", Version: core.MustParseVersion("v1.0.0"),
		Agent: agentcore.Config{Device: "dev", Version: core.MustParseVersion("v1.0.0")}})
	now := t0
	var acts []Action
	// Drive start-up recovery: complete inline effects as they come.
	acts = append(acts, l.Step(now, Started(agentcore.Start{BootID: "b"}))...)
	for i := 0; i < 20 && len(acts) > 0 && acts[len(acts)-1].Kind == ActInline; i++ {
		acts = append(acts, l.Step(now, Done(nil))...)
	}
	if find(acts, ActConnect) == nil {
		t.Fatalf("real core: no connect after start-up: %v", kinds(acts))
	}
	acts = l.Step(now, Conn(true))
	w := find(acts, ActWrite)
	if w == nil {
		t.Fatalf("real core: nothing written on connect: %v", kinds(acts))
	}
}

func TestAdapterHooks(t *testing.T) {
	t.Run("links sharing an action buffer each get their own actions", func(t *testing.T) {
		var buf []Action
		a := newHarness(t, Config{Device: "a", Actions: &buf}, onWorkload(hb(1)))
		b := newHarness(t, Config{Device: "b", Actions: &buf}, onWorkload(hb(2)))
		a.started()
		b.started()
		wa := find(a.step(Input(agentcore.WorkloadStatus{})), ActWrite)
		wb := find(b.step(Input(agentcore.WorkloadStatus{})), ActWrite)
		if wa == nil || wb == nil || wa.Key != "a" || wb.Key != "b" {
			t.Fatalf("writes %+v %+v", wa, wb)
		}
		if cap(a.l.acts) != 0 || cap(b.l.acts) != 0 {
			t.Fatal("a link kept an action buffer of its own")
		}
	})
	t.Run("a heartbeat is encoded into the buffer the adapter supplies and carries its object", func(t *testing.T) {
		type box struct {
			hb  core.Heartbeat
			buf [core.MaxHeartbeatBytes]byte
		}
		var last *box
		h := newHarness(t, Config{HeartbeatBuf: func(hb core.Heartbeat) ([]byte, any) {
			last = &box{hb: hb}
			return last.buf[:0], last
		}}, onWorkload(hb(9)))
		h.started()
		w := find(h.step(Input(agentcore.WorkloadStatus{})), ActWrite)
		if w == nil || w.Obj != any(last) || &w.Value[0] != &last.buf[0] || decodeHB(t, w) != 9 {
			t.Fatalf("write %+v", w)
		}
	})
}
