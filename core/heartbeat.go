package core

import "fmt"

// MaxHeartbeatBytes is the bound on an encoded heartbeat: heartbeats are the
// fleet's most frequent write, so they are kept tiny.
const MaxHeartbeatBytes = 95

// Heartbeat is the value of a device-heartbeat key. Its JSON keys are one or
// two letters because it is written every few seconds by every device:
//
//	{"v":1,"av":"v1.2.3","q":42,"u":3600,"a":7}
//
// v: schema version, av: agent version, q: sequence number (per process,
// starts at 1), u: process uptime in seconds, a: the upgrade attempt this
// process was started as a candidate for (omitted for a normal start).
type Heartbeat struct {
	Schema       int     `json:"v"`
	AgentVersion Version `json:"av"`
	Seq          uint32  `json:"q"`
	UptimeSec    uint32  `json:"u"`
	Attempt      uint32  `json:"a,omitempty"`
}

// Validate checks the heartbeat.
func (h Heartbeat) Validate() error {
	if h.AgentVersion.IsZero() {
		return fieldErr("av", "agent version required")
	}
	if h.Seq == 0 {
		return fieldErr("q", "sequence numbers start at 1")
	}
	return nil
}

// Encode validates and marshals the heartbeat and checks its size bound.
func (h Heartbeat) Encode() ([]byte, error) {
	h.Schema = SchemaVersion
	b, err := encode("heartbeat", h)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxHeartbeatBytes {
		return nil, fmt.Errorf("encode heartbeat: %d bytes exceeds the %d-byte bound", len(b), MaxHeartbeatBytes)
	}
	return b, nil
}

// DecodeHeartbeat parses a device-heartbeat value.
func DecodeHeartbeat(data []byte) (Heartbeat, error) {
	var h Heartbeat
	err := decode("heartbeat", "v", data, &h)
	return h, err
}
