package agentcore

import (
	"slices"
	"testing"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// Tests named after the promises of docs/upgrade-protocol.md. The list of
// promises and the tests that prove them is in docs/agentcore.md.

func TestEachPhaseJournalsBeforeItActs(t *testing.T) {
	a := ready(t, v1)
	wantNames(t, step(a, t0, MarkerPut{Marker: marker(1, v2)}), "journal:begin", "status:Staging", "Download")
	wantNames(t, step(a, t0, DownloadDone{Attempt: 1}), "journal:staged", "status:Verifying", "SelfTest")
	wantNames(t, step(a, t0, SelfTestDone{Attempt: 1}),
		"journal:verified", "journal:swap-intent", "status:CutoverReady", "swap:v1.1.0")
	wantNames(t, step(a, t0, SwapDone{Attempt: 1, To: v2}), "journal:swapped", "StartCandidate")
	wantNames(t, step(a, t0, CandidateStarted{Attempt: 1}), "status:WaitingForStop", "arm:cutover")
	effs := step(a, t0, stopCmd(newWorld(t), 1, v2))
	wantNames(t, effs, "journal:committed", "Reply", "Exit")
	if ex := only[Exit](effs); ex[0].Code != 0 {
		t.Fatalf("exit code %d", ex[0].Code)
	}
	if a.Role() != RoleExited {
		t.Fatalf("role %s after commit, want exited", a.Role())
	}
	if effs := step(a, t0, TimerFired{Timer: TimerHeartbeat}); len(effs) != 0 {
		t.Fatalf("an exited agent still acts: %v", names(effs))
	}
}

func TestCutoverTimerUsesMarkerTimeout(t *testing.T) {
	a := ready(t, v1)
	m := marker(1, v2)
	m.CutoverTimeoutSec = 42
	a.Step(t0, MarkerPut{Marker: m})
	a.Step(t0, DownloadDone{Attempt: 1})
	a.Step(t0, SelfTestDone{Attempt: 1})
	a.Step(t0, SwapDone{Attempt: 1, To: v2})
	arm := only[ArmTimer](step(a, t0, CandidateStarted{Attempt: 1}))
	if len(arm) != 1 || arm[0].Timer != TimerCutover || arm[0].After != 42*time.Second {
		t.Fatalf("cutover timer %+v, want 42s", arm)
	}
}

func TestStopIsIgnoredWhenNotArmed(t *testing.T) {
	cases := []struct {
		name    string
		agent   func(t *testing.T) *Agent
		attempt uint32
		to      core.Version
	}{
		{"idle", func(t *testing.T) *Agent { return ready(t, v1) }, 1, v2},
		{"staging", func(t *testing.T) *Agent {
			a := ready(t, v1)
			a.Step(t0, MarkerPut{Marker: marker(1, v2)})
			return a
		}, 1, v2},
		{"cutover ready", func(t *testing.T) *Agent {
			a := ready(t, v1)
			a.Step(t0, MarkerPut{Marker: marker(1, v2)})
			a.Step(t0, DownloadDone{Attempt: 1})
			a.Step(t0, SelfTestDone{Attempt: 1})
			a.Step(t0, SwapDone{Attempt: 1, To: v2})
			return a
		}, 1, v2},
		{"armed for another attempt", toWaitingForStop, 2, v2},
		{"armed for another version", toWaitingForStop, 1, v3},
		{"reverting after timeout", func(t *testing.T) *Agent {
			a := toWaitingForStop(t)
			a.Step(t0, TimerFired{Timer: TimerCutover})
			return a
		}, 1, v2},
		{"rolled back", func(t *testing.T) *Agent {
			a := toWaitingForStop(t)
			a.Step(t0, TimerFired{Timer: TimerCutover})
			a.Step(t0, SwapDone{Attempt: 1, To: v1})
			return a
		}, 1, v2},
		{"candidate", func(t *testing.T) *Agent { return candidate(t, 1) }, 1, v2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := c.agent(t)
			role, phase := a.Role(), a.UpgradePhase()
			effs := step(a, t0, stopCmd(newWorld(t), c.attempt, c.to))
			if len(only[Reply](effs)) != 0 || len(only[Exit](effs)) != 0 || len(only[AppendJournal](effs)) != 0 {
				t.Fatalf("unarmed agent reacted to upgrade-stop: %v", names(effs))
			}
			if a.Role() != role || a.UpgradePhase() != phase {
				t.Fatalf("state changed: %s/%s → %s/%s", role, phase, a.Role(), a.UpgradePhase())
			}
		})
	}
}

func TestOnlyTheArmedOldAgentAnswersStop(t *testing.T) {
	w := newWorld(t).preserved(v1)
	w.boot(v1, 0)
	w.run()
	w.putMarker(marker(1, v2))
	w.run()
	w.settled()
	if len(w.replies) != 1 {
		t.Fatalf("%d replies to one upgrade-stop sent to both agents, want 1", len(w.replies))
	}
	// A second stop (an operator retry) reaches only the new agent: silence.
	w.send(stopCmd(w, 1, v2))
	w.run()
	if len(w.replies) != 1 || len(w.exits) != 1 {
		t.Fatalf("repeated stop answered or exited: replies=%d exits=%v", len(w.replies), w.exits)
	}
}

func TestDownloadFailureKeepsOldVersion(t *testing.T) {
	for _, c := range []struct {
		reason core.UpgradeReason
		want   core.UpgradeReason
	}{
		{"", core.ReasonDownloadFailed},
		{core.ReasonDownloadFailed, core.ReasonDownloadFailed},
		{core.ReasonChecksumMismatch, core.ReasonChecksumMismatch},
		{core.ReasonSignatureInvalid, core.ReasonSignatureInvalid},
		{core.ReasonDiskFull, core.ReasonDiskFull},
	} {
		t.Run(string(c.want)+"/"+string(c.reason), func(t *testing.T) {
			w := newWorld(t).preserved(v1)
			w.beh.downloadErr, w.beh.downloadReason = "boom", c.reason
			old := w.boot(v1, 0)
			w.putMarker(marker(1, v2))
			w.run()
			act := w.settled()
			if act != old || len(w.exits) != 0 {
				t.Fatalf("the old agent must keep running: active=%v exits=%v", act.name, w.exits)
			}
			st := w.lastStatus()
			if st.Phase != core.UpgradeFailed || st.Reason != c.want || st.Detail != "boom" {
				t.Fatalf("status %v (%q), want Failed(%s) with the error", st, st.Detail, c.want)
			}
			if got := journalKinds(w.journal); !slices.Equal(got, []RecordKind{RecInstalled, RecBegin, RecFailed}) {
				t.Fatalf("journal %v", got)
			}
		})
	}
}

func TestSelfTestFailureKeepsOldVersion(t *testing.T) {
	w := newWorld(t).preserved(v1)
	w.beh.selfTestErr = "self-test: exit status 1"
	old := w.boot(v1, 0)
	w.putMarker(marker(1, v2))
	w.run()
	if act := w.settled(); act != old || !sameVersion(w.current, v1) {
		t.Fatalf("active %s current %s, want the old agent on v1", act.name, w.current)
	}
	if st := w.lastStatus(); st.Phase != core.UpgradeFailed || st.Reason != core.ReasonSelfTestFailed {
		t.Fatalf("status %v, want Failed(SelfTestFailed)", st)
	}
	// The unverified download is garbage-collected.
	if slices.ContainsFunc(w.installed, func(v core.Version) bool { return sameVersion(v, v2) }) {
		t.Fatalf("v2 failed its self-test but is still installed: %v", w.installed)
	}
}

func TestSwapFailureSwapsBackAndFails(t *testing.T) {
	w := newWorld(t).preserved(v1)
	w.beh.swapErr = "rename: read-only file system"
	old := w.boot(v1, 0)
	w.putMarker(marker(1, v2))
	w.run()
	if act := w.settled(); act != old {
		t.Fatalf("active %s, want the old agent", act.name)
	}
	if st := w.lastStatus(); st.Phase != core.UpgradeFailed || st.Reason != core.ReasonSwapFailed {
		t.Fatalf("status %v, want Failed(SwapFailed)", st)
	}
	var swaps []string
	for _, l := range w.trace {
		if len(l) > 0 && slices.Contains([]string{"v1.0.0", "v1.1.0"}, l[len(l)-6:]) {
			swaps = append(swaps, l)
		}
	}
	if len(swaps) != 2 {
		t.Fatalf("want a swap to v2 then one back to v1, trace:\n%v", swaps)
	}
}

func TestCandidateStartFailureRollsBack(t *testing.T) {
	w := newWorld(t).preserved(v1)
	w.beh.startErr = "systemd: unit failed"
	old := w.boot(v1, 0)
	w.putMarker(marker(1, v2))
	w.run()
	if act := w.settled(); act != old || !sameVersion(w.current, v1) {
		t.Fatalf("active %s current %s", act.name, w.current)
	}
	if st := w.lastStatus(); st.Phase != core.UpgradeRolledBack || st.Reason != core.ReasonStartFailed {
		t.Fatalf("status %v, want RolledBack(CandidateStartFailed)", st)
	}
	if got := journalKinds(w.journal)[5:]; !slices.Equal(got, []RecordKind{RecSwapped, RecRevertIntent, RecReverted}) {
		t.Fatalf("journal tail %v", got)
	}
}

func TestCandidateCrashAfterCutoverRollsBack(t *testing.T) {
	w := newWorld(t).preserved(v1)
	w.beh.candidateCrash = true
	old := w.boot(v1, 0)
	w.putMarker(marker(1, v2))
	w.run()
	if act := w.settled(); act != old || !sameVersion(w.current, v1) {
		t.Fatalf("active %s current %s", act.name, w.current)
	}
	if st := w.lastStatus(); st.Phase != core.UpgradeRolledBack || st.Reason != core.ReasonStartFailed {
		t.Fatalf("status %v, want RolledBack", st)
	}
}

func TestNoStopWithinTimeoutRollsBack(t *testing.T) {
	for _, c := range []struct {
		name string
		beh  behaviour
	}{
		{"operator never sends stop", behaviour{operatorSilent: true}},
		{"new version hangs without heartbeating", behaviour{candidateHangs: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t).preserved(v1)
			w.beh = c.beh
			old := w.boot(v1, 0)
			w.putMarker(marker(1, v2))
			start := w.now
			w.run()
			if act := w.settled(); act != old || !sameVersion(w.current, v1) {
				t.Fatalf("active %s current %s", act.name, w.current)
			}
			if st := w.lastStatus(); st.Phase != core.UpgradeRolledBack || st.Reason != core.ReasonCutoverTimeout {
				t.Fatalf("status %v, want RolledBack(CutoverTimeout)", st)
			}
			if waited := w.now.Sub(start); waited != 60*time.Second {
				t.Fatalf("rolled back after %s, want the marker's 60s", waited)
			}
			if len(w.exits) != 0 {
				t.Fatalf("exits %v", w.exits)
			}
		})
	}
}

func TestRevertSwapFailureIsFinishedAtNextStart(t *testing.T) {
	a := toWaitingForStop(t)
	a.Step(t0, TimerFired{Timer: TimerCutover})
	for i := 1; i < maxRevertSwapTries; i++ {
		wantNames(t, step(a, t0, SwapDone{Attempt: 1, To: v1, Err: "EIO"}), "swap:v1.0.0")
	}
	effs := step(a, t0, SwapDone{Attempt: 1, To: v1, Err: "EIO"})
	if len(only[AppendJournal](effs)) != 0 || a.UpgradePhase() != core.UpgradeReverting {
		t.Fatalf("gave up the swap back but journaled %v / phase %s", names(effs), a.UpgradePhase())
	}
	// Restart: the journal ends in revert-intent; the new process finishes.
	j := []Record{{Kind: RecInstalled, To: v1}, {Kind: RecBegin, Attempt: 1, From: v1, To: v2},
		{Kind: RecStaged, Attempt: 1, From: v1, To: v2}, {Kind: RecVerified, Attempt: 1, From: v1, To: v2},
		{Kind: RecSwapIntent, Attempt: 1, From: v1, To: v2}, {Kind: RecSwapped, Attempt: 1, From: v1, To: v2},
		{Kind: RecRevertIntent, Attempt: 1, From: v1, To: v2, Reason: core.ReasonCutoverTimeout}}
	b := New(testConfig(v2))
	wantNames(t, step(b, t0, Start{Journal: j, Current: v2, Installed: []core.Version{v1, v2}}), "StopCandidate", "swap:v1.0.0")
	effs = step(b, t0, SwapDone{Attempt: 1, To: v1})
	wantNames(t, effs, "journal:reverted", "Reexec")
	if r := only[AppendJournal](effs)[0].Record; r.Reason != core.ReasonCutoverTimeout {
		t.Fatalf("reverted reason %s, want the revert-intent's CutoverTimeout", r.Reason)
	}
}

func TestAgentNeverExitsWithoutArmedStop(t *testing.T) {
	// Every input the core knows, in many orders; Exit may only follow the
	// Reply to an armed stop (the world fails the test otherwise), and
	// without a stop the agent never exits at all.
	for _, beh := range []behaviour{{}, {operatorSilent: true}, {candidateHangs: true}, {candidateCrash: true},
		{selfTestErr: "x"}, {downloadErr: "x"}, {swapErr: "x"}, {startErr: "x"}} {
		w := newWorld(t).preserved(v1)
		w.beh = beh
		w.boot(v1, 0)
		for attempt := uint32(1); attempt <= 3; attempt++ {
			w.putMarker(marker(attempt, []core.Version{v2, v3, v1}[attempt-1]))
			w.send(TimerFired{Timer: TimerHeartbeat})
			w.send(TimerFired{Timer: TimerInfo})
			w.send(TimerFired{Timer: TimerCutover})
			w.send(CandidateExited{Attempt: attempt})
			w.send(stopCmd(w, attempt+1, v3))
			w.run()
			w.settled()
		}
		stops := 0
		for _, r := range w.replies {
			if r.Reply.UpgradeStop != nil {
				stops++
			}
		}
		if len(w.exits) != stops {
			t.Fatalf("%+v: %d exits but %d armed stops answered", beh, len(w.exits), stops)
		}
		if (beh.operatorSilent || beh.candidateHangs) && len(w.exits) != 0 {
			t.Fatalf("%+v: an agent exited without any stop: %v", beh, w.exits)
		}
	}
}

func TestFirstUpgradeOfFreshInstallCanRollBack(t *testing.T) {
	w := newWorld(t) // nothing under versions/, no current link, no journal
	w.beh.operatorSilent = true
	old := w.boot(v1, 0)
	w.putMarker(marker(1, v2)) // arrives while the running binary is being preserved
	w.run()
	if got := journalKinds(w.journal); got[0] != RecInstalled {
		t.Fatalf("journal %v: the running version must be preserved (installed) before the attempt begins", got)
	}
	if act := w.settled(); act != old || !sameVersion(w.current, v1) {
		t.Fatalf("after rollback: active %s current %s, want the old agent on v1", act.name, w.current)
	}
	if st := w.lastStatus(); st.Phase != core.UpgradeRolledBack {
		t.Fatalf("status %v, want RolledBack", st)
	}
}

func TestFreshInstallPreservesBeforeAnythingElse(t *testing.T) {
	a := New(testConfig(v1))
	effs := step(a, t0, Start{})
	if p := only[PreserveRunning](effs); len(p) != 1 || !sameVersion(p[0].Version, v1) {
		t.Fatalf("start-up of a fresh install: %v, want PreserveRunning(v1)", names(effs))
	}
	if len(only[AppendJournal](effs)) != 0 {
		t.Fatalf("journaled installed before the preserve finished: %v", names(effs))
	}
	// A marker during the preserve waits.
	if effs := step(a, t0, MarkerPut{Marker: marker(1, v2)}); len(only[Download](effs)) != 0 {
		t.Fatalf("upgrade began before the running version was preserved: %v", names(effs))
	}
	wantNames(t, step(a, t0, PreserveDone{Version: v1}), "journal:installed", "journal:begin", "status:Staging", "Download")
}

func TestPreserveFailureRefusesUpgrade(t *testing.T) {
	a := New(testConfig(v1))
	a.Step(t0, Start{})
	a.Step(t0, MarkerPut{Marker: marker(1, v2)})
	effs := step(a, t0, PreserveDone{Version: v1, Err: "ENOSPC"})
	wantNames(t, effs, "journal:failed", "status:Failed")
	if st := only[PutUpgradeStatus](effs)[0].Status; st.Reason != core.ReasonDiskFull {
		t.Fatalf("reason %s", st.Reason)
	}
	// The next marker retries the preserve first.
	wantNames(t, step(a, t0, MarkerPut{Marker: marker(2, v2)}), "PreserveRunning")
	wantNames(t, step(a, t0, PreserveDone{Version: v1}), "journal:installed", "journal:begin", "status:Staging", "Download")
}

func TestMarkerAtOrBelowJournaledAttemptIsIgnored(t *testing.T) {
	j := []Record{{Kind: RecInstalled, To: v1}, {Kind: RecBegin, Attempt: 5, From: v1, To: v2},
		{Kind: RecFailed, Attempt: 5, From: v1, To: v2, Reason: core.ReasonSelfTestFailed}}
	a := New(testConfig(v1))
	a.Step(t0, Start{Journal: j, Current: v1, Installed: []core.Version{v1}})
	for _, at := range []uint32{1, 4, 5} {
		if effs := step(a, t0, MarkerPut{Marker: marker(at, v2)}); len(effs) != 0 {
			t.Fatalf("marker attempt %d (journal at 5) acted on: %v", at, names(effs))
		}
	}
	wantNames(t, step(a, t0, MarkerPut{Marker: marker(6, v2)}), "journal:begin", "status:Staging", "Download")
	if effs := step(a, t0, MarkerPut{Marker: marker(6, v2)}); len(effs) != 0 {
		t.Fatalf("rewritten marker restarted the attempt: %v", names(effs))
	}
}

func TestMarkerForRunningVersionAnswersAlreadyRunning(t *testing.T) {
	a := ready(t, v1)
	effs := step(a, t0, MarkerPut{Marker: marker(3, v1)})
	wantNames(t, effs, "status:Idle")
	st := only[PutUpgradeStatus](effs)[0].Status
	if st.Reason != core.ReasonAlreadyRunning || st.Attempt != 3 {
		t.Fatalf("status %v, want Idle(AlreadyRunning) for attempt 3", st)
	}
	if effs := step(a, t0, MarkerPut{Marker: marker(3, v1)}); len(effs) != 0 {
		t.Fatalf("replayed marker answered again: %v", names(effs))
	}
}

func TestNewerMarkerSupersedesBeforeCutover(t *testing.T) {
	for _, c := range []struct {
		name string
		prep func(a *Agent)
	}{
		{"staging", func(a *Agent) {}},
		{"verifying", func(a *Agent) { a.Step(t0, DownloadDone{Attempt: 1}) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := ready(t, v1)
			a.Step(t0, MarkerPut{Marker: marker(1, v2)})
			c.prep(a)
			effs := step(a, t0, MarkerPut{Marker: marker(2, v3)})
			wantNames(t, effs, "journal:failed", "status:Failed", "journal:begin", "status:Staging", "Download")
			if st := only[PutUpgradeStatus](effs)[0].Status; st.Reason != core.ReasonSuperseded || st.Attempt != 1 {
				t.Fatalf("status %v, want Failed(Superseded) for attempt 1", st)
			}
			// The superseded attempt's late results change nothing.
			for _, in := range []Input{DownloadDone{Attempt: 1}, SelfTestDone{Attempt: 1}, SwapDone{Attempt: 1, To: v2}} {
				if effs := step(a, t0, in); len(effs) != 0 {
					t.Fatalf("late %T of the superseded attempt acted: %v", in, names(effs))
				}
			}
			if a.Attempt() != 2 || a.UpgradePhase() != core.UpgradeStaging {
				t.Fatalf("attempt %d phase %s", a.Attempt(), a.UpgradePhase())
			}
		})
	}
}

func TestNewerMarkerIsHeldDuringCutover(t *testing.T) {
	a := toWaitingForStop(t)
	effs := step(a, t0, MarkerPut{Marker: marker(2, v3)})
	if len(only[AppendJournal](effs)) != 0 || a.Attempt() != 1 {
		t.Fatalf("marker during WaitingForStop acted: %v", names(effs))
	}
	a.Step(t0, TimerFired{Timer: TimerCutover})
	effs = step(a, t0, SwapDone{Attempt: 1, To: v1})
	wantNames(t, effs, "journal:reverted", "status:RolledBack", "journal:begin", "status:Staging", "Download")
	if a.Attempt() != 2 {
		t.Fatalf("held marker not taken after the rollback")
	}
}

func TestMarkerDeletedCancelsBeforeCutover(t *testing.T) {
	a := ready(t, v1)
	a.Step(t0, MarkerPut{Marker: marker(1, v2)})
	effs := step(a, t0, MarkerDeleted{})
	wantNames(t, effs, "journal:failed", "status:Failed")
	// After cutover a deleted marker does not stop the attempt: the timer does.
	b := toWaitingForStop(t)
	if effs := step(b, t0, MarkerDeleted{}); len(effs) != 0 {
		t.Fatalf("deleted marker during WaitingForStop acted: %v", names(effs))
	}
}

func TestInvalidMarkerIsLoggedAndIgnored(t *testing.T) {
	a := ready(t, v1)
	effs := step(a, t0, MarkerInvalid{Err: `decode upgrade marker: field "attempt": must be at least 1`})
	if len(effs) != 1 || only[Log](effs)[0].Level != "warn" {
		t.Fatalf("effects %#v", effs)
	}
}

// ---- the candidate ---------------------------------------------------------

func cutoverJournal(attempt uint32) []Record {
	return []Record{{Kind: RecInstalled, To: v1},
		{Kind: RecBegin, Attempt: attempt, From: v1, To: v2}, {Kind: RecStaged, Attempt: attempt, From: v1, To: v2},
		{Kind: RecVerified, Attempt: attempt, From: v1, To: v2}, {Kind: RecSwapIntent, Attempt: attempt, From: v1, To: v2},
		{Kind: RecSwapped, Attempt: attempt, From: v1, To: v2}}
}

func candidate(t *testing.T, attempt uint32) *Agent {
	t.Helper()
	a := New(testConfig(v2))
	effs := step(a, t0, Start{CandidateAttempt: attempt, Journal: cutoverJournal(attempt), Current: v2,
		Installed: []core.Version{v1, v2}})
	if a.Role() != RoleCandidate {
		t.Fatalf("role %s, want candidate", a.Role())
	}
	wantNames(t, effs, "PutHeartbeat", "arm:heartbeat", "arm:candidate-poll")
	return a
}

func TestCandidateHeartbeatsWithAttempt(t *testing.T) {
	a := New(testConfig(v2))
	effs := step(a, t0, Start{CandidateAttempt: 4, Journal: cutoverJournal(4), Current: v2, Installed: []core.Version{v1, v2}})
	hb := only[PutHeartbeat](effs)
	if len(hb) != 1 || hb[0].Heartbeat.Attempt != 4 || !sameVersion(hb[0].Heartbeat.AgentVersion, v2) {
		t.Fatalf("candidate heartbeat %+v, want v2 with attempt 4", hb)
	}
	hb = only[PutHeartbeat](step(a, t0.Add(10*time.Second), TimerFired{Timer: TimerHeartbeat}))
	if len(hb) != 1 || hb[0].Heartbeat.Attempt != 4 || hb[0].Heartbeat.Seq != 2 {
		t.Fatalf("second heartbeat %+v", hb)
	}
}

func TestCandidateIgnoresCommandsAndWorkloads(t *testing.T) {
	a := candidate(t, 1)
	for _, in := range []Input{
		CommandReceived{Handle: 1, Verb: core.VerbPing, Request: core.CommandRequest{Verb: core.VerbPing}},
		CommandReceived{Handle: 2, Verb: core.VerbExec, DecodeErr: "bad"},
		stopCmd(newWorld(t), 1, v2),
		DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1},
		DesiredDeleted{Deployment: "db", Revision: 2},
		WorkloadStatus{Deployment: "web", Generation: 1, Phase: core.PhaseRunning},
		MarkerPut{Marker: marker(2, v3)},
		TimerFired{Timer: TimerInfo},
	} {
		if effs := step(a, t0, in); len(effs) != 0 {
			t.Fatalf("candidate acted on %T: %v", in, names(effs))
		}
	}
}

func TestCandidateBecomesActiveOnlyOnCommitted(t *testing.T) {
	a := candidate(t, 1)
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1})
	a.Step(t0, MarkerPut{Marker: marker(2, v3)})
	wantNames(t, step(a, t0, TimerFired{Timer: TimerCandidatePoll}), "ReadJournal")
	wantNames(t, step(a, t0, JournalRead{Records: cutoverJournal(1)}), "arm:candidate-poll")
	if a.Role() != RoleCandidate {
		t.Fatalf("became %s without committed(1)", a.Role())
	}
	j := append(cutoverJournal(1), Record{Kind: RecCommitted, Attempt: 1, From: v1, To: v2})
	effs := step(a, t0, JournalRead{Records: j})
	if a.Role() != RoleActive || !a.Ready() {
		t.Fatalf("role %s after committed(1)", a.Role())
	}
	st := only[PutUpgradeStatus](effs)
	if len(st) < 1 || st[0].Status.Phase != core.UpgradeCommitted || !sameVersion(st[0].Status.RunningVersion, v2) {
		t.Fatalf("first status %+v, want Committed by v2", st)
	}
	if sw := only[StartWorkload](effs); len(sw) != 1 || sw[0].Spec.Deployment != "web" {
		t.Fatalf("takeover did not reconcile the desired state it received: %v", names(effs))
	}
	// The marker it received as a candidate starts the next attempt.
	if d := only[Download](effs); len(d) != 1 || d[0].Attempt != 2 {
		t.Fatalf("held marker not acted upon after takeover: %v", names(effs))
	}
	// And it now answers commands.
	if r := only[Reply](step(a, t0, CommandReceived{Handle: 9, Verb: core.VerbPing,
		Request: core.CommandRequest{Verb: core.VerbPing}})); len(r) != 1 {
		t.Fatalf("new active agent does not answer ping")
	}
}

// A deployment deleted during cutover is stopped once the candidate takes
// over: the old agent may exit on upgrade-stop before the desired-state
// delete reaches it, and the workload outlives both agents, so the
// candidate must carry the deletion out itself.
func TestDeploymentDeletedDuringCutoverIsStoppedOnceCandidateTakesOver(t *testing.T) {
	a := candidate(t, 1)
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1})
	db := webSpec(1)
	db.Deployment, db.Name = "db", "db"
	a.Step(t0, DesiredPut{Deployment: "db", Spec: db, Revision: 2})
	// The old agent has exited (committed(1) is journaled); the delete of
	// web arrives before the candidate's next journal poll.
	if effs := step(a, t0, DesiredDeleted{Deployment: "web", Revision: 3}); len(effs) != 0 {
		t.Fatalf("candidate acted on the delete before taking over: %v", names(effs))
	}
	if a.WorkloadPhase("web") != "" {
		t.Fatalf("candidate still holds desired state of deleted web")
	}
	j := append(cutoverJournal(1), Record{Kind: RecCommitted, Attempt: 1, From: v1, To: v2})
	effs := step(a, t0, JournalRead{Records: j})
	if a.Role() != RoleActive || !a.Ready() {
		t.Fatalf("role %s after committed(1)", a.Role())
	}
	if st := only[StopWorkload](effs); len(st) != 1 || st[0].Deployment != "web" {
		t.Fatalf("takeover did not stop the workload of deleted web: %v", names(effs))
	}
	if ds := only[DeleteDeviceState](effs); len(ds) != 1 || ds[0].Deployment != "web" {
		t.Fatalf("takeover did not remove the device-state of deleted web: %v", names(effs))
	}
	if sw := only[StartWorkload](effs); len(sw) != 1 || sw[0].Spec.Deployment != "db" {
		t.Fatalf("takeover must start db only: %v", names(effs))
	}
	// Carried out once: a later takeover-free step does not stop it again.
	if st := only[StopWorkload](step(a, t0, TimerFired{Timer: TimerHeartbeat})); len(st) != 0 {
		t.Fatalf("stop repeated: %v", st)
	}
}

// A deployment deleted and written again during cutover runs the new spec
// after the takeover.
func TestDeploymentDeletedAndRecreatedDuringCutoverRunsAfterTakeover(t *testing.T) {
	a := candidate(t, 1)
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1})
	a.Step(t0, DesiredDeleted{Deployment: "web", Revision: 2})
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(2), Revision: 3})
	j := append(cutoverJournal(1), Record{Kind: RecCommitted, Attempt: 1, From: v1, To: v2})
	effs := step(a, t0, JournalRead{Records: j})
	n := names(effs)
	stop, start := slices.Index(n, "StopWorkload"), slices.Index(n, "StartWorkload")
	if start < 0 || stop > start {
		t.Fatalf("after takeover web must end up started (stop, if any, before start): %v", n)
	}
	if sw := only[StartWorkload](effs); sw[0].Spec.Generation != 2 {
		t.Fatalf("started generation %d, want 2", sw[0].Spec.Generation)
	}
}

func TestCandidateRetiresOnRevert(t *testing.T) {
	for _, last := range []Record{
		{Kind: RecRevertIntent, Attempt: 1, From: v1, To: v2, Reason: core.ReasonCutoverTimeout},
		{Kind: RecReverted, Attempt: 1, From: v1, To: v2},
	} {
		a := candidate(t, 1)
		j := append(cutoverJournal(1), Record{Kind: RecRevertIntent, Attempt: 1, From: v1, To: v2, Reason: core.ReasonCutoverTimeout})
		if last.Kind == RecReverted {
			j = append(j, last)
		}
		effs := step(a, t0, JournalRead{Records: j})
		if a.Role() != RoleRetired {
			t.Fatalf("role %s after %s, want retired", a.Role(), last.Kind)
		}
		if len(only[ArmTimer](effs)) != 0 || len(only[CancelTimer](effs)) != 1 {
			t.Fatalf("retiring candidate must stop heartbeating and polling: %v", names(effs))
		}
		if effs := step(a, t0, TimerFired{Timer: TimerHeartbeat}); len(effs) != 0 {
			t.Fatalf("retired candidate heartbeats: %v", names(effs))
		}
	}
}

func TestCandidateOfUnknownAttemptRetires(t *testing.T) {
	a := New(testConfig(v2))
	effs := step(a, t0, Start{CandidateAttempt: 9, Journal: cutoverJournal(1), Current: v2, Installed: []core.Version{v1, v2}})
	if a.Role() != RoleRetired || len(only[PutHeartbeat](effs)) != 0 {
		t.Fatalf("role %s effects %v", a.Role(), names(effs))
	}
}

func TestRestartedCandidateOfCommittedAttemptIsActive(t *testing.T) {
	a := New(testConfig(v2))
	j := append(cutoverJournal(1), Record{Kind: RecCommitted, Attempt: 1, From: v1, To: v2})
	effs := step(a, t0, Start{CandidateAttempt: 1, Journal: j, Current: v2, Installed: []core.Version{v1, v2}})
	if a.Role() != RoleActive || len(only[PutHeartbeat](effs)) != 1 {
		t.Fatalf("role %s effects %v", a.Role(), names(effs))
	}
}

func TestTakeoverReportsInvalidDesiredStateItReceived(t *testing.T) {
	a := candidate(t, 1)
	a.Step(t0, DesiredInvalid{Deployment: "db", Revision: 3, Err: `field "version": required`})
	j := append(cutoverJournal(1), Record{Kind: RecCommitted, Attempt: 1, From: v1, To: v2})
	effs := step(a, t0, JournalRead{Records: j})
	st := only[PutDeviceState](effs)
	if len(st) != 1 || st[0].State.Phase != core.PhaseFailed || st[0].State.Deployment != "db" {
		t.Fatalf("takeover effects %v", names(effs))
	}
}

func TestAccessorsDescribeTheAgent(t *testing.T) {
	a := toWaitingForStop(t)
	if a.Device() != "dev-1" || !sameVersion(a.Version(), v1) || !sameVersion(a.Target(), v2) || a.Attempt() != 1 {
		t.Fatalf("device %s version %s target %s attempt %d", a.Device(), a.Version(), a.Target(), a.Attempt())
	}
	if !sameVersion(a.Current(), v2) || len(a.Installed()) != 2 {
		t.Fatalf("current %s installed %v", a.Current(), a.Installed())
	}
	if js := a.Journal(); js.Last != RecSwapped || !js.IsVerified(v2) {
		t.Fatalf("journal state %+v", js)
	}
	if a.LastEventAt() != t0.UnixMilli()+4 { // Idle, Staging, Verifying, CutoverReady, WaitingForStop at the same instant
		t.Fatalf("last event at %d", a.LastEventAt())
	}
	a.Step(t0, DesiredPut{Deployment: "web", Spec: webSpec(1), Revision: 1})
	if a.WorkloadPhase("web") != core.PhasePending || a.WorkloadPhase("nope") != "" {
		t.Fatalf("workload phase %q", a.WorkloadPhase("web"))
	}
}
