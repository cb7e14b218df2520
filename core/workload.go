package core

import (
	"fmt"
	"slices"
)

// MaxWorkloadVersionLen bounds a workload version ("1.25", "2026.11.3-arm64").
const MaxWorkloadVersionLen = 64

// Runtime names a workload runtime on the device.
type Runtime string

const (
	RuntimeDefault Runtime = "" // the agent's configured default
	RuntimeProcess Runtime = "process"
	RuntimePodman  Runtime = "podman"
)

// Valid reports whether r is a known runtime.
func (r Runtime) Valid() bool {
	return r == RuntimeDefault || r == RuntimeProcess || r == RuntimePodman
}

// WorkloadSpec is the value of a desired-state key: what one deployment wants
// running on one device. The operator writes it; the agent applies it.
type WorkloadSpec struct {
	Schema     int    `json:"schema"`
	Deployment string `json:"deployment"`
	// Generation is the Deployment's metadata.generation that produced this
	// spec; the agent echoes it in device-state so the operator can tell a
	// stale report from a current one.
	Generation int64             `json:"generation"`
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	Runtime    Runtime           `json:"runtime,omitempty"`
	Artifact   *ArtifactRef      `json:"artifact,omitempty"`
	Image      string            `json:"image,omitempty"` // podman image reference
	Args       []string          `json:"args,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
}

// Validate checks every field, naming the first bad one.
func (w WorkloadSpec) Validate() error {
	if err := ValidateDeploymentName(w.Deployment); err != nil {
		return fieldErr("deployment", "%v", err)
	}
	if w.Generation < 0 {
		return fieldErr("generation", "must not be negative")
	}
	if err := ValidateName("workload", w.Name); err != nil {
		return fieldErr("name", "%v", err)
	}
	if w.Version == "" || len(w.Version) > MaxWorkloadVersionLen {
		return fieldErr("version", "must be 1-%d bytes", MaxWorkloadVersionLen)
	}
	if err := ValidateName("workload version", dotless(w.Version)); err != nil {
		return fieldErr("version", "%v", err)
	}
	if !w.Runtime.Valid() {
		return fieldErr("runtime", "unknown runtime %q (want process or podman)", w.Runtime)
	}
	if w.Artifact != nil {
		if err := w.Artifact.validate("artifact"); err != nil {
			return err
		}
	}
	if w.Runtime == RuntimePodman && w.Image == "" {
		return fieldErr("image", "required for the podman runtime")
	}
	for _, k := range SortedKeys(w.Env) {
		if k == "" || slices.ContainsFunc([]byte(k), func(c byte) bool { return c == '=' || c == 0 }) {
			return fieldErr("env", "bad variable name %q", k)
		}
	}
	return nil
}

// Equal reports whether two specs ask for the same thing.
func (w WorkloadSpec) Equal(o WorkloadSpec) bool {
	a, _ := w.Encode()
	b, _ := o.Encode()
	return string(a) == string(b)
}

// Encode validates and marshals the spec, byte-deterministically.
func (w WorkloadSpec) Encode() ([]byte, error) {
	w.Schema = SchemaVersion
	return encode("workload spec", w)
}

// DecodeWorkloadSpec parses a desired-state value.
func DecodeWorkloadSpec(data []byte) (WorkloadSpec, error) {
	var w WorkloadSpec
	err := decode("workload spec", "schema", data, &w)
	return w, err
}

func dotless(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '.' {
			b[i] = '_'
		}
	}
	return string(b)
}

// WorkloadPhase is the phase of one deployment on one device.
type WorkloadPhase string

const (
	PhasePending  WorkloadPhase = "Pending"
	PhaseApplying WorkloadPhase = "Applying"
	PhaseRunning  WorkloadPhase = "Running"
	PhaseFailed   WorkloadPhase = "Failed"
)

// WorkloadPhases lists the phases in a fixed order.
var WorkloadPhases = []WorkloadPhase{PhasePending, PhaseApplying, PhaseRunning, PhaseFailed}

// Valid reports whether p is a known phase.
func (p WorkloadPhase) Valid() bool { return slices.Contains(WorkloadPhases, p) }

// DeviceState is the value of a device-state key: what the agent reports for
// one deployment.
type DeviceState struct {
	Schema     int           `json:"schema"`
	Device     string        `json:"device"`
	Deployment string        `json:"deployment"`
	Generation int64         `json:"generation"`
	Version    string        `json:"version,omitempty"` // workload version the phase refers to
	Phase      WorkloadPhase `json:"phase"`
	// LastEventAt is Unix milliseconds on the device's clock, forced to be
	// strictly increasing per device by the agent even when its clock steps
	// back, so the latest report always sorts last.
	LastEventAt int64  `json:"last_event_at"`
	LastError   string `json:"last_error,omitempty"`
}

// MaxErrorLen bounds error strings carried in messages.
const MaxErrorLen = 1024

// Validate checks every field.
func (s DeviceState) Validate() error {
	if err := ValidateDeviceName(s.Device); err != nil {
		return fieldErr("device", "%v", err)
	}
	if err := ValidateDeploymentName(s.Deployment); err != nil {
		return fieldErr("deployment", "%v", err)
	}
	if s.Generation < 0 {
		return fieldErr("generation", "must not be negative")
	}
	if !s.Phase.Valid() {
		return fieldErr("phase", "unknown phase %q (want one of %v)", s.Phase, WorkloadPhases)
	}
	if s.LastEventAt < 0 {
		return fieldErr("last_event_at", "must not be negative")
	}
	if len(s.LastError) > MaxErrorLen {
		return fieldErr("last_error", "longer than %d bytes", MaxErrorLen)
	}
	if s.Phase == PhaseFailed && s.LastError == "" {
		return fieldErr("last_error", "required when phase is Failed")
	}
	return nil
}

// Encode validates and marshals the state. The output is exactly what
// encoding/json produces for the struct; it is built by hand (fastcodec.go)
// when no string needs escaping.
func (s DeviceState) Encode() ([]byte, error) {
	s.Schema = SchemaVersion
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("encode device state: %w", err)
	}
	if b, ok := appendDeviceState(&s); ok {
		return b, nil
	}
	return marshal("device state", s)
}

// DecodeDeviceState parses a device-state value. The canonical form that
// Encode writes takes a fast path; anything else goes through the general
// strict decoder.
func DecodeDeviceState(data []byte) (DeviceState, error) {
	if s, ok := decodeDeviceStateFast(data); ok {
		return s, nil
	}
	var s DeviceState
	err := decode("device state", "schema", data, &s)
	return s, err
}

// Truncate shortens s to at most n bytes, for error strings put in messages.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 3 {
		return s[:n]
	}
	return s[:n-3] + "..."
}

// String renders a one-line summary for logs.
func (s DeviceState) String() string {
	return fmt.Sprintf("%s/%s gen=%d %s", s.Device, s.Deployment, s.Generation, s.Phase)
}
