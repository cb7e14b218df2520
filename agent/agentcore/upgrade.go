package agentcore

import (
	"strconv"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// upgrade is the old agent's view of the current (or last) attempt.
type upgrade struct {
	attempt    uint32
	phase      core.AgentUpgradePhase // "" before any attempt
	from, to   core.Version
	cutoverSec int // the marker's CutoverTimeoutSec
	reason     core.UpgradeReason
	detail     string
	// CutoverReady sub-steps.
	swapped      bool // current points at To; StartCandidate emitted
	swappingBack bool // the swap to To failed; pointing current back at From
	revertTries  int  // failed swaps back to From while Reverting
}

// maxRevertSwapTries bounds immediate retries of the swap back to From while
// reverting; after that the journal keeps revert-intent and the next start
// finishes the rollback.
const maxRevertSwapTries = 3

// cutoverInProgress reports whether the attempt is past the point where
// workload ownership may change hands; desired-state changes are held
// (reported Pending) until it ends.
func (a *Agent) cutoverInProgress() bool {
	switch a.up.phase {
	case core.UpgradeCutoverReady, core.UpgradeWaitingForStop, core.UpgradeReverting:
		return a.role == RoleActive
	}
	return false
}

// putStatus writes agent-upgrade-status from the upgrade state.
func (a *Agent) putStatus(now time.Time) {
	st := core.UpgradeStatus{
		Schema:         core.SchemaVersion,
		Attempt:        a.up.attempt,
		Phase:          a.UpgradePhase(),
		FromVersion:    a.up.from,
		RunningVersion: a.cfg.Version,
		Reason:         a.up.reason,
		Detail:         core.Truncate(a.up.detail, core.MaxErrorLen),
		At:             a.eventAt(now),
	}
	if st.FromVersion.IsZero() {
		st.FromVersion = a.cfg.Version
	}
	if !a.up.to.IsZero() {
		to := a.up.to
		st.TargetVersion = &to
	}
	if st.Phase == core.UpgradeIdle && st.Attempt == 0 {
		st.Reason, st.Detail = core.ReasonNone, ""
	}
	a.emit(PutUpgradeStatus{Status: st})
}

func (a *Agent) hold(m core.UpgradeMarker) {
	if a.held == nil || m.Attempt > a.held.Attempt {
		a.held = &m
	}
}

// takeHeld acts on a held marker once the agent can.
func (a *Agent) takeHeld(now time.Time) {
	if a.held == nil {
		return
	}
	m := *a.held
	a.held = nil
	a.onMarker(now, m)
}

func (a *Agent) onMarker(now time.Time, m core.UpgradeMarker) {
	if m.Attempt <= a.seen {
		return // replay, duplicate or an attempt already decided
	}
	if a.role != RoleActive || !a.ready {
		a.hold(m) // candidate or start-up: act once active
		return
	}
	switch a.up.phase {
	case core.UpgradeStaging, core.UpgradeVerifying:
		a.log("info", "upgrade attempt superseded by a newer marker",
			"attempt", a.up.attempt, "by", m.Attempt)
		a.failAttempt(now, core.ReasonSuperseded, "superseded by attempt "+strconv.FormatUint(uint64(m.Attempt), 10))
	case core.UpgradeCutoverReady, core.UpgradeWaitingForStop, core.UpgradeReverting:
		a.log("info", "upgrade marker held until the attempt in cutover ends",
			"attempt", a.up.attempt, "held", m.Attempt)
		a.hold(m)
		return
	}
	if a.preserving {
		a.hold(m)
		return
	}
	if !a.isInstalled(a.cfg.Version) || a.current.IsZero() {
		// An earlier preserve failed: retry it before the attempt begins.
		a.hold(m)
		a.preserving = true
		a.emit(PreserveRunning{Version: a.cfg.Version})
		return
	}
	a.begin(now, m)
}

// begin starts attempt m (Staging), or answers AlreadyRunning.
func (a *Agent) begin(now time.Time, m core.UpgradeMarker) {
	a.seen = m.Attempt
	own := a.cfg.Version
	a.up = upgrade{attempt: m.Attempt, from: own, to: m.TargetVersion, cutoverSec: m.CutoverTimeoutSec}
	if sameVersion(m.TargetVersion, own) {
		a.up.phase = core.UpgradeIdle
		a.up.reason = core.ReasonAlreadyRunning
		a.up.detail = "already running " + own.String()
		a.putStatus(now)
		return
	}
	a.up.phase = core.UpgradeStaging
	a.appendRec(Record{Kind: RecBegin, Attempt: m.Attempt, From: own, To: m.TargetVersion})
	a.putStatus(now)
	a.emit(Download{Attempt: m.Attempt, Version: m.TargetVersion, Artifact: m.Artifact})
}

// failAttempt ends the attempt before cutover: From keeps running.
func (a *Agent) failAttempt(now time.Time, reason core.UpgradeReason, detail string) {
	a.up.phase = core.UpgradeFailed
	a.up.reason, a.up.detail = reason, detail
	a.up.swapped, a.up.swappingBack = false, false
	a.appendRec(Record{Kind: RecFailed, Attempt: a.up.attempt, From: a.up.from, To: a.up.to,
		Reason: reason, Detail: detail})
	a.putStatus(now)
}

// fail ends the attempt before cutover and goes on with held work.
func (a *Agent) fail(now time.Time, reason core.UpgradeReason, detail string) {
	a.failAttempt(now, reason, detail)
	a.afterAttempt(now)
}

// afterAttempt runs when an attempt has ended and this agent stays.
func (a *Agent) afterAttempt(now time.Time) {
	a.gc()
	a.reconcileAll(now)
	a.takeHeld(now)
}

func (a *Agent) onMarkerDeleted(now time.Time) {
	a.held = nil
	if a.role != RoleActive {
		return
	}
	switch a.up.phase {
	case core.UpgradeStaging, core.UpgradeVerifying:
		a.fail(now, core.ReasonSuperseded, "upgrade marker deleted (rollout cancelled)")
	}
}

func (a *Agent) current1(attempt uint32, phase core.AgentUpgradePhase) bool {
	return a.role == RoleActive && a.up.attempt == attempt && a.up.phase == phase
}

func (a *Agent) onDownloadDone(now time.Time, d DownloadDone) {
	if !a.current1(d.Attempt, core.UpgradeStaging) {
		return // a superseded attempt's late result
	}
	if d.Err != "" {
		reason := d.Reason
		if reason == core.ReasonNone || !reason.Valid() {
			reason = core.ReasonDownloadFailed
		}
		a.fail(now, reason, d.Err)
		return
	}
	a.addInstalled(a.up.to)
	a.up.phase = core.UpgradeVerifying
	a.appendRec(Record{Kind: RecStaged, Attempt: a.up.attempt, From: a.up.from, To: a.up.to})
	a.putStatus(now)
	a.emit(SelfTest{Attempt: a.up.attempt, Version: a.up.to})
}

func (a *Agent) onSelfTestDone(now time.Time, d SelfTestDone) {
	if !a.current1(d.Attempt, core.UpgradeVerifying) {
		return
	}
	if d.Err != "" {
		a.fail(now, core.ReasonSelfTestFailed, d.Err)
		return
	}
	A, from, to := a.up.attempt, a.up.from, a.up.to
	a.up.phase = core.UpgradeCutoverReady
	a.appendRec(Record{Kind: RecVerified, Attempt: A, From: from, To: to})
	a.appendRec(Record{Kind: RecSwapIntent, Attempt: A, From: from, To: to})
	a.putStatus(now)
	a.emit(SwapCurrent{Attempt: A, To: to})
}

func (a *Agent) onSwapDone(now time.Time, d SwapDone) {
	if a.rec.wait != recNone {
		a.onRecoverySwap(now, d)
		return
	}
	if a.role != RoleActive || d.Attempt != a.up.attempt {
		return
	}
	A, from, to := a.up.attempt, a.up.from, a.up.to
	switch {
	case a.up.phase == core.UpgradeCutoverReady && !a.up.swapped && !a.up.swappingBack && sameVersion(d.To, to):
		if d.Err != "" {
			// rename(2) is atomic, so current should still be From; point
			// it there explicitly before recording the failure.
			a.up.swappingBack = true
			a.up.detail = d.Err
			a.emit(SwapCurrent{Attempt: A, To: from})
			return
		}
		a.current = to
		a.up.swapped = true
		a.appendRec(Record{Kind: RecSwapped, Attempt: A, From: from, To: to})
		a.emit(StartCandidate{Attempt: A, Version: to})
	case a.up.phase == core.UpgradeCutoverReady && a.up.swappingBack && sameVersion(d.To, from):
		if d.Err == "" {
			a.current = from
		} else {
			a.log("error", "swapping current back after a failed swap failed too", "attempt", A, "err", d.Err)
		}
		a.fail(now, core.ReasonSwapFailed, a.up.detail)
	case a.up.phase == core.UpgradeReverting && sameVersion(d.To, from):
		if d.Err != "" {
			a.up.revertTries++
			if a.up.revertTries < maxRevertSwapTries {
				a.emit(SwapCurrent{Attempt: A, To: from})
				return
			}
			a.up.detail = core.Truncate(a.up.detail+"; swap back failed: "+d.Err+" (finished at the next start)", core.MaxErrorLen)
			a.log("error", "cannot point current back at the old version; the rollback finishes at the next start",
				"attempt", A, "err", d.Err)
			a.putStatus(now)
			return
		}
		a.current = from
		a.up.phase = core.UpgradeRolledBack
		a.appendRec(Record{Kind: RecReverted, Attempt: A, From: from, To: to, Reason: a.up.reason, Detail: a.up.detail})
		a.putStatus(now)
		a.afterAttempt(now)
	}
}

func (a *Agent) onCandidateStarted(now time.Time, c CandidateStarted) {
	if !a.current1(c.Attempt, core.UpgradeCutoverReady) || !a.up.swapped {
		return
	}
	if c.Err != "" {
		a.revert(now, core.ReasonStartFailed, "candidate did not start: "+c.Err)
		return
	}
	a.up.phase = core.UpgradeWaitingForStop
	a.putStatus(now)
	sec := a.up.cutoverSec
	if sec <= 0 {
		sec = core.DefaultCutoverTimeoutSec
	}
	a.emit(ArmTimer{Timer: TimerCutover, After: time.Duration(sec) * time.Second})
}

func (a *Agent) onCandidateExited(now time.Time, c CandidateExited) {
	if a.role != RoleActive || c.Attempt != a.up.attempt {
		return
	}
	switch {
	case a.up.phase == core.UpgradeWaitingForStop,
		a.up.phase == core.UpgradeCutoverReady && a.up.swapped:
		a.revert(now, core.ReasonStartFailed, "candidate exited: "+c.Detail)
	}
}

func (a *Agent) onCutoverTimeout(now time.Time) {
	if a.role != RoleActive || a.up.phase != core.UpgradeWaitingForStop {
		return
	}
	if plantedBuild && planted(BugSelfStopOnTimeout) {
		a.plantedSelfStop()
		return
	}
	sec := a.up.cutoverSec
	if sec <= 0 {
		sec = core.DefaultCutoverTimeoutSec
	}
	a.revert(now, core.ReasonCutoverTimeout, "no upgrade-stop within "+strconv.Itoa(sec)+"s")
}

// revert rolls a cut-over attempt back: From runs on.
func (a *Agent) revert(now time.Time, reason core.UpgradeReason, detail string) {
	A, from, to := a.up.attempt, a.up.from, a.up.to
	if a.up.phase == core.UpgradeWaitingForStop {
		a.emit(CancelTimer{Timer: TimerCutover})
	}
	a.up.phase = core.UpgradeReverting
	a.up.reason, a.up.detail = reason, detail
	a.appendRec(Record{Kind: RecRevertIntent, Attempt: A, From: from, To: to, Reason: reason, Detail: detail})
	a.putStatus(now)
	a.emit(StopCandidate{Attempt: A, Version: to})
	a.emit(SwapCurrent{Attempt: A, To: from})
}

// onUpgradeStop handles a decoded upgrade-stop. Only the armed old agent
// for exactly that attempt and version answers; everyone else stays silent.
func (a *Agent) onUpgradeStop(c CommandReceived) {
	args := c.Request.UpgradeStop
	if args == nil || a.role != RoleActive || a.up.phase != core.UpgradeWaitingForStop ||
		args.Attempt != a.up.attempt || !sameVersion(args.TargetVersion, a.up.to) {
		return
	}
	if plantedBuild && planted(BugExitBeforeCommitJournaled) {
		a.plantedCommitOrder(c)
		return
	}
	A, from, to := a.up.attempt, a.up.from, a.up.to
	a.up.phase = core.UpgradeCommitted
	a.appendRec(Record{Kind: RecCommitted, Attempt: A, From: from, To: to})
	a.emit(Reply{Handle: c.Handle, Reply: core.CommandReply{
		Schema: core.SchemaVersion,
		Verb:   core.VerbUpgradeStop,
		ID:     c.Request.ID,
		UpgradeStop: &core.UpgradeStopResult{
			Attempt:        A,
			CommittedTo:    to,
			ExitingVersion: a.cfg.Version,
		},
	}})
	a.emit(Exit{Code: 0, Reason: "upgrade attempt " + strconv.FormatUint(uint64(A), 10) + " committed to " + to.String()})
	a.role = RoleExited
	a.ready = false
}
