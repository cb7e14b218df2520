package agentcore

import (
	"strconv"

	"github.com/flotilla-fleet/flotilla/core"
)

// Planted bugs measure the simulator: each one is a realistic protocol
// mistake that the `plantedbugs` build tag can switch on by name
// (SetPlantedBug), so a test can assert that a bounded seed sweep finds it.
// In the default build plantedBuild is the constant false, every
// `if plantedBuild && planted(...)` branch is removed by the compiler, and
// the functions below are dead code the linker drops. See docs/sim-depth.md.

// Names of the agent core's planted bugs.
const (
	// BugSelfStopOnTimeout: on the cutover timeout the old agent exits
	// (stops itself) instead of reverting.
	BugSelfStopOnTimeout = "agent-self-stop-on-timeout"
	// BugSkipRevertAfterPowerCut: a normal start whose journal ends in
	// `swapped` (power cut during cutover) forgets the rollback and starts
	// normally, leaving the attempt open forever.
	BugSkipRevertAfterPowerCut = "agent-skip-revert-after-power-cut"
	// BugCandidateObeysStop: the candidate acts on an upgrade-stop it was
	// never armed for: it replies and exits.
	BugCandidateObeysStop = "agent-candidate-obeys-stop"
	// BugExitBeforeCommitJournaled: on upgrade-stop the old agent replies
	// and exits before the `committed` record is durable.
	BugExitBeforeCommitJournaled = "agent-exit-before-commit-journaled"
)

// PlantedBugs lists the agent core's planted bugs.
var PlantedBugs = []string{BugSelfStopOnTimeout, BugSkipRevertAfterPowerCut, BugCandidateObeysStop, BugExitBeforeCommitJournaled}

// plantedSelfStop is BugSelfStopOnTimeout: exit without any upgrade-stop.
func (a *Agent) plantedSelfStop() {
	a.emit(CancelTimer{Timer: TimerCutover})
	a.emit(Exit{Code: 0, Reason: "no upgrade-stop within " + strconv.Itoa(a.up.cutoverSec) + "s; stopping"})
	a.role = RoleExited
	a.ready = false
}

// plantedCandidateStop is BugCandidateObeysStop.
func (a *Agent) plantedCandidateStop(c CommandReceived) {
	args := c.Request.UpgradeStop
	a.emit(Reply{Handle: c.Handle, Reply: core.CommandReply{Schema: core.SchemaVersion, Verb: core.VerbUpgradeStop,
		ID: c.Request.ID, UpgradeStop: &core.UpgradeStopResult{Attempt: args.Attempt, CommittedTo: args.TargetVersion,
			ExitingVersion: a.cfg.Version}}})
	a.emit(Exit{Code: 0, Reason: "upgrade-stop received"})
	a.role = RoleExited
	a.ready = false
}

// plantedCommitOrder is BugExitBeforeCommitJournaled: onUpgradeStop with
// the journal write after the exit.
func (a *Agent) plantedCommitOrder(c CommandReceived) {
	A, from, to := a.up.attempt, a.up.from, a.up.to
	a.up.phase = core.UpgradeCommitted
	a.emit(Reply{Handle: c.Handle, Reply: core.CommandReply{Schema: core.SchemaVersion, Verb: core.VerbUpgradeStop,
		ID: c.Request.ID, UpgradeStop: &core.UpgradeStopResult{Attempt: A, CommittedTo: to, ExitingVersion: a.cfg.Version}}})
	a.emit(Exit{Code: 0, Reason: "upgrade attempt " + strconv.FormatUint(uint64(A), 10) + " committed to " + to.String()})
	a.appendRec(Record{Kind: RecCommitted, Attempt: A, From: from, To: to})
	a.role = RoleExited
	a.ready = false
}
