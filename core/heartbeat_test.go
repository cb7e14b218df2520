package core

import (
	"encoding/json"
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

// The hand-built encoder and the fast decoder must agree byte for byte with
// encoding/json and the general strict decoder.
func TestHeartbeatFastPathMatchesEncodingJSON(t *testing.T) {
	cases := []Heartbeat{
		{AgentVersion: MustParseVersion("v1.2.3"), Seq: 1},
		{AgentVersion: MustParseVersion("1.0.0-rc.1+build.7"), Seq: 42, UptimeSec: 3600, Attempt: 7},
		{AgentVersion: MustParseVersion("v4294967295.0.0-aaaaaaaaaaaaa"), Seq: 1<<32 - 1, UptimeSec: 1<<32 - 1, Attempt: 1<<32 - 1},
	}
	for _, h := range cases {
		got, err := h.Encode()
		if err != nil {
			t.Fatal(err)
		}
		h.Schema = SchemaVersion
		want, _ := json.Marshal(h)
		if string(got) != string(want) {
			t.Errorf("Encode = %s, encoding/json = %s", got, want)
		}
		fast, ok := decodeHeartbeatFast(got)
		if !ok {
			t.Fatalf("fast path refused canonical %s", got)
		}
		var slow Heartbeat
		if err := decode("heartbeat", "v", got, &slow); err != nil {
			t.Fatal(err)
		}
		if fast.AgentVersion.String() != slow.AgentVersion.String() || fast.Seq != slow.Seq ||
			fast.UptimeSec != slow.UptimeSec || fast.Attempt != slow.Attempt || fast.Schema != slow.Schema {
			t.Errorf("fast %+v != slow %+v", fast, slow)
		}
	}
	for _, in := range []string{`{"v":1,"av":"v1.2.3","q":01,"u":1}`, `{"v":1,"av":"v1.2.3","q":1,"u":1,"a":0}`,
		`{"v":1,"av":"v1.2.3","q":4294967296,"u":1}`, `{"v":1,"av":"v1.2.3","q":1,"u":1} `, `{"v":1,"av":"v1.2.3","q":0,"u":1}`} {
		if _, ok := decodeHeartbeatFast([]byte(in)); ok {
			t.Errorf("fast path accepted non-canonical %s", in)
		}
	}
}

// AppendEncode writes Encode's bytes after what the buffer holds, and the
// size bound counts only the heartbeat.
func TestHeartbeatAppendEncodeAppends(t *testing.T) {
	h := Heartbeat{AgentVersion: MustParseVersion("v1.1.0"), Seq: 4242, UptimeSec: 86400, Attempt: 7}
	want, err := h.Encode()
	if err != nil {
		t.Fatal(err)
	}
	prefix := strings.Repeat("x", 90)
	got, err := h.AppendEncode([]byte(prefix))
	if err != nil || string(got) != prefix+string(want) {
		t.Fatalf("AppendEncode = %q, %v; want %q after the prefix", got, err, want)
	}
	if _, err := (Heartbeat{AgentVersion: MustParseVersion("v1.0.0")}).AppendEncode(nil); err == nil {
		t.Fatal("a heartbeat with seq 0 encoded without error")
	}
}
