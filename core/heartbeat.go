package core

import (
	"fmt"
	"strconv"
)

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
// The output is exactly what encoding/json produces for the struct; it is
// built by hand because heartbeats are the fleet's hottest write.
func (h Heartbeat) Encode() ([]byte, error) { return h.AppendEncode(make([]byte, 0, 64)) }

// AppendEncode is Encode appending to b, for a writer that allocates the
// bytes together with something else (the simulator's KV entries).
func (h Heartbeat) AppendEncode(b []byte) ([]byte, error) {
	h.Schema = SchemaVersion
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("encode heartbeat: %w", err)
	}
	v := h.AgentVersion.String()
	start := len(b)
	b = append(b, `{"v":1,"av":"`...)
	b = append(b, v...)
	b = append(b, `","q":`...)
	b = strconv.AppendUint(b, uint64(h.Seq), 10)
	b = append(b, `,"u":`...)
	b = strconv.AppendUint(b, uint64(h.UptimeSec), 10)
	if h.Attempt != 0 {
		b = append(b, `,"a":`...)
		b = strconv.AppendUint(b, uint64(h.Attempt), 10)
	}
	b = append(b, '}')
	if n := len(b) - start; n > MaxHeartbeatBytes {
		return nil, fmt.Errorf("encode heartbeat: %d bytes exceeds the %d-byte bound", n, MaxHeartbeatBytes)
	}
	return b, nil
}

// DecodeHeartbeat parses a device-heartbeat value. The canonical form that
// Encode writes takes a fast path; anything else (other key order, spaces,
// unknown fields, errors) goes through the general strict decoder.
func DecodeHeartbeat(data []byte) (Heartbeat, error) {
	if h, ok := decodeHeartbeatFast(data); ok {
		return h, nil
	}
	var h Heartbeat
	err := decode("heartbeat", "v", data, &h)
	return h, err
}

func decodeHeartbeatFast(data []byte) (Heartbeat, bool) {
	const prefix = `{"v":1,"av":"`
	if len(data) < len(prefix) || string(data[:len(prefix)]) != prefix {
		return Heartbeat{}, false
	}
	rest := data[len(prefix):]
	end := -1
	for i, c := range rest {
		if c == '"' {
			end = i
			break
		}
		if c == '\\' || c < 0x20 || c >= 0x80 {
			return Heartbeat{}, false
		}
	}
	if end < 0 {
		return Heartbeat{}, false
	}
	ver, err := ParseVersion(string(rest[:end]))
	if err != nil {
		return Heartbeat{}, false
	}
	rest = rest[end+1:]
	num := func(key string) (uint32, bool) {
		if len(rest) < len(key) || string(rest[:len(key)]) != key {
			return 0, false
		}
		rest = rest[len(key):]
		n, i := uint64(0), 0
		for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
			n = n*10 + uint64(rest[i]-'0')
			if n > 1<<32-1 || (i == 1 && rest[0] == '0') {
				return 0, false
			}
		}
		if i == 0 {
			return 0, false
		}
		rest = rest[i:]
		return uint32(n), true
	}
	h := Heartbeat{Schema: SchemaVersion, AgentVersion: ver}
	var ok bool
	if h.Seq, ok = num(`,"q":`); !ok {
		return Heartbeat{}, false
	}
	if h.UptimeSec, ok = num(`,"u":`); !ok {
		return Heartbeat{}, false
	}
	if len(rest) > 1 {
		if h.Attempt, ok = num(`,"a":`); !ok || h.Attempt == 0 {
			return Heartbeat{}, false
		}
	}
	if len(rest) != 1 || rest[0] != '}' || h.Validate() != nil {
		return Heartbeat{}, false
	}
	return h, true
}
