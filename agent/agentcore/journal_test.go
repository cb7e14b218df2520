package agentcore

import (
	"slices"
	"strings"
	"testing"

	"github.com/flotilla-fleet/flotilla/core"
)

func r(kind RecordKind, attempt uint32, from, to core.Version) Record {
	return Record{Kind: kind, Attempt: attempt, From: from, To: to}
}

func TestReplay(t *testing.T) {
	full := []Record{{Kind: RecInstalled, To: v1}, r(RecBegin, 1, v1, v2), r(RecStaged, 1, v1, v2),
		r(RecVerified, 1, v1, v2), r(RecSwapIntent, 1, v1, v2), r(RecSwapped, 1, v1, v2)}
	cases := []struct {
		name     string
		journal  []Record
		last     RecordKind
		attempt  uint32
		want     core.Version
		verified []core.Version
		inFlight bool
	}{
		{"empty", nil, "", 0, core.Version{}, nil, false},
		{"installed", full[:1], "", 0, v1, []core.Version{v1}, false},
		{"begin", full[:2], RecBegin, 1, v1, []core.Version{v1}, true},
		{"staged: To not yet verified", full[:3], RecStaged, 1, v1, []core.Version{v1}, true},
		{"verified", full[:4], RecVerified, 1, v1, []core.Version{v1, v2}, true},
		{"swapped: still wants From", full, RecSwapped, 1, v1, []core.Version{v1, v2}, true},
		{"committed", append(slices.Clone(full), r(RecCommitted, 1, v1, v2)), RecCommitted, 1, v2, []core.Version{v1, v2}, false},
		{"reverted", append(slices.Clone(full), r(RecRevertIntent, 1, v1, v2), r(RecReverted, 1, v1, v2)), RecReverted, 1, v1, []core.Version{v1, v2}, false},
		{"second attempt after commit", append(slices.Clone(full), r(RecCommitted, 1, v1, v2), r(RecBegin, 2, v2, v3),
			r(RecFailed, 2, v2, v3)), RecFailed, 2, v2, []core.Version{v1, v2}, false},
		{"older attempt's record is skipped", append(slices.Clone(full), r(RecCommitted, 1, v1, v2), r(RecBegin, 2, v2, v3),
			r(RecReverted, 1, v1, v2)), RecBegin, 2, v2, []core.Version{v1, v2}, true},
		{"bare failed opens and ends an attempt", append(full[:1:1], Record{Kind: RecFailed, Attempt: 3, From: v1, To: v2, Reason: core.ReasonDiskFull}),
			RecFailed, 3, v1, []core.Version{v1}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Replay(c.journal)
			if s.Last != c.last || s.LastAttempt != c.attempt || !sameVersion(s.Want, c.want) || s.InFlight() != c.inFlight {
				t.Fatalf("got last=%s attempt=%d want=%s inflight=%v", s.Last, s.LastAttempt, s.Want, s.InFlight())
			}
			if !slices.EqualFunc(s.Verified, c.verified, sameVersion) {
				t.Fatalf("verified %v, want %v", s.Verified, c.verified)
			}
		})
	}
}

func TestReplayVerifiedIsOrderedByRecency(t *testing.T) {
	j := []Record{{Kind: RecInstalled, To: v1}, r(RecBegin, 1, v1, v2), r(RecStaged, 1, v1, v2), r(RecVerified, 1, v1, v2),
		r(RecSwapIntent, 1, v1, v2), r(RecSwapped, 1, v1, v2), r(RecRevertIntent, 1, v1, v2), r(RecReverted, 1, v1, v2),
		r(RecBegin, 2, v1, v3), r(RecFailed, 2, v1, v3)}
	if got := Replay(j).Verified; !slices.EqualFunc(got, []core.Version{v2, v1}, sameVersion) {
		t.Fatalf("verified %v, want v2 then v1 (v1 used last)", got)
	}
}

func TestCheckJournalRejects(t *testing.T) {
	ok := []Record{{Kind: RecInstalled, To: v1}, r(RecBegin, 1, v1, v2), r(RecStaged, 1, v1, v2), r(RecVerified, 1, v1, v2),
		r(RecSwapIntent, 1, v1, v2), r(RecSwapped, 1, v1, v2), r(RecCommitted, 1, v1, v2)}
	if err := CheckJournal(ok); err != nil {
		t.Fatalf("valid journal rejected: %v", err)
	}
	cases := []struct {
		name    string
		journal []Record
		want    string
	}{
		{"skipped step", []Record{r(RecBegin, 1, v1, v2), r(RecVerified, 1, v1, v2)}, "cannot follow staged"[:13]},
		{"commit before swap", []Record{r(RecBegin, 1, v1, v2), r(RecStaged, 1, v1, v2), r(RecVerified, 1, v1, v2),
			r(RecCommitted, 1, v1, v2)}, "cannot follow verified"},
		{"failed after swapped", append(slices.Clone(ok[:6]), Record{Kind: RecFailed, Attempt: 1, From: v1, To: v2, Reason: core.ReasonInterrupted}), "cannot follow swapped"},
		{"new attempt while one is in flight", []Record{r(RecBegin, 1, v1, v2), r(RecBegin, 2, v1, v3)}, "still in flight"},
		{"attempt reused after it ended", append(slices.Clone(ok), r(RecBegin, 1, v1, v2)), "cannot follow committed"},
		{"older attempt", append(slices.Clone(ok), r(RecBegin, 3, v2, v3), Record{Kind: RecFailed, Attempt: 3, From: v2, To: v3, Reason: core.ReasonSuperseded},
			r(RecBegin, 2, v2, v3)), "goes backwards"},
		{"versions change within an attempt", []Record{r(RecBegin, 1, v1, v2), r(RecStaged, 1, v1, v3)}, "differ"},
		{"attempt opening mid-way", []Record{r(RecStaged, 1, v1, v2)}, "must open with begin"},
		{"installed during an attempt", []Record{r(RecBegin, 1, v1, v2), {Kind: RecInstalled, To: v1}}, "in flight"},
		{"installed without version", []Record{{Kind: RecInstalled}}, "without a version"},
		{"unknown kind", []Record{r("exploded", 1, v1, v2)}, "unknown record kind"},
		{"zero attempt", []Record{r(RecBegin, 0, v1, v2)}, "at least 1"},
		{"missing versions", []Record{r(RecBegin, 1, v1, core.Version{})}, "required"},
		{"unknown reason", []Record{r(RecBegin, 1, v1, v2), {Kind: RecFailed, Attempt: 1, From: v1, To: v2, Reason: "Gremlins"}}, "unknown reason"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckJournal(c.journal)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckJournal = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// ---- garbage collection ----------------------------------------------------

func TestGCKeepsCurrentRunningAndRollbackTargets(t *testing.T) {
	vs := []core.Version{core.MustParseVersion("v1.0.0"), core.MustParseVersion("v1.1.0"), core.MustParseVersion("v1.2.0"),
		core.MustParseVersion("v1.3.0"), core.MustParseVersion("v1.4.0")}
	// v1.0 → v1.1 → v1.2 → v1.3 committed one after another; v1.4 staged
	// only (its self-test failed); current is v1.3.
	j := []Record{{Kind: RecInstalled, To: vs[0]}}
	for i := 0; i < 3; i++ {
		a := uint32(i + 1)
		j = append(j, r(RecBegin, a, vs[i], vs[i+1]), r(RecStaged, a, vs[i], vs[i+1]), r(RecVerified, a, vs[i], vs[i+1]),
			r(RecSwapIntent, a, vs[i], vs[i+1]), r(RecSwapped, a, vs[i], vs[i+1]), r(RecCommitted, a, vs[i], vs[i+1]))
	}
	j = append(j, r(RecBegin, 4, vs[3], vs[4]), r(RecStaged, 4, vs[3], vs[4]),
		Record{Kind: RecFailed, Attempt: 4, From: vs[3], To: vs[4], Reason: core.ReasonSelfTestFailed})
	for _, c := range []struct {
		keep    int
		removed []core.Version
	}{
		{0, []core.Version{vs[0], vs[1], vs[2], vs[4]}},
		{1, []core.Version{vs[0], vs[1], vs[4]}},
		{2, []core.Version{vs[0], vs[4]}},
		{5, []core.Version{vs[4]}},
	} {
		cfg := testConfig(vs[3])
		cfg.KeepVersions = c.keep
		if c.keep == 0 {
			cfg.KeepVersions = -1 // explicit "keep no rollback target"
		}
		a := New(cfg)
		effs := step(a, t0, Start{Journal: j, Current: vs[3], Installed: vs})
		var removed []core.Version
		for _, rm := range only[RemoveVersion](effs) {
			removed = append(removed, rm.Version)
		}
		if !slices.EqualFunc(removed, c.removed, sameVersion) {
			t.Fatalf("keep %d: removed %v, want %v", c.keep, removed, c.removed)
		}
	}
}

func TestGCNeverRemovesVersionsOfAnAttemptInFlight(t *testing.T) {
	cfg := testConfig(v1)
	cfg.KeepVersions = -1
	a := New(cfg)
	a.Step(t0, Start{Journal: []Record{{Kind: RecInstalled, To: v1}}, Current: v1, Installed: []core.Version{v1}})
	a.Step(t0, MarkerPut{Marker: marker(1, v2)})
	a.Step(t0, DownloadDone{Attempt: 1})
	a.Step(t0, SelfTestDone{Attempt: 1})
	a.Step(t0, SwapDone{Attempt: 1, To: v2})
	a.Step(t0, CandidateStarted{Attempt: 1})
	a.Step(t0, TimerFired{Timer: TimerCutover})
	// Reverted: v2 is verified but not kept (KeepVersions -1): removed only now.
	effs := step(a, t0, SwapDone{Attempt: 1, To: v1})
	if rm := only[RemoveVersion](effs); len(rm) != 1 || !sameVersion(rm[0].Version, v2) {
		t.Fatalf("after the rollback: %v", names(effs))
	}
}

func TestDefaultsApply(t *testing.T) {
	a := New(Config{Device: "d", Version: v1})
	if a.cfg.HeartbeatInterval != DefaultHeartbeatInterval || a.cfg.InfoInterval != DefaultInfoInterval ||
		a.cfg.CandidatePollInterval != DefaultCandidatePollInterval || a.cfg.KeepVersions != DefaultKeepVersions {
		t.Fatalf("defaults not applied: %+v", a.cfg)
	}
	if RoleCandidate.String() != "candidate" || Role(99).String() != "unknown" {
		t.Fatalf("role names")
	}
}
