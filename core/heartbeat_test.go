package core

import (
	"math"
	"strings"
	"testing"
)

func TestHeartbeatEncoding(t *testing.T) {
	b, err := Heartbeat{AgentVersion: MustParseVersion("v1.2.3"), Seq: 42, UptimeSec: 3600, Attempt: 7}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"av":"v1.2.3","q":42,"u":3600,"a":7}`; string(b) != want {
		t.Errorf("heartbeat = %s, want %s", b, want)
	}
	b, err = Heartbeat{AgentVersion: MustParseVersion("v1.2.3"), Seq: 1}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"av":"v1.2.3","q":1,"u":0}`; string(b) != want {
		t.Errorf("a normal start omits the attempt: %s, want %s", b, want)
	}
}

// The documented worst case — a 32-byte version and every counter at its
// maximum — still fits under 96 bytes.
func TestHeartbeatWorstCaseUnder96Bytes(t *testing.T) {
	version := "v1.2.3-" + strings.Repeat("r", MaxVersionLen-len("v1.2.3-"))
	if len(version) != MaxVersionLen {
		t.Fatalf("version is %d bytes", len(version))
	}
	h := Heartbeat{AgentVersion: MustParseVersion(version), Seq: math.MaxUint32, UptimeSec: math.MaxUint32, Attempt: math.MaxUint32}
	b, err := h.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) >= 96 || len(b) > MaxHeartbeatBytes {
		t.Errorf("worst-case heartbeat is %d bytes: %s", len(b), b)
	}
	t.Logf("worst-case heartbeat: %d bytes (bound %d): %s", len(b), MaxHeartbeatBytes, b)
	got, err := DecodeHeartbeat(b)
	if err != nil || got.Seq != math.MaxUint32 || got.UptimeSec != math.MaxUint32 || got.Attempt != math.MaxUint32 || got.AgentVersion.String() != version {
		t.Errorf("decode: %+v, %v", got, err)
	}
}

// A version built by hand (not parsed, so not bounded by MaxVersionLen)
// cannot push a heartbeat over the bound: Encode refuses.
func TestHeartbeatOverBoundRefused(t *testing.T) {
	v := Version{Major: math.MaxUint64, Minor: math.MaxUint64, Patch: math.MaxUint64}
	_, err := Heartbeat{AgentVersion: v, Seq: math.MaxUint32, UptimeSec: math.MaxUint32, Attempt: math.MaxUint32}.Encode()
	if err == nil || !strings.Contains(err.Error(), "exceeds the 95-byte bound") {
		t.Errorf("got %v", err)
	}
}
