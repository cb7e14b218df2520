// Package agentcore is the agent's decision core: a deterministic state
// machine that turns inputs (facts: a KV entry changed, a timer fired, an
// executor step finished, a command arrived) into effects (requests: write a
// key, arm a timer, download an artifact, swap the current link, exit).
//
// It performs no I/O, starts no goroutines, reads no clock and draws no
// randomness: the caller passes now to Step and executes the returned effects
// in order. The production shell (agent/shell) executes them against NATS,
// the filesystem and systemd; the simulator executes them against its
// simulated world. Both run this very code.
//
// Effects are returned in the order they must be carried out. An
// AppendJournal effect must be durable (fsynced) before the shell executes
// the effect after it: that ordering is what lets a restart at any point
// resume to a verified version.
package agentcore

import (
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// Config is fixed for the life of one agent process.
type Config struct {
	Device  string
	Labels  map[string]string
	Version core.Version // the version of the running binary

	HeartbeatInterval     time.Duration // default 10s
	InfoInterval          time.Duration // device-info refresh; default 5m
	CandidatePollInterval time.Duration // how often a candidate re-reads the journal; default 1s
	KeepVersions          int           // rollback targets kept on disk besides current; default 2

	ExecAllowed    bool
	Inventory      core.Inventory
	Runtimes       []core.Runtime
	DefaultRuntime core.Runtime
}

// Input is a fact delivered to Step.
type Input interface{ isInput() }

// Effect is a request returned by Step for the shell to carry out.
type Effect interface{ isEffect() }

// TimerID names a timer. Arming a timer that is armed re-arms it.
type TimerID string

const (
	TimerHeartbeat     TimerID = "heartbeat"
	TimerInfo          TimerID = "info"
	TimerCutover       TimerID = "cutover"        // old agent: no upgrade-stop in time → revert
	TimerCandidatePoll TimerID = "candidate-poll" // candidate: re-read the journal
)

// ---- Journal -------------------------------------------------------------

// RecordKind is the kind of a journal record.
type RecordKind string

const (
	RecInstalled    RecordKind = "installed"     // version preserved at versions/<v> (fresh install)
	RecBegin        RecordKind = "begin"         // attempt accepted: From → To
	RecStaged       RecordKind = "staged"        // artifact downloaded, SHA-256 (and signature) verified
	RecVerified     RecordKind = "verified"      // candidate's --self-test passed
	RecSwapIntent   RecordKind = "swap-intent"   // about to point current at To
	RecSwapped      RecordKind = "swapped"       // current points at To
	RecCommitted    RecordKind = "committed"     // operator's upgrade-stop accepted; To is the version
	RecRevertIntent RecordKind = "revert-intent" // about to point current back at From
	RecReverted     RecordKind = "reverted"      // current points at From again
	RecFailed       RecordKind = "failed"        // attempt ended before cutover; From keeps running
)

// Record is one journal entry. The journal is append-only and fsynced per
// record; a torn last record is dropped by the reader.
type Record struct {
	Kind    RecordKind         `json:"kind"`
	Attempt uint32             `json:"attempt,omitempty"`
	From    core.Version       `json:"from,omitzero"`
	To      core.Version       `json:"to,omitzero"`
	Reason  core.UpgradeReason `json:"reason,omitempty"`
	Detail  string             `json:"detail,omitempty"`
}

// ---- Inputs --------------------------------------------------------------

// Start is the first input of every process. The shell reads the journal and
// the versions directory before delivering it.
type Start struct {
	BootID string
	// CandidateAttempt is non-zero when this process was started by an old
	// agent as the candidate of that attempt (flag --candidate-attempt).
	CandidateAttempt uint32
	Journal          []Record
	Current          core.Version   // where the current link points; zero if missing
	Installed        []core.Version // versions present under versions/
}

// TimerFired reports that an armed timer expired.
type TimerFired struct{ Timer TimerID }

// DesiredPut is a desired-state key of this device written or replayed.
type DesiredPut struct {
	Deployment string
	Spec       core.WorkloadSpec
	Revision   uint64
}

// DesiredInvalid is a desired-state value that failed to decode; the agent
// reports it as Failed for that deployment and keeps running.
type DesiredInvalid struct {
	Deployment string
	Revision   uint64
	Err        string
}

// DesiredDeleted is a desired-state key deleted or purged.
type DesiredDeleted struct {
	Deployment string
	Revision   uint64
}

// MarkerPut is this device's agent-upgrade marker written or replayed.
type MarkerPut struct{ Marker core.UpgradeMarker }

// MarkerInvalid is a marker value that failed to decode.
type MarkerInvalid struct{ Err string }

// MarkerDeleted is the marker removed (the rollout was cancelled).
type MarkerDeleted struct{}

// WorkloadStatus is what the runtime reports for one deployment.
type WorkloadStatus struct {
	Deployment string
	Generation int64
	Phase      core.WorkloadPhase // Running or Failed (Stopped is reported by StopWorkload's absence)
	Err        string
}

// CommandReceived is a request on device-commands.<device>.<verb>. Handle is
// the shell's reference for the reply. DecodeErr is set (and Request zero)
// when the body did not decode.
type CommandReceived struct {
	Handle    uint64
	Verb      core.Verb
	Request   core.CommandRequest
	DecodeErr string
}

// DownloadDone reports the Download effect: the artifact is at
// versions/<Version>/ with its SHA-256 (and signature) verified, or Err.
type DownloadDone struct {
	Attempt uint32
	Err     string
	Reason  core.UpgradeReason // DownloadFailed, ChecksumMismatch, SignatureInvalid, DiskFull
}

// SelfTestDone reports the candidate binary's --self-test.
type SelfTestDone struct {
	Attempt uint32
	Err     string
}

// SwapDone reports the SwapCurrent effect (rename(2) + directory fsync).
type SwapDone struct {
	Attempt uint32
	To      core.Version
	Err     string
}

// CandidateStarted reports the StartCandidate effect.
type CandidateStarted struct {
	Attempt uint32
	Err     string
}

// CandidateExited reports that the candidate process ended (crash or stop).
type CandidateExited struct {
	Attempt uint32
	Detail  string
}

// PreserveDone reports the PreserveRunning effect.
type PreserveDone struct {
	Version core.Version
	Err     string
}

// JournalRead answers ReadJournal.
type JournalRead struct{ Records []Record }

func (Start) isInput()            {}
func (TimerFired) isInput()       {}
func (DesiredPut) isInput()       {}
func (DesiredInvalid) isInput()   {}
func (DesiredDeleted) isInput()   {}
func (MarkerPut) isInput()        {}
func (MarkerInvalid) isInput()    {}
func (MarkerDeleted) isInput()    {}
func (WorkloadStatus) isInput()   {}
func (CommandReceived) isInput()  {}
func (DownloadDone) isInput()     {}
func (SelfTestDone) isInput()     {}
func (SwapDone) isInput()         {}
func (CandidateStarted) isInput() {}
func (CandidateExited) isInput()  {}
func (PreserveDone) isInput()     {}
func (JournalRead) isInput()      {}

// ---- Effects -------------------------------------------------------------

// AppendJournal appends one record and fsyncs before the next effect runs.
type AppendJournal struct{ Record Record }

// PutHeartbeat writes device-heartbeat.<device>.
type PutHeartbeat struct{ Heartbeat core.Heartbeat }

// PutDeviceInfo writes device-info.info.<device>.
type PutDeviceInfo struct{ Info core.DeviceInfo }

// PutDeviceState writes device-state.state.<device>.<deployment>.
type PutDeviceState struct{ State core.DeviceState }

// DeleteDeviceState removes device-state.state.<device>.<deployment>.
type DeleteDeviceState struct{ Deployment string }

// PutUpgradeStatus writes agent-upgrade-status.<device>.
type PutUpgradeStatus struct{ Status core.UpgradeStatus }

// ArmTimer (re-)arms a timer to fire After from now.
type ArmTimer struct {
	Timer TimerID
	After time.Duration
}

// CancelTimer disarms a timer; cancelling an unarmed timer is a no-op.
type CancelTimer struct{ Timer TimerID }

// StartWorkload starts (or replaces) the deployment's workload.
type StartWorkload struct{ Spec core.WorkloadSpec }

// StopWorkload stops the deployment's workload.
type StopWorkload struct{ Deployment string }

// Reply answers a CommandReceived.
type Reply struct {
	Handle uint64
	Reply  core.CommandReply
}

// FetchLogs asks the shell to read logs and reply to Handle itself.
type FetchLogs struct {
	Handle uint64
	ID     string
	Args   core.LogsArgs
}

// RunExec asks the shell to run a command and reply to Handle itself.
type RunExec struct {
	Handle uint64
	ID     string
	Args   core.ExecArgs
}

// Download fetches and verifies the artifact into versions/<Version>/.
type Download struct {
	Attempt  uint32
	Version  core.Version
	Artifact core.ArtifactRef
}

// SelfTest runs versions/<Version>/flotilla-agent --self-test.
type SelfTest struct {
	Attempt uint32
	Version core.Version
}

// PreserveRunning copies the running binary to versions/<Version>/ and points
// current at it when current is missing (fresh install).
type PreserveRunning struct{ Version core.Version }

// SwapCurrent atomically points current at versions/<To>/ (rename(2)).
type SwapCurrent struct {
	Attempt uint32
	To      core.Version
}

// StartCandidate starts versions/<Version>/ beside the running agent with
// --candidate-attempt=<Attempt>.
type StartCandidate struct {
	Attempt uint32
	Version core.Version
}

// StopCandidate stops the candidate process of an attempt (no-op if gone).
type StopCandidate struct {
	Attempt uint32
	Version core.Version
}

// RemoveVersion deletes versions/<Version>/ (garbage collection).
type RemoveVersion struct{ Version core.Version }

// ReadJournal asks for a JournalRead input.
type ReadJournal struct{}

// Exit ends this process. The core emits it only after an armed
// upgrade-stop, after the Reply to it.
type Exit struct {
	Code   int
	Reason string
}

// Reexec replaces this process with versions/<Version>/ (same PID, same
// unit). Emitted only at start-up, when recovery finds that the binary
// started is not the one the journal says should run.
type Reexec struct {
	Version core.Version
	Reason  string
}

// Log is a structured log line the core wants written.
type Log struct {
	Level string // "debug", "info", "warn", "error"
	Msg   string
	Attrs []any // key, value pairs
}

func (AppendJournal) isEffect()     {}
func (PutHeartbeat) isEffect()      {}
func (PutDeviceInfo) isEffect()     {}
func (PutDeviceState) isEffect()    {}
func (DeleteDeviceState) isEffect() {}
func (PutUpgradeStatus) isEffect()  {}
func (ArmTimer) isEffect()          {}
func (CancelTimer) isEffect()       {}
func (StartWorkload) isEffect()     {}
func (StopWorkload) isEffect()      {}
func (Reply) isEffect()             {}
func (FetchLogs) isEffect()         {}
func (RunExec) isEffect()           {}
func (Download) isEffect()          {}
func (SelfTest) isEffect()          {}
func (PreserveRunning) isEffect()   {}
func (SwapCurrent) isEffect()       {}
func (StartCandidate) isEffect()    {}
func (StopCandidate) isEffect()     {}
func (RemoveVersion) isEffect()     {}
func (ReadJournal) isEffect()       {}
func (Exit) isEffect()              {}
func (Reexec) isEffect()            {}
func (Log) isEffect()               {}
