package web

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// MockConfig seeds a MockFleetService.
type MockConfig struct {
	Seed    uint64
	Devices int       // at least MinMockDevices; default DefaultMockDevices
	Start   time.Time // the mock's clock at creation; zero means MockEpoch
	// StepInterval is how far Step moves the mock clock (default 5s).
	StepInterval time.Duration
}

// Mock defaults.
const (
	DefaultMockDevices = 24
	MinMockDevices     = 12
	MaxMockDevices     = 1_000_000
)

// MockEpoch is the mock clock's default start, so that two runs with one
// seed render the same pages byte for byte.
var MockEpoch = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// MockFleetService is a seeded, deterministic fleet in memory: the same
// seed and device count give the same fleet, and the same sequence of Step
// calls gives the same evolution. It backs `flotilla web --mock`, the
// handler tests and the browser test.
type MockFleetService struct {
	mu       sync.RWMutex
	cacheMu  sync.Mutex // guards targetCache, filled under a read lock
	now      time.Time
	interval time.Duration
	rng      *rand.Rand
	devices  []*Device // sorted by ID
	byID     map[string]*Device
	deploys  []*mockDeployment // sorted by name
	rollouts []*mockRollout    // sorted by name
	broker   *Broker
	// targetCache holds targets by selector; blacklisting clears it
	// (labels never change).
	targetCache map[string][]*Device
}

type mockDeployment struct {
	Deployment
	wavePct []int // cumulative wave ends in percent of targets
	perStep int   // devices started per Step
}

type mockRollout struct {
	Rollout
	wavePct       []int
	maxInFlight   int
	failThreshold int // percent of targets; pause when exceeded
	attempt       uint32
}

var (
	mockSites   = []string{"austin", "berlin", "lagos", "lisbon", "osaka"}
	mockClasses = []string{"gateway", "camera", "sensor"}
	vOld        = core.MustParseVersion("v1.1.0")
	vBase       = core.MustParseVersion("v1.2.0")
	vTarget     = core.MustParseVersion("v1.3.0")
	vRC         = core.MustParseVersion("v1.4.0-rc.1")
)

// NewMockFleetService builds the seeded fleet: devices dev-00001... with
// site/class/channel labels, three agent rollouts (one complete, one in
// progress, one paused) and four deployments (one complete, one rolling
// out, one with failures, one paused).
func NewMockFleetService(cfg MockConfig) (*MockFleetService, error) {
	if cfg.Devices == 0 {
		cfg.Devices = DefaultMockDevices
	}
	if cfg.Devices < MinMockDevices || cfg.Devices > MaxMockDevices {
		return nil, fmt.Errorf("mock devices %d: must be between %d and %d", cfg.Devices, MinMockDevices, MaxMockDevices)
	}
	if cfg.Start.IsZero() {
		cfg.Start = MockEpoch
	}
	if cfg.StepInterval <= 0 {
		cfg.StepInterval = 5 * time.Second
	}
	m := &MockFleetService{
		now:      cfg.Start.UTC(),
		interval: cfg.StepInterval,
		rng:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		byID:     make(map[string]*Device, cfg.Devices),
		broker:   NewBroker(),
	}
	m.seedDevices(cfg.Devices)
	m.seedRollouts()
	m.seedDeployments()
	return m, nil
}

func (m *MockFleetService) seedDevices(n int) {
	m.devices = make([]*Device, n)
	for i := range n {
		id := fmt.Sprintf("dev-%05d", i+1)
		site := mockSites[m.rng.IntN(len(mockSites))]
		class := mockClasses[m.rng.IntN(len(mockClasses))]
		channel := "stable"
		if m.rng.IntN(10) == 0 {
			channel = "canary"
		}
		arch := "arm64"
		if class == "gateway" {
			arch = "amd64"
		}
		d := &Device{
			ID:           id,
			Labels:       map[string]string{"site": site, "class": class, "channel": channel},
			AgentVersion: vBase,
			Online:       m.rng.IntN(100) >= 7,
			Blacklisted:  m.rng.IntN(100) == 0,
			Upgrade:      UpgradeInfo{Phase: core.UpgradeIdle},
			Inventory: core.Inventory{Hostname: id, OS: "Debian GNU/Linux 12", Arch: arch,
				Kernel: "6.1.0-28-" + arch, CPUs: 2 << m.rng.IntN(3), MemoryBytes: uint64(1+m.rng.IntN(8)) << 30},
		}
		// Stragglers that missed the previous rollout: offline for days.
		if m.rng.IntN(100) < 3 {
			d.AgentVersion = vOld
			d.Online = false
		}
		if !d.Online {
			d.LastSeen = m.now.Add(-time.Duration(5+m.rng.IntN(3*24*60)) * time.Minute)
		}
		m.devices[i] = d
		m.byID[id] = d
	}
	// The first devices are pinned to states every demo should show.
	pin := func(i int, f func(d *Device)) {
		if i < n {
			f(m.devices[i])
		}
	}
	pin(3, func(d *Device) { d.Online = false; d.LastSeen = m.now.Add(-47 * time.Minute) })
	pin(5, func(d *Device) { d.Blacklisted = true; d.Online = true })
	pin(9, func(d *Device) { d.Labels["channel"] = "canary" })
}

func (m *MockFleetService) seedRollouts() {
	done := &mockRollout{Rollout: Rollout{Name: "agent-2026-10", Version: vBase}, wavePct: []int{10, 100},
		maxInFlight: 50, failThreshold: 10}
	cur := &mockRollout{Rollout: Rollout{Name: "agent-2026-11", Version: vTarget}, wavePct: []int{10, 40, 100},
		failThreshold: 20}
	rc := &mockRollout{Rollout: Rollout{Name: "agent-rc-canary", Version: vRC, Paused: true,
		Selector: core.LabelSelector{MatchLabels: map[string]string{"channel": "canary"}}},
		wavePct: []int{50, 100}, failThreshold: 5}
	m.rollouts = []*mockRollout{done, cur, rc}
	// The stragglers were marked for the previous rollout while away.
	for _, d := range m.targets(done.Selector) {
		if d.AgentVersion.Less(done.Version) {
			m.setUpgrade(d, done, core.UpgradeStaging)
		}
	}

	targets := m.targets(cur.Selector)
	cur.maxInFlight = max(2, len(targets)/20)
	ends := waveEnds(len(targets), cur.wavePct)
	// Wave 1 is done; wave 2 is under way; wave 3 waits.
	inflight := []core.AgentUpgradePhase{core.UpgradeStaging, core.UpgradeVerifying,
		core.UpgradeCutoverReady, core.UpgradeWaitingForStop, core.UpgradeReverting}
	for pos, d := range targets {
		if d.AgentVersion.Compare(vBase) != 0 {
			continue
		}
		var phase core.AgentUpgradePhase
		switch {
		case pos < ends[0]:
			phase = []core.AgentUpgradePhase{core.UpgradeCommitted, core.UpgradeFailed, core.UpgradeRolledBack}[min(pos, 2)]
			if pos > 2 {
				phase = pick(m.rng, []int{90, 5, 5}, core.UpgradeCommitted, core.UpgradeFailed, core.UpgradeRolledBack)
			}
		case pos < ends[1]:
			k := pos - ends[0]
			if k < len(inflight)-1 {
				phase = inflight[k]
			} else {
				phase = pick(m.rng, []int{45, 35, 17, 3}, core.UpgradeCommitted, inflight[m.rng.IntN(len(inflight))], core.UpgradeIdle, core.UpgradeFailed)
			}
			if !d.Online && phase.InFlight() {
				phase = core.UpgradeStaging // marked while it was away
			}
		default:
			continue
		}
		if phase == core.UpgradeIdle {
			continue
		}
		cur.attempt++
		m.setUpgrade(d, cur, phase)
	}
}

// setUpgrade puts d in phase of rollout r, keeping the fields consistent.
func (m *MockFleetService) setUpgrade(d *Device, r *mockRollout, phase core.AgentUpgradePhase) {
	if d.Upgrade.Rollout != r.Name {
		r.attempt++
		d.Upgrade = UpgradeInfo{Rollout: r.Name, Target: r.Version, Attempt: r.attempt}
	}
	d.Upgrade.Phase = phase
	d.Upgrade.Reason, d.Upgrade.Detail = "", ""
	switch phase {
	case core.UpgradeCommitted:
		d.AgentVersion = r.Version
	case core.UpgradeFailed:
		d.Upgrade.Reason = core.ReasonSelfTestFailed
		d.Upgrade.Detail = "self-test: exit status 3: config schema v4 not understood"
	case core.UpgradeRolledBack:
		d.Upgrade.Reason = core.ReasonCutoverTimeout
		d.Upgrade.Detail = "no heartbeat from " + r.Version.String() + " within 120s; reverted to " + d.AgentVersion.String()
	}
}

func (m *MockFleetService) seedDeployments() {
	mk := func(name, workload, version string, sel core.LabelSelector, paused bool, wavePct []int) *mockDeployment {
		return &mockDeployment{Deployment: Deployment{Name: name, Workload: workload, WorkloadVersion: version,
			Selector: sel, Generation: 1 + int64(len(name)%4), Paused: paused}, wavePct: wavePct, perStep: 3}
	}
	telemetry := mk("telemetry", "telemetry-agent", "3.4.1", core.LabelSelector{}, false, []int{100})
	camera := mk("camera-ingest", "camera-ingest", "2.0.0",
		core.LabelSelector{MatchLabels: map[string]string{"class": "camera"}}, false, []int{20, 60, 100})
	proxy := mk("edge-proxy", "envoy", "1.25.3",
		core.LabelSelector{MatchLabels: map[string]string{"class": "gateway"}}, false, []int{100})
	ml := mk("ml-inference", "detector", "0.9.0", core.LabelSelector{MatchExpressions: []core.SelectorRequirement{
		{Key: "class", Operator: core.OpIn, Values: []string{"camera"}},
		{Key: "site", Operator: core.OpIn, Values: []string{"berlin", "osaka"}}}}, true, []int{10, 100})
	m.deploys = []*mockDeployment{camera, proxy, ml, telemetry}

	set := func(dep *mockDeployment, f func(pos, end int, d *Device) DeviceDeployment) {
		targets := m.targets(dep.Selector)
		ends := waveEnds(len(targets), dep.wavePct)
		for pos, d := range targets {
			dd := f(pos, ends[0], d)
			dd.Deployment = dep.Name
			if dd.Phase != PhaseWaiting && dd.Version == "" {
				dd.Version = dep.WorkloadVersion
			}
			d.Deployments = append(d.Deployments, dd)
		}
		// Blacklisted devices get nothing until they are unblacklisted.
		for _, d := range m.devices {
			if d.Blacklisted && dep.Selector.Matches(d.Labels) {
				d.Deployments = append(d.Deployments, DeviceDeployment{Deployment: dep.Name, Phase: PhaseWaiting})
			}
		}
	}
	set(telemetry, func(pos, _ int, d *Device) DeviceDeployment {
		if m.rng.IntN(100) == 0 {
			return DeviceDeployment{Phase: core.PhaseFailed, LastError: "exec telemetry-agent: permission denied"}
		}
		if !d.Online {
			return DeviceDeployment{Phase: core.PhasePending}
		}
		return DeviceDeployment{Phase: core.PhaseRunning}
	})
	set(camera, func(pos, end int, d *Device) DeviceDeployment {
		switch {
		case pos < end:
			return DeviceDeployment{Phase: core.PhaseRunning}
		case pos < end+3:
			return DeviceDeployment{Phase: core.PhaseApplying}
		default:
			return DeviceDeployment{Phase: PhaseWaiting}
		}
	})
	set(proxy, func(pos, _ int, d *Device) DeviceDeployment {
		if pos == 0 || m.rng.IntN(100) < 15 {
			return DeviceDeployment{Phase: core.PhaseFailed, LastError: "health check http://127.0.0.1:9901/ready: connect: connection refused"}
		}
		return DeviceDeployment{Phase: core.PhaseRunning}
	})
	set(ml, func(pos, end int, d *Device) DeviceDeployment {
		if pos < end {
			return DeviceDeployment{Phase: core.PhaseRunning}
		}
		return DeviceDeployment{Phase: PhaseWaiting}
	})
	for _, d := range m.devices {
		sort.Slice(d.Deployments, func(i, j int) bool { return d.Deployments[i].Deployment < d.Deployments[j].Deployment })
	}
	// The status names the first failure, as the operator's aggregation does.
	for _, dep := range m.deploys {
		for _, d := range m.targets(dep.Selector) {
			if dd := deviceDeployment(d, dep.Name); dd != nil && dd.Phase == core.PhaseFailed {
				dep.LastError = d.ID + ": " + dd.LastError
				break
			}
		}
	}
}

func pick[T any](rng *rand.Rand, weights []int, vals ...T) T {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := rng.IntN(total)
	for i, w := range weights {
		if n < w {
			return vals[i]
		}
		n -= w
	}
	return vals[len(vals)-1]
}

// waveEnds turns cumulative percentages into cumulative device counts; the
// last wave always ends at total.
func waveEnds(total int, pct []int) []int {
	ends := make([]int, len(pct))
	for i, p := range pct {
		ends[i] = (total*p + 99) / 100
		if i > 0 && ends[i] < ends[i-1] {
			ends[i] = ends[i-1]
		}
	}
	if len(ends) > 0 {
		ends[len(ends)-1] = total
	}
	return ends
}

// targets lists the non-blacklisted devices sel matches, in ID order (the
// rollout's start order).
func (m *MockFleetService) targets(sel core.LabelSelector) []*Device {
	key := sel.String()
	m.cacheMu.Lock()
	defer m.cacheMu.Unlock()
	if t, ok := m.targetCache[key]; ok {
		return t
	}
	if m.targetCache == nil {
		m.targetCache = map[string][]*Device{}
	}
	var out []*Device
	for _, d := range m.devices {
		if !d.Blacklisted && sel.Matches(d.Labels) {
			out = append(out, d)
		}
	}
	m.targetCache[key] = out
	return out
}

// Changes implements FleetService.
func (m *MockFleetService) Changes() *Broker { return m.broker }

// Now is the mock's clock.
func (m *MockFleetService) Now() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.now
}

// view copies a device for a caller, so later Steps do not race with
// rendering.
func (m *MockFleetService) view(d *Device) Device {
	c := *d
	c.Deployments = slices.Clone(d.Deployments)
	if c.Online {
		// Heartbeats arrive every few seconds; no need to store each one.
		c.LastSeen = m.now.Add(-time.Duration(len(d.ID)+int(d.ID[len(d.ID)-1])%7) * time.Second)
	}
	return c
}

// Overview implements FleetService.
func (m *MockFleetService) Overview(ctx context.Context) (Overview, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	o := Overview{AsOf: m.now, Total: len(m.devices)}
	byVersion := map[string]int{}
	versions := map[string]core.Version{}
	byPhase := map[core.AgentUpgradePhase]int{}
	for _, d := range m.devices {
		if d.Online {
			o.Online++
		} else {
			o.Offline++
		}
		if d.Blacklisted {
			o.Blacklisted++
		}
		byVersion[d.AgentVersion.String()]++
		versions[d.AgentVersion.String()] = d.AgentVersion
		byPhase[d.Upgrade.Phase]++
		if d.NeedsAttention() {
			if o.AttentionTotal < MaxAttention {
				o.Attention = append(o.Attention, m.view(d))
			}
			o.AttentionTotal++
		}
	}
	o.ByVersion = versionCounts(byVersion, versions)
	for _, p := range core.UpgradePhases {
		if byPhase[p] > 0 {
			o.ByPhase = append(o.ByPhase, Count{Key: string(p), N: byPhase[p]})
		}
	}
	for _, dep := range m.deploys {
		o.Deployments = append(o.Deployments, m.deploymentView(dep).Deployment)
	}
	for _, r := range m.rollouts {
		o.Rollouts = append(o.Rollouts, m.rolloutView(r).Rollout)
	}
	return o, nil
}

func versionCounts(counts map[string]int, versions map[string]core.Version) []Count {
	keys := core.SortedKeys(counts)
	sort.SliceStable(keys, func(i, j int) bool { return versions[keys[j]].Less(versions[keys[i]]) })
	out := make([]Count, len(keys))
	for i, k := range keys {
		out[i] = Count{Key: k, N: counts[k]}
	}
	return out
}

// ListDevices implements FleetService.
func (m *MockFleetService) ListDevices(ctx context.Context, q DeviceQuery) (DevicePage, error) {
	q, err := q.Normalize()
	if err != nil {
		return DevicePage{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	p := DevicePage{Page: q.Page, PerPage: q.PerPage, AsOf: m.now}
	skip := (q.Page - 1) * q.PerPage
	versions := map[string]core.Version{}
	for _, d := range m.devices {
		if _, seen := versions[d.AgentVersion.String()]; !seen {
			versions[d.AgentVersion.String()] = d.AgentVersion
		}
		if !q.Match(d) {
			continue
		}
		if p.Total >= skip && len(p.Items) < q.PerPage {
			p.Items = append(p.Items, m.view(d))
		}
		p.Total++
	}
	p.Versions = sortedVersions(versions)
	return p, nil
}

// sortedVersions lists the keys of versions, newest first.
func sortedVersions(versions map[string]core.Version) []string {
	keys := core.SortedKeys(versions)
	sort.SliceStable(keys, func(i, j int) bool { return versions[keys[j]].Less(versions[keys[i]]) })
	return keys
}

// Device implements FleetService.
func (m *MockFleetService) Device(ctx context.Context, id string) (Device, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, ok := m.byID[id]
	if !ok {
		return Device{}, notFound("device", id)
	}
	return m.view(d), nil
}

// Deployments implements FleetService.
func (m *MockFleetService) Deployments(ctx context.Context) ([]Deployment, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Deployment, len(m.deploys))
	for i, dep := range m.deploys {
		out[i] = m.deploymentView(dep).Deployment
	}
	return out, nil
}

// Deployment implements FleetService.
func (m *MockFleetService) Deployment(ctx context.Context, name string) (DeploymentDetail, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, dep := range m.deploys {
		if dep.Name == name {
			return m.deploymentView(dep), nil
		}
	}
	return DeploymentDetail{}, notFound("deployment", name)
}

func deviceDeployment(d *Device, name string) *DeviceDeployment {
	for i := range d.Deployments {
		if d.Deployments[i].Deployment == name {
			return &d.Deployments[i]
		}
	}
	return nil
}

func (m *MockFleetService) deploymentView(dep *mockDeployment) DeploymentDetail {
	out := DeploymentDetail{Deployment: dep.Deployment}
	targets := m.targets(dep.Selector)
	ends := waveEnds(len(targets), dep.wavePct)
	out.Waves = make([]Wave, len(ends))
	c := &out.Counts
	c.Total = len(targets)
	for pos, d := range targets {
		w := &out.Waves[waveOf(ends, pos)]
		w.Devices++
		dd := deviceDeployment(d, dep.Name)
		phase := PhaseWaiting
		if dd != nil {
			phase = dd.Phase
		}
		if phase != PhaseWaiting {
			w.Started++
		}
		switch phase {
		case core.PhaseRunning:
			c.Succeeded++
			w.Done++
		case core.PhaseFailed:
			c.Failed++
			w.Done++
			w.Failed++
			if len(out.Failing) < MaxAttention {
				out.Failing = append(out.Failing, *dd)
				out.FailingDevices = append(out.FailingDevices, d.ID)
			}
		case core.PhasePending, core.PhaseApplying:
			c.Pending++
		default:
			c.Waiting++
		}
	}
	finishWaves(out.Waves)
	out.Conditions = []Condition{
		{Type: "Available", Status: c.Succeeded > 0, Reason: "DevicesRunning",
			Message: fmt.Sprintf("%d of %d devices running %s", c.Succeeded, c.Total, dep.WorkloadVersion)},
		{Type: "Progressing", Status: !dep.Paused && c.Succeeded+c.Failed < c.Total, Reason: "Waves",
			Message: fmt.Sprintf("%d waiting, %d pending", c.Waiting, c.Pending)},
		{Type: "Paused", Status: dep.Paused, Reason: "Spec", Message: "spec.rollout.paused"},
		{Type: "Degraded", Status: c.Failed > 0, Reason: "DevicesFailed", Message: fmt.Sprintf("%d devices failed", c.Failed)},
	}
	return out
}

func waveOf(ends []int, pos int) int {
	for i, e := range ends {
		if pos < e {
			return i
		}
	}
	return len(ends) - 1
}

func finishWaves(ws []Wave) {
	for i := range ws {
		w := &ws[i]
		w.Index = i + 1
		switch {
		case w.Devices > 0 && w.Done == w.Devices:
			w.Phase = WaveComplete
		case w.Started > 0:
			w.Phase = WaveInProgress
		default:
			w.Phase = WavePending
		}
	}
}

// Rollouts implements FleetService.
func (m *MockFleetService) Rollouts(ctx context.Context) ([]Rollout, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Rollout, len(m.rollouts))
	for i, r := range m.rollouts {
		out[i] = m.rolloutView(r).Rollout
	}
	return out, nil
}

// Rollout implements FleetService.
func (m *MockFleetService) Rollout(ctx context.Context, name string) (RolloutDetail, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rollout(name)
	if r == nil {
		return RolloutDetail{}, notFound("rollout", name)
	}
	return m.rolloutView(r), nil
}

func (m *MockFleetService) rollout(name string) *mockRollout {
	for _, r := range m.rollouts {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// rolloutState classifies a device for rollout r: "Succeeded", "Failed",
// "InProgress" or "Waiting", plus its phase label for ByPhase.
func rolloutState(d *Device, r *mockRollout) (state, phase string) {
	mine := d.Upgrade.Rollout == r.Name
	switch {
	case mine && d.Upgrade.Phase == core.UpgradeCommitted, !d.AgentVersion.Less(r.Version):
		return "Succeeded", "Succeeded"
	case mine && (d.Upgrade.Phase == core.UpgradeFailed || d.Upgrade.Phase == core.UpgradeRolledBack):
		return "Failed", string(d.Upgrade.Phase)
	case mine && d.Upgrade.Phase.InFlight():
		return "InProgress", string(d.Upgrade.Phase)
	}
	return "Waiting", "Waiting"
}

func (m *MockFleetService) rolloutView(r *mockRollout) RolloutDetail {
	out := RolloutDetail{Rollout: r.Rollout}
	targets := m.targets(r.Selector)
	ends := waveEnds(len(targets), r.wavePct)
	out.Waves = make([]Wave, len(ends))
	c := &out.Counts
	c.Total = len(targets)
	byPhase := map[string]int{}
	for pos, d := range targets {
		w := &out.Waves[waveOf(ends, pos)]
		w.Devices++
		state, phase := rolloutState(d, r)
		byPhase[phase]++
		switch state {
		case "Succeeded":
			c.Succeeded++
			w.Started++
			w.Done++
		case "Failed":
			c.Failed++
			w.Started++
			w.Done++
			w.Failed++
		case "InProgress":
			c.InProgress++
			w.Started++
		default:
			c.Waiting++
		}
	}
	finishWaves(out.Waves)
	order := []string{"Waiting"}
	for _, p := range core.UpgradePhases {
		order = append(order, string(p))
	}
	order = append(order, "Succeeded")
	for _, k := range order {
		if byPhase[k] > 0 {
			out.ByPhase = append(out.ByPhase, Count{Key: k, N: byPhase[k]})
		}
	}
	out.Conditions = []Condition{
		{Type: "Progressing", Status: !r.Paused && !out.Complete(), Reason: "Waves",
			Message: fmt.Sprintf("%d in progress, %d waiting", c.InProgress, c.Waiting)},
		{Type: "Paused", Status: r.Paused, Reason: "Spec", Message: strings.TrimSpace("spec.paused " + r.LastError)},
		{Type: "Complete", Status: out.Complete(), Reason: "AllDone",
			Message: fmt.Sprintf("%d of %d devices run %s", c.Succeeded, c.Total, r.Version)},
		{Type: "Degraded", Status: c.Failed > 0, Reason: "DevicesFailed", Message: fmt.Sprintf("%d devices failed or rolled back", c.Failed)},
	}
	return out
}

// SetBlacklisted implements FleetService.
func (m *MockFleetService) SetBlacklisted(ctx context.Context, id string, blacklisted bool) (Device, error) {
	m.mu.Lock()
	d, ok := m.byID[id]
	if !ok {
		m.mu.Unlock()
		return Device{}, notFound("device", id)
	}
	changed := d.Blacklisted != blacklisted
	d.Blacklisted = blacklisted
	m.cacheMu.Lock()
	m.targetCache = nil
	m.cacheMu.Unlock()
	v := m.view(d)
	m.mu.Unlock()
	if changed {
		m.broker.Publish(m.allProgressChanges(Change{KindDevice, id})...)
	}
	return v, nil
}

// allProgressChanges adds every rollout and deployment to changes: a
// blacklist change moves their targets.
func (m *MockFleetService) allProgressChanges(changes ...Change) []Change {
	for _, r := range m.rollouts {
		changes = append(changes, Change{KindRollout, r.Name})
	}
	for _, d := range m.deploys {
		changes = append(changes, Change{KindDeployment, d.Name})
	}
	return changes
}

// SetRolloutPaused implements FleetService.
func (m *MockFleetService) SetRolloutPaused(ctx context.Context, name string, paused bool) (Rollout, error) {
	m.mu.Lock()
	r := m.rollout(name)
	if r == nil {
		m.mu.Unlock()
		return Rollout{}, notFound("rollout", name)
	}
	changed := r.Paused != paused
	r.Paused = paused
	if !paused {
		r.LastError = ""
	}
	v := m.rolloutView(r).Rollout
	m.mu.Unlock()
	if changed {
		m.broker.Publish(Change{KindRollout, name})
	}
	return v, nil
}

// Ping implements FleetService.
func (m *MockFleetService) Ping(ctx context.Context, id string) (core.PingResult, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, ok := m.byID[id]
	if !ok {
		return core.PingResult{}, notFound("device", id)
	}
	if !d.Online {
		return core.PingResult{}, &core.CommandError{Code: core.ErrCodeOffline,
			Message: "no responders on " + core.CommandSubject(id, core.VerbPing)}
	}
	up := uint32(m.now.Sub(MockEpoch)/time.Second) + 3600 + uint32(len(id))*17
	return core.PingResult{Device: id, AgentVersion: d.AgentVersion, UptimeSec: up,
		Candidate: d.Upgrade.Phase == core.UpgradeWaitingForStop}, nil
}

// Logs implements FleetService: a deterministic synthetic log.
func (m *MockFleetService) Logs(ctx context.Context, id string, args core.LogsArgs) (core.LogsResult, error) {
	req := core.CommandRequest{Verb: core.VerbLogs, Logs: &args}
	if err := req.Validate(); err != nil {
		return core.LogsResult{}, fmt.Errorf("logs: %v: %w", err, ErrInvalid)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, ok := m.byID[id]
	if !ok {
		return core.LogsResult{}, notFound("device", id)
	}
	if !d.Online {
		return core.LogsResult{}, &core.CommandError{Code: core.ErrCodeOffline,
			Message: "no responders on " + core.CommandSubject(id, core.VerbLogs)}
	}
	source := "flotilla-agent " + d.AgentVersion.String()
	var dd *DeviceDeployment
	if args.Deployment != "" {
		dd = deviceDeployment(d, args.Deployment)
		if dd == nil {
			return core.LogsResult{}, &core.CommandError{Code: core.ErrCodeRejected,
				Message: fmt.Sprintf("deployment %q does not run on %s", args.Deployment, id)}
		}
		source = args.Deployment + " " + dd.Version
	}
	const history = 400
	n := min(req.Logs.Lines, history)
	res := core.LogsResult{Truncated: req.Logs.Lines < history}
	for i := history - n; i < history; i++ {
		at := m.now.Add(-time.Duration(history-i) * 3 * time.Second)
		msg := fmt.Sprintf("heartbeat seq=%d ok", 1000+i)
		switch {
		case dd != nil && dd.Phase == core.PhaseFailed && i%5 == 0:
			msg = "error: " + dd.LastError
		case i%7 == 0:
			msg = "kv watch desired-state: up to date"
		case dd != nil && i%3 == 0:
			msg = "workload " + dd.Deployment + " phase=" + string(dd.Phase)
		}
		res.Lines = append(res.Lines, fmt.Sprintf("%s %s[%s]: %s", at.Format(time.RFC3339), id, source, msg))
	}
	return res, nil
}

// Run calls Step every interval of wall time until ctx ends: the live demo.
func (m *MockFleetService) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Step()
		}
	}
}

// Step advances the mock fleet by one interval: in-flight upgrades move one
// phase (some fail or roll back), rollouts start the next devices of their
// current wave, deployments roll on, and a few devices go offline or come
// back. It publishes every change and returns how many objects changed.
func (m *MockFleetService) Step() int {
	m.mu.Lock()
	m.now = m.now.Add(m.interval)
	changed := map[Change]struct{}{}
	touch := func(d *Device) { changed[Change{KindDevice, d.ID}] = struct{}{} }

	for _, r := range m.rollouts {
		if m.stepRollout(r, touch) {
			changed[Change{KindRollout, r.Name}] = struct{}{}
		}
	}
	for _, dep := range m.deploys {
		if m.stepDeployment(dep, touch) {
			changed[Change{KindDeployment, dep.Name}] = struct{}{}
		}
	}
	// Connectivity churn: a few offline devices come back, fewer drop.
	for _, d := range m.devices {
		if d.Online && m.rng.IntN(2000) == 0 {
			d.Online = false
			d.LastSeen = m.now
			touch(d)
		} else if !d.Online && d.AgentVersion.Compare(vOld) != 0 && m.rng.IntN(40) == 0 {
			d.Online = true
			touch(d)
		}
	}
	m.mu.Unlock()
	out := make([]Change, 0, len(changed))
	for c := range changed {
		out = append(out, c)
	}
	m.broker.Publish(out...)
	return len(out)
}

func (m *MockFleetService) stepRollout(r *mockRollout, touch func(*Device)) bool {
	moved := false
	targets := m.targets(r.Selector)
	for _, d := range targets {
		if d.Upgrade.Rollout != r.Name || !d.Upgrade.Phase.InFlight() || !d.Online || m.rng.IntN(10) < 4 {
			continue
		}
		next := map[core.AgentUpgradePhase]core.AgentUpgradePhase{
			core.UpgradeStaging:        core.UpgradeVerifying,
			core.UpgradeVerifying:      pick(m.rng, []int{95, 5}, core.UpgradeCutoverReady, core.UpgradeFailed),
			core.UpgradeCutoverReady:   core.UpgradeWaitingForStop,
			core.UpgradeWaitingForStop: pick(m.rng, []int{96, 4}, core.UpgradeCommitted, core.UpgradeReverting),
			core.UpgradeReverting:      core.UpgradeRolledBack,
		}[d.Upgrade.Phase]
		m.setUpgrade(d, r, next)
		touch(d)
		moved = true
	}
	if r.Paused {
		return moved
	}
	ends := waveEnds(len(targets), r.wavePct)
	inFlight, failed := 0, 0
	firstOpen := len(ends)
	for pos, d := range targets {
		state, _ := rolloutState(d, r)
		switch state {
		case "InProgress":
			inFlight++
		case "Failed":
			failed++
		}
		if (state == "InProgress" || state == "Waiting") && waveOf(ends, pos) < firstOpen {
			firstOpen = waveOf(ends, pos)
		}
	}
	if failed*100 > r.failThreshold*len(targets) {
		r.Paused = true
		r.LastError = fmt.Sprintf("%d of %d devices failed, above the %d%% threshold", failed, len(targets), r.failThreshold)
		return true
	}
	if firstOpen == len(ends) {
		return moved
	}
	lo := 0
	if firstOpen > 0 {
		lo = ends[firstOpen-1]
	}
	for _, d := range targets[lo:ends[firstOpen]] {
		if inFlight >= r.maxInFlight {
			break
		}
		if state, _ := rolloutState(d, r); state != "Waiting" || d.Upgrade.Phase.InFlight() {
			continue
		}
		m.setUpgrade(d, r, core.UpgradeStaging)
		touch(d)
		inFlight++
		moved = true
	}
	return moved
}

func (m *MockFleetService) stepDeployment(dep *mockDeployment, touch func(*Device)) bool {
	moved := false
	targets := m.targets(dep.Selector)
	ends := waveEnds(len(targets), dep.wavePct)
	firstOpen := len(ends)
	for pos, d := range targets {
		dd := deviceDeployment(d, dep.Name)
		if dd == nil {
			continue
		}
		switch dd.Phase {
		case core.PhaseApplying, core.PhasePending:
			if d.Online && m.rng.IntN(3) > 0 {
				dd.Phase = pick(m.rng, []int{97, 3}, core.PhaseRunning, core.PhaseFailed)
				if dd.Phase == core.PhaseFailed {
					dd.LastError = "pull " + dep.Workload + ":" + dep.WorkloadVersion + ": unexpected EOF"
				}
				touch(d)
				moved = true
			}
			firstOpen = min(firstOpen, waveOf(ends, pos))
		case PhaseWaiting:
			firstOpen = min(firstOpen, waveOf(ends, pos))
		}
	}
	if dep.Paused || firstOpen == len(ends) {
		return moved
	}
	lo := 0
	if firstOpen > 0 {
		lo = ends[firstOpen-1]
	}
	started := 0
	for _, d := range targets[lo:ends[firstOpen]] {
		dd := deviceDeployment(d, dep.Name)
		if dd == nil || dd.Phase != PhaseWaiting || started >= dep.perStep {
			continue
		}
		dd.Phase, dd.Version = core.PhaseApplying, dep.WorkloadVersion
		touch(d)
		started++
		moved = true
	}
	return moved
}
