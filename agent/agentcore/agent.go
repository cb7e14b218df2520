package agentcore

import (
	"math"
	"slices"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// Role is what this agent process is, as far as the protocol is concerned.
type Role uint8

const (
	// RoleStarting: no Start input yet.
	RoleStarting Role = iota
	// RoleActive: the device's agent. It owns workloads, answers commands
	// and writes agent-upgrade-status.
	RoleActive
	// RoleCandidate: the new version of an attempt, started beside the old
	// agent. It heartbeats with the attempt and polls the journal.
	RoleCandidate
	// RoleRetired: a candidate whose attempt was reverted (or that was
	// started for an attempt the journal does not know). It does nothing
	// until the old agent stops it.
	RoleRetired
	// RoleExited: the core emitted Exit (only after an armed upgrade-stop).
	RoleExited
	// RoleReplaced: the core emitted Reexec at start-up; the process is
	// being replaced by the version the journal says should run.
	RoleReplaced
)

var roleNames = [...]string{"starting", "active", "candidate", "retired", "exited", "replaced"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "unknown"
}

// Defaults for zero Config fields.
const (
	DefaultHeartbeatInterval     = 10 * time.Second
	DefaultInfoInterval          = 5 * time.Minute
	DefaultCandidatePollInterval = time.Second
	DefaultKeepVersions          = 2
)

// Agent is one agent process's decision core. It is not safe for concurrent
// use: the shell calls Step from one goroutine.
type Agent struct {
	cfg    Config
	bootID string

	role    Role
	ready   bool // active and done with start-up recovery
	startAt time.Time
	hbSeq   uint32
	// lastEventAt is the last Unix-ms stamp put on a device-state or
	// upgrade-status value; stamps are forced strictly increasing.
	lastEventAt int64

	// candidateOf is the attempt this process was started as a candidate
	// of (0 for a normal start).
	candidateOf uint32

	// Disk, as far as this process knows.
	js        JournalState
	current   core.Version
	installed []core.Version

	rec        recovery
	preserving bool // PreserveRunning in flight
	up         upgrade
	// seen is the newest marker attempt acted upon; markers at or below it
	// are ignored.
	seen uint32
	// held is a marker that arrived while it could not be acted upon
	// (cutover in progress, start-up, preserving, candidate).
	held *core.UpgradeMarker

	desired     map[string]*workload
	deps        []string // keys of desired, sorted
	pendingStop []string // deletions received before ready or as a candidate, sorted

	out []Effect

	// Effects boxed once: ArmTimer values never change for a process.
	armHeartbeat, armInfo, armPoll Effect
}

// New returns an agent core for cfg, waiting for its Start input.
func New(cfg Config) *Agent {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.InfoInterval <= 0 {
		cfg.InfoInterval = DefaultInfoInterval
	}
	if cfg.CandidatePollInterval <= 0 {
		cfg.CandidatePollInterval = DefaultCandidatePollInterval
	}
	if cfg.KeepVersions == 0 {
		cfg.KeepVersions = DefaultKeepVersions
	}
	if cfg.KeepVersions < 0 {
		cfg.KeepVersions = 0
	}
	var labels map[string]string
	if len(cfg.Labels) > 0 {
		labels = make(map[string]string, len(cfg.Labels))
		for k, v := range cfg.Labels {
			labels[k] = v
		}
	}
	cfg.Labels = labels
	cfg.Runtimes = slices.Clone(cfg.Runtimes)
	a := &Agent{cfg: cfg}
	a.armHeartbeat = ArmTimer{Timer: TimerHeartbeat, After: cfg.HeartbeatInterval}
	a.armInfo = ArmTimer{Timer: TimerInfo, After: cfg.InfoInterval}
	a.armPoll = ArmTimer{Timer: TimerCandidatePoll, After: cfg.CandidatePollInterval}
	return a
}

// Step delivers one input and returns the effects to carry out, in order.
//
// The returned slice is owned by the Agent and reused: it is valid only
// until the next call to Step. A caller that keeps effects longer must copy
// the slice (the Effect values themselves are immutable and may be kept).
func (a *Agent) Step(now time.Time, in Input) []Effect {
	prev := len(a.out)
	a.out = a.out[:0]
	a.dispatch(now, in)
	if n := len(a.out); n < prev {
		// Drop references to the previous Step's effects that were not
		// overwritten, so they can be collected.
		clear(a.out[n:prev])
	}
	return a.out
}

func (a *Agent) dispatch(now time.Time, in Input) {
	switch a.role {
	case RoleExited, RoleReplaced:
		return
	case RoleStarting:
		if s, ok := in.(Start); ok {
			a.onStart(now, s)
		} else {
			a.log("warn", "input before Start ignored", "input", inputName(in))
		}
		return
	}
	switch in := in.(type) {
	case TimerFired:
		a.onTimer(now, in.Timer)
	case DesiredPut:
		a.onDesiredPut(now, in)
	case DesiredInvalid:
		a.onDesiredInvalid(now, in)
	case DesiredDeleted:
		a.onDesiredDeleted(in)
	case WorkloadStatus:
		a.onWorkloadStatus(now, in)
	case CommandReceived:
		a.onCommand(now, in)
	case MarkerPut:
		a.onMarker(now, in.Marker)
	case MarkerInvalid:
		a.log("warn", "agent-upgrade marker does not decode; ignored", "err", in.Err)
	case MarkerDeleted:
		a.onMarkerDeleted(now)
	case DownloadDone:
		a.onDownloadDone(now, in)
	case SelfTestDone:
		a.onSelfTestDone(now, in)
	case SwapDone:
		a.onSwapDone(now, in)
	case CandidateStarted:
		a.onCandidateStarted(now, in)
	case CandidateExited:
		a.onCandidateExited(now, in)
	case PreserveDone:
		a.onPreserveDone(now, in)
	case JournalRead:
		a.onJournalRead(now, in)
	case Start:
		a.log("warn", "second Start ignored")
	default:
		a.log("warn", "unknown input ignored", "input", inputName(in))
	}
}

// ---- read-only accessors ---------------------------------------------------

// Role reports what this process is.
func (a *Agent) Role() Role { return a.role }

// Ready reports whether the agent is active and done with start-up recovery.
func (a *Agent) Ready() bool { return a.ready }

// Version is the version of the running binary.
func (a *Agent) Version() core.Version { return a.cfg.Version }

// Device is the device name.
func (a *Agent) Device() string { return a.cfg.Device }

// UpgradePhase is the phase of the current (or last) attempt as this
// process sees it; Idle when there is none.
func (a *Agent) UpgradePhase() core.AgentUpgradePhase {
	if a.up.phase == "" {
		return core.UpgradeIdle
	}
	return a.up.phase
}

// Attempt is the attempt the upgrade phase refers to (0: none).
func (a *Agent) Attempt() uint32 { return a.up.attempt }

// CandidateAttempt is the attempt this process was started as the
// candidate of (0 for a normal start).
func (a *Agent) CandidateAttempt() uint32 { return a.candidateOf }

// Armed reports whether this agent would accept an upgrade-stop, and for
// which attempt (the stop must also name Target()).
func (a *Agent) Armed() (attempt uint32, ok bool) {
	if a.role == RoleActive && a.up.phase == core.UpgradeWaitingForStop {
		return a.up.attempt, true
	}
	return 0, false
}

// Target is the target version of the current (or last) attempt.
func (a *Agent) Target() core.Version { return a.up.to }

// Journal is the journal state as this process knows it (its Start journal
// plus what it appended, or the last JournalRead for a candidate). The
// returned Verified slice must not be modified.
func (a *Agent) Journal() JournalState { return a.js }

// Current is where this process believes the current link points.
func (a *Agent) Current() core.Version { return a.current }

// Installed lists the versions this process believes are under versions/.
func (a *Agent) Installed() []core.Version { return slices.Clone(a.installed) }

// LastEventAt is the last Unix-ms stamp written on a device-state or
// upgrade-status value.
func (a *Agent) LastEventAt() int64 { return a.lastEventAt }

// WorkloadPhase is the phase last reported for a deployment ("" if none).
func (a *Agent) WorkloadPhase(deployment string) core.WorkloadPhase {
	if w := a.desired[deployment]; w != nil {
		return w.phase
	}
	return ""
}

// ---- helpers ---------------------------------------------------------------

func (a *Agent) emit(e Effect) { a.out = append(a.out, e) }

func (a *Agent) log(level, msg string, attrs ...any) {
	a.emit(Log{Level: level, Msg: msg, Attrs: attrs})
}

// appendRec journals r and folds it into the agent's journal state.
func (a *Agent) appendRec(r Record) {
	r.Detail = core.Truncate(r.Detail, core.MaxErrorLen)
	a.emit(AppendJournal{Record: r})
	a.js.Apply(r)
}

// eventAt returns a Unix-ms stamp for now, strictly greater than every
// stamp this agent handed out before, even when the clock stepped back.
func (a *Agent) eventAt(now time.Time) int64 {
	t := now.UnixMilli()
	if t <= a.lastEventAt {
		t = a.lastEventAt + 1
	}
	a.lastEventAt = t
	return t
}

func (a *Agent) uptime(now time.Time) uint32 {
	d := now.Sub(a.startAt)
	if d <= 0 {
		return 0
	}
	s := d / time.Second
	if s > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(s)
}

func (a *Agent) heartbeat(now time.Time) {
	a.hbSeq++
	if a.hbSeq == 0 { // wrapped; sequence numbers start at 1
		a.hbSeq = 1
	}
	a.emit(PutHeartbeat{Heartbeat: core.Heartbeat{
		Schema:       core.SchemaVersion,
		AgentVersion: a.cfg.Version,
		Seq:          a.hbSeq,
		UptimeSec:    a.uptime(now),
		Attempt:      a.candidateOf,
	}})
	a.emit(a.armHeartbeat)
}

func (a *Agent) putInfo() {
	a.emit(PutDeviceInfo{Info: core.DeviceInfo{
		Schema:       core.SchemaVersion,
		Device:       a.cfg.Device,
		Labels:       a.cfg.Labels,
		AgentVersion: a.cfg.Version,
		BootID:       a.bootID,
		Inventory:    a.cfg.Inventory,
		Runtimes:     a.cfg.Runtimes,
		ExecAllowed:  a.cfg.ExecAllowed,
	}})
	a.emit(a.armInfo)
}

func (a *Agent) onTimer(now time.Time, t TimerID) {
	switch t {
	case TimerHeartbeat:
		if a.ready || a.role == RoleCandidate {
			a.heartbeat(now)
		}
	case TimerInfo:
		if a.ready {
			a.putInfo()
		}
	case TimerCutover:
		a.onCutoverTimeout(now)
	case TimerCandidatePoll:
		if a.role == RoleCandidate {
			a.emit(ReadJournal{})
		}
	default:
		a.log("warn", "unknown timer fired", "timer", string(t))
	}
}

func (a *Agent) isInstalled(v core.Version) bool { return indexVersion(a.installed, v) >= 0 }

func (a *Agent) addInstalled(v core.Version) {
	if v.IsZero() || a.isInstalled(v) {
		return
	}
	a.installed = append(a.installed, v)
	slices.SortFunc(a.installed, compareVersions)
}

func (a *Agent) removeInstalled(v core.Version) {
	if i := indexVersion(a.installed, v); i >= 0 {
		a.installed = slices.Delete(a.installed, i, i+1)
	}
}

func compareVersions(x, y core.Version) int {
	if c := x.Compare(y); c != 0 {
		return c
	}
	switch {
	case x.Build < y.Build:
		return -1
	case x.Build > y.Build:
		return 1
	}
	return 0
}

func inputName(in Input) string {
	switch in.(type) {
	case nil:
		return "nil"
	case Start:
		return "Start"
	case TimerFired:
		return "TimerFired"
	case DesiredPut:
		return "DesiredPut"
	case DesiredInvalid:
		return "DesiredInvalid"
	case DesiredDeleted:
		return "DesiredDeleted"
	case MarkerPut:
		return "MarkerPut"
	case MarkerInvalid:
		return "MarkerInvalid"
	case MarkerDeleted:
		return "MarkerDeleted"
	case WorkloadStatus:
		return "WorkloadStatus"
	case CommandReceived:
		return "CommandReceived"
	case DownloadDone:
		return "DownloadDone"
	case SelfTestDone:
		return "SelfTestDone"
	case SwapDone:
		return "SwapDone"
	case CandidateStarted:
		return "CandidateStarted"
	case CandidateExited:
		return "CandidateExited"
	case PreserveDone:
		return "PreserveDone"
	case JournalRead:
		return "JournalRead"
	}
	return "unknown"
}
