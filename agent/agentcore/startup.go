package agentcore

import (
	"slices"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// recovery is start-up work that waits for a SwapDone.
type recovery struct {
	wait       recWait
	reason     core.UpgradeReason
	detail     string
	swapFailed bool // a recovery swap failed in this process: do not retry it
}

type recWait uint8

const (
	recNone       recWait = iota
	recSwapToFrom         // interrupted attempt failed; current being pointed back at From
	recRevertSwap         // revert-intent journaled; current being pointed back at From
	recSwapToWant         // terminal journal; current being pointed at Want
)

func (a *Agent) onStart(now time.Time, s Start) {
	a.startAt = now
	a.bootID = core.Truncate(s.BootID, 64)
	a.current = s.Current
	for _, v := range s.Installed {
		a.addInstalled(v)
	}
	a.js = Replay(s.Journal)
	a.seen = a.js.LastAttempt
	a.setUpFromJournal()
	if s.CandidateAttempt != 0 {
		a.startCandidate(now, s.CandidateAttempt)
		return
	}
	a.role = RoleActive
	a.recover(now)
}

// setUpFromJournal makes the upgrade state reflect the journal's newest
// attempt (before any recovery).
func (a *Agent) setUpFromJournal() {
	js := &a.js
	if js.LastAttempt == 0 {
		a.up = upgrade{}
		return
	}
	a.up = upgrade{attempt: js.LastAttempt, from: js.From, to: js.To, reason: js.Reason, detail: js.Detail}
	switch js.Last {
	case RecCommitted:
		a.up.phase = core.UpgradeCommitted
	case RecFailed:
		a.up.phase = core.UpgradeFailed
	case RecReverted:
		a.up.phase = core.UpgradeRolledBack
	case RecRevertIntent:
		a.up.phase = core.UpgradeReverting
	case RecBegin:
		a.up.phase = core.UpgradeStaging
	case RecStaged:
		a.up.phase = core.UpgradeVerifying
	default: // verified, swap-intent, swapped
		a.up.phase = core.UpgradeCutoverReady
	}
}

// recover implements the recovery table of docs/upgrade-protocol.md for a
// normal start (this process is not a candidate).
func (a *Agent) recover(now time.Time) {
	js := &a.js
	A, from, to := js.LastAttempt, js.From, js.To
	switch js.Last {
	case RecBegin, RecStaged, RecVerified, RecSwapIntent:
		a.log("warn", "upgrade attempt interrupted before cutover; keeping the old version",
			"attempt", A, "from", from.String(), "to", to.String(), "last", string(js.Last))
		a.up.phase = core.UpgradeFailed
		a.up.reason, a.up.detail = core.ReasonInterrupted, "agent restarted during "+string(js.Last)
		a.appendRec(Record{Kind: RecFailed, Attempt: A, From: from, To: to,
			Reason: core.ReasonInterrupted, Detail: a.up.detail})
		if !sameVersion(a.current, from) {
			a.rec.wait = recSwapToFrom
			a.emit(SwapCurrent{Attempt: A, To: from})
			return
		}
	case RecSwapped:
		if plantedBuild && planted(BugSkipRevertAfterPowerCut) {
			break
		}
		a.log("warn", "agent restarted after cutover before commit; rolling back",
			"attempt", A, "from", from.String(), "to", to.String())
		a.up.phase = core.UpgradeReverting
		a.up.reason, a.up.detail = core.ReasonInterrupted, "agent restarted before upgrade-stop"
		a.appendRec(Record{Kind: RecRevertIntent, Attempt: A, From: from, To: to,
			Reason: a.up.reason, Detail: a.up.detail})
		a.rec = recovery{wait: recRevertSwap, reason: a.up.reason, detail: a.up.detail}
		a.emit(StopCandidate{Attempt: A, Version: to})
		a.emit(SwapCurrent{Attempt: A, To: from})
		return
	case RecRevertIntent:
		a.log("warn", "finishing an interrupted rollback", "attempt", A, "from", from.String(), "to", to.String())
		a.up.phase = core.UpgradeReverting
		reason, detail := js.Reason, js.Detail
		if reason == core.ReasonNone {
			reason = core.ReasonInterrupted
		}
		a.rec = recovery{wait: recRevertSwap, reason: reason, detail: detail}
		a.emit(StopCandidate{Attempt: A, Version: to})
		a.emit(SwapCurrent{Attempt: A, To: from})
		return
	}
	a.finishRecovery(now)
}

// onRecoverySwap handles the SwapDone of a recovery swap.
func (a *Agent) onRecoverySwap(now time.Time, d SwapDone) {
	wait := a.rec.wait
	a.rec.wait = recNone
	if d.Err != "" {
		a.rec.swapFailed = true
		a.log("error", "start-up swap of the current link failed; staying as is until the next restart",
			"to", d.To.String(), "err", d.Err)
	} else {
		a.current = d.To
	}
	if wait == recRevertSwap && d.Err == "" {
		js := &a.js
		a.appendRec(Record{Kind: RecReverted, Attempt: js.LastAttempt, From: js.From, To: js.To,
			Reason: a.rec.reason, Detail: a.rec.detail})
		a.up.phase = core.UpgradeRolledBack
		a.up.reason, a.up.detail = a.rec.reason, a.rec.detail
	}
	a.finishRecovery(now)
}

// finishRecovery points current at the version the journal wants, re-execs
// into it when this binary is another one, and otherwise becomes ready.
func (a *Agent) finishRecovery(now time.Time) {
	want := a.js.Want
	if !want.IsZero() && a.isInstalled(want) {
		if !sameVersion(a.current, want) && !a.rec.swapFailed {
			a.rec.wait = recSwapToWant
			a.emit(SwapCurrent{Attempt: a.js.LastAttempt, To: want})
			return
		}
		if !sameVersion(a.cfg.Version, want) {
			a.role = RoleReplaced
			a.emit(Reexec{Version: want, Reason: "the journal says " + want.String() + " should run, not " + a.cfg.Version.String()})
			return
		}
	} else if !want.IsZero() && !sameVersion(a.cfg.Version, want) {
		a.log("error", "the journal's version is not installed; running this binary instead",
			"want", want.String(), "running", a.cfg.Version.String())
	}
	a.becomeReady(now)
}

// becomeReady starts normal operation of the active agent.
func (a *Agent) becomeReady(now time.Time) {
	a.ready = true
	if a.js.Last == RecCommitted {
		// A normal start after a commit: if the candidate that took over
		// is still running (the old agent crashed after journaling the
		// commit and systemd restarted the main unit), this process
		// replaces it, so exactly one agent runs. No-op when it is gone.
		a.emit(StopCandidate{Attempt: a.js.LastAttempt, Version: a.js.To})
	}
	a.putInfo()
	a.heartbeat(now)
	a.putStatus(now)
	own := a.cfg.Version
	switch {
	case !a.isInstalled(own) || a.current.IsZero():
		// Fresh install: the running binary is preserved at versions/<own>
		// before any upgrade may begin, so the first upgrade can roll back.
		a.preserving = true
		a.emit(PreserveRunning{Version: own})
	case !a.js.IsVerified(own):
		a.appendRec(Record{Kind: RecInstalled, To: own})
	}
	a.gc()
	a.reconcileAll(now)
	a.takeHeld(now)
}

func (a *Agent) onPreserveDone(now time.Time, p PreserveDone) {
	if !a.preserving || !a.ready {
		return
	}
	a.preserving = false
	own := a.cfg.Version
	if p.Err != "" {
		a.log("error", "cannot preserve the running version; upgrades are refused until it succeeds",
			"version", own.String(), "err", p.Err)
		if a.held != nil {
			m := *a.held
			a.held = nil
			if m.Attempt > a.seen {
				a.seen = m.Attempt
				a.up = upgrade{attempt: m.Attempt, from: own, to: m.TargetVersion}
				a.fail(now, core.ReasonDiskFull, "cannot preserve the running version "+own.String()+": "+p.Err)
			}
		}
		return
	}
	a.addInstalled(own)
	if a.current.IsZero() {
		a.current = own
	}
	if !a.js.IsVerified(own) {
		a.appendRec(Record{Kind: RecInstalled, To: own})
	}
	a.gc()
	a.takeHeld(now)
}

// ---- candidate side --------------------------------------------------------

func (a *Agent) startCandidate(now time.Time, attempt uint32) {
	a.candidateOf = attempt
	js := &a.js
	switch {
	case js.LastAttempt == attempt && js.Last == RecCommitted && sameVersion(js.To, a.cfg.Version):
		// Restarted after the commit: this process is the device's agent.
		a.takeOver(now)
	case js.LastAttempt == attempt && js.Last == RecSwapped && sameVersion(js.To, a.cfg.Version):
		a.role = RoleCandidate
		a.heartbeat(now)
		a.emit(a.armPoll)
	default:
		a.role = RoleRetired
		a.log("warn", "candidate started for an attempt the journal does not have in cutover; doing nothing",
			"attempt", attempt, "journal_attempt", js.LastAttempt, "journal_last", string(js.Last))
	}
}

func (a *Agent) onJournalRead(now time.Time, r JournalRead) {
	if a.role != RoleCandidate {
		return
	}
	a.js = Replay(r.Records)
	js := &a.js
	A := a.candidateOf
	switch {
	case js.LastAttempt == A && js.Last == RecCommitted:
		a.takeOver(now)
	case js.LastAttempt == A && js.Last == RecSwapped:
		a.emit(a.armPoll)
	default:
		a.role = RoleRetired
		a.emit(CancelTimer{Timer: TimerHeartbeat})
		a.log("info", "attempt no longer in cutover; candidate retires",
			"attempt", A, "journal_attempt", js.LastAttempt, "journal_last", string(js.Last))
	}
}

// takeOver makes a candidate of a committed attempt the device's agent.
func (a *Agent) takeOver(now time.Time) {
	js := &a.js
	first := a.role == RoleStarting
	a.role = RoleActive
	a.ready = true
	a.seen = max(a.seen, js.LastAttempt)
	a.current = js.To
	a.up = upgrade{attempt: js.LastAttempt, phase: core.UpgradeCommitted, from: js.From, to: js.To}
	a.putStatus(now)
	a.putInfo()
	if first {
		a.heartbeat(now)
	}
	a.gc()
	a.reconcileAll(now)
	a.takeHeld(now)
}

// ---- garbage collection ----------------------------------------------------

// gc removes versions beyond KeepVersions. It never removes the current
// version, the running one, the journal's wanted one or the From and To of
// an attempt in flight; unverified leftovers (a failed download or
// self-test) go first; of the verified ones the most recently used are kept.
func (a *Agent) gc() {
	if !a.ready || a.preserving {
		return
	}
	protected := func(v core.Version) bool {
		if sameVersion(v, a.current) || sameVersion(v, a.cfg.Version) || sameVersion(v, a.js.Want) {
			return true
		}
		if a.up.phase.InFlight() && (sameVersion(v, a.up.from) || sameVersion(v, a.up.to)) {
			return true
		}
		return a.js.InFlight() && (sameVersion(v, a.js.From) || sameVersion(v, a.js.To))
	}
	var remove []core.Version
	for _, v := range a.installed {
		if !protected(v) && !a.js.IsVerified(v) {
			remove = append(remove, v)
		}
	}
	kept := 0
	for i := len(a.js.Verified) - 1; i >= 0; i-- {
		v := a.js.Verified[i]
		if !a.isInstalled(v) || protected(v) {
			continue
		}
		if kept < a.cfg.KeepVersions {
			kept++
			continue
		}
		remove = append(remove, v)
	}
	slices.SortFunc(remove, compareVersions)
	for _, v := range remove {
		a.removeInstalled(v)
		a.emit(RemoveVersion{Version: v})
	}
}
