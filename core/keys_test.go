package core

import (
	"errors"
	"strings"
	"testing"
)

func TestBucketAndSubjectNames(t *testing.T) {
	want := []string{"desired-state", "device-info", "device-state", "device-heartbeat", "agent-upgrade", "agent-upgrade-status"}
	if strings.Join(Buckets, ",") != strings.Join(want, ",") {
		t.Errorf("Buckets = %v, want %v", Buckets, want)
	}
	if ObjectStoreArtifacts != "artifacts" {
		t.Errorf("object store = %q", ObjectStoreArtifacts)
	}
	for _, b := range append(Buckets, ObjectStoreArtifacts) {
		for _, c := range b {
			if !(c >= 'a' && c <= 'z' || c == '-') {
				t.Errorf("bucket %q: %q is not a NATS bucket character", b, c)
			}
		}
	}
}

func TestKeyBuilders(t *testing.T) {
	cases := []struct{ got, want string }{
		{DesiredStateKey("edge-1", "web"), "edge-1.web"},
		{DesiredStateDeviceFilter("edge-1"), "edge-1.*"},
		{DeviceInfoKey("edge-1"), "info.edge-1"},
		{DeviceStateKey("edge-1", "web"), "state.edge-1.web"},
		{HeartbeatKey("edge-1"), "edge-1"},
		{AgentUpgradeKey("edge-1"), "edge-1"},
		{AgentUpgradeStatusKey("edge-1"), "edge-1"},
		{CommandSubject("edge-1", VerbUpgradeStop), "device-commands.edge-1.upgrade-stop"},
		{CommandSubscription("edge-1"), "device-commands.edge-1.>"},
		{ArtifactObjectName("flotilla-agent", "v1.2.3"), "flotilla-agent/v1.2.3"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestKeysRoundTrip(t *testing.T) {
	devices := []string{"edge-1", "A", strings.Repeat("d", MaxNameLen), "site=x/rack_2"}
	deployments := []string{"web", "metrics-agent", "x"}
	for _, d := range devices {
		for _, p := range deployments {
			if gd, gp, err := ParseDesiredStateKey(DesiredStateKey(d, p)); err != nil || gd != d || gp != p {
				t.Errorf("desired-state %q/%q: got %q/%q, %v", d, p, gd, gp, err)
			}
			if gd, gp, err := ParseDeviceStateKey(DeviceStateKey(d, p)); err != nil || gd != d || gp != p {
				t.Errorf("device-state %q/%q: got %q/%q, %v", d, p, gd, gp, err)
			}
		}
		if got, err := ParseDeviceInfoKey(DeviceInfoKey(d)); err != nil || got != d {
			t.Errorf("device-info %q: got %q, %v", d, got, err)
		}
		for _, key := range []string{HeartbeatKey(d), AgentUpgradeKey(d), AgentUpgradeStatusKey(d)} {
			if got, err := ParseDeviceKey(key); err != nil || got != d {
				t.Errorf("device key %q: got %q, %v", d, got, err)
			}
		}
		for _, v := range Verbs {
			if gd, gv, err := ParseCommandSubject(CommandSubject(d, v)); err != nil || gd != d || gv != v {
				t.Errorf("command subject %q/%q: got %q/%q, %v", d, v, gd, gv, err)
			}
		}
	}
}

func TestKeyParsersReject(t *testing.T) {
	type parser func(string) error
	two := func(f func(string) (string, string, error)) parser {
		return func(s string) error { _, _, err := f(s); return err }
	}
	one := func(f func(string) (string, error)) parser {
		return func(s string) error { _, err := f(s); return err }
	}
	cmd := func(s string) error { _, _, err := ParseCommandSubject(s); return err }
	cases := []struct {
		name  string
		parse parser
		key   string
		what  string // KeyError.What
		why   string // substring of KeyError.Why
	}{
		{"desired-state one token", two(ParseDesiredStateKey), "edge-1", "desired-state key", "want <device>.<deployment>"},
		{"desired-state three tokens", two(ParseDesiredStateKey), "a.b.c", "desired-state key", "want <device>.<deployment>"},
		{"desired-state empty device", two(ParseDesiredStateKey), ".web", "desired-state key", "invalid device name \"\": must not be empty"},
		{"desired-state empty deployment", two(ParseDesiredStateKey), "edge.", "desired-state key", "invalid deployment name \"\": must not be empty"},
		{"desired-state wildcard", two(ParseDesiredStateKey), "edge.*", "desired-state key", "wildcard"},
		{"device-state wrong prefix", two(ParseDeviceStateKey), "status.a.b", "device-state key", "want state.<device>.<deployment>"},
		{"device-state two tokens", two(ParseDeviceStateKey), "state.a", "device-state key", "want state.<device>.<deployment>"},
		{"device-state bad device", two(ParseDeviceStateKey), "state.a b.web", "device-state key", "whitespace"},
		{"device-state bad deployment", two(ParseDeviceStateKey), "state.a.>", "device-state key", "wildcard"},
		{"device-info wrong prefix", one(ParseDeviceInfoKey), "state.edge", "device-info key", "want info.<device>"},
		{"device-info no prefix", one(ParseDeviceInfoKey), "edge", "device-info key", "want info.<device>"},
		{"device-info extra token", one(ParseDeviceInfoKey), "info.edge.x", "device-info key", "'.'"},
		{"device-info empty device", one(ParseDeviceInfoKey), "info.", "device-info key", "must not be empty"},
		{"device key with dot", one(ParseDeviceKey), "edge.1", "device key", "'.'"},
		{"device key empty", one(ParseDeviceKey), "", "device key", "must not be empty"},
		{"device key control char", one(ParseDeviceKey), "edge\x01", "device key", "control character"},
		{"command wrong prefix", cmd, "commands.edge.ping", "command subject", "want device-commands.<device>.<verb>"},
		{"command too short", cmd, "device-commands.edge", "command subject", "want device-commands.<device>.<verb>"},
		{"command too long", cmd, "device-commands.edge.ping.x", "command subject", "want device-commands.<device>.<verb>"},
		{"command unknown verb", cmd, "device-commands.edge.reboot", "command subject", `unknown verb "reboot" (want one of ping, logs, exec, upgrade-stop)`},
		{"command wildcard subscription", cmd, "device-commands.edge.>", "command subject", "unknown verb"},
		{"command bad device", cmd, "device-commands.*.ping", "command subject", "wildcard"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.parse(c.key)
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("parse(%q) = %v, want a *KeyError", c.key, err)
			}
			if ke.What != c.what || ke.Key != c.key || !strings.Contains(ke.Why, c.why) {
				t.Errorf("got %+v, want what=%q key=%q why containing %q", ke, c.what, c.key, c.why)
			}
		})
	}
}
