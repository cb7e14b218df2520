// Package scenario loads and validates simulator scenario files (YAML).
//
// Validation is strict: unknown fields, bad durations, percentages over
// 100 %, unknown fault kinds and impossible schedules are rejected with an
// error naming the file, the line and the field.
package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flotilla-fleet/flotilla/core"
)

// Scenario is one scenario file.
type Scenario struct {
	Pos         Pos
	Name        string       `yaml:"name"`
	Description string       `yaml:"description"`
	Duration    Duration     `yaml:"duration"`
	Seed        uint64       `yaml:"seed"`
	Fleet       Fleet        `yaml:"fleet"`
	Network     Network      `yaml:"network"`
	Operator    Operator     `yaml:"operator"`
	Deployments []Deployment `yaml:"deployments"`
	Steps       []Step       `yaml:"steps"`
	Faults      []Fault      `yaml:"faults"`
	Expect      Expect       `yaml:"expect"`

	// File is where the scenario was loaded from.
	File string `yaml:"-"`
}

// Fleet describes the devices.
type Fleet struct {
	Pos               Pos
	Devices           int                 `yaml:"devices"`
	Labels            map[string][]string `yaml:"labels"` // values spread round-robin over devices
	AgentVersion      string              `yaml:"agent_version"`
	HeartbeatInterval Duration            `yaml:"heartbeat_interval"`
	Prefix            string              `yaml:"prefix"` // device name prefix; default "dev"
}

// Network is the latency model (one way, client to server or back).
type Network struct {
	Pos     Pos
	Latency Duration `yaml:"latency"` // base; default 2ms
	Jitter  Duration `yaml:"jitter"`  // mean of an exponential extra; default 3ms
}

// Operator tunes the operator core and its shell.
type Operator struct {
	Pos            Pos
	Tick           Duration `yaml:"tick"`            // default 1s
	AttemptTimeout Duration `yaml:"attempt_timeout"` // default 10m
	OfflineAfter   Duration `yaml:"offline_after"`   // default 3 heartbeat intervals, at least 30s
	CutoverTimeout Duration `yaml:"cutover_timeout"` // default 120s
}

// Deployment is a workload deployment.
type Deployment struct {
	Pos      Pos
	Name     string            `yaml:"name"`
	Selector map[string]string `yaml:"selector"`
	Workload Workload          `yaml:"workload"`
	Strategy *Strategy         `yaml:"strategy"`
}

// Workload is what a deployment runs.
type Workload struct {
	Pos     Pos
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
}

// Strategy is a rollout strategy.
type Strategy struct {
	Pos              Pos
	Waves            []Amount `yaml:"waves"`
	MaxUnavailable   Amount   `yaml:"max_unavailable"`
	FailureThreshold *Amount  `yaml:"failure_threshold"`
}

// Step is one scheduled action; exactly one action field is set.
type Step struct {
	Pos              Pos
	At               Duration         `yaml:"at"`
	UpgradeAgent     *UpgradeAgent    `yaml:"upgrade_agent"`
	UpdateDeployment *UpdateDeploy    `yaml:"update_deployment"`
	AddDeployment    *Deployment      `yaml:"add_deployment"`
	Blacklist        *DeviceSelection `yaml:"blacklist"`
	Unblacklist      *DeviceSelection `yaml:"unblacklist"`
	SetLabels        *SetLabels       `yaml:"set_labels"`
}

// UpgradeAgent starts an agent rollout.
type UpgradeAgent struct {
	Pos      Pos
	Name     string            `yaml:"name"` // AgentRollout name; default "agent-upgrade"
	Version  string            `yaml:"version"`
	Artifact string            `yaml:"artifact"` // behaviour; default healthy
	Selector map[string]string `yaml:"selector"`
	Strategy Strategy          `yaml:"strategy"`
}

// UpdateDeploy changes a deployment's workload version (a new generation).
type UpdateDeploy struct {
	Pos      Pos
	Name     string            `yaml:"name"`
	Version  string            `yaml:"version"`
	Selector map[string]string `yaml:"selector"`
}

// DeviceSelection picks devices: by name, by label selector, and/or an
// amount drawn (seeded) from those that match.
type DeviceSelection struct {
	Pos      Pos
	Devices  Amount            `yaml:"devices"`
	Names    []string          `yaml:"names"`
	Selector map[string]string `yaml:"selector"`
}

// SetLabels changes labels on selected devices (an empty value removes).
type SetLabels struct {
	Pos      Pos
	Devices  Amount            `yaml:"devices"`
	Names    []string          `yaml:"names"`
	Selector map[string]string `yaml:"selector"`
	Labels   map[string]string `yaml:"labels"`
}

// Fault kinds.
const (
	FaultDrop          = "drop"
	FaultDelay         = "delay"
	FaultDuplicate     = "duplicate"
	FaultReorder       = "reorder"
	FaultPartition     = "partition"
	FaultOutage        = "nats-outage"
	FaultOperatorCrash = "operator-crash"
	FaultAgentCrash    = "agent-crash"
	FaultPowerCut      = "power-cut"
	FaultOffline       = "offline"
	FaultClockDrift    = "clock-drift"
	FaultClockJump     = "clock-jump"
	FaultArtifact      = "artifact"
	// FaultNATSRestart restarts the server: every connection drops at once
	// and comes back, and existing KV watches go quiet until rebuilt.
	FaultNATSRestart = "nats-restart"
	// FaultAckLoss loses a rate of KV write acknowledgements in a window:
	// the write lands, the writer sees a timeout.
	FaultAckLoss = "ack-loss"
	// FaultDeadLink black-holes devices' links in a window; a client
	// notices only by missed pings.
	FaultDeadLink = "dead-link"
)

// FaultKinds lists every fault kind.
var FaultKinds = []string{FaultDrop, FaultDelay, FaultDuplicate, FaultReorder, FaultPartition, FaultOutage,
	FaultOperatorCrash, FaultAgentCrash, FaultPowerCut, FaultOffline, FaultClockDrift, FaultClockJump, FaultArtifact,
	FaultNATSRestart, FaultAckLoss, FaultDeadLink}

// Artifact behaviours.
const (
	ArtifactHealthy    = "healthy"
	ArtifactCorrupt    = "corrupt"
	ArtifactSelfTest   = "fails-self-test"
	ArtifactCrashes    = "crashes-after-cutover"
	ArtifactHangs      = "hangs"
	ArtifactDiskFull   = "disk-full"
	ArtifactWrongHash  = "wrong-checksum"
	ArtifactDownloadKO = "download-fails"
)

// ArtifactBehaviours lists every artifact behaviour.
var ArtifactBehaviours = []string{ArtifactHealthy, ArtifactCorrupt, ArtifactSelfTest, ArtifactCrashes,
	ArtifactHangs, ArtifactDiskFull, ArtifactWrongHash, ArtifactDownloadKO}

// Upgrade phases a trigger may name (the agent's phases on entry).
var triggerPhases = []string{string(core.UpgradeStaging), string(core.UpgradeVerifying),
	string(core.UpgradeCutoverReady), string(core.UpgradeWaitingForStop), string(core.UpgradeReverting),
	string(core.UpgradeCommitted)}

// Fault is one fault; which fields apply depends on Kind.
type Fault struct {
	Pos       Pos
	Kind      string            `yaml:"kind"`
	Rate      Ratio             `yaml:"rate"`      // drop, duplicate, reorder, ack-loss, agent-crash (per device-hour)
	Delay     Duration          `yaml:"delay"`     // delay, reorder: extra latency
	At        Duration          `yaml:"at"`        // start of the window
	For       Duration          `yaml:"for"`       // length of the window
	Devices   Amount            `yaml:"devices"`   // which devices (count or %); default all
	Names     []string          `yaml:"names"`     // devices by name
	Selector  map[string]string `yaml:"selector"`  // label group
	Direction string            `yaml:"direction"` // partition: both | in | out
	When      string            `yaml:"when"`      // trigger on an upgrade phase instead of at
	Down      Duration          `yaml:"down"`      // operator-crash / agent-crash / power-cut / nats-restart: time until restart
	Lose      string            `yaml:"lose"`      // power-cut: lost | torn | either (unsynced writes)
	Behaviour string            `yaml:"behaviour"` // artifact
	DriftPPM  int               `yaml:"drift_ppm"` // clock-drift
	By        Duration          `yaml:"by"`        // clock-jump (may be negative)
	Count     int               `yaml:"count"`     // triggered faults: how many times (default 1)
}

// Expect is what must hold at the end.
type Expect struct {
	Pos              Pos
	ConvergedWithin  Duration             `yaml:"converged_within"`
	AgentVersion     map[string]Threshold `yaml:"agent_version"`
	WorkloadsRunning *Threshold           `yaml:"workloads_running"`
	RolledBack       *Threshold           `yaml:"rolled_back"`
	UpgradeFailed    *Threshold           `yaml:"upgrade_failed"`
	RolloutPaused    *bool                `yaml:"rollout_paused"`
	FaultsFired      map[string]Threshold `yaml:"faults_fired"`
	Violations       []string             `yaml:"violations"` // invariants expected to fire (checker tests)
}

// ---- value types -------------------------------------------------------------

// Duration is a Go duration string ("90s", "1h30m"), or "3d" days.
type Duration struct {
	D   time.Duration
	Set bool
}

func (d *Duration) parseScalar(s string) error {
	s = strings.TrimSpace(s)
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	if n, ok := strings.CutSuffix(body, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil || days < 0 {
			return fmt.Errorf("bad duration %q (want e.g. 90s, 15m, 2h, 3d)", s)
		}
		d.D = time.Duration(days * float64(24*time.Hour))
	} else {
		v, err := time.ParseDuration(body)
		if err != nil {
			return fmt.Errorf("bad duration %q (want e.g. 90s, 15m, 2h, 3d)", s)
		}
		d.D = v
	}
	if neg {
		d.D = -d.D
	}
	d.Set = true
	return nil
}

// Amount is a count of devices ("10") or a percentage ("5%").
type Amount struct {
	Value   float64
	Percent bool
	Set     bool
}

func (a *Amount) parseScalar(s string) error {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 {
			return fmt.Errorf("bad percentage %q", s)
		}
		if v > 100 {
			return fmt.Errorf("percentage %s is over 100%%", s)
		}
		*a = Amount{Value: v, Percent: true, Set: true}
		return nil
	}
	v, err := strconv.ParseUint(s, 10, 31)
	if err != nil {
		return fmt.Errorf("bad amount %q (want a count like 10 or a percentage like 5%%)", s)
	}
	*a = Amount{Value: float64(v), Set: true}
	return nil
}

// Of resolves the amount against total (percentages round up, at least 1 if
// non-zero).
func (a Amount) Of(total int) int {
	if !a.Set {
		return total
	}
	if !a.Percent {
		return min(total, int(a.Value))
	}
	n := int(math.Ceil(a.Value * float64(total) / 100))
	return min(total, n)
}

func (a Amount) String() string {
	if a.Percent {
		return strconv.FormatFloat(a.Value, 'f', -1, 64) + "%"
	}
	return strconv.FormatFloat(a.Value, 'f', -1, 64)
}

// Ratio is a probability: 0.05 or "5%".
type Ratio struct {
	P   float64
	Set bool
}

func (r *Ratio) parseScalar(s string) error {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 {
			return fmt.Errorf("bad percentage %q", s)
		}
		if v > 100 {
			return fmt.Errorf("percentage %s is over 100%%", s)
		}
		*r = Ratio{P: v / 100, Set: true}
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v > 1 {
		return fmt.Errorf("bad rate %q (want a probability between 0 and 1, or a percentage)", s)
	}
	*r = Ratio{P: v, Set: true}
	return nil
}

// Threshold is a comparison: ">=95%", "<=5%", "==0", ">10".
type Threshold struct {
	Op    string
	Value Amount
	Raw   string
}

func (t *Threshold) parseScalar(s string) error {
	s = strings.TrimSpace(s)
	t.Raw = s
	t.Op = "=="
	for _, op := range []string{">=", "<=", "==", ">", "<", "="} {
		if rest, ok := strings.CutPrefix(s, op); ok {
			t.Op = op
			if op == "=" {
				t.Op = "=="
			}
			s = strings.TrimSpace(rest)
			break
		}
	}
	return t.Value.parseScalar(s)
}

// Holds reports whether got out of total satisfies the threshold.
func (t Threshold) Holds(got, total int) bool {
	want := t.Value.Value
	g := float64(got)
	if t.Value.Percent {
		if total == 0 {
			g = 100
			if got == 0 && t.Op != ">=" && t.Op != ">" {
				g = 0
			}
		} else {
			g = 100 * float64(got) / float64(total)
		}
	}
	switch t.Op {
	case ">=":
		return g >= want-1e-9
	case "<=":
		return g <= want+1e-9
	case ">":
		return g > want
	case "<":
		return g < want
	}
	return math.Abs(g-want) < 1e-9
}

func (t Threshold) String() string { return t.Raw }

// ---- loading -----------------------------------------------------------------

// Load reads and validates a scenario file.
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates scenario YAML; file names the source in
// errors. All problems found are returned, joined.
func Parse(file string, data []byte) (*Scenario, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		msg := err.Error()
		line := 0
		if _, rest, ok := strings.Cut(msg, "line "); ok {
			if n, _, ok := strings.Cut(rest, ":"); ok {
				line, _ = strconv.Atoi(n)
			}
		}
		return nil, &Error{File: file, Line: line, Msg: "not valid YAML: " + msg}
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		return nil, &Error{File: file, Msg: "empty scenario"}
	}
	d := &decoder{file: file}
	var s Scenario
	d.decode(root.Content[0], reflect.ValueOf(&s).Elem(), "")
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	s.File = file
	s.applyDefaults()
	if errs := s.validate(file); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &s, nil
}

func (s *Scenario) applyDefaults() {
	if s.Seed == 0 {
		s.Seed = 1
	}
	if s.Fleet.Prefix == "" {
		s.Fleet.Prefix = "dev"
	}
	if !s.Fleet.HeartbeatInterval.Set {
		s.Fleet.HeartbeatInterval = Duration{D: 10 * time.Second, Set: true}
	}
	if !s.Network.Latency.Set {
		s.Network.Latency = Duration{D: 2 * time.Millisecond, Set: true}
	}
	if !s.Network.Jitter.Set {
		s.Network.Jitter = Duration{D: 3 * time.Millisecond, Set: true}
	}
	if !s.Operator.Tick.Set {
		s.Operator.Tick = Duration{D: time.Second, Set: true}
	}
	if !s.Operator.OfflineAfter.Set {
		// As a fleet would configure it: a device is offline after three
		// missed heartbeats, not one. With the operator core's 30 s default
		// and 30 s heartbeats every device flapped offline and back on
		// every beat that came a little late.
		s.Operator.OfflineAfter = Duration{D: max(30*time.Second, 3*s.Fleet.HeartbeatInterval.D), Set: true}
	}
	for i := range s.Steps {
		if u := s.Steps[i].UpgradeAgent; u != nil {
			if u.Name == "" {
				u.Name = "agent-upgrade"
			}
			if u.Artifact == "" {
				u.Artifact = ArtifactHealthy
			}
		}
	}
	for i := range s.Faults {
		f := &s.Faults[i]
		if f.Count == 0 {
			f.Count = 1
		}
		if f.Kind == FaultPartition && f.Direction == "" {
			f.Direction = "both"
		}
		if f.Kind == FaultPowerCut && f.Lose == "" {
			f.Lose = "either"
		}
	}
}

// FaultWindowEnd is when the last scheduled fault or step ends: the liveness
// phase starts there.
func (s *Scenario) FaultWindowEnd() time.Duration {
	var end time.Duration
	for _, st := range s.Steps {
		end = max(end, st.At.D)
	}
	for _, f := range s.Faults {
		e := f.At.D + f.For.D
		if f.Down.Set {
			e += f.Down.D
		}
		end = max(end, e)
	}
	return end
}

func (s *Scenario) validate(file string) []error {
	var errs []error
	bad := func(p Pos, field, format string, args ...any) {
		first, _, _ := strings.Cut(field, ".")
		errs = append(errs, &Error{File: file, Line: p.LineOf(first), Field: join(p.Path, field), Msg: fmt.Sprintf(format, args...)})
	}
	if s.Name == "" {
		bad(s.Pos, "name", "required")
	} else if err := core.ValidateName("scenario", s.Name); err != nil {
		bad(s.Pos, "name", "%v", err)
	}
	if !s.Duration.Set || s.Duration.D <= 0 {
		bad(s.Pos, "duration", "required and positive")
	}
	if s.Duration.D > 30*24*time.Hour {
		bad(s.Pos, "duration", "longer than 30 days")
	}
	f := s.Fleet
	if f.Devices < 1 || f.Devices > 1_000_000 {
		bad(f.Pos, "devices", "must be between 1 and 1000000, got %d", f.Devices)
	}
	if _, err := core.ParseVersion(f.AgentVersion); err != nil {
		bad(f.Pos, "agent_version", "%v", err)
	}
	if f.HeartbeatInterval.D < 100*time.Millisecond {
		bad(f.Pos, "heartbeat_interval", "must be at least 100ms")
	}
	for _, k := range core.SortedKeys(f.Labels) {
		if len(f.Labels[k]) == 0 {
			bad(f.Pos, "labels."+k, "needs at least one value")
		}
		if err := core.ValidateLabels(map[string]string{k: f.Labels[k][0]}); err != nil {
			bad(f.Pos, "labels."+k, "%v", err)
		}
	}
	if s.Network.Latency.D < 0 || s.Network.Jitter.D < 0 {
		bad(s.Network.Pos, "latency", "must not be negative")
	}
	deps := map[string]bool{}
	checkDep := func(d Deployment) {
		if err := core.ValidateDeploymentName(d.Name); err != nil {
			bad(d.Pos, "name", "%v", err)
		}
		if deps[d.Name] {
			bad(d.Pos, "name", "deployment %q defined twice", d.Name)
		}
		deps[d.Name] = true
		if d.Workload.Name == "" || d.Workload.Version == "" {
			bad(d.Workload.Pos, "", "workload name and version are required")
		}
		if d.Strategy != nil {
			s.validateStrategy(*d.Strategy, bad)
		}
	}
	for _, d := range s.Deployments {
		checkDep(d)
	}
	rollouts := map[string]bool{}
	for _, st := range s.Steps {
		if st.At.D < 0 || st.At.D >= s.Duration.D {
			bad(st.Pos, "at", "step at %v is outside the scenario's duration %v", st.At.D, s.Duration.D)
		}
		n := 0
		for _, set := range []bool{st.UpgradeAgent != nil, st.UpdateDeployment != nil, st.AddDeployment != nil,
			st.Blacklist != nil, st.Unblacklist != nil, st.SetLabels != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			bad(st.Pos, "", "a step needs exactly one action (upgrade_agent, update_deployment, add_deployment, blacklist, unblacklist, set_labels), got %d", n)
			continue
		}
		switch {
		case st.UpgradeAgent != nil:
			u := st.UpgradeAgent
			if _, err := core.ParseVersion(u.Version); err != nil {
				bad(u.Pos, "version", "%v", err)
			}
			if !slices.Contains(ArtifactBehaviours, u.Artifact) {
				bad(u.Pos, "artifact", "unknown behaviour %q (want one of %s)", u.Artifact, strings.Join(ArtifactBehaviours, ", "))
			}
			s.validateStrategy(u.Strategy, bad)
			rollouts[u.Name] = true
		case st.UpdateDeployment != nil:
			u := st.UpdateDeployment
			if !deps[u.Name] {
				bad(u.Pos, "name", "no deployment %q defined before this step", u.Name)
			}
			if u.Version == "" {
				bad(u.Pos, "version", "required")
			}
		case st.AddDeployment != nil:
			checkDep(*st.AddDeployment)
		case st.SetLabels != nil:
			if len(st.SetLabels.Labels) == 0 {
				bad(st.SetLabels.Pos, "labels", "required")
			}
		}
	}
	for _, ft := range s.Faults {
		s.validateFault(ft, bad)
	}
	e := s.Expect
	if !e.ConvergedWithin.Set || e.ConvergedWithin.D <= 0 {
		bad(e.Pos, "converged_within", "required and positive")
	} else if end := s.FaultWindowEnd() + e.ConvergedWithin.D; end > s.Duration.D {
		bad(e.Pos, "converged_within", "impossible schedule: the fault window ends at %v and convergence may take %v, past the scenario's duration %v",
			s.FaultWindowEnd(), e.ConvergedWithin.D, s.Duration.D)
	}
	for _, v := range core.SortedKeys(e.AgentVersion) {
		if _, err := core.ParseVersion(v); err != nil {
			bad(e.Pos, "agent_version."+v, "%v", err)
		}
	}
	for _, k := range core.SortedKeys(e.FaultsFired) {
		if !slices.Contains(FaultKinds, k) {
			bad(e.Pos, "faults_fired."+k, "unknown fault kind")
		}
	}
	return errs
}

// onlyFields reports the fields of f that its kind does not use (for the
// kinds that check them).
func (s *Scenario) onlyFields(f Fault, bad func(Pos, string, string, ...any), allowed ...string) {
	set := map[string]bool{"rate": f.Rate.Set, "delay": f.Delay.Set, "for": f.For.Set, "devices": f.Devices.Set,
		"names": len(f.Names) > 0, "selector": len(f.Selector) > 0, "direction": f.Direction != "", "when": f.When != "",
		"down": f.Down.Set, "lose": f.Lose != "", "behaviour": f.Behaviour != "", "drift_ppm": f.DriftPPM != 0,
		"by": f.By.Set, "count": f.Count != 1}
	for _, k := range core.SortedKeys(set) {
		if set[k] && !slices.Contains(allowed, k) {
			bad(f.Pos, k, "not a field of a %s fault (it takes %s)", f.Kind, strings.Join(allowed, ", "))
		}
	}
}

func (s *Scenario) validateStrategy(st Strategy, bad func(Pos, string, string, ...any)) {
	for i, w := range st.Waves {
		if w.Value == 0 {
			bad(st.Pos, fmt.Sprintf("waves[%d]", i), "a wave must hold at least one device")
		}
		if w.Percent && w.Value != math.Trunc(w.Value) {
			bad(st.Pos, fmt.Sprintf("waves[%d]", i), "whole percentages only")
		}
	}
	if st.MaxUnavailable.Percent && st.MaxUnavailable.Value != math.Trunc(st.MaxUnavailable.Value) {
		bad(st.Pos, "max_unavailable", "whole percentages only")
	}
}

func (s *Scenario) validateFault(f Fault, bad func(Pos, string, string, ...any)) {
	if !slices.Contains(FaultKinds, f.Kind) {
		bad(f.Pos, "kind", "unknown fault kind %q (want one of %s)", f.Kind, strings.Join(FaultKinds, ", "))
		return
	}
	if f.At.D < 0 || f.For.D < 0 || f.Down.D < 0 {
		bad(f.Pos, "at", "times must not be negative")
	}
	if f.At.D+f.For.D > s.Duration.D {
		bad(f.Pos, "for", "impossible schedule: the fault window %v+%v ends after the scenario's duration %v", f.At.D, f.For.D, s.Duration.D)
	}
	if f.When != "" && !slices.Contains(triggerPhases, f.When) {
		bad(f.Pos, "when", "unknown upgrade phase %q (want one of %s)", f.When, strings.Join(triggerPhases, ", "))
	}
	needWindow := func() {
		if !f.For.Set || f.For.D <= 0 {
			bad(f.Pos, "for", "required: how long the %s fault lasts", f.Kind)
		}
	}
	switch f.Kind {
	case FaultDrop, FaultDuplicate:
		if !f.Rate.Set || f.Rate.P <= 0 {
			bad(f.Pos, "rate", "required and positive")
		}
		needWindow()
	case FaultDelay, FaultReorder:
		if !f.Delay.Set || f.Delay.D <= 0 {
			bad(f.Pos, "delay", "required and positive")
		}
		if f.Kind == FaultReorder && (!f.Rate.Set || f.Rate.P <= 0) {
			bad(f.Pos, "rate", "required and positive")
		}
		needWindow()
	case FaultPartition:
		if !slices.Contains([]string{"both", "in", "out"}, f.Direction) {
			bad(f.Pos, "direction", "want both, in or out, got %q", f.Direction)
		}
		needWindow()
	case FaultOutage, FaultOffline:
		needWindow()
	case FaultClockDrift:
		if f.DriftPPM == 0 || f.DriftPPM < -500000 || f.DriftPPM > 500000 {
			bad(f.Pos, "drift_ppm", "required, between -500000 and 500000 (non-zero)")
		}
	case FaultClockJump:
		if !f.By.Set || f.By.D == 0 {
			bad(f.Pos, "by", "required and non-zero")
		}
	case FaultArtifact:
		if !slices.Contains(ArtifactBehaviours, f.Behaviour) {
			bad(f.Pos, "behaviour", "unknown behaviour %q (want one of %s)", f.Behaviour, strings.Join(ArtifactBehaviours, ", "))
		}
	case FaultPowerCut:
		if !slices.Contains([]string{"lost", "torn", "either"}, f.Lose) {
			bad(f.Pos, "lose", "want lost, torn or either, got %q", f.Lose)
		}
	case FaultAgentCrash, FaultOperatorCrash:
	case FaultNATSRestart:
		if f.Down.Set && (f.Down.D <= 0 || f.Down.D > time.Hour) {
			bad(f.Pos, "down", "must be positive and at most 1h (a longer stop is a nats-outage), got %v", f.Down.D)
		}
		s.onlyFields(f, bad, "at", "down", "when", "count")
	case FaultAckLoss:
		if !f.Rate.Set || f.Rate.P <= 0 {
			bad(f.Pos, "rate", "required and positive: the share of write acknowledgements lost")
		}
		needWindow()
		s.onlyFields(f, bad, "at", "for", "rate", "devices", "names", "selector")
	case FaultDeadLink:
		needWindow()
		s.onlyFields(f, bad, "at", "for", "devices", "names", "selector")
	}
	if f.Rate.Set && f.Kind == FaultAgentCrash && !f.For.Set {
		bad(f.Pos, "for", "required with rate: the window in which crashes happen")
	}
	if f.Count < 1 || f.Count > 1000 {
		bad(f.Pos, "count", "must be between 1 and 1000")
	}
}
