package web

import (
	"context"
	"fmt"
	"net/url"
	"reflect"
	"testing"

	"github.com/flotilla-fleet/flotilla/core"
)

func TestMockIsDeterministic(t *testing.T) {
	snapshot := func(seed uint64) string {
		m, err := NewMockFleetService(MockConfig{Seed: seed, Devices: 500})
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			m.Step()
		}
		ctx := context.Background()
		p, _ := m.ListDevices(ctx, DeviceQuery{PerPage: MaxPerPage})
		o, _ := m.Overview(ctx)
		r, _ := m.Rollout(ctx, "agent-2026-11")
		return fmt.Sprintf("%+v|%+v|%+v", p, o, r)
	}
	if a, b := snapshot(7), snapshot(7); a != b {
		t.Error("two mocks with seed 7 differ after 20 steps")
	}
	if snapshot(7) == snapshot(8) {
		t.Error("seeds 7 and 8 give the same fleet")
	}
}

func TestMockHasEveryStateADemoNeeds(t *testing.T) {
	m, err := NewMockFleetService(MockConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, _ := m.ListDevices(ctx, DeviceQuery{PerPage: MaxPerPage})
	seen := map[string]bool{}
	for _, d := range p.Items {
		seen[fmt.Sprint("online=", d.Online)] = true
		seen[fmt.Sprint("blacklisted=", d.Blacklisted)] = true
		seen[string(d.Upgrade.Phase)] = true
		if d.Upgrade.Phase.InFlight() {
			seen["upgrading"] = true
		}
	}
	for _, want := range []string{"online=true", "online=false", "blacklisted=true", "upgrading",
		string(core.UpgradeFailed), string(core.UpgradeRolledBack), string(core.UpgradeCommitted)} {
		if !seen[want] {
			t.Errorf("default mock fleet has no device with %s", want)
		}
	}
	if len(p.Items) < 10 {
		t.Errorf("%d devices, want at least 10", len(p.Items))
	}
	deps, _ := m.Deployments(ctx)
	if len(deps) != 4 {
		t.Errorf("%d deployments, want 4", len(deps))
	}
}

func TestMockRejectsBadSizes(t *testing.T) {
	for _, n := range []int{-1, 5, MaxMockDevices + 1} {
		if _, err := NewMockFleetService(MockConfig{Devices: n}); err == nil {
			t.Errorf("%d devices accepted", n)
		}
	}
}

func TestMockRolloutProgressesAndFinishes(t *testing.T) {
	m, _ := NewMockFleetService(MockConfig{Seed: 3, Devices: 200})
	ctx := context.Background()
	before, _ := m.Rollout(ctx, "agent-2026-11")
	for range 400 {
		m.Step()
	}
	after, _ := m.Rollout(ctx, "agent-2026-11")
	if after.Counts.Succeeded <= before.Counts.Succeeded {
		t.Errorf("no progress: %+v → %+v", before.Counts, after.Counts)
	}
	if after.Counts.InProgress != 0 && !after.Paused {
		t.Errorf("after 400 steps devices are still in flight: %+v", after.Counts)
	}
	// What still waits is blocked for a reason the page shows: offline
	// stragglers still marked for the previous rollout.
	p, _ := m.ListDevices(ctx, DeviceQuery{PerPage: MaxPerPage})
	for _, d := range p.Items {
		if d.Blacklisted || !d.AgentVersion.Less(after.Version) || d.Upgrade.Rollout == after.Name {
			continue
		}
		if d.Online || d.Upgrade.Rollout == "" {
			t.Errorf("%s waits for no reason: %+v", d.ID, d)
		}
	}
	for i, w := range after.Waves {
		if w.Started > w.Devices || w.Done > w.Started {
			t.Errorf("wave %d inconsistent: %+v", i+1, w)
		}
	}
}

func TestBlacklistedDevicesLeaveRolloutTargets(t *testing.T) {
	m, _ := NewMockFleetService(MockConfig{Seed: 1})
	ctx := context.Background()
	before, _ := m.Rollout(ctx, "agent-2026-11")
	if _, err := m.SetBlacklisted(ctx, "dev-00001", true); err != nil {
		t.Fatal(err)
	}
	after, _ := m.Rollout(ctx, "agent-2026-11")
	if after.Counts.Total != before.Counts.Total-1 {
		t.Errorf("targets %d → %d, want one fewer", before.Counts.Total, after.Counts.Total)
	}
	if _, err := m.SetBlacklisted(ctx, "nope", true); err == nil {
		t.Error("blacklisting an unknown device succeeded")
	}
}

func TestParseLabelFilter(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    core.LabelSelector
		wantErr bool
	}{
		{"", core.LabelSelector{}, false},
		{"site=berlin", core.LabelSelector{MatchLabels: map[string]string{"site": "berlin"}}, false},
		{" site = berlin , class!=sensor", core.LabelSelector{MatchLabels: map[string]string{"site": "berlin"},
			MatchExpressions: []core.SelectorRequirement{{Key: "class", Operator: core.OpNotIn, Values: []string{"sensor"}}}}, false},
		{"gpu,!legacy", core.LabelSelector{MatchExpressions: []core.SelectorRequirement{
			{Key: "gpu", Operator: core.OpExists}, {Key: "legacy", Operator: core.OpDoesNotExist}}}, false},
		{"a=b,,c=d", core.LabelSelector{}, true},
		{"bad key=v", core.LabelSelector{}, true},
		{"k=bad value", core.LabelSelector{}, true},
	} {
		got, err := ParseLabelFilter(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseLabelFilter(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseLabelFilter(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if !tc.wantErr {
			round, _ := ParseLabelFilter(LabelFilterString(got))
			if !reflect.DeepEqual(round, got) {
				t.Errorf("round trip of %q: %+v", tc.in, round)
			}
		}
	}
}

func TestBrokerCoalescesForSlowReaders(t *testing.T) {
	b := NewBroker()
	s := b.Subscribe()
	defer s.Close()
	for range 10_000 {
		b.Publish(Change{KindDevice, "dev-1"}, Change{KindRollout, "r"})
	}
	<-s.Ready
	got := s.Drain()
	want := []Change{{KindDevice, "dev-1"}, {KindRollout, "r"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("drain = %v, want %v", got, want)
	}
	s.Close()
	if b.Subscribers() != 0 {
		t.Error("closed subscription still registered")
	}
}

func TestDeviceQueryRoundTripsThroughTheURL(t *testing.T) {
	for _, raw := range []string{
		"",
		"version=v1.2.0",
		"online=offline&phase=Failed",
		"label=class%3Dcamera%2Csite%21%3Dosaka%2Cgpu%2C%21legacy&q=dev-1&page=3&per_page=20",
		"blacklisted=true",
	} {
		v, _ := url.ParseQuery(raw)
		q, err := ParseDeviceQuery(v)
		if err != nil {
			t.Errorf("ParseDeviceQuery(%q): %v", raw, err)
			continue
		}
		q2, err := ParseDeviceQuery(q.Values())
		if err != nil || !reflect.DeepEqual(q, q2) {
			t.Errorf("%q: round trip gave %+v (%v), want %+v", raw, q2, err, q)
		}
	}
}
