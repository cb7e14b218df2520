package opcore

import (
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// upgradeFixture: d1 online on v1.0.0, an AgentRollout to v1.1.0 whose
// marker for d1 has been written.
func upgradeFixture(t *testing.T, cfg Config, priorAttempt uint32) (*harness, uint32) {
	h := newHarness(t, cfg)
	h.device("d1", map[string]string{"ring": "0"})
	if priorAttempt > 0 {
		h.upgradeStatus("d1", priorAttempt, core.UpgradeRolledBack, "v1.0.0", "v1.0.5", "v1.0.0", core.ReasonCutoverTimeout)
	}
	h.converge()
	h.heartbeat("d1", "v1.0.0", 0)
	h.step(AgentRolloutUpsert{Spec: agentRollout("r1", "v1.1.0", map[string]string{"ring": "0"}, Strategy{})})
	out := h.tick()
	keys := puts(out, core.BucketAgentUpgrade)
	eqKeys(t, "marker", keys, "d1")
	var m core.UpgradeMarker
	for _, e := range out {
		if p, ok := e.(PutKV); ok && p.Bucket == core.BucketAgentUpgrade {
			var err error
			if m, err = core.DecodeUpgradeMarker(p.Value); err != nil {
				t.Fatal(err)
			}
		}
	}
	return h, m.Attempt
}

func TestMarkerAttemptIsOneMoreThanTheHighestSeen(t *testing.T) {
	_, a := upgradeFixture(t, Config{}, 0)
	if a != 1 {
		t.Fatalf("first attempt %d, want 1", a)
	}
	_, a = upgradeFixture(t, Config{}, 6)
	if a != 7 {
		t.Fatalf("attempt after 6 is %d, want 7", a)
	}
}

func TestUpgradeStopOnlyAfterOwnLiveHeartbeatOfTargetForAttempt(t *testing.T) {
	h, a := upgradeFixture(t, Config{}, 0)
	h.upgradeStatus("d1", a, core.UpgradeStaging, "v1.0.0", "v1.1.0", "v1.0.0", "")
	// Candidate heartbeat before the old agent is armed: no stop yet.
	if c := commands(h.heartbeat("d1", "v1.1.0", a)); len(c) != 0 {
		t.Fatal("stop sent before WaitingForStop")
	}
	// Wrong attempt or version: never a stop.
	h.upgradeStatus("d1", a, core.UpgradeWaitingForStop, "v1.0.0", "v1.1.0", "v1.0.0", "")
	h.advance(time.Minute) // the earlier candidate heartbeat is now stale
	if c := commands(h.tick()); len(c) != 0 {
		t.Fatal("stop sent on a stale heartbeat")
	}
	if c := commands(h.heartbeat("d1", "v1.1.0", a+1)); len(c) != 0 {
		t.Fatal("stop sent for a heartbeat of another attempt")
	}
	if c := commands(h.heartbeat("d1", "v1.2.0", a)); len(c) != 0 {
		t.Fatal("stop sent for a heartbeat of another version")
	}
	if c := commands(h.heartbeat("d1", "v1.0.0", 0)); len(c) != 0 {
		t.Fatal("stop sent on the old agent's heartbeat")
	}
	out := h.heartbeat("d1", "v1.1.0", a)
	cmds := commands(out)
	if len(cmds) != 1 {
		t.Fatalf("%d stops, want 1", len(cmds))
	}
	c := cmds[0]
	if c.Device != "d1" || c.Request.Verb != core.VerbUpgradeStop || c.Request.UpgradeStop.Attempt != a ||
		c.Request.UpgradeStop.TargetVersion.String() != "v1.1.0" {
		t.Fatalf("command %+v", c)
	}
	// The patch recording stopSentAttempt comes right before the command.
	for i, e := range out {
		if _, ok := e.(SendCommand); ok {
			p, ok := out[i-1].(PatchDeviceStatus)
			if !ok || p.Status.Upgrade.StopSentAttempt != a {
				t.Fatalf("effect before the stop is %#v", out[i-1])
			}
		}
	}
	if c := commands(h.heartbeat("d1", "v1.1.0", a)); len(c) != 0 {
		t.Fatal("a second stop for the same attempt")
	}
	h.step(CommandResult{Device: "d1", Verb: core.VerbUpgradeStop, ID: c.Request.ID, Attempt: a})
	u, _ := h.op.DeviceUpgrade("d1")
	st, _ := h.op.DeviceStatus("d1")
	if st.CurrentVersion.String() != "v1.1.0" {
		t.Fatalf("currentVersion %v after the stop was acknowledged", st.CurrentVersion)
	}
	h.upgradeStatus("d1", a, core.UpgradeCommitted, "v1.0.0", "v1.1.0", "v1.1.0", "")
	u, _ = h.op.DeviceUpgrade("d1")
	if u.Phase != UpgradePhase(core.UpgradeCommitted) || u.StopSentAttempt != a {
		t.Fatalf("upgrade %+v", u)
	}
	h.tick()
	r := h.rollStatus("r1")
	if r.Counts.Succeeded != 1 || !cond(r.Conditions, CondComplete).Status {
		t.Fatalf("rollout %+v", r)
	}
}

func TestRestartedOperatorSendsNoSecondStopAndWritesNoNewMarker(t *testing.T) {
	h, a := upgradeFixture(t, Config{}, 0)
	h.upgradeStatus("d1", a, core.UpgradeWaitingForStop, "v1.0.0", "v1.1.0", "v1.0.0", "")
	if len(commands(h.heartbeat("d1", "v1.1.0", a))) != 1 {
		t.Fatal("no stop")
	}
	st, _ := h.op.DeviceStatus("d1")
	marker, _ := core.UpgradeMarker{Attempt: a, Rollout: "r1", TargetVersion: core.MustParseVersion("v1.1.0"),
		Artifact: core.ArtifactRef{Object: "flotilla-agent/v1.1.0", SHA256: sha, Size: 1000}, CutoverTimeoutSec: 120}.Encode()

	// A new core, fed the Device object (with stopSentAttempt) and the KV.
	h2 := newHarness(t, Config{})
	h2.step(DeviceUpsert{Device: DeviceRecord{Name: "d1", Labels: map[string]string{"ring": "0"},
		StopSentAttempt: st.Upgrade.StopSentAttempt}})
	h2.step(AgentRolloutUpsert{Spec: agentRollout("r1", "v1.1.0", map[string]string{"ring": "0"}, Strategy{})})
	h2.step(KVPut{Bucket: core.BucketAgentUpgrade, Key: "d1", Value: marker})
	h2.upgradeStatus("d1", a, core.UpgradeWaitingForStop, "v1.0.0", "v1.1.0", "v1.0.0", "")
	h2.converge()
	out := h2.heartbeat("d1", "v1.1.0", a)
	out = append(out, h2.tick()...)
	if len(commands(out)) != 0 {
		t.Fatal("restarted operator sent a second stop")
	}
	if len(puts(out, core.BucketAgentUpgrade)) != 0 {
		t.Fatal("restarted operator wrote a new marker mid-attempt")
	}
	if r := h2.rollStatus("r1"); r.Counts.InProgress != 1 {
		t.Fatalf("rollout after restart %+v", r.Counts)
	}
}

func TestRestartedOperatorNeedsALiveHeartbeatBeforeStopping(t *testing.T) {
	h := newHarness(t, Config{})
	marker, _ := core.UpgradeMarker{Attempt: 3, Rollout: "r1", TargetVersion: core.MustParseVersion("v1.1.0"),
		Artifact: core.ArtifactRef{Object: "a/v1.1.0", SHA256: sha, Size: 1}, CutoverTimeoutSec: 120}.Encode()
	h.device("d1", nil)
	h.step(KVPut{Bucket: core.BucketAgentUpgrade, Key: "d1", Value: marker})
	h.upgradeStatus("d1", 3, core.UpgradeWaitingForStop, "v1.0.0", "v1.1.0", "v1.0.0", "")
	h.heartbeat("d1", "v1.1.0", 3) // replayed
	out := h.converge()
	out = append(out, h.tick()...)
	if len(commands(out)) != 0 {
		t.Fatal("stop sent on a replayed heartbeat")
	}
	if len(commands(h.heartbeat("d1", "v1.1.0", 3))) != 1 {
		t.Fatal("no stop after a live heartbeat")
	}
}

func TestFailedAndRolledBackAttemptsCountAsFailedAndPauseTheRollout(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	for _, d := range []string{"d1", "d2", "d3"} {
		h.device(d, map[string]string{"ring": "0"})
		h.heartbeat(d, "v1.0.0", 0)
	}
	h.step(AgentRolloutUpsert{Spec: agentRollout("r1", "v1.1.0", map[string]string{"ring": "0"},
		Strategy{MaxUnavailable: Amount{Value: 1}, FailureThreshold: &Amount{Value: 0}})})
	eqKeys(t, "one at a time", puts(h.tick(), core.BucketAgentUpgrade), "d1")
	h.upgradeStatus("d1", 1, core.UpgradeFailed, "v1.0.0", "v1.1.0", "v1.0.0", core.ReasonChecksumMismatch)
	out := h.tick()
	eqKeys(t, "paused past the threshold", puts(out, core.BucketAgentUpgrade))
	r := h.rollStatus("r1")
	if r.Counts.Failed != 1 || r.ByPhase["Failed"] != 1 || r.ByPhase[PhaseWaiting] != 2 {
		t.Fatalf("rollout %+v", r)
	}
	if c := cond(r.Conditions, CondPaused); !c.Status || c.Reason != ReasonFailureThreshold {
		t.Fatalf("paused %+v", c)
	}
	u, _ := h.op.DeviceUpgrade("d1")
	if u.Phase != UpgradePhase(core.UpgradeFailed) || u.Message == "" {
		t.Fatalf("device upgrade %+v", u)
	}
}

func TestAgentRolloutWavesAndOfflineDevicesWait(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	for _, d := range []string{"d1", "d2", "d3", "d4"} {
		h.device(d, nil)
	}
	for _, d := range []string{"d1", "d2", "d4"} {
		h.heartbeat(d, "v1.0.0", 0)
	}
	h.step(AgentRolloutUpsert{Spec: agentRollout("r1", "v1.1.0", nil,
		Strategy{Waves: []Amount{{Value: 1}, {Value: 2}}})})
	eqKeys(t, "wave 1", puts(h.tick(), core.BucketAgentUpgrade), "d1")
	h.upgradeStatus("d1", 1, core.UpgradeCommitted, "v1.0.0", "v1.1.0", "v1.1.0", "")
	eqKeys(t, "wave 2 skips offline d3", puts(h.tick(), core.BucketAgentUpgrade), "d2", "d4")
	h.heartbeat("d3", "v1.0.0", 0)
	eqKeys(t, "wave 2 still in flight", puts(h.tick(), core.BucketAgentUpgrade))
	r := h.rollStatus("r1")
	if r.Counts.Succeeded != 1 || r.Counts.InProgress != 2 || r.Counts.Waiting != 1 {
		t.Fatalf("counts %+v", r.Counts)
	}
	h.upgradeStatus("d2", 1, core.UpgradeCommitted, "v1.0.0", "v1.1.0", "v1.1.0", "")
	h.upgradeStatus("d4", 1, core.UpgradeRolledBack, "v1.0.0", "v1.1.0", "v1.0.0", core.ReasonCutoverTimeout)
	eqKeys(t, "d3 in the final wave once online", puts(h.tick(), core.BucketAgentUpgrade), "d3")
}

func TestDevicesAlreadyOnTargetSucceedWithoutMarker(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", nil)
	h.heartbeat("d1", "v1.1.0", 0)
	h.step(AgentRolloutUpsert{Spec: agentRollout("r1", "v1.1.0", nil, Strategy{})})
	if len(puts(h.tick(), core.BucketAgentUpgrade)) != 0 {
		t.Fatal("marker for a device already on the target")
	}
	if r := h.rollStatus("r1"); r.Counts.Succeeded != 1 {
		t.Fatalf("counts %+v", r.Counts)
	}
}

func TestAttemptWithoutProgressTimesOut(t *testing.T) {
	h, a := upgradeFixture(t, Config{AttemptTimeout: 5 * time.Minute, OfflineAfter: time.Hour}, 0)
	h.advance(3 * time.Minute)
	h.upgradeStatus("d1", a, core.UpgradeStaging, "v1.0.0", "v1.1.0", "v1.0.0", "")
	h.advance(4 * time.Minute)
	h.tick()
	if u, _ := h.op.DeviceUpgrade("d1"); u.Phase == UpgradeTimedOut {
		t.Fatal("timed out although the status progressed 4 minutes ago")
	}
	h.advance(2 * time.Minute)
	out := h.tick()
	u, _ := h.op.DeviceUpgrade("d1")
	if u.Phase != UpgradeTimedOut || len(notices(out, "UpgradeTimedOut")) != 1 {
		t.Fatalf("upgrade %+v", u)
	}
	if r := h.rollStatus("r1"); r.Counts.Failed != 1 || r.ByPhase[string(UpgradeTimedOut)] != 1 {
		t.Fatalf("rollout %+v", r)
	}
}

func TestLostStopIsResentOnTheNextHeartbeatBounded(t *testing.T) {
	h, a := upgradeFixture(t, Config{}, 0)
	h.upgradeStatus("d1", a, core.UpgradeWaitingForStop, "v1.0.0", "v1.1.0", "v1.0.0", "")
	cmds := commands(h.heartbeat("d1", "v1.1.0", a))
	if len(cmds) != 1 {
		t.Fatal("no stop")
	}
	out := h.step(CommandResult{Device: "d1", Verb: core.VerbUpgradeStop, ID: cmds[0].Request.ID, Attempt: a,
		Code: core.ErrCodeOffline, Message: "no responders"})
	if len(notices(out, "UpgradeStopFailed")) != 1 || h.op.Stats().CommandErrors != 1 {
		t.Fatal("failure not recorded")
	}
	if st, _ := h.op.DeviceStatus("d1"); st.CurrentVersion.String() != "v1.0.0" {
		t.Fatalf("currentVersion %v after a failed stop", st.CurrentVersion)
	}
	// Nothing is re-sent without a fresh heartbeat of the candidate ...
	if len(commands(h.tick())) != 0 {
		t.Fatal("stop re-sent without a new heartbeat")
	}
	// ... and each fresh heartbeat after a lost stop re-sends it, up to MaxStopTries.
	for try := 2; try <= MaxStopTries; try++ {
		cmds = commands(h.heartbeat("d1", "v1.1.0", a))
		if len(cmds) != 1 {
			t.Fatalf("try %d: stop not re-sent after a timeout", try)
		}
		h.step(CommandResult{Device: "d1", Verb: core.VerbUpgradeStop, ID: cmds[0].Request.ID, Attempt: a,
			Code: core.ErrCodeTimeout, Message: "timeout"})
	}
	if len(commands(h.heartbeat("d1", "v1.1.0", a))) != 0 {
		t.Fatal("stop sent more than MaxStopTries times")
	}
}

// A stop the shell could not send (its StopSentAttempt patch failed) is sent
// again, with its patch first, on the next live heartbeat of the candidate:
// a transient status-write failure must not turn a healthy upgrade into a
// CutoverTimeout rollback.
func TestStopNotSentIsRetriedWithItsPatch(t *testing.T) {
	h, a := upgradeFixture(t, Config{}, 0)
	h.upgradeStatus("d1", a, core.UpgradeWaitingForStop, "v1.0.0", "v1.1.0", "v1.0.0", "")
	cmds := commands(h.heartbeat("d1", "v1.1.0", a))
	if len(cmds) != 1 {
		t.Fatal("no stop")
	}
	h.step(CommandResult{Device: "d1", Verb: core.VerbUpgradeStop, ID: cmds[0].Request.ID, Attempt: a,
		Code: core.ErrCodeInternal, Message: "not sent: could not record stopSentAttempt", NotSent: true})
	out := h.heartbeat("d1", "v1.1.0", a)
	if len(commands(out)) != 1 {
		t.Fatal("a stop that was never sent is not retried")
	}
	for i, e := range out {
		if _, ok := e.(SendCommand); ok {
			if p, ok := out[i-1].(PatchDeviceStatus); !ok || p.Status.Upgrade.StopSentAttempt != a {
				t.Fatalf("the retried stop is not guarded by its patch: %T", out[i-1])
			}
		}
	}
}

func TestRejectedStopIsNotRetried(t *testing.T) {
	h, a := upgradeFixture(t, Config{}, 0)
	h.upgradeStatus("d1", a, core.UpgradeWaitingForStop, "v1.0.0", "v1.1.0", "v1.0.0", "")
	cmds := commands(h.heartbeat("d1", "v1.1.0", a))
	if len(cmds) != 1 {
		t.Fatal("no stop")
	}
	h.step(CommandResult{Device: "d1", Verb: core.VerbUpgradeStop, ID: cmds[0].Request.ID, Attempt: a,
		Code: core.ErrCodeRejected, Message: "not armed"})
	if len(commands(h.heartbeat("d1", "v1.1.0", a))) != 0 {
		t.Fatal("rejected stop retried")
	}
}

func TestFirstRolloutByNameOwnsADevice(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", nil)
	h.heartbeat("d1", "v1.0.0", 0)
	h.step(AgentRolloutUpsert{Spec: agentRollout("b", "v1.2.0", nil, Strategy{})})
	h.step(AgentRolloutUpsert{Spec: agentRollout("a", "v1.1.0", nil, Strategy{})})
	out := h.tick()
	for _, e := range out {
		if p, ok := e.(PutKV); ok && p.Bucket == core.BucketAgentUpgrade {
			m, _ := core.DecodeUpgradeMarker(p.Value)
			if m.Rollout != "a" {
				t.Fatalf("marker from rollout %s", m.Rollout)
			}
		}
	}
	if h.rollStatus("b").Counts.Total != 0 || h.rollStatus("a").Counts.Total != 1 {
		t.Fatal("device counted by both rollouts")
	}
	h.step(AgentRolloutDeleted{Name: "a"})
	if h.rollStatus("b").Counts.Total != 1 {
		t.Fatal("device not handed to the next rollout")
	}
}

func TestInvalidAgentRolloutIsReportedAndStartsNothing(t *testing.T) {
	h := newHarness(t, Config{})
	h.converge()
	h.device("d1", nil)
	h.heartbeat("d1", "v1.0.0", 0)
	spec := agentRollout("r1", "v1.1.0", nil, Strategy{})
	spec.Artifact.SHA256 = "nope"
	out := h.step(AgentRolloutUpsert{Spec: spec})
	if len(notices(out, "InvalidSpec")) != 1 {
		t.Fatal("no InvalidSpec notice")
	}
	if len(puts(h.tick(), core.BucketAgentUpgrade)) != 0 {
		t.Fatal("marker from an invalid rollout")
	}
	if s := h.rollStatus("r1"); s.LastError == "" || !cond(s.Conditions, CondDegraded).Status {
		t.Fatalf("status %+v", s)
	}
}

func TestFailedMarkerWriteIsRetriedWithAFreshAttempt(t *testing.T) {
	h, a := upgradeFixture(t, Config{}, 0)
	h.step(KVWriteFailed{Bucket: core.BucketAgentUpgrade, Key: "d1", Err: "timeout"})
	out := h.tick()
	var m core.UpgradeMarker
	for _, e := range out {
		if p, ok := e.(PutKV); ok && p.Bucket == core.BucketAgentUpgrade {
			m, _ = core.DecodeUpgradeMarker(p.Value)
		}
	}
	if m.Attempt != a+1 {
		t.Fatalf("retry used attempt %d, want %d", m.Attempt, a+1)
	}
}

func TestWakeAtAnnouncesTheNextDeadline(t *testing.T) {
	h := newHarness(t, Config{OfflineAfter: 30 * time.Second})
	h.converge()
	h.device("d1", nil)
	out := h.heartbeat("d1", "v1.0.0", 0)
	var at time.Time
	for _, e := range out {
		if w, ok := e.(WakeAt); ok {
			at = w.At
		}
	}
	if !at.Equal(h.now.Add(30 * time.Second)) {
		t.Fatalf("WakeAt %v, want %v", at, h.now.Add(30*time.Second))
	}
	wakes := func(out []Effect) (n int, last time.Time) {
		for _, e := range out {
			if w, ok := e.(WakeAt); ok {
				n, last = n+1, w.At
			}
		}
		return n, last
	}
	// Inputs that leave the earliest deadline where it is announce nothing,
	// also once it is due and the shell has not ticked yet.
	h.advance(10 * time.Second)
	if n, _ := wakes(h.heartbeat("d1", "v1.0.0", 0)); n != 0 {
		t.Fatalf("%d WakeAt for an unchanged deadline", n)
	}
	h.advance(25 * time.Second)
	if n, _ := wakes(h.heartbeat("d1", "v1.0.0", 0)); n != 0 {
		t.Fatalf("%d WakeAt for a due, already announced deadline", n)
	}
	// The tick expires it (the device was seen since): the next is announced.
	n, next := wakes(h.tick())
	if n != 1 || !next.Equal(h.now.Add(30*time.Second)) {
		t.Fatalf("after the tick: %d WakeAt, at %v; want one at %v", n, next, h.now.Add(30*time.Second))
	}
}
