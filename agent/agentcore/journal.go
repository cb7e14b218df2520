package agentcore

import (
	"fmt"

	"github.com/flotilla-fleet/flotilla/core"
)

// JournalState is what a journal says, summarised: the newest attempt and
// how far it got, which version current should point at, and which versions
// are known to be runnable. Replay computes it; the agent keeps one up to
// date as it appends records; the simulator's disk checker uses it to assert
// that current always points at a verified version.
//
// Every record of an attempt carries the attempt's From and To. An
// `installed` record carries the preserved version in To and attempt 0.
type JournalState struct {
	// LastAttempt is the newest attempt number in the journal (0: none).
	LastAttempt uint32
	// Last is the kind of the newest attempt's last record ("" when there
	// is no attempt).
	Last RecordKind
	// From and To are the newest attempt's versions.
	From, To core.Version
	// Reason and Detail are those of the newest attempt's failed,
	// revert-intent or reverted record.
	Reason core.UpgradeReason
	Detail string
	// Want is the version the device should run if it restarted now: To of
	// a committed attempt, From of any other attempt, or the newest
	// installed version when no attempt came after it. Zero when the
	// journal is empty.
	Want core.Version
	// Verified lists every version the journal knows to be runnable
	// (preserved at install, the From of an attempt, or a To whose
	// --self-test passed), least recently mentioned first.
	Verified []core.Version
}

// Replay folds a journal into its state. Records that do not fit (an
// attempt older than the newest one) are skipped; CheckJournal reports them.
func Replay(journal []Record) JournalState {
	var s JournalState
	for i := range journal {
		s.apply(&journal[i]) // by pointer: a record is ~200 bytes
	}
	return s
}

// InFlight reports whether the newest attempt has not ended (no committed,
// reverted or failed record yet).
func (s *JournalState) InFlight() bool {
	switch s.Last {
	case RecBegin, RecStaged, RecVerified, RecSwapIntent, RecSwapped, RecRevertIntent:
		return true
	}
	return false
}

// IsVerified reports whether v is a version the journal knows to be runnable.
func (s *JournalState) IsVerified(v core.Version) bool {
	return indexVersion(s.Verified, v) >= 0
}

// Apply folds one more record into the state.
func (s *JournalState) Apply(r Record) { s.apply(&r) }

func (s *JournalState) apply(r *Record) {
	if r.Kind == RecInstalled {
		if !r.To.IsZero() {
			s.touch(r.To)
			s.Want = r.To
		}
		return
	}
	if r.Attempt == 0 || r.Attempt < s.LastAttempt {
		return
	}
	if r.Attempt > s.LastAttempt {
		s.LastAttempt = r.Attempt
		s.From, s.To = r.From, r.To
		s.Reason, s.Detail = core.ReasonNone, ""
	}
	s.Last = r.Kind
	switch r.Kind {
	case RecBegin:
		s.touch(r.From)
		s.Want = r.From
	case RecVerified:
		s.touch(r.To)
	case RecCommitted:
		s.Want = r.To
		s.touch(r.To)
	case RecFailed, RecRevertIntent, RecReverted:
		if r.Reason != core.ReasonNone || r.Kind != RecReverted {
			s.Reason, s.Detail = r.Reason, r.Detail
		}
		s.Want = r.From
	default: // staged, swap-intent, swapped
		s.Want = r.From
	}
}

// touch moves v to the most-recent end of Verified, adding it if missing.
func (s *JournalState) touch(v core.Version) {
	if v.IsZero() {
		return
	}
	if i := indexVersion(s.Verified, v); i >= 0 {
		if i == len(s.Verified)-1 {
			return
		}
		copy(s.Verified[i:], s.Verified[i+1:])
		s.Verified[len(s.Verified)-1] = v
		return
	}
	if s.Verified == nil {
		s.Verified = make([]core.Version, 0, 4) // typically from, to and a preserved one
	}
	s.Verified = append(s.Verified, v)
}

// next lists which record kinds may follow each kind within one attempt.
var next = map[RecordKind][]RecordKind{
	RecBegin:        {RecStaged, RecFailed},
	RecStaged:       {RecVerified, RecFailed},
	RecVerified:     {RecSwapIntent, RecFailed},
	RecSwapIntent:   {RecSwapped, RecFailed},
	RecSwapped:      {RecCommitted, RecRevertIntent},
	RecRevertIntent: {RecReverted},
}

// CheckJournal reports the first record that breaks the journal's grammar:
// attempts strictly increasing, each attempt opening with begin (or a bare
// failed) and following begin → staged → verified → swap-intent → swapped →
// committed | revert-intent → reverted, with failed allowed before swapped;
// a new attempt or an installed record only after the previous attempt
// ended; From and To fixed within an attempt.
func CheckJournal(journal []Record) error {
	var cur Record // last record of the newest attempt
	for i, r := range journal {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("journal record %d (%s attempt %d): %s", i, r.Kind, r.Attempt, fmt.Sprintf(format, args...))
		}
		open := cur.Attempt != 0 && next[cur.Kind] != nil
		if r.Kind == RecInstalled {
			if r.To.IsZero() {
				return bad("installed record without a version")
			}
			if open {
				return bad("installed while attempt %d is in flight (%s)", cur.Attempt, cur.Kind)
			}
			continue
		}
		if _, known := next[r.Kind]; !known && r.Kind != RecCommitted && r.Kind != RecReverted && r.Kind != RecFailed {
			return bad("unknown record kind")
		}
		if r.Attempt == 0 {
			return bad("attempt must be at least 1")
		}
		if r.From.IsZero() || r.To.IsZero() {
			return bad("from and to are required")
		}
		switch {
		case r.Attempt < cur.Attempt:
			return bad("attempt goes backwards (newest is %d)", cur.Attempt)
		case r.Attempt > cur.Attempt:
			if open {
				return bad("attempt %d is still in flight (%s)", cur.Attempt, cur.Kind)
			}
			if r.Kind != RecBegin && r.Kind != RecFailed {
				return bad("an attempt must open with begin or failed")
			}
		default:
			if !sameVersion(r.From, cur.From) || !sameVersion(r.To, cur.To) {
				return bad("from/to %s→%s differ from the attempt's %s→%s", r.From, r.To, cur.From, cur.To)
			}
			allowed := next[cur.Kind]
			ok := false
			for _, k := range allowed {
				ok = ok || k == r.Kind
			}
			if !ok {
				return bad("cannot follow %s", cur.Kind)
			}
		}
		if (r.Kind == RecFailed || r.Kind == RecRevertIntent) && !r.Reason.Valid() {
			return bad("unknown reason %q", r.Reason)
		}
		cur = r
	}
	return nil
}

// sameVersion reports whether two versions name the same build.
func sameVersion(a, b core.Version) bool {
	return a.Compare(b) == 0 && a.Build == b.Build
}

func indexVersion(vs []core.Version, v core.Version) int {
	for i := range vs {
		if sameVersion(vs[i], v) {
			return i
		}
	}
	return -1
}
