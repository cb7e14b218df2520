package web

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// ErrUnavailable is wrapped by errors of a service that cannot answer a
// kind of question at all; handlers answer 501.
var ErrUnavailable = errors.New("not available")

// Census is the fleet counted, without per-device detail: what the
// simulator exposes while a scenario runs (sim.World.Census).
type Census struct {
	AsOf     time.Time
	Versions map[string]int // agent version → devices ("none": no agent)
	Phases   map[core.AgentUpgradePhase]int
	Online   int
	// Note says what is being shown ("scenario X at 1h02m of 3h, 60×").
	Note string
}

// CensusFleetService is a FleetService over a stream of fleet censuses:
// the overview (counts by version, phase and online state) updates live;
// device, deployment and rollout pages answer 501 because a census has no
// per-object state.
type CensusFleetService struct {
	mu     sync.RWMutex
	c      Census
	broker *Broker
}

// NewCensusFleetService starts with an empty fleet.
func NewCensusFleetService() *CensusFleetService {
	return &CensusFleetService{broker: NewBroker()}
}

// Update replaces the census (the maps are copied).
func (s *CensusFleetService) Update(c Census) {
	c.Versions = maps.Clone(c.Versions)
	c.Phases = maps.Clone(c.Phases)
	s.mu.Lock()
	s.c = c
	s.mu.Unlock()
}

// Changes implements FleetService (nothing streams: the overview polls).
func (s *CensusFleetService) Changes() *Broker { return s.broker }

// Now is the census time, for relative ages.
func (s *CensusFleetService) Now() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.c.AsOf
}

// Overview implements FleetService.
func (s *CensusFleetService) Overview(ctx context.Context) (Overview, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o := Overview{AsOf: s.c.AsOf, Online: s.c.Online, Note: s.c.Note, CountsOnly: true}
	versions := map[string]core.Version{}
	for k, n := range s.c.Versions {
		o.Total += n
		v, _ := core.ParseVersion(k) // "none" sorts last as the zero version
		versions[k] = v
	}
	o.Offline = o.Total - o.Online
	o.ByVersion = versionCounts(s.c.Versions, versions)
	for _, p := range core.UpgradePhases {
		if n := s.c.Phases[p]; n > 0 {
			o.ByPhase = append(o.ByPhase, Count{Key: string(p), N: n})
		}
	}
	return o, nil
}

func (s *CensusFleetService) unavailable(what string) error {
	return fmt.Errorf("%s: the simulator reports fleet totals only, not per-object state; the overview shows the run live: %w", what, ErrUnavailable)
}

// ListDevices implements FleetService.
func (s *CensusFleetService) ListDevices(context.Context, DeviceQuery) (DevicePage, error) {
	return DevicePage{}, s.unavailable("device list")
}

// Device implements FleetService.
func (s *CensusFleetService) Device(_ context.Context, id string) (Device, error) {
	return Device{}, s.unavailable("device " + id)
}

// Deployments implements FleetService.
func (s *CensusFleetService) Deployments(context.Context) ([]Deployment, error) {
	return nil, s.unavailable("deployments")
}

// Deployment implements FleetService.
func (s *CensusFleetService) Deployment(_ context.Context, name string) (DeploymentDetail, error) {
	return DeploymentDetail{}, s.unavailable("deployment " + name)
}

// Rollouts implements FleetService.
func (s *CensusFleetService) Rollouts(context.Context) ([]Rollout, error) {
	return nil, s.unavailable("agent rollouts")
}

// Rollout implements FleetService.
func (s *CensusFleetService) Rollout(_ context.Context, name string) (RolloutDetail, error) {
	return RolloutDetail{}, s.unavailable("agent rollout " + name)
}

// SetBlacklisted implements FleetService: a scenario decides what happens.
func (s *CensusFleetService) SetBlacklisted(_ context.Context, id string, _ bool) (Device, error) {
	return Device{}, s.unavailable("blacklisting " + id)
}

// SetRolloutPaused implements FleetService.
func (s *CensusFleetService) SetRolloutPaused(_ context.Context, name string, _ bool) (Rollout, error) {
	return Rollout{}, s.unavailable("pausing " + name)
}

// Ping implements FleetService.
func (s *CensusFleetService) Ping(_ context.Context, id string) (core.PingResult, error) {
	return core.PingResult{}, s.unavailable("ping " + id)
}

// Logs implements FleetService.
func (s *CensusFleetService) Logs(_ context.Context, id string, _ core.LogsArgs) (core.LogsResult, error) {
	return core.LogsResult{}, s.unavailable("logs of " + id)
}
