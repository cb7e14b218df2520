package agentcore

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

func TestDesiredPutStartsWorkloadAndReportsApplyingThenRunning(t *testing.T) {
	a := ready(t, v1)
	effs := step(a, t0, DesiredPut{Deployment: "web", Spec: webSpec(3), Revision: 7})
	wantNames(t, effs, "StartWorkload", "state:web:Applying")
	sw := only[StartWorkload](effs)[0]
	if sw.Spec.Runtime != core.RuntimeProcess {
		t.Fatalf("runtime %q, want the configured default", sw.Spec.Runtime)
	}
	st := only[PutDeviceState](effs)[0].State
	if st.Device != "dev-1" || st.Generation != 3 || st.Version != "1.25" {
		t.Fatalf("state %+v", st)
	}
	wantNames(t, step(a, t0, WorkloadStatus{Deployment: "web", Generation: 3, Phase: core.PhaseRunning}), "state:web:Running")
	// Same status again: nothing new to say.
	if effs := step(a, t0, WorkloadStatus{Deployment: "web", Generation: 3, Phase: core.PhaseRunning}); len(effs) != 0 {
		t.Fatalf("duplicate status rewrote state: %v", names(effs))
	}
	// A replay of the same key (same revision) or the same spec changes nothing.
	if effs := step(a, t0, DesiredPut{Deployment: "web", Spec: webSpec(3), Revision: 7}); len(effs) != 0 {
		t.Fatalf("replayed put: %v", names(effs))
	}
	if effs := step(a, t0, DesiredPut{Deployment: "web", Spec: webSpec(3), Revision: 8}); len(effs) != 0 {
		t.Fatalf("unchanged spec re-applied: %v", names(effs))
	}
	wantNames(t, step(a, t0, DesiredPut{Deployment: "web", Spec: webSpec(4), Revision: 9}), "StartWorkload", "state:web:Applying")
}

func TestStaleDesiredRevisionIsIgnored(t *testing.T) {
	a := ready(t, v1)
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(4), Revision: 9})
	if effs := step(a, t0, DesiredPut{Deployment: "web", Spec: webSpec(3), Revision: 5}); len(effs) != 0 {
		t.Fatalf("older revision applied: %v", names(effs))
	}
	if effs := step(a, t0, DesiredInvalid{Deployment: "web", Revision: 5, Err: "x"}); len(effs) != 0 {
		t.Fatalf("older invalid revision applied: %v", names(effs))
	}
}

func TestWorkloadFailureIsReportedWithError(t *testing.T) {
	a := ready(t, v1)
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1})
	effs := step(a, t0, WorkloadStatus{Deployment: "web", Generation: 1, Phase: core.PhaseFailed, Err: "exit status 3"})
	st := only[PutDeviceState](effs)
	if len(st) != 1 || st[0].State.Phase != core.PhaseFailed || st[0].State.LastError != "exit status 3" {
		t.Fatalf("effects %v", names(effs))
	}
	// Re-putting the same spec after a failure retries it.
	wantNames(t, step(a, t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 2}), "StartWorkload", "state:web:Applying")
}

func TestStaleWorkloadStatusIsIgnored(t *testing.T) {
	a := ready(t, v1)
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(5), Revision: 1})
	for _, s := range []WorkloadStatus{
		{Deployment: "web", Generation: 4, Phase: core.PhaseRunning}, // older generation
		{Deployment: "db", Generation: 5, Phase: core.PhaseRunning},  // not desired
		{Deployment: "web", Generation: 5, Phase: "Exploded"},        // unknown phase
	} {
		if effs := step(a, t0, s); len(only[PutDeviceState](effs)) != 0 {
			t.Fatalf("status %+v reported: %v", s, names(effs))
		}
	}
}

func TestDesiredDeletedStopsWorkloadAndRemovesState(t *testing.T) {
	a := ready(t, v1)
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1})
	wantNames(t, step(a, t0, DesiredDeleted{Deployment: "web", Revision: 2}), "StopWorkload", "DeleteDeviceState")
	if effs := step(a, t0, WorkloadStatus{Deployment: "web", Generation: 1, Phase: core.PhaseRunning}); len(effs) != 0 {
		t.Fatalf("status of a deleted deployment reported: %v", names(effs))
	}
}

func TestDesiredInvalidReportsFailedAndKeepsRunning(t *testing.T) {
	a := ready(t, v1)
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1})
	effs := step(a, t0, DesiredInvalid{Deployment: "web", Revision: 2, Err: `decode workload spec: field "name": required`})
	wantNames(t, effs, "state:web:Failed")
	if e := only[PutDeviceState](effs)[0].State.LastError; !strings.Contains(e, `field "name"`) {
		t.Fatalf("last_error %q does not name the bad field", e)
	}
	// The agent keeps running: heartbeats continue; a good value recovers.
	if len(only[PutHeartbeat](step(a, t0, TimerFired{Timer: TimerHeartbeat}))) != 1 {
		t.Fatalf("agent stopped heartbeating")
	}
	wantNames(t, step(a, t0, DesiredPut{Deployment: "web", Spec: webSpec(2), Revision: 3}), "StartWorkload", "state:web:Applying")
}

func TestMismatchedDeploymentNameIsFailed(t *testing.T) {
	a := ready(t, v1)
	spec := webSpec(1)
	spec.Deployment = "other"
	effs := step(a, t0, DesiredPut{Deployment: "web", Spec: spec, Revision: 1})
	wantNames(t, effs, "state:web:Failed")
}

func TestUnavailableRuntimeIsFailed(t *testing.T) {
	a := ready(t, v1)
	spec := webSpec(1)
	spec.Runtime, spec.Image = core.RuntimePodman, "nginx"
	effs := step(a, t0, DesiredPut{Deployment: "web", Spec: spec, Revision: 1})
	wantNames(t, effs, "state:web:Failed")
	if e := only[PutDeviceState](effs)[0].State.LastError; !strings.Contains(e, "podman") || !strings.Contains(e, "process") {
		t.Fatalf("error %q should name the missing and the available runtimes", e)
	}
}

func TestDesiredChangesDuringCutoverArePendingUntilItEnds(t *testing.T) {
	a := toWaitingForStop(t)
	wantNames(t, step(a, t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1}), "state:web:Pending")
	a.Step(t0, TimerFired{Timer: TimerCutover})
	effs := step(a, t0, SwapDone{Attempt: 1, To: v1})
	if !slices.Contains(names(effs), "StartWorkload") {
		t.Fatalf("held spec not applied after the rollback: %v", names(effs))
	}
	// Deletions are not held.
	b := toWaitingForStop(t)
	wantNames(t, step(b, t0, DesiredDeleted{Deployment: "db"}), "StopWorkload", "DeleteDeviceState")
}

func TestLastEventAtStrictlyIncreasesWhenClockStepsBack(t *testing.T) {
	a := ready(t, v1)
	var stamps []int64
	collect := func(effs []Effect) {
		for _, e := range effs {
			switch e := e.(type) {
			case PutDeviceState:
				stamps = append(stamps, e.State.LastEventAt)
			case PutUpgradeStatus:
				stamps = append(stamps, e.Status.At)
			}
		}
	}
	times := []time.Time{t0.Add(time.Hour), t0.Add(time.Hour), t0.Add(-24 * time.Hour), t0.Add(time.Hour + time.Millisecond), time.Time{}}
	for i, now := range times {
		spec := webSpec(int64(i + 1))
		collect(step(a, now, DesiredPut{Deployment: "web", Spec: spec, Revision: uint64(i + 1)}))
		collect(step(a, now, WorkloadStatus{Deployment: "web", Generation: spec.Generation, Phase: core.PhaseRunning}))
		collect(step(a, now, MarkerPut{Marker: marker(uint32(i+1), v1)}))
	}
	if len(stamps) != 3*len(times) {
		t.Fatalf("got %d stamps", len(stamps))
	}
	for i := 1; i < len(stamps); i++ {
		if stamps[i] <= stamps[i-1] {
			t.Fatalf("stamp %d (%d) not after %d: %v", i, stamps[i], stamps[i-1], stamps)
		}
	}
	if stamps[0] != t0.Add(time.Hour).UnixMilli() {
		t.Fatalf("first stamp %d is not the clock's", stamps[0])
	}
}

func TestDeletionsDuringStartupRecoveryAreCarriedOut(t *testing.T) {
	a := New(testConfig(v1))
	j := append(cutoverJournal(1)[:0:0], cutoverJournal(1)...)
	a.Step(t0, Start{Journal: j, Current: v2, Installed: []core.Version{v1, v2}}) // waits for SwapDone
	if effs := step(a, t0, DesiredDeleted{Deployment: "db"}); len(effs) != 0 {
		t.Fatalf("acted before recovery finished: %v", names(effs))
	}
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1})
	effs := step(a, t0, SwapDone{Attempt: 1, To: v1})
	n := names(effs)
	for _, want := range []string{"StopWorkload", "DeleteDeviceState", "StartWorkload", "state:web:Applying"} {
		if !slices.Contains(n, want) {
			t.Fatalf("after recovery: %v lacks %s", n, want)
		}
	}
}

// ---- heartbeat, device info ------------------------------------------------

func TestHeartbeatTimerRearmsWithSeqAndUptime(t *testing.T) {
	a := ready(t, v1)
	for i := 2; i <= 4; i++ {
		now := t0.Add(time.Duration(i-1) * 10 * time.Second)
		effs := step(a, now, TimerFired{Timer: TimerHeartbeat})
		wantNames(t, effs, "PutHeartbeat", "arm:heartbeat")
		hb := only[PutHeartbeat](effs)[0].Heartbeat
		if hb.Seq != uint32(i) || hb.UptimeSec != uint32((i-1)*10) || hb.Attempt != 0 || !sameVersion(hb.AgentVersion, v1) {
			t.Fatalf("heartbeat %+v", hb)
		}
		if b, err := hb.Encode(); err != nil || len(b) >= 96 {
			t.Fatalf("heartbeat encodes to %d bytes (%v), want < 96", len(b), err)
		}
		if arm := only[ArmTimer](effs)[0]; arm.After != DefaultHeartbeatInterval {
			t.Fatalf("re-armed after %s", arm.After)
		}
	}
	// A clock stepping back never makes uptime wrap.
	hb := only[PutHeartbeat](step(a, t0.Add(-time.Hour), TimerFired{Timer: TimerHeartbeat}))[0].Heartbeat
	if hb.UptimeSec != 0 {
		t.Fatalf("uptime %d after the clock stepped back", hb.UptimeSec)
	}
}

func TestDeviceInfoTimerRewritesInfo(t *testing.T) {
	cfg := testConfig(v1)
	cfg.InfoInterval = time.Minute
	cfg.ExecAllowed = true
	a := New(cfg)
	effs := step(a, t0, Start{BootID: "boot-7", Journal: []Record{{Kind: RecInstalled, To: v1}}, Current: v1, Installed: []core.Version{v1}})
	info := only[PutDeviceInfo](effs)
	if len(info) != 1 || info[0].Info.BootID != "boot-7" || info[0].Info.Labels["site"] != "a" || !info[0].Info.ExecAllowed {
		t.Fatalf("info %+v", info)
	}
	if err := info[0].Info.Validate(); err != nil {
		t.Fatal(err)
	}
	effs = step(a, t0.Add(time.Minute), TimerFired{Timer: TimerInfo})
	wantNames(t, effs, "PutDeviceInfo", "arm:info")
	if only[ArmTimer](effs)[0].After != time.Minute {
		t.Fatalf("info timer %v", only[ArmTimer](effs))
	}
	// The config map given to New is copied: later changes do not leak in.
	cfg.Labels["site"] = "b"
	if only[PutDeviceInfo](step(a, t0, TimerFired{Timer: TimerInfo}))[0].Info.Labels["site"] != "a" {
		t.Fatalf("labels aliased the caller's map")
	}
}

// ---- commands --------------------------------------------------------------

func cmd(verb core.Verb, req core.CommandRequest) CommandReceived {
	req.Schema, req.Verb = core.SchemaVersion, verb
	return CommandReceived{Handle: 77, Verb: verb, Request: req}
}

func TestCommands(t *testing.T) {
	cases := []struct {
		name  string
		exec  bool
		in    CommandReceived
		check func(t *testing.T, effs []Effect)
	}{
		{name: "ping replies with version and uptime", in: cmd(core.VerbPing, core.CommandRequest{ID: "p1"}),
			check: func(t *testing.T, effs []Effect) {
				r := only[Reply](effs)
				if len(r) != 1 || r[0].Handle != 77 || r[0].Reply.ID != "p1" || r[0].Reply.Ping == nil ||
					r[0].Reply.Ping.UptimeSec != 90 || r[0].Reply.Ping.Device != "dev-1" {
					t.Fatalf("%#v", effs)
				}
			}},
		{name: "logs lines are clamped", in: cmd(core.VerbLogs, core.CommandRequest{Logs: &core.LogsArgs{Deployment: "web", Lines: 1 << 30}}),
			check: func(t *testing.T, effs []Effect) {
				f := only[FetchLogs](effs)
				if len(f) != 1 || f[0].Args.Lines != core.MaxLogLines || f[0].Args.Deployment != "web" || f[0].Handle != 77 {
					t.Fatalf("%#v", effs)
				}
			}},
		{name: "logs default lines", in: cmd(core.VerbLogs, core.CommandRequest{Logs: &core.LogsArgs{}}),
			check: func(t *testing.T, effs []Effect) {
				if f := only[FetchLogs](effs); len(f) != 1 || f[0].Args.Lines != core.DefaultLogLines {
					t.Fatalf("%#v", effs)
				}
			}},
		{name: "exec is disabled by default", in: cmd(core.VerbExec, core.CommandRequest{Exec: &core.ExecArgs{Command: []string{"uptime"}}}),
			check: func(t *testing.T, effs []Effect) {
				r := only[Reply](effs)
				if len(r) != 1 || r[0].Reply.Error == nil || r[0].Reply.Error.Code != core.ErrCodeDisabled || len(only[RunExec](effs)) != 0 {
					t.Fatalf("%#v", effs)
				}
			}},
		{name: "exec allowed runs with clamped limits", exec: true,
			in: cmd(core.VerbExec, core.CommandRequest{Exec: &core.ExecArgs{Command: []string{"uptime"}, TimeoutMS: 1 << 30}}),
			check: func(t *testing.T, effs []Effect) {
				x := only[RunExec](effs)
				if len(x) != 1 || x[0].Args.TimeoutMS != core.MaxExecTimeout || x[0].Args.MaxOutput != core.MaxExecOutput {
					t.Fatalf("%#v", effs)
				}
			}},
		{name: "undecodable request gets bad-request", in: CommandReceived{Handle: 77, Verb: core.VerbLogs, DecodeErr: `decode command request: field "logs.lines": want int`},
			check: func(t *testing.T, effs []Effect) {
				r := only[Reply](effs)
				if len(r) != 1 || r[0].Reply.Error == nil || r[0].Reply.Error.Code != core.ErrCodeBadRequest ||
					!strings.Contains(r[0].Reply.Error.Message, "logs.lines") {
					t.Fatalf("%#v", effs)
				}
			}},
		{name: "verb disagreeing with the subject gets bad-request", in: CommandReceived{Handle: 77, Verb: core.VerbExec,
			Request: core.CommandRequest{Schema: 1, Verb: core.VerbPing}},
			check: func(t *testing.T, effs []Effect) {
				r := only[Reply](effs)
				if len(r) != 1 || r[0].Reply.Error == nil || r[0].Reply.Error.Code != core.ErrCodeBadRequest {
					t.Fatalf("%#v", effs)
				}
			}},
		{name: "exec without a program gets bad-request", exec: true, in: cmd(core.VerbExec, core.CommandRequest{Exec: &core.ExecArgs{}}),
			check: func(t *testing.T, effs []Effect) {
				r := only[Reply](effs)
				if len(r) != 1 || r[0].Reply.Error == nil || r[0].Reply.Error.Code != core.ErrCodeBadRequest {
					t.Fatalf("%#v", effs)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(v1)
			cfg.ExecAllowed = c.exec
			a := New(cfg)
			a.Step(t0, Start{Journal: []Record{{Kind: RecInstalled, To: v1}}, Current: v1, Installed: []core.Version{v1}})
			before, _ := json.Marshal(c.in)
			effs := step(a, t0.Add(90*time.Second), c.in)
			c.check(t, effs)
			for _, r := range only[Reply](effs) {
				if err := r.Reply.Validate(); err != nil {
					t.Fatalf("invalid reply: %v", err)
				}
			}
			if after, _ := json.Marshal(c.in); string(before) != string(after) {
				t.Fatalf("the core modified its input:\n%s\n%s", before, after)
			}
		})
	}
}
