package sim

import (
	"strconv"

	"github.com/flotilla-fleet/flotilla/core"
)

// encodeHeartbeat produces exactly the bytes of core.Heartbeat.Encode for
// the versions the simulator uses (semver characters need no JSON escaping)
// without reflection: heartbeats are the fleet's most frequent write. It
// falls back to core's encoder for anything unusual; a test pins the bytes.
func encodeHeartbeat(h core.Heartbeat) ([]byte, error) {
	return appendHeartbeat(make([]byte, 0, 64), h)
}

// appendHeartbeat is encodeHeartbeat appending to b.
func appendHeartbeat(b []byte, h core.Heartbeat) ([]byte, error) {
	v := h.AgentVersion.String()
	if h.AgentVersion.IsZero() || h.Seq == 0 || !plainJSON(v) {
		return h.Encode()
	}
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, core.SchemaVersion, 10)
	b = append(b, `,"av":"`...)
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
	if len(b) > core.MaxHeartbeatBytes {
		return h.Encode()
	}
	return b, nil
}

func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '-' || c == '+') {
			return false
		}
	}
	return true
}
