package agentcore

import (
	"slices"
	"testing"

	"github.com/flotilla-fleet/flotilla/core"
)

// TestRecoveryTable walks every row of the start-up and recovery table in
// docs/upgrade-protocol.md.
func TestRecoveryTable(t *testing.T) {
	rec := func(kind RecordKind, reason core.UpgradeReason) Record {
		return Record{Kind: kind, Attempt: 1, From: v1, To: v2, Reason: reason}
	}
	upTo := func(kinds ...RecordKind) []Record {
		j := []Record{{Kind: RecInstalled, To: v1}}
		for _, k := range kinds {
			j = append(j, rec(k, ""))
		}
		return j
	}
	pre := []RecordKind{RecBegin, RecStaged, RecVerified, RecSwapIntent, RecSwapped}
	both := []core.Version{v1, v2}
	cases := []struct {
		name      string
		journal   []Record
		running   core.Version
		current   core.Version
		installed []core.Version
		candidate uint32
		// Effects up to the first input the core waits for, then the
		// SwapDone answers (if any) and what follows.
		want      []string
		swapDone  []core.Version
		after     []string
		wantRole  Role
		wantPhase core.AgentUpgradePhase
		wantRec   []RecordKind // records appended in total
	}{
		{name: "empty journal, fresh install", running: v1,
			want:     []string{"PutDeviceInfo", "arm:info", "PutHeartbeat", "arm:heartbeat", "status:Idle", "PreserveRunning"},
			wantRole: RoleActive, wantPhase: core.UpgradeIdle},
		{name: "empty journal, version installed by hand", running: v1, current: v1, installed: []core.Version{v1},
			want:     []string{"PutDeviceInfo", "arm:info", "PutHeartbeat", "arm:heartbeat", "status:Idle", "journal:installed"},
			wantRole: RoleActive, wantPhase: core.UpgradeIdle, wantRec: []RecordKind{RecInstalled}},
		{name: "committed, running To", journal: append(upTo(pre...), rec(RecCommitted, "")), running: v2, current: v2, installed: both,
			want:     []string{"StopCandidate", "PutDeviceInfo", "arm:info", "PutHeartbeat", "arm:heartbeat", "status:Committed"},
			wantRole: RoleActive, wantPhase: core.UpgradeCommitted},
		{name: "committed, but From started", journal: append(upTo(pre...), rec(RecCommitted, "")), running: v1, current: v2, installed: both,
			want:     []string{"Reexec"},
			wantRole: RoleReplaced},
		{name: "reverted, running From", journal: append(upTo(pre...), rec(RecRevertIntent, core.ReasonCutoverTimeout), rec(RecReverted, core.ReasonCutoverTimeout)),
			running: v1, current: v1, installed: both,
			want:     []string{"PutDeviceInfo", "arm:info", "PutHeartbeat", "arm:heartbeat", "status:RolledBack"},
			wantRole: RoleActive, wantPhase: core.UpgradeRolledBack},
		{name: "failed, running From", journal: append(upTo(RecBegin), rec(RecFailed, core.ReasonDownloadFailed)), running: v1, current: v1,
			installed: []core.Version{v1},
			want:      []string{"PutDeviceInfo", "arm:info", "PutHeartbeat", "arm:heartbeat", "status:Failed"},
			wantRole:  RoleActive, wantPhase: core.UpgradeFailed},
		{name: "failed after a swap whose swap back failed", journal: append(upTo(RecBegin, RecStaged, RecVerified, RecSwapIntent), rec(RecFailed, core.ReasonSwapFailed)),
			running: v2, current: v2, installed: both,
			want: []string{"swap:v1.0.0"}, swapDone: []core.Version{v1}, after: []string{"Reexec"},
			wantRole: RoleReplaced},
		{name: "begin", journal: upTo(RecBegin), running: v1, current: v1, installed: []core.Version{v1},
			want:     []string{"journal:failed", "PutDeviceInfo", "arm:info", "PutHeartbeat", "arm:heartbeat", "status:Failed"},
			wantRole: RoleActive, wantPhase: core.UpgradeFailed, wantRec: []RecordKind{RecFailed}},
		{name: "staged", journal: upTo(RecBegin, RecStaged), running: v1, current: v1, installed: both,
			want:     []string{"journal:failed", "PutDeviceInfo", "arm:info", "PutHeartbeat", "arm:heartbeat", "status:Failed", "RemoveVersion"},
			wantRole: RoleActive, wantPhase: core.UpgradeFailed, wantRec: []RecordKind{RecFailed}},
		{name: "verified", journal: upTo(RecBegin, RecStaged, RecVerified), running: v1, current: v1, installed: both,
			want:     []string{"journal:failed", "PutDeviceInfo", "arm:info", "PutHeartbeat", "arm:heartbeat", "status:Failed"},
			wantRole: RoleActive, wantPhase: core.UpgradeFailed, wantRec: []RecordKind{RecFailed}},
		{name: "swap-intent, swap did not happen", journal: upTo(RecBegin, RecStaged, RecVerified, RecSwapIntent), running: v1, current: v1, installed: both,
			want:     []string{"journal:failed", "PutDeviceInfo", "arm:info", "PutHeartbeat", "arm:heartbeat", "status:Failed"},
			wantRole: RoleActive, wantPhase: core.UpgradeFailed, wantRec: []RecordKind{RecFailed}},
		{name: "swap-intent, swap happened (device boots To)", journal: upTo(RecBegin, RecStaged, RecVerified, RecSwapIntent), running: v2, current: v2, installed: both,
			want: []string{"journal:failed", "swap:v1.0.0"}, swapDone: []core.Version{v1}, after: []string{"Reexec"},
			wantRole: RoleReplaced, wantRec: []RecordKind{RecFailed}},
		{name: "swapped, candidate of the attempt", journal: upTo(pre...), running: v2, current: v2, installed: both, candidate: 1,
			want:     []string{"PutHeartbeat", "arm:heartbeat", "arm:candidate-poll"},
			wantRole: RoleCandidate, wantPhase: core.UpgradeCutoverReady},
		{name: "swapped, normal start (power cut: device boots To)", journal: upTo(pre...), running: v2, current: v2, installed: both,
			want: []string{"journal:revert-intent", "StopCandidate", "swap:v1.0.0"}, swapDone: []core.Version{v1},
			after:    []string{"journal:reverted", "Reexec"},
			wantRole: RoleReplaced, wantRec: []RecordKind{RecRevertIntent, RecReverted}},
		{name: "swapped, normal start (old agent crashed, link torn back)", journal: upTo(pre...), running: v1, current: v1, installed: both,
			want: []string{"journal:revert-intent", "StopCandidate", "swap:v1.0.0"}, swapDone: []core.Version{v1},
			after:    []string{"journal:reverted", "PutDeviceInfo", "arm:info", "PutHeartbeat", "arm:heartbeat", "status:RolledBack"},
			wantRole: RoleActive, wantPhase: core.UpgradeRolledBack, wantRec: []RecordKind{RecRevertIntent, RecReverted}},
		{name: "revert-intent", journal: append(upTo(pre...), rec(RecRevertIntent, core.ReasonCutoverTimeout)), running: v1, current: v2, installed: both,
			want: []string{"StopCandidate", "swap:v1.0.0"}, swapDone: []core.Version{v1},
			after:    []string{"journal:reverted", "PutDeviceInfo", "arm:info", "PutHeartbeat", "arm:heartbeat", "status:RolledBack"},
			wantRole: RoleActive, wantPhase: core.UpgradeRolledBack, wantRec: []RecordKind{RecReverted}},
		{name: "revert-intent, candidate started late", journal: append(upTo(pre...), rec(RecRevertIntent, core.ReasonCutoverTimeout)),
			running: v2, current: v2, installed: both, candidate: 1,
			want: nil, wantRole: RoleRetired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := New(testConfig(c.running))
			effs := step(a, t0, Start{CandidateAttempt: c.candidate, Journal: c.journal, Current: c.current, Installed: c.installed})
			wantNames(t, effs, c.want...)
			all := effs
			for _, v := range c.swapDone {
				sw := only[SwapCurrent](all)
				effs = step(a, t0, SwapDone{Attempt: sw[len(sw)-1].Attempt, To: v})
				all = append(all, effs...)
			}
			if c.swapDone != nil {
				wantNames(t, effs, c.after...)
			}
			if a.Role() != c.wantRole {
				t.Fatalf("role %s, want %s", a.Role(), c.wantRole)
			}
			if c.wantPhase != "" && a.UpgradePhase() != c.wantPhase {
				t.Fatalf("phase %s, want %s", a.UpgradePhase(), c.wantPhase)
			}
			var recs []RecordKind
			for _, j := range only[AppendJournal](all) {
				recs = append(recs, j.Record.Kind)
			}
			if !slices.Equal(recs, c.wantRec) {
				t.Fatalf("appended %v, want %v", recs, c.wantRec)
			}
			j := slices.Clone(c.journal)
			for _, r := range only[AppendJournal](all) {
				j = append(j, r.Record)
			}
			if err := CheckJournal(j); err != nil {
				t.Fatalf("journal after recovery: %v", err)
			}
			if rx := only[Reexec](all); len(rx) == 1 && !sameVersion(rx[0].Version, Replay(j).Want) {
				t.Fatalf("re-exec into %s, journal wants %s", rx[0].Version, Replay(j).Want)
			}
		})
	}
}

func TestRecoverySwapFailureDoesNotLoop(t *testing.T) {
	a := New(testConfig(v2))
	j := []Record{{Kind: RecInstalled, To: v1}, {Kind: RecBegin, Attempt: 1, From: v1, To: v2},
		{Kind: RecStaged, Attempt: 1, From: v1, To: v2}, {Kind: RecVerified, Attempt: 1, From: v1, To: v2},
		{Kind: RecSwapIntent, Attempt: 1, From: v1, To: v2}}
	wantNames(t, step(a, t0, Start{Journal: j, Current: v2, Installed: []core.Version{v1, v2}}), "journal:failed", "swap:v1.0.0")
	effs := step(a, t0, SwapDone{Attempt: 1, To: v1, Err: "EIO"})
	// current still points at verified v2; the journal wants v1: run v1.
	wantNames(t, effs, "Reexec")
}

func TestInputsBeforeStartAreIgnored(t *testing.T) {
	a := New(testConfig(v1))
	for _, in := range []Input{TimerFired{Timer: TimerHeartbeat}, MarkerPut{Marker: marker(1, v2)},
		DesiredPut{Deployment: "web", Spec: webSpec(1)}, stopCmd(newWorld(t), 1, v2)} {
		effs := step(a, t0, in)
		if len(effs) != 1 || only[Log](effs) == nil {
			t.Fatalf("%T before Start: %v", in, names(effs))
		}
	}
	if a.Role() != RoleStarting {
		t.Fatalf("role %s", a.Role())
	}
	a.Step(t0, Start{Journal: []Record{{Kind: RecInstalled, To: v1}}, Current: v1, Installed: []core.Version{v1}})
	if effs := step(a, t0, Start{}); len(only[Log](effs)) != 1 || len(effs) != 1 {
		t.Fatalf("second Start: %v", names(effs))
	}
}
