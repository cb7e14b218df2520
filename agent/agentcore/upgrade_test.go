package agentcore

import (
	"slices"
	"testing"

	"github.com/flotilla-fleet/flotilla/core"
)

func TestHappyPathUpgradeCommitsAndOldAgentExits(t *testing.T) {
	w := newWorld(t).preserved(v1)
	old := w.boot(v1, 0)
	w.run()
	w.putMarker(marker(1, v2))
	w.run()

	act := w.settled()
	if act.a.CandidateAttempt() != 1 || !sameVersion(act.a.Version(), v2) {
		t.Fatalf("active agent is %s, want the candidate of attempt 1 on v2", act.name)
	}
	if old.alive || !slices.Equal(w.exits, []string{old.name}) {
		t.Fatalf("exits = %v, want only the old agent %s", w.exits, old.name)
	}
	wantJ := []RecordKind{RecInstalled, RecBegin, RecStaged, RecVerified, RecSwapIntent, RecSwapped, RecCommitted}
	if got := journalKinds(w.journal); !slices.Equal(got, wantJ) {
		t.Fatalf("journal = %v, want %v", got, wantJ)
	}
	wantP := []core.AgentUpgradePhase{core.UpgradeIdle, core.UpgradeStaging, core.UpgradeVerifying,
		core.UpgradeCutoverReady, core.UpgradeWaitingForStop, core.UpgradeCommitted}
	if got := w.phases(); !slices.Equal(got, wantP) {
		t.Fatalf("status phases = %v, want %v", got, wantP)
	}
	last := w.lastStatus()
	if !sameVersion(last.RunningVersion, v2) || last.Attempt != 1 {
		t.Fatalf("Committed status written by %s for attempt %d, want the new agent v2, attempt 1", last.RunningVersion, last.Attempt)
	}
	if len(w.replies) != 1 || w.replies[0].Reply.UpgradeStop == nil || !sameVersion(w.replies[0].Reply.UpgradeStop.CommittedTo, v2) {
		t.Fatalf("want exactly one ok reply to upgrade-stop, got %#v", w.replies)
	}
}
