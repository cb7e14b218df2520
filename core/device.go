package core

import "fmt"

// Inventory describes the device's hardware and OS, as the agent sees it.
type Inventory struct {
	Hostname    string `json:"hostname,omitempty"`
	OS          string `json:"os,omitempty"`
	Arch        string `json:"arch,omitempty"`
	Kernel      string `json:"kernel,omitempty"`
	CPUs        int    `json:"cpus,omitempty"`
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
}

// DeviceInfo is the value of a device-info key, written by the agent at
// start-up and whenever it changes.
type DeviceInfo struct {
	Schema       int               `json:"schema"`
	Device       string            `json:"device"`
	Labels       map[string]string `json:"labels,omitempty"`
	AgentVersion Version           `json:"agent_version"`
	BootID       string            `json:"boot_id,omitempty"`
	Inventory    Inventory         `json:"inventory"`
	Runtimes     []Runtime         `json:"runtimes,omitempty"`
	// ExecAllowed tells the operator whether the exec command is enabled.
	ExecAllowed bool `json:"exec_allowed,omitempty"`
}

// Validate checks every field.
func (d DeviceInfo) Validate() error {
	if err := ValidateDeviceName(d.Device); err != nil {
		return fieldErr("device", "%v", err)
	}
	if err := ValidateLabels(d.Labels); err != nil {
		return fieldErr("labels", "%v", err)
	}
	if d.AgentVersion.IsZero() {
		return fieldErr("agent_version", "required")
	}
	if len(d.BootID) > 64 {
		return fieldErr("boot_id", "longer than 64 bytes")
	}
	if d.Inventory.CPUs < 0 {
		return fieldErr("inventory.cpus", "must not be negative")
	}
	for i, r := range d.Runtimes {
		if r == RuntimeDefault || !r.Valid() {
			return fieldErr("runtimes", "entry %d: unknown runtime %q", i, r)
		}
	}
	return nil
}

// Encode validates and marshals the info. The output is exactly what
// encoding/json produces for the struct; it is built by hand (fastcodec.go)
// when no string needs escaping.
func (d DeviceInfo) Encode() ([]byte, error) {
	d.Schema = SchemaVersion
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("encode device info: %w", err)
	}
	if b, ok := appendDeviceInfo(&d); ok {
		return b, nil
	}
	return marshal("device info", d)
}

// DecodeDeviceInfo parses a device-info value. The canonical form that
// Encode writes takes a fast path; anything else goes through the general
// strict decoder.
func DecodeDeviceInfo(data []byte) (DeviceInfo, error) {
	if d, ok := decodeDeviceInfoFast(data); ok {
		return d, nil
	}
	var d DeviceInfo
	err := decode("device info", "schema", data, &d)
	return d, err
}
