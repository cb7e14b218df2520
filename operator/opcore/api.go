// Package opcore is the operator's decision core: a deterministic state
// machine that turns facts (a KV entry changed, a custom resource was created
// or deleted, a command was answered, time passed) into requests (put or
// delete a KV key, send a command, patch a status, record an event).
//
// It performs no I/O, starts no goroutines, reads no clock and draws no
// randomness; it imports only core/ and the standard library. The production
// shell (operator/runner with operator/natsadapter and the controller-runtime
// store) and the simulator (sim/, with an in-memory object store and simulated
// NATS) drive this very code.
//
// # How a shell feeds the core
//
//  1. New(cfg). The core starts Recovering: it records facts but writes
//     nothing to KV, sends no command and patches no status.
//  2. Watch every bucket the core reads — desired-state, device-info,
//     device-state, device-heartbeat, agent-upgrade, agent-upgrade-status —
//     from revision 0 (the latest value per key is enough, history is not
//     needed). Deliver each entry as KVPut or KVDelete (a purge is a
//     delete). When the initial replay of a bucket is done (the watch's
//     "caught up" marker), deliver KVReplayed{Bucket}; KVReplayed{Bucket:
//     ""} means every bucket. Entries delivered before their bucket's
//     KVReplayed are history: a replayed heartbeat does not make a device
//     online and never justifies an upgrade-stop.
//  3. Deliver every custom resource as DeploymentUpsert / DeviceUpsert /
//     AgentRolloutUpsert, and their disappearance as *Deleted. When the
//     shell's caches have synced (all existing objects delivered), deliver
//     CachesSynced.
//  4. After CachesSynced and every KVReplayed the core latches Converged:
//     it purges orphaned desired-state keys at once, places on the next
//     Tick and from then on emits effects as facts arrive.
//  5. Deliver Tick regularly (every TickInterval; a shell may also wake at
//     the WakeAt effect's time). Ticks flush the dirty set into status
//     patches, advance rollouts, time out attempts and mark devices offline.
//  6. Execute effects in the order returned. The core updates its own view
//     as if each KV write succeeded; when one fails, deliver KVWriteFailed
//     and the core retries on a later tick. The watch echo of the core's
//     own write is harmless. Deliver every command outcome as CommandResult.
//
// A PatchDeviceStatus effect that carries a new StopSentAttempt is always
// returned immediately before the SendCommand it guards: the shell must make
// the patch durable before it sends the command, so a restarted operator
// never sends a second upgrade-stop for the same attempt.
//
// The core keys deployments, devices and agent rollouts by name: one
// operator serves one namespace.
package opcore

import (
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// Config is fixed for the life of one operator core. Zero fields take the
// defaults named on each field.
type Config struct {
	// OfflineAfter is how long after the last heartbeat (as received, on the
	// operator's clock) a device counts as offline. Default 30s.
	OfflineAfter time.Duration
	// AttemptTimeout is how long an agent-upgrade attempt may go without
	// status progress before the operator counts it as failed. Default 10m.
	AttemptTimeout time.Duration
	// CutoverTimeoutSec is written into each upgrade marker: how long the old
	// agent stays armed waiting for upgrade-stop. Default
	// core.DefaultCutoverTimeoutSec.
	CutoverTimeoutSec int
	// LastSeenResolution bounds how often a heartbeat alone causes a Device
	// status patch (lastSeen moves in steps of at least this). Default 1m.
	LastSeenResolution time.Duration
	// TickInterval is the period at which the shell is expected to deliver
	// Tick; the core only uses it for the WakeAt hints. Default 1s.
	TickInterval time.Duration
	// CreateDevices makes the core ask the shell to create a Device object
	// (CreateDevice) for every device-info key that has none. Default false
	// in the zero Config; the production runner sets it.
	CreateDevices bool
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.OfflineAfter <= 0 {
		c.OfflineAfter = 30 * time.Second
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = 10 * time.Minute
	}
	if c.CutoverTimeoutSec <= 0 {
		c.CutoverTimeoutSec = core.DefaultCutoverTimeoutSec
	}
	if c.LastSeenResolution <= 0 {
		c.LastSeenResolution = time.Minute
	}
	if c.TickInterval <= 0 {
		c.TickInterval = time.Second
	}
	return c
}

// ---- Model types (the shell converts CRs to and from these) -------------

// Amount is a count or a percentage of a total, as in Kubernetes'
// IntOrString: {Value: 3} is three devices, {Value: 25, Percent: true} is
// 25 % of the devices the rollout targets.
type Amount struct {
	Value   int
	Percent bool
}

// IsZero reports whether the amount is unset.
func (a Amount) IsZero() bool { return a.Value == 0 && !a.Percent }

// Strategy is the rollout strategy shared by Deployments and AgentRollouts.
type Strategy struct {
	// Waves are the sizes of the successive waves. Devices of wave i+1 start
	// only when every device of waves 1..i is done (succeeded or failed).
	// Empty means one wave with every device. Devices left over after the
	// listed waves form one final wave.
	Waves []Amount
	// MaxUnavailable bounds how many devices may be in flight (started, not
	// done) at once. Zero means no bound beyond the waves. A percentage
	// rounds down but never below 1.
	MaxUnavailable Amount
	// FailureThreshold: when more devices than this have failed, the rollout
	// pauses (no new device starts) until the threshold is raised or the
	// spec changes. nil means never pause; {Value: 0} pauses on the first
	// failure.
	FailureThreshold *Amount
	// Paused stops new starts (devices in flight continue).
	Paused bool
}

// Workload is what a Deployment runs on each device.
type Workload struct {
	Name     string
	Version  string
	Runtime  core.Runtime
	Artifact *core.ArtifactRef
	Image    string
	Args     []string
	Env      map[string]string
}

// DeploymentSpec is a Deployment as the core sees it.
type DeploymentSpec struct {
	Name       string
	Generation int64
	Selector   core.LabelSelector
	Workload   Workload
	Rollout    Strategy
	// Deleting is set when the object has a deletion timestamp: the core
	// deletes its desired-state keys and then returns RemoveFinalizer.
	Deleting bool
}

// DeviceRecord is a Device object as the core sees it.
type DeviceRecord struct {
	Name        string
	Labels      map[string]string
	Blacklisted bool
	// StopSentAttempt is status.upgrade.stopSentAttempt as stored on the
	// object: the last attempt for which an upgrade-stop was sent.
	StopSentAttempt uint32
	// CurrentVersion is status.currentVersion as stored (zero if unset);
	// used only until a fresher fact arrives.
	CurrentVersion core.Version
	// LastSeen is status.lastSeen as stored (zero if unset).
	LastSeen time.Time
}

// AgentRolloutSpec is an AgentRollout as the core sees it.
type AgentRolloutSpec struct {
	Name       string
	Generation int64
	Version    core.Version
	Artifact   core.ArtifactRef
	Selector   core.LabelSelector
	Rollout    Strategy
}

// Condition is a status condition; the shell maps it onto metav1.Condition
// (and owns LastTransitionTime).
type Condition struct {
	Type    string
	Status  bool
	Reason  string
	Message string
}

// Condition types.
const (
	CondAvailable   = "Available"
	CondProgressing = "Progressing"
	CondPaused      = "Paused"
	CondDegraded    = "Degraded"
	CondOnline      = "Online"
	CondUpgrading   = "Upgrading"
	CondBlacklisted = "Blacklisted"
	CondComplete    = "Complete"
)

// WavePhase is where one wave stands.
type WavePhase string

const (
	WavePending    WavePhase = "Pending"    // no device of the wave started
	WaveInProgress WavePhase = "InProgress" // some started, not all done
	WaveComplete   WavePhase = "Complete"   // every device of the wave done
)

// WaveStatus is the progress of one wave. Waves are counted in start order:
// wave i holds the devices started in positions (end of wave i-1, End].
type WaveStatus struct {
	Index   int // 1-based
	Devices int // devices in this wave
	Started int
	Done    int // succeeded or failed
	Phase   WavePhase
}

// DeploymentCounts are the per-device outcomes of a Deployment's current
// generation. Total = Succeeded + Failed + Pending + Unreported + Waiting,
// always, after a flush.
type DeploymentCounts struct {
	Total      int // devices targeted (selector match, not blacklisted)
	Succeeded  int // reported Running at the current generation
	Failed     int // reported Failed at the current generation
	Pending    int // reported Pending or Applying at the current generation
	Unreported int // desired state written, no report at the current generation yet
	Waiting    int // not started yet (waves, maxUnavailable, pause)
}

// DeploymentStatus is what the core wants in a Deployment's status.
type DeploymentStatus struct {
	ObservedGeneration int64
	Counts             DeploymentCounts
	LastError          string
	Waves              []WaveStatus
	Conditions         []Condition
}

// DeviceDeploymentStatus is one deployment's phase on a device.
type DeviceDeploymentStatus struct {
	Deployment string
	// Phase is the reported core.WorkloadPhase, or "Waiting" (targeted, not
	// started) or "Unreported" (started, no report yet).
	Phase      string
	Generation int64 // generation of the last report (0 if none)
	LastError  string
}

// UpgradePhase is a device's agent-upgrade phase as the operator records it:
// the agent's core.AgentUpgradePhase, plus the operator's own phases below.
type UpgradePhase string

const (
	// UpgradeNone: no attempt has been made.
	UpgradeNone UpgradePhase = ""
	// UpgradeMarked: the marker is written; the agent has not reported on it.
	UpgradeMarked UpgradePhase = "Marked"
	// UpgradeTimedOut: no status progress within Config.AttemptTimeout.
	UpgradeTimedOut UpgradePhase = "TimedOut"
)

// DeviceUpgrade is the upgrade section of a Device's status.
type DeviceUpgrade struct {
	Phase   UpgradePhase
	Rollout string
	Target  core.Version // zero if none
	Attempt uint32
	Message string
	// StopSentAttempt is the last attempt for which upgrade-stop was sent.
	StopSentAttempt uint32
}

// DeviceStatus is what the core wants in a Device's status.
type DeviceStatus struct {
	CurrentVersion core.Version // zero if unknown
	Upgrade        DeviceUpgrade
	LastSeen       time.Time // operator clock; zero if never seen
	Online         bool
	Deployments    []DeviceDeploymentStatus // sorted by deployment
	Conditions     []Condition
}

// RolloutCounts are the per-device outcomes of an AgentRollout.
type RolloutCounts struct {
	Total      int
	Succeeded  int // running the target version
	Failed     int // attempt Failed, RolledBack or TimedOut
	InProgress int // marker written, attempt not over
	Waiting    int // not started yet
}

// AgentRolloutStatus is what the core wants in an AgentRollout's status.
type AgentRolloutStatus struct {
	ObservedGeneration int64
	Counts             RolloutCounts
	// ByPhase counts devices by their upgrade phase for this rollout:
	// "Waiting", "Marked", the agent phases, "TimedOut", "Succeeded".
	ByPhase    map[string]int
	Waves      []WaveStatus
	LastError  string
	Conditions []Condition
}

// Phase is the operator's liveness latch.
type Phase string

const (
	Recovering Phase = "Recovering"
	Converged  Phase = "Converged"
)

// ---- Inputs ---------------------------------------------------------------

// Input is a fact delivered to Step.
type Input interface{ isInput() }

// KVPut: a key was put (watch event or replay).
type KVPut struct {
	Bucket   string
	Key      string
	Value    []byte
	Revision uint64
}

// KVDelete: a key was deleted or purged.
type KVDelete struct {
	Bucket   string
	Key      string
	Revision uint64
}

// KVReplayed: the initial replay of Bucket ("" = every bucket) is complete.
type KVReplayed struct{ Bucket string }

// KVWriteFailed: a PutKV or DeleteKV effect could not be carried out.
type KVWriteFailed struct {
	Bucket string
	Key    string
	Delete bool
	Err    string
}

// CachesSynced: every existing custom resource has been delivered.
type CachesSynced struct{}

// DeploymentUpsert: a Deployment was created or changed.
type DeploymentUpsert struct{ Spec DeploymentSpec }

// DeploymentDeleted: a Deployment is gone.
type DeploymentDeleted struct{ Name string }

// DeviceUpsert: a Device was created or changed.
type DeviceUpsert struct{ Device DeviceRecord }

// DeviceDeleted: a Device is gone.
type DeviceDeleted struct{ Name string }

// AgentRolloutUpsert: an AgentRollout was created or changed.
type AgentRolloutUpsert struct{ Spec AgentRolloutSpec }

// AgentRolloutDeleted: an AgentRollout is gone.
type AgentRolloutDeleted struct{ Name string }

// Tick: time passed; flush the dirty set, advance rollouts, expire.
type Tick struct{}

// CommandResult is the outcome of a SendCommand effect. Code is "" when the
// agent replied without error; otherwise core.ErrCodeOffline (no
// responders), core.ErrCodeTimeout, core.ErrCodeBadReply, or the code of the
// agent's error reply (core.ErrCodeRejected, ...).
type CommandResult struct {
	Device  string
	Verb    core.Verb
	ID      string
	Attempt uint32
	Code    core.ErrorCode
	Message string
	// NotSent: the shell never sent the request (for an upgrade-stop: the
	// patch recording its StopSentAttempt could not be written). Nothing
	// reached the device, so the core may send it again.
	NotSent bool
}

func (KVPut) isInput()               {}
func (KVDelete) isInput()            {}
func (KVReplayed) isInput()          {}
func (KVWriteFailed) isInput()       {}
func (CachesSynced) isInput()        {}
func (DeploymentUpsert) isInput()    {}
func (DeploymentDeleted) isInput()   {}
func (DeviceUpsert) isInput()        {}
func (DeviceDeleted) isInput()       {}
func (AgentRolloutUpsert) isInput()  {}
func (AgentRolloutDeleted) isInput() {}
func (Tick) isInput()                {}
func (CommandResult) isInput()       {}

// ---- Effects --------------------------------------------------------------

// Effect is a request returned by Step, to be carried out in order.
type Effect interface{ isEffect() }

// PutKV writes Value (bytes from a core Encode, byte-deterministic) at Key.
type PutKV struct {
	Bucket string
	Key    string
	Value  []byte
}

// DeleteKV deletes Key.
type DeleteKV struct {
	Bucket string
	Key    string
}

// SendCommand sends Request to device-commands.<Device>.<Request.Verb> and
// delivers the outcome as CommandResult (with Request.ID and Attempt).
type SendCommand struct {
	Device  string
	Attempt uint32
	Request core.CommandRequest
}

// PatchDeploymentStatus replaces the Deployment's status.
type PatchDeploymentStatus struct {
	Name   string
	Status DeploymentStatus
}

// PatchDeviceStatus replaces the Device's status. Its slices may be shared
// with earlier patches of the same device and with the core's own record of
// them: read them, do not modify them.
type PatchDeviceStatus struct {
	Name   string
	Status DeviceStatus
}

// PatchAgentRolloutStatus replaces the AgentRollout's status.
type PatchAgentRolloutStatus struct {
	Name   string
	Status AgentRolloutStatus
}

// CreateDevice asks the shell to create a Device object with these labels
// (from device-info) if none exists. The shell then delivers DeviceUpsert.
type CreateDevice struct {
	Name   string
	Labels map[string]string
}

// PatchDeviceLabels asks the shell to set these labels on the Device object
// (device-info labels are authoritative for the keys they carry; other
// labels on the object are left alone).
type PatchDeviceLabels struct {
	Name   string
	Labels map[string]string
}

// Kinds named by RemoveFinalizer and Notice.
const (
	KindDeployment   = "Deployment"
	KindDevice       = "Device"
	KindAgentRollout = "AgentRollout"
)

// RemoveFinalizer: the Deployment's desired-state keys are gone; its
// finalizer may be removed.
type RemoveFinalizer struct {
	Kind string
	Name string
}

// Notice is a notable transition, recorded as a Kubernetes Event.
type Notice struct {
	Kind    string
	Name    string
	Warning bool
	Reason  string
	Message string
}

// WakeAt hints that the core's earliest deadline is at At; a shell that
// ticks periodically may ignore it. It is emitted once per change of the
// earliest deadline (a Tick that expires it is what brings the next one).
type WakeAt struct{ At time.Time }

func (PutKV) isEffect()                   {}
func (DeleteKV) isEffect()                {}
func (SendCommand) isEffect()             {}
func (PatchDeploymentStatus) isEffect()   {}
func (PatchDeviceStatus) isEffect()       {}
func (PatchAgentRolloutStatus) isEffect() {}
func (CreateDevice) isEffect()            {}
func (PatchDeviceLabels) isEffect()       {}
func (RemoveFinalizer) isEffect()         {}
func (Notice) isEffect()                  {}
func (WakeAt) isEffect()                  {}

// Stats are counters for metrics.
type Stats struct {
	Devices        int
	DevicesOnline  int
	Deployments    int
	Rollouts       int
	RolloutsActive int // agent rollouts with devices waiting or in progress
	KVPuts         uint64
	KVDeletes      uint64
	KVWriteErrors  uint64
	CommandsSent   uint64
	CommandErrors  uint64
	BadValues      uint64 // KV values that did not decode
}

// Read-only accessors (implemented in operator.go):
//
//	func New(cfg Config) *Operator
//	func (o *Operator) Step(now time.Time, in Input) []Effect
//	func (o *Operator) Phase() Phase
//	func (o *Operator) DeploymentStatus(name string) (DeploymentStatus, bool)
//	func (o *Operator) DeviceStatus(name string) (DeviceStatus, bool)
//	func (o *Operator) AgentRolloutStatus(name string) (AgentRolloutStatus, bool)
//	func (o *Operator) DeviceUpgrade(name string) (DeviceUpgrade, bool)
//	func (o *Operator) Online(device string) bool
//	func (o *Operator) DesiredValue(key string) ([]byte, bool)
//	func (o *Operator) DesiredKeys() int
//	func (o *Operator) Stats() Stats
//	func PlanWaves(s Strategy, total, started, done, failed int) WavePlan
