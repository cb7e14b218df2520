package sim

import (
	"testing"

	"github.com/flotilla-fleet/flotilla/core"
)

func TestHeartbeatEncodingMatchesCore(t *testing.T) {
	for _, h := range []core.Heartbeat{
		{AgentVersion: core.MustParseVersion("v1.0.0"), Seq: 1},
		{AgentVersion: core.MustParseVersion("v1.1.0"), Seq: 4242, UptimeSec: 86400, Attempt: 7},
		{AgentVersion: core.MustParseVersion("2.0.0-rc.1+build.5"), Seq: 1 << 31, UptimeSec: 1<<32 - 1},
	} {
		want, err := h.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeHeartbeat(h)
		if err != nil || string(got) != string(want) {
			t.Fatalf("encodeHeartbeat(%+v) = %s, %v; core says %s", h, got, err, want)
		}
	}
	if _, err := encodeHeartbeat(core.Heartbeat{AgentVersion: core.MustParseVersion("v1.0.0")}); err == nil {
		t.Fatal("a heartbeat with seq 0 encoded without error")
	}
}
