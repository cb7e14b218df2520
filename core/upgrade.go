package core

import (
	"fmt"
	"slices"
)

// DefaultCutoverTimeoutSec is how long the old agent waits, armed, for the
// operator's upgrade-stop before it reverts, when the marker does not say.
const DefaultCutoverTimeoutSec = 120

// UpgradeMarker is the value of an agent-upgrade key: the operator asks one
// device's agent to upgrade itself. A new Attempt number (strictly greater
// than any earlier one for the device) starts a new attempt; rewriting the
// same attempt is a no-op for the agent.
type UpgradeMarker struct {
	Schema        int         `json:"schema"`
	Attempt       uint32      `json:"attempt"`
	Rollout       string      `json:"rollout,omitempty"` // AgentRollout name, for humans
	TargetVersion Version     `json:"target_version"`
	Artifact      ArtifactRef `json:"artifact"`
	// CutoverTimeoutSec is how long the old agent stays armed, waiting for
	// the operator's upgrade-stop, before it reverts.
	CutoverTimeoutSec int `json:"cutover_timeout_s"`
}

// Validate checks every field.
func (m UpgradeMarker) Validate() error {
	if m.Attempt == 0 {
		return fieldErr("attempt", "must be at least 1")
	}
	if m.Rollout != "" {
		if err := ValidateName("rollout", m.Rollout); err != nil {
			return fieldErr("rollout", "%v", err)
		}
	}
	if m.TargetVersion.IsZero() {
		return fieldErr("target_version", "required")
	}
	if err := m.Artifact.validate("artifact"); err != nil {
		return err
	}
	if m.CutoverTimeoutSec <= 0 || m.CutoverTimeoutSec > 24*3600 {
		return fieldErr("cutover_timeout_s", "must be between 1 and 86400, got %d", m.CutoverTimeoutSec)
	}
	return nil
}

// Encode validates and marshals the marker. The output is exactly what
// encoding/json produces for the struct; it is built by hand (fastcodec.go)
// when no string needs escaping.
func (m UpgradeMarker) Encode() ([]byte, error) {
	m.Schema = SchemaVersion
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode upgrade marker: %w", err)
	}
	if b, ok := appendUpgradeMarker(&m); ok {
		return b, nil
	}
	return marshal("upgrade marker", m)
}

// DecodeUpgradeMarker parses an agent-upgrade value. The canonical form
// that Encode writes takes a fast path; anything else goes through the
// general strict decoder.
func DecodeUpgradeMarker(data []byte) (UpgradeMarker, error) {
	if m, ok := decodeUpgradeMarkerFast(data); ok {
		return m, nil
	}
	var m UpgradeMarker
	err := decode("upgrade marker", "schema", data, &m)
	return m, err
}

// AgentUpgradePhase is where a device's self-upgrade stands.
//
//	Idle → Staging → Verifying → CutoverReady → WaitingForStop → Committed
//	any failure before cutover            → Failed (old version keeps running)
//	no upgrade-stop within the timeout    → Reverting → RolledBack
type AgentUpgradePhase string

const (
	UpgradeIdle           AgentUpgradePhase = "Idle"
	UpgradeStaging        AgentUpgradePhase = "Staging"
	UpgradeVerifying      AgentUpgradePhase = "Verifying"
	UpgradeCutoverReady   AgentUpgradePhase = "CutoverReady"
	UpgradeWaitingForStop AgentUpgradePhase = "WaitingForStop"
	UpgradeCommitted      AgentUpgradePhase = "Committed"
	UpgradeFailed         AgentUpgradePhase = "Failed"
	UpgradeReverting      AgentUpgradePhase = "Reverting"
	UpgradeRolledBack     AgentUpgradePhase = "RolledBack"
)

// UpgradePhases lists the phases in protocol order.
var UpgradePhases = []AgentUpgradePhase{
	UpgradeIdle, UpgradeStaging, UpgradeVerifying, UpgradeCutoverReady,
	UpgradeWaitingForStop, UpgradeCommitted, UpgradeFailed, UpgradeReverting, UpgradeRolledBack,
}

// Valid reports whether p is a known phase.
func (p AgentUpgradePhase) Valid() bool { return slices.Contains(UpgradePhases, p) }

// Terminal reports whether the attempt is over (Idle counts: nothing runs).
func (p AgentUpgradePhase) Terminal() bool {
	return p == UpgradeIdle || p == UpgradeCommitted || p == UpgradeFailed || p == UpgradeRolledBack
}

// InFlight reports whether an attempt is under way on the device.
func (p AgentUpgradePhase) InFlight() bool { return p.Valid() && !p.Terminal() }

// UpgradeReason is a machine-readable cause of a failure or rollback.
type UpgradeReason string

const (
	ReasonNone             UpgradeReason = ""
	ReasonDownloadFailed   UpgradeReason = "DownloadFailed"
	ReasonChecksumMismatch UpgradeReason = "ChecksumMismatch"
	ReasonSignatureInvalid UpgradeReason = "SignatureInvalid"
	ReasonDiskFull         UpgradeReason = "DiskFull"
	ReasonSelfTestFailed   UpgradeReason = "SelfTestFailed"
	ReasonSwapFailed       UpgradeReason = "SwapFailed"
	ReasonStartFailed      UpgradeReason = "CandidateStartFailed"
	ReasonCutoverTimeout   UpgradeReason = "CutoverTimeout"
	ReasonInterrupted      UpgradeReason = "Interrupted"
	ReasonSuperseded       UpgradeReason = "Superseded"
	ReasonAlreadyRunning   UpgradeReason = "AlreadyRunning"
)

var upgradeReasons = []UpgradeReason{
	ReasonNone, ReasonDownloadFailed, ReasonChecksumMismatch, ReasonSignatureInvalid, ReasonDiskFull,
	ReasonSelfTestFailed, ReasonSwapFailed, ReasonStartFailed, ReasonCutoverTimeout, ReasonInterrupted,
	ReasonSuperseded, ReasonAlreadyRunning,
}

// Valid reports whether r is a known reason.
func (r UpgradeReason) Valid() bool { return slices.Contains(upgradeReasons, r) }

// UpgradeStatus is the value of an agent-upgrade-status key, written by the
// device's active agent (the old one until commit, then the new one).
type UpgradeStatus struct {
	Schema        int               `json:"schema"`
	Attempt       uint32            `json:"attempt"`
	Phase         AgentUpgradePhase `json:"phase"`
	FromVersion   Version           `json:"from_version"`
	TargetVersion *Version          `json:"target_version,omitempty"`
	// RunningVersion is the version of the agent that wrote this status.
	RunningVersion Version       `json:"running_version"`
	Reason         UpgradeReason `json:"reason,omitempty"`
	Detail         string        `json:"detail,omitempty"`
	// At is Unix milliseconds on the device's clock, strictly increasing
	// per device (see DeviceState.LastEventAt).
	At int64 `json:"at"`
}

// Validate checks every field.
func (s UpgradeStatus) Validate() error {
	if !s.Phase.Valid() {
		return fieldErr("phase", "unknown phase %q (want one of %v)", s.Phase, UpgradePhases)
	}
	if s.Phase != UpgradeIdle && s.Attempt == 0 {
		return fieldErr("attempt", "required unless phase is Idle")
	}
	if s.FromVersion.IsZero() {
		return fieldErr("from_version", "required")
	}
	if s.Phase != UpgradeIdle && s.TargetVersion == nil {
		return fieldErr("target_version", "required unless phase is Idle")
	}
	if s.RunningVersion.IsZero() {
		return fieldErr("running_version", "required")
	}
	if !s.Reason.Valid() {
		return fieldErr("reason", "unknown reason %q", s.Reason)
	}
	if (s.Phase == UpgradeFailed || s.Phase == UpgradeRolledBack) && s.Reason == ReasonNone {
		return fieldErr("reason", "required when phase is %s", s.Phase)
	}
	if len(s.Detail) > MaxErrorLen {
		return fieldErr("detail", "longer than %d bytes", MaxErrorLen)
	}
	return nil
}

// Encode validates and marshals the status. The output is exactly what
// encoding/json produces for the struct; it is built by hand (fastcodec.go)
// when no string needs escaping.
func (s UpgradeStatus) Encode() ([]byte, error) {
	s.Schema = SchemaVersion
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("encode upgrade status: %w", err)
	}
	if b, ok := appendUpgradeStatus(&s); ok {
		return b, nil
	}
	return marshal("upgrade status", s)
}

// DecodeUpgradeStatus parses an agent-upgrade-status value. The canonical
// form that Encode writes takes a fast path; anything else goes through the
// general strict decoder.
func DecodeUpgradeStatus(data []byte) (UpgradeStatus, error) {
	if s, ok := decodeUpgradeStatusFast(data); ok {
		return s, nil
	}
	var s UpgradeStatus
	err := decode("upgrade status", "schema", data, &s)
	return s, err
}

// String renders a one-line summary for logs.
func (s UpgradeStatus) String() string {
	t := "-"
	if s.TargetVersion != nil {
		t = s.TargetVersion.String()
	}
	out := fmt.Sprintf("attempt=%d %s %s→%s", s.Attempt, s.Phase, s.FromVersion, t)
	if s.Reason != "" {
		out += " (" + string(s.Reason) + ")"
	}
	return out
}
