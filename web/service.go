// Package web is the Flotilla dashboard: a FleetService interface shared by
// the dashboard, its tests and the CLI, a seeded MockFleetService, a
// RealFleetService over Kubernetes and NATS, and a server-rendered HTMX UI
// with live updates over server-sent events.
package web

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// ErrNotFound is wrapped by service errors for an unknown device,
// deployment or rollout; handlers answer 404.
var ErrNotFound = errors.New("not found")

// ErrInvalid is wrapped by service errors for a malformed argument
// (a bad filter, an impossible page); handlers answer 400.
var ErrInvalid = errors.New("invalid argument")

func notFound(kind, name string) error {
	return fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
}

// FleetService is everything the dashboard reads and does. The mock, the
// real (Kubernetes + NATS) service and the simulator-backed mock implement
// it; handlers only extract arguments, call it and render.
type FleetService interface {
	// Overview counts the fleet by version, upgrade phase and online state
	// and lists what needs attention.
	Overview(ctx context.Context) (Overview, error)
	// ListDevices filters, sorts (by ID) and paginates on the server.
	ListDevices(ctx context.Context, q DeviceQuery) (DevicePage, error)
	// Device returns one device; ErrNotFound if unknown.
	Device(ctx context.Context, id string) (Device, error)
	// Deployments lists every deployment, sorted by name.
	Deployments(ctx context.Context) ([]Deployment, error)
	// Deployment returns one deployment with per-wave progress.
	Deployment(ctx context.Context, name string) (DeploymentDetail, error)
	// Rollouts lists every agent rollout, sorted by name.
	Rollouts(ctx context.Context) ([]Rollout, error)
	// Rollout returns one agent rollout with per-wave progress.
	Rollout(ctx context.Context, name string) (RolloutDetail, error)

	// SetBlacklisted blacklists (true) or unblacklists a device and
	// returns it as it is afterwards.
	SetBlacklisted(ctx context.Context, id string, blacklisted bool) (Device, error)
	// SetRolloutPaused pauses (true) or resumes an agent rollout.
	SetRolloutPaused(ctx context.Context, name string, paused bool) (Rollout, error)
	// Ping sends the ping command; a *core.CommandError reports offline,
	// timeout and the like.
	Ping(ctx context.Context, id string) (core.PingResult, error)
	// Logs tails a deployment's workload log (the agent's own log when
	// args.Deployment is empty).
	Logs(ctx context.Context, id string, args core.LogsArgs) (core.LogsResult, error)

	// Changes is the feed of live updates (device rows, rollout and
	// deployment progress).
	Changes() *Broker
}

// Device is one device as the dashboard shows it.
type Device struct {
	ID           string
	Labels       map[string]string
	AgentVersion core.Version // zero if never reported
	Online       bool
	LastSeen     time.Time // zero if never seen
	Blacklisted  bool
	Upgrade      UpgradeInfo
	Inventory    core.Inventory
	Deployments  []DeviceDeployment // sorted by deployment
}

// UpgradeInfo is where the device's agent self-upgrade stands.
type UpgradeInfo struct {
	Phase   core.AgentUpgradePhase // Idle when no attempt
	Rollout string
	Target  core.Version // zero if none
	Attempt uint32
	Reason  core.UpgradeReason
	Detail  string
}

// DeviceDeployment is one deployment's phase on a device. Phase is a
// core.WorkloadPhase, or "Waiting" (targeted, not started yet).
type DeviceDeployment struct {
	Deployment string
	Phase      core.WorkloadPhase
	Version    string
	LastError  string
}

// PhaseWaiting is the workload phase of a device a deployment has not
// reached yet.
const PhaseWaiting core.WorkloadPhase = "Waiting"

// NeedsAttention reports whether an operator should look at the device.
func (d Device) NeedsAttention() bool {
	if d.Blacklisted {
		return false
	}
	if !d.Online || d.Upgrade.Phase == core.UpgradeFailed || d.Upgrade.Phase == core.UpgradeRolledBack {
		return true
	}
	for _, dd := range d.Deployments {
		if dd.Phase == core.PhaseFailed {
			return true
		}
	}
	return false
}

// Upgrade phases the operator records besides the agent's own: the marker
// is written but the agent has not answered, or the attempt timed out.
const (
	PhaseMarked   core.AgentUpgradePhase = "Marked"
	PhaseTimedOut core.AgentUpgradePhase = "TimedOut"
)

// FilterPhases are the values of the device list's phase filter: the
// agent's phases in protocol order, then the operator's.
var FilterPhases = append(slices.Clone(core.UpgradePhases), PhaseMarked, PhaseTimedOut)

// Online filter values of DeviceQuery.
const (
	OnlineAny = ""
	OnlineYes = "online"
	OnlineNo  = "offline"
)

// DeviceQuery filters and paginates the device list. The zero value lists
// the first page of every device.
type DeviceQuery struct {
	Version string                 // exact agent version string, "" for any
	Online  string                 // OnlineAny, OnlineYes or OnlineNo
	Phase   core.AgentUpgradePhase // "" for any
	// Labels is a label selector; the dashboard parses it from the
	// "label" query parameter with ParseLabelFilter.
	Labels      core.LabelSelector
	Blacklisted *bool  // nil for any
	Search      string // substring of the device ID
	Page        int    // 1-based; 0 means 1
	PerPage     int    // 0 means DefaultPerPage; capped at MaxPerPage
}

// Paging defaults.
const (
	DefaultPerPage = 50
	MaxPerPage     = 500
)

// Normalize fills defaults and checks the query, wrapping ErrInvalid.
func (q DeviceQuery) Normalize() (DeviceQuery, error) {
	if q.Page == 0 {
		q.Page = 1
	}
	if q.PerPage == 0 {
		q.PerPage = DefaultPerPage
	}
	if q.Page < 0 {
		return q, fmt.Errorf("page %d: must be at least 1: %w", q.Page, ErrInvalid)
	}
	if q.PerPage < 0 || q.PerPage > MaxPerPage {
		return q, fmt.Errorf("per_page %d: must be between 1 and %d: %w", q.PerPage, MaxPerPage, ErrInvalid)
	}
	if q.Online != OnlineAny && q.Online != OnlineYes && q.Online != OnlineNo {
		return q, fmt.Errorf("online %q: want online or offline: %w", q.Online, ErrInvalid)
	}
	if q.Phase != "" && !slices.Contains(FilterPhases, q.Phase) {
		return q, fmt.Errorf("phase %q: unknown upgrade phase (want one of %v): %w", q.Phase, FilterPhases, ErrInvalid)
	}
	if err := q.Labels.Validate(); err != nil {
		return q, fmt.Errorf("label: %v: %w", err, ErrInvalid)
	}
	return q, nil
}

// Match reports whether d passes the query's filters (not its paging).
func (q DeviceQuery) Match(d *Device) bool {
	if q.Version != "" && d.AgentVersion.String() != q.Version {
		return false
	}
	switch q.Online {
	case OnlineYes:
		if !d.Online {
			return false
		}
	case OnlineNo:
		if d.Online {
			return false
		}
	}
	if q.Phase != "" && d.Upgrade.Phase != q.Phase {
		return false
	}
	if q.Blacklisted != nil && d.Blacklisted != *q.Blacklisted {
		return false
	}
	if q.Search != "" && !containsFold(d.ID, q.Search) {
		return false
	}
	if !q.Labels.IsEmpty() && !q.Labels.Matches(d.Labels) {
		return false
	}
	return true
}

// DevicePage is one page of the filtered device list.
type DevicePage struct {
	Items   []Device
	Total   int // devices matching the filters
	Page    int
	PerPage int
	AsOf    time.Time
	// Versions lists the agent versions present in the whole fleet,
	// newest first, for the version filter.
	Versions []string
}

// Pages is the number of pages (at least 1).
func (p DevicePage) Pages() int {
	if p.PerPage <= 0 || p.Total == 0 {
		return 1
	}
	return (p.Total + p.PerPage - 1) / p.PerPage
}

// Count is one bucket of an overview histogram.
type Count struct {
	Key string
	N   int
}

// Overview is the fleet at a glance.
type Overview struct {
	AsOf        time.Time
	Total       int
	Online      int
	Offline     int
	Blacklisted int
	ByVersion   []Count // sorted by version, newest first
	ByPhase     []Count // in protocol order, non-zero only
	// Attention lists devices that need a look (failed, rolled back,
	// offline), the first MaxAttention of them, sorted by ID.
	Attention      []Device
	AttentionTotal int
	Deployments    []Deployment
	Rollouts       []Rollout
	// Note, when set, says what the numbers come from (a simulation run).
	Note string
	// CountsOnly: only fleet totals are known (no per-device attention
	// list, rollouts or deployments), as in a watched simulation.
	CountsOnly bool
}

// MaxAttention bounds Overview.Attention.
const MaxAttention = 20

// Wave is the progress of one rollout wave.
type Wave struct {
	Index   int // 1-based
	Devices int
	Started int
	Done    int // succeeded or failed
	Failed  int
	Phase   string // Pending, InProgress, Complete
}

// Percent is the share of the wave that is done, 0-100.
func (w Wave) Percent() int { return percent(w.Done, w.Devices) }

// Wave phases.
const (
	WavePending    = "Pending"
	WaveInProgress = "InProgress"
	WaveComplete   = "Complete"
)

// Condition is a status condition as shown on a detail page.
type Condition struct {
	Type    string
	Status  bool
	Reason  string
	Message string
}

// DeploymentCounts are the per-device outcomes of a deployment.
type DeploymentCounts struct {
	Total      int
	Succeeded  int
	Failed     int
	Pending    int // Pending or Applying
	Unreported int
	Waiting    int
}

// Deployment is a workload deployment.
type Deployment struct {
	Name            string
	Workload        string
	WorkloadVersion string
	Selector        core.LabelSelector
	Generation      int64
	Paused          bool
	Counts          DeploymentCounts
	LastError       string
}

// Percent is the share of targeted devices that succeeded, 0-100.
func (d Deployment) Percent() int { return percent(d.Counts.Succeeded, d.Counts.Total) }

// DeploymentDetail adds the waves, conditions and the devices that failed.
type DeploymentDetail struct {
	Deployment
	Waves      []Wave
	Conditions []Condition
	// Failing lists up to MaxAttention devices whose workload failed.
	Failing []DeviceDeployment
	// FailingDevices names the device of each entry of Failing.
	FailingDevices []string
}

// RolloutCounts are the per-device outcomes of an agent rollout.
type RolloutCounts struct {
	Total      int
	Succeeded  int
	Failed     int
	InProgress int
	Waiting    int
}

// Rollout is an agent rollout (AgentRollout CR).
type Rollout struct {
	Name      string
	Version   core.Version
	Selector  core.LabelSelector
	Paused    bool
	Counts    RolloutCounts
	LastError string
}

// Percent is the share of targeted devices that run the target, 0-100.
func (r Rollout) Percent() int { return percent(r.Counts.Succeeded, r.Counts.Total) }

// Complete reports whether every targeted device is done.
func (r Rollout) Complete() bool {
	return r.Counts.Total > 0 && r.Counts.Succeeded+r.Counts.Failed == r.Counts.Total
}

// RolloutDetail adds waves, per-phase counts and conditions.
type RolloutDetail struct {
	Rollout
	Waves      []Wave
	ByPhase    []Count // upgrade phases in protocol order, then others
	Conditions []Condition
}

func percent(n, total int) int {
	if total <= 0 {
		return 0
	}
	return n * 100 / total
}

func containsFold(s, sub string) bool {
	if len(sub) > len(s) {
		return false
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		match := true
		for j := 0; j < len(sub); j++ {
			a, b := s[i+j], sub[j]
			if 'A' <= a && a <= 'Z' {
				a += 'a' - 'A'
			}
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			if a != b {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}
