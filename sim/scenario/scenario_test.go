package scenario

import (
	"strings"
	"testing"
	"time"
)

const good = `name: t
duration: 2h
fleet:
  devices: 10
  labels: {site: [a, b]}
  agent_version: v1.0.0
steps:
  - at: 5m
    upgrade_agent:
      version: v1.1.0
      strategy: {waves: ["10%", "100%"], max_unavailable: "5%", failure_threshold: 2}
faults:
  - {kind: drop, rate: 0.05, for: 30m}
  - {kind: partition, devices: "10%", at: 20m, for: 15m}
  - {kind: operator-crash, at: 31m}
expect:
  converged_within: 60m
  agent_version: {v1.1.0: ">=95%"}
`

func TestLoadsAValidScenarioWithDefaults(t *testing.T) {
	s, err := Parse("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if s.Duration.D != 2*time.Hour || s.Fleet.Devices != 10 || s.Faults[1].Direction != "both" ||
		s.Steps[0].UpgradeAgent.Artifact != ArtifactHealthy || s.Seed != 1 {
		t.Fatalf("unexpected decode: %+v", s)
	}
	if got := s.FaultWindowEnd(); got != 35*time.Minute {
		t.Fatalf("fault window ends %v, want 35m", got)
	}
	if !s.Expect.AgentVersion["v1.1.0"].Holds(96, 100) || s.Expect.AgentVersion["v1.1.0"].Holds(94, 100) {
		t.Fatal("threshold >=95% misjudged")
	}
}

func TestRejectsBadScenariosNamingFileLineAndField(t *testing.T) {
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"unknown field", "  devices: 10\n", "  devices: 10\n  color: red\n", "bad.yaml:5: fleet.color: unknown field"},
		{"bad duration", "duration: 2h", "duration: 2 hours", `bad.yaml:2: duration: bad duration "2 hours"`},
		{"percentage over 100", `max_unavailable: "5%"`, `max_unavailable: "105%"`, "bad.yaml:11: steps[0].upgrade_agent.strategy.max_unavailable: percentage 105% is over 100%"},
		{"rate over 1", "rate: 0.05", "rate: 1.5", "bad.yaml:13: faults[0].rate: bad rate"},
		{"fault past the end", "at: 20m, for: 15m", "at: 20m, for: 150m", "bad.yaml:14: faults[1].for: impossible schedule"},
		{"convergence cannot fit", "converged_within: 60m", "converged_within: 100m", "bad.yaml:17: expect.converged_within: impossible schedule"},
		{"step after the end", "at: 5m", "at: 5h", "bad.yaml:8: steps[0].at: step at 5h0m0s is outside"},
		{"unknown fault kind", "kind: operator-crash", "kind: meteor", `bad.yaml:15: faults[2].kind: unknown fault kind "meteor"`},
		{"wrong shape", "  labels: {site: [a, b]}", "  labels: [a, b]", "bad.yaml:5: fleet.labels: want a mapping"},
		{"bad version", "version: v1.1.0", "version: one", "steps[0].upgrade_agent.version: invalid version"},
		{"not yaml", "name: t", "name: [t", "bad.yaml:1: not valid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(good, tc.from, tc.to, 1)
			if src == good {
				t.Fatalf("test edit %q did not apply", tc.from)
			}
			_, err := Parse("bad.yaml", []byte(src))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestAmountAndThreshold(t *testing.T) {
	var a Amount
	if err := a.parseScalar("10%"); err != nil || a.Of(95) != 10 {
		t.Fatalf("10%% of 95 = %d (%v), want 10 (rounded up)", a.Of(95), err)
	}
	if err := a.parseScalar("120%"); err == nil {
		t.Fatal("accepted 120%")
	}
	var th Threshold
	if err := th.parseScalar("<=5%"); err != nil || !th.Holds(5, 100) || th.Holds(6, 100) {
		t.Fatal("<=5% misjudged")
	}
	if err := th.parseScalar("3"); err != nil || !th.Holds(3, 10) || th.Holds(4, 10) {
		t.Fatal("==3 misjudged")
	}
}

// A device counts as offline after three missed heartbeats (at least 30 s),
// unless the scenario says otherwise: with 30 s heartbeats and a 30 s
// limit every device flapped offline on every late beat.
func TestOfflineAfterDefaultsToThreeHeartbeats(t *testing.T) {
	for _, tc := range []struct {
		fleet, operator string
		want            time.Duration
	}{
		{"{devices: 5, agent_version: v1.0.0}", "", 30 * time.Second},
		{"{devices: 5, agent_version: v1.0.0, heartbeat_interval: 5s}", "", 30 * time.Second},
		{"{devices: 5, agent_version: v1.0.0, heartbeat_interval: 30s}", "", 90 * time.Second},
		{"{devices: 5, agent_version: v1.0.0, heartbeat_interval: 30s}", "operator: {offline_after: 45s}\n", 45 * time.Second},
	} {
		s, err := Parse("t.yaml", []byte("name: t\nduration: 1h\nfleet: "+tc.fleet+"\n"+tc.operator+"expect: {converged_within: 30m}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Operator.OfflineAfter.D; got != tc.want {
			t.Errorf("fleet %s %s: offline_after %v, want %v", tc.fleet, tc.operator, got, tc.want)
		}
	}
}

func TestNATSFaultKindsValidateTheirFields(t *testing.T) {
	for _, tc := range []struct {
		name, fault, want string
	}{
		{"restart", "{kind: nats-restart, at: 20m, down: 2s}", ""},
		{"restart on a phase", "{kind: nats-restart, when: WaitingForStop, count: 3}", ""},
		{"restart with a window", "{kind: nats-restart, at: 20m, for: 5m}", "faults[0].for: not a field of a nats-restart fault (it takes at, down, when, count)"},
		{"restart of devices", "{kind: nats-restart, devices: 10%}", "faults[0].devices: not a field of a nats-restart fault"},
		{"restart down too long", "{kind: nats-restart, down: 2h}", "faults[0].down: must be positive and at most 1h"},
		{"ack-loss", "{kind: ack-loss, rate: 20%, at: 2m, for: 15m, devices: 10%}", ""},
		{"ack-loss without rate", "{kind: ack-loss, at: 2m, for: 15m}", "faults[0].rate: required and positive"},
		{"ack-loss without window", "{kind: ack-loss, rate: 0.2}", "faults[0].for: required: how long the ack-loss fault lasts"},
		{"ack-loss with a delay", "{kind: ack-loss, rate: 0.2, for: 1m, delay: 1s}", "faults[0].delay: not a field of a ack-loss fault"},
		{"dead-link", "{kind: dead-link, devices: 5, at: 3m, for: 6m}", ""},
		{"dead-link with a direction", "{kind: dead-link, for: 6m, direction: in}", "faults[0].direction: not a field of a dead-link fault"},
		{"dead-link without window", "{kind: dead-link, devices: 5}", "faults[0].for: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "name: t\nduration: 2h\nfleet: {devices: 10, agent_version: v1.0.0}\nfaults:\n  - " + tc.fault +
				"\nexpect: {converged_within: 30m}\n"
			_, err := Parse("f.yaml", []byte(src))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("accepted")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
