package link

import (
	"testing"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
)

func TestDesiredInput(t *testing.T) {
	good, _ := core.WorkloadSpec{Deployment: "web", Name: "w", Version: "1", Args: []string{"/bin/true"}}.Encode()
	other, _ := core.WorkloadSpec{Deployment: "db", Name: "w", Version: "1", Args: []string{"/bin/true"}}.Encode()
	for _, tc := range []struct {
		name string
		e    Entry
		want string // type of input, or "error"
	}{
		{"a value that decodes is a put", Entry{Key: "dev.web", Value: good, Rev: 3}, "put"},
		{"a delete is a deletion", Entry{Key: "dev.web", Op: OpDelete, Rev: 4}, "deleted"},
		{"a purge is a deletion", Entry{Key: "dev.web", Op: OpPurge, Rev: 5}, "deleted"},
		{"a value that does not decode is invalid", Entry{Key: "dev.web", Value: []byte("{"), Rev: 6}, "invalid"},
		{"a spec naming another deployment than its key is invalid", Entry{Key: "dev.web", Value: other, Rev: 7}, "invalid"},
		{"another device's key is ignored with an error", Entry{Key: "other.web", Value: good}, "error"},
		{"a malformed key is ignored with an error", Entry{Key: "dev", Value: good}, "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := DesiredInput("dev", tc.e)
			got := "error"
			switch in := in.(type) {
			case agentcore.DesiredPut:
				got = "put"
				if in.Deployment != "web" || in.Revision != tc.e.Rev || in.Spec.Version != "1" {
					t.Fatalf("put %+v", in)
				}
			case agentcore.DesiredDeleted:
				got = "deleted"
				if in.Deployment != "web" || in.Revision != tc.e.Rev {
					t.Fatalf("deleted %+v", in)
				}
			case agentcore.DesiredInvalid:
				got = "invalid"
				if in.Deployment != "web" || in.Revision != tc.e.Rev || in.Err == "" {
					t.Fatalf("invalid %+v", in)
				}
			}
			if got != tc.want || (got == "error") != (err != nil) {
				t.Fatalf("got %s (%v), want %s", got, err, tc.want)
			}
		})
	}
}

func TestMarkerInput(t *testing.T) {
	m, err := core.UpgradeMarker{Schema: 1, Attempt: 2, TargetVersion: core.MustParseVersion("v2.0.0"),
		Artifact: core.ArtifactRef{URL: "https://example/a", SHA256: "0000000000000000000000000000000000000000000000000000000000000000", Size: 10}, CutoverTimeoutSec: 60}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	key := core.AgentUpgradeKey("dev")
	if in, _ := MarkerInput("dev", Entry{Key: key, Value: m}); in.(agentcore.MarkerPut).Marker.Attempt != 2 {
		t.Fatalf("put %#v", in)
	}
	if in, _ := MarkerInput("dev", Entry{Key: key, Op: OpDelete}); in != (agentcore.MarkerDeleted{}) {
		t.Fatalf("delete %#v", in)
	}
	if in, _ := MarkerInput("dev", Entry{Key: key, Value: []byte("x")}); in.(agentcore.MarkerInvalid).Err == "" {
		t.Fatalf("invalid %#v", in)
	}
	if in, err := MarkerInput("dev", Entry{Key: core.AgentUpgradeKey("other"), Value: m}); in != nil || err == nil {
		t.Fatalf("another device's marker: %#v %v", in, err)
	}
}
