package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/internal/wallclock"
	fleet "github.com/flotilla-fleet/flotilla/operator/api/v1alpha1"
)

// RealConfig wires a RealFleetService.
type RealConfig struct {
	// Reader reads the Device, Deployment and AgentRollout objects. Give it
	// an informer cache (see StartKube) so a 10,000-device list is served
	// from memory, not from the API server.
	Reader client.Reader
	// Writer patches spec.blacklisted and spec.rollout.paused.
	Writer    client.Client
	Namespace string
	// NATS, when set, supplies live heartbeats and device info from KV and
	// carries ping and logs commands. Without it, online state and
	// versions come from the Device status the operator writes, and
	// commands fail with a clear error.
	NATS *nats.Conn
	// OnlineWindow: a device is online when its last heartbeat is younger
	// than this (default 30s).
	OnlineWindow   time.Duration
	CommandTimeout time.Duration // default 5s
	Clock          core.Clock    // default the system clock
	Logger         *slog.Logger
}

// RealFleetService is the FleetService of a real fleet: the operator's
// custom resources in Kubernetes, and heartbeats, device info and commands
// over NATS.
type RealFleetService struct {
	cfg    RealConfig
	broker *Broker
	log    *slog.Logger

	mu     sync.RWMutex
	beats  map[string]beat // by device
	infos  map[string]core.DeviceInfo
	online map[string]bool // last published online state
}

type beat struct {
	at      time.Time // when the KV entry was written (server time)
	version core.Version
}

// NewRealFleetService checks the configuration. Call Run to follow NATS.
func NewRealFleetService(cfg RealConfig) (*RealFleetService, error) {
	if cfg.Reader == nil || cfg.Writer == nil {
		return nil, errors.New("real fleet service: a Kubernetes reader and writer are required")
	}
	if cfg.Namespace == "" {
		return nil, errors.New("real fleet service: namespace is required")
	}
	if cfg.OnlineWindow <= 0 {
		cfg.OnlineWindow = 30 * time.Second
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 5 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = wallclock.Clock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &RealFleetService{cfg: cfg, broker: NewBroker(), log: cfg.Logger,
		beats: map[string]beat{}, infos: map[string]core.DeviceInfo{}, online: map[string]bool{}}, nil
}

// Changes implements FleetService.
func (s *RealFleetService) Changes() *Broker { return s.broker }

// Now is the service's clock, for relative ages.
func (s *RealFleetService) Now() time.Time { return s.cfg.Clock.Now() }

// Notify publishes a change of one object; the informer handlers of
// StartKube call it.
func (s *RealFleetService) Notify(kind, name string) {
	s.broker.Publish(Change{Kind: kind, Name: name})
}

// Run follows the heartbeat and device-info buckets until ctx ends, and
// publishes devices that go offline because their heartbeats stop. Without
// NATS it returns at once.
func (s *RealFleetService) Run(ctx context.Context) error {
	if s.cfg.NATS == nil {
		return nil
	}
	js, err := jetstream.New(s.cfg.NATS)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	errc := make(chan error, 2)
	for _, bucket := range []string{core.BucketDeviceHeartbeat, core.BucketDeviceInfo} {
		go func() { errc <- s.follow(ctx, js, bucket) }()
	}
	tick := time.NewTicker(max(time.Second, s.cfg.OnlineWindow/6))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-tick.C:
			s.publishOnlineFlips()
		}
	}
}

// follow replays and watches one bucket. A malformed value is logged and
// skipped: one bad device does not stop the dashboard.
func (s *RealFleetService) follow(ctx context.Context, js jetstream.JetStream, bucket string) error {
	var kv jetstream.KeyValue
	var err error
	for {
		kv, err = js.KeyValue(ctx, bucket)
		if err == nil {
			break
		}
		s.log.Warn("KV bucket not available yet; retrying", "bucket", bucket, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch KV bucket %s: %w", bucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch of KV bucket %s ended", bucket)
			}
			if e == nil { // end of the initial replay
				continue
			}
			s.apply(bucket, e)
		}
	}
}

func (s *RealFleetService) apply(bucket string, e jetstream.KeyValueEntry) {
	deleted := e.Operation() != jetstream.KeyValuePut
	var device string
	switch bucket {
	case core.BucketDeviceHeartbeat:
		d, err := core.ParseDeviceKey(e.Key())
		if err != nil {
			s.log.Warn("skipping heartbeat", "key", e.Key(), "err", err)
			return
		}
		device = d
		s.mu.Lock()
		if deleted {
			delete(s.beats, d)
		} else if hb, err := core.DecodeHeartbeat(e.Value()); err != nil {
			s.log.Warn("skipping heartbeat", "device", d, "err", err)
		} else {
			s.beats[d] = beat{at: e.Created(), version: hb.AgentVersion}
		}
		s.mu.Unlock()
	case core.BucketDeviceInfo:
		d, err := core.ParseDeviceInfoKey(e.Key())
		if err != nil {
			s.log.Warn("skipping device info", "key", e.Key(), "err", err)
			return
		}
		device = d
		s.mu.Lock()
		if deleted {
			delete(s.infos, d)
		} else if info, err := core.DecodeDeviceInfo(e.Value()); err != nil {
			s.log.Warn("skipping device info", "device", d, "err", err)
		} else {
			s.infos[d] = info
		}
		s.mu.Unlock()
	}
	if s.changedOnline(device) || bucket == core.BucketDeviceInfo {
		s.Notify(KindDevice, device)
	}
}

// changedOnline records the device's online state and reports whether it
// differs from what was last published.
func (s *RealFleetService) changedOnline(device string) bool {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	on := s.isOnline(device, now)
	prev, seen := s.online[device]
	s.online[device] = on
	return !seen || prev != on
}

func (s *RealFleetService) isOnline(device string, now time.Time) bool {
	b, ok := s.beats[device]
	return ok && now.Sub(b.at) < s.cfg.OnlineWindow
}

func (s *RealFleetService) publishOnlineFlips() {
	s.mu.RLock()
	names := core.SortedKeys(s.beats)
	s.mu.RUnlock()
	var changes []Change
	for _, d := range names {
		if s.changedOnline(d) {
			changes = append(changes, Change{KindDevice, d})
		}
	}
	s.broker.Publish(changes...)
}

// ---- reads ----------------------------------------------------------------

func (s *RealFleetService) ns() client.InNamespace { return client.InNamespace(s.cfg.Namespace) }

func (s *RealFleetService) devices(ctx context.Context) ([]fleet.Device, error) {
	var l fleet.DeviceList
	if err := s.cfg.Reader.List(ctx, &l, s.ns()); err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	return l.Items, nil
}

// toDevice merges a Device object with what NATS says about it.
func (s *RealFleetService) toDevice(d *fleet.Device, now time.Time) Device {
	out := Device{ID: d.Name, Labels: d.Labels, Blacklisted: d.Spec.Blacklisted}
	if v, err := core.ParseVersion(d.Status.CurrentVersion); err == nil {
		out.AgentVersion = v
	}
	if d.Status.LastSeen != nil {
		out.LastSeen = d.Status.LastSeen.Time
	}
	for _, c := range d.Status.Conditions {
		if c.Type == "Online" {
			out.Online = c.Status == metav1.ConditionTrue
		}
	}
	s.mu.RLock()
	if b, ok := s.beats[d.Name]; ok {
		out.Online = s.isOnline(d.Name, now)
		if b.at.After(out.LastSeen) {
			out.LastSeen = b.at
		}
		if !b.version.IsZero() {
			out.AgentVersion = b.version
		}
	}
	if info, ok := s.infos[d.Name]; ok {
		out.Inventory = info.Inventory
	}
	s.mu.RUnlock()
	u := d.Status.Upgrade
	out.Upgrade = UpgradeInfo{Phase: core.AgentUpgradePhase(u.Phase), Rollout: u.Rollout,
		Attempt: uint32(max(0, u.Attempt)), Detail: u.Message}
	if out.Upgrade.Phase == "" {
		out.Upgrade.Phase = core.UpgradeIdle
	}
	if v, err := core.ParseVersion(u.TargetVersion); err == nil {
		out.Upgrade.Target = v
	}
	// The operator's message is "<Reason> <detail>" when the agent gave a
	// reason (opcore deviceUpgrade).
	if f := strings.FieldsFunc(u.Message, func(r rune) bool { return r == ' ' || r == ':' }); len(f) > 0 {
		if r := core.UpgradeReason(f[0]); r != core.ReasonNone && r.Valid() {
			out.Upgrade.Reason = r
		}
	}
	for _, p := range d.Status.Deployments {
		out.Deployments = append(out.Deployments, DeviceDeployment{Deployment: p.Deployment,
			Phase: core.WorkloadPhase(p.Phase), LastError: p.LastError})
	}
	sort.Slice(out.Deployments, func(i, j int) bool { return out.Deployments[i].Deployment < out.Deployments[j].Deployment })
	return out
}

// Overview implements FleetService.
func (s *RealFleetService) Overview(ctx context.Context) (Overview, error) {
	devs, err := s.devices(ctx)
	if err != nil {
		return Overview{}, err
	}
	now := s.cfg.Clock.Now()
	o := Overview{AsOf: now, Total: len(devs)}
	byVersion := map[string]int{}
	versions := map[string]core.Version{}
	byPhase := map[core.AgentUpgradePhase]int{}
	for i := range devs {
		d := s.toDevice(&devs[i], now)
		if d.Online {
			o.Online++
		} else {
			o.Offline++
		}
		if d.Blacklisted {
			o.Blacklisted++
		}
		v := d.AgentVersion.String()
		if d.AgentVersion.IsZero() {
			v = "unknown"
		}
		byVersion[v]++
		versions[v] = d.AgentVersion
		byPhase[d.Upgrade.Phase]++
		if d.NeedsAttention() {
			if o.AttentionTotal < MaxAttention {
				o.Attention = append(o.Attention, d)
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
	// The operator's own phases (Marked, TimedOut) after the agent's.
	var extra []string
	for p := range byPhase {
		if !p.Valid() {
			extra = append(extra, string(p))
		}
	}
	sort.Strings(extra)
	for _, p := range extra {
		o.ByPhase = append(o.ByPhase, Count{Key: p, N: byPhase[core.AgentUpgradePhase(p)]})
	}
	if o.Deployments, err = s.Deployments(ctx); err != nil {
		return Overview{}, err
	}
	if o.Rollouts, err = s.Rollouts(ctx); err != nil {
		return Overview{}, err
	}
	return o, nil
}

// ListDevices implements FleetService.
func (s *RealFleetService) ListDevices(ctx context.Context, q DeviceQuery) (DevicePage, error) {
	q, err := q.Normalize()
	if err != nil {
		return DevicePage{}, err
	}
	devs, err := s.devices(ctx)
	if err != nil {
		return DevicePage{}, err
	}
	now := s.cfg.Clock.Now()
	p := DevicePage{Page: q.Page, PerPage: q.PerPage, AsOf: now}
	skip := (q.Page - 1) * q.PerPage
	versions := map[string]core.Version{}
	for i := range devs {
		d := s.toDevice(&devs[i], now)
		if !d.AgentVersion.IsZero() {
			versions[d.AgentVersion.String()] = d.AgentVersion
		}
		if !q.Match(&d) {
			continue
		}
		if p.Total >= skip && len(p.Items) < q.PerPage {
			p.Items = append(p.Items, d)
		}
		p.Total++
	}
	p.Versions = sortedVersions(versions)
	return p, nil
}

// Device implements FleetService.
func (s *RealFleetService) Device(ctx context.Context, id string) (Device, error) {
	var d fleet.Device
	if err := s.get(ctx, "device", id, &d); err != nil {
		return Device{}, err
	}
	return s.toDevice(&d, s.cfg.Clock.Now()), nil
}

func (s *RealFleetService) get(ctx context.Context, kind, name string, obj client.Object) error {
	if err := ValidateName(kind, name); err != nil {
		return err
	}
	err := s.cfg.Reader.Get(ctx, client.ObjectKey{Namespace: s.cfg.Namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return notFound(kind, name)
	}
	if err != nil {
		return fmt.Errorf("get %s %s: %w", kind, name, err)
	}
	return nil
}

// ValidateName rejects a name no object can have, as a not-found (the
// dashboard's answer to /devices/<garbage> is 404 either way).
func ValidateName(kind, name string) error {
	if err := core.ValidateName(kind, name); err != nil {
		return fmt.Errorf("%v: %w", err, ErrNotFound)
	}
	return nil
}

func selectorFromAPI(s fleet.LabelSelector) core.LabelSelector {
	var out core.LabelSelector
	if len(s.MatchLabels) > 0 {
		out.MatchLabels = make(map[string]string, len(s.MatchLabels))
		for k, v := range s.MatchLabels {
			out.MatchLabels[k] = string(v)
		}
	}
	for _, r := range s.MatchExpressions {
		out.MatchExpressions = append(out.MatchExpressions, core.SelectorRequirement{
			Key: r.Key, Operator: core.SelectorOperator(r.Operator), Values: r.Values})
	}
	return out
}

func wavesFromAPI(ws []fleet.WaveStatus) []Wave {
	out := make([]Wave, len(ws))
	for i, w := range ws {
		out[i] = Wave{Index: int(w.Index), Devices: int(w.Devices), Started: int(w.Started), Done: int(w.Done), Phase: w.Phase}
	}
	return out
}

func conditionsFromAPI(cs []metav1.Condition) []Condition {
	out := make([]Condition, len(cs))
	for i, c := range cs {
		out[i] = Condition{Type: c.Type, Status: c.Status == metav1.ConditionTrue, Reason: c.Reason, Message: c.Message}
	}
	return out
}

func toDeployment(d *fleet.Deployment) Deployment {
	c := d.Status.Counts
	return Deployment{Name: d.Name, Workload: d.Spec.Workload.Name, WorkloadVersion: d.Spec.Workload.Version,
		Selector: selectorFromAPI(d.Spec.TargetSelector), Generation: d.Generation, Paused: d.Spec.Rollout.Paused,
		Counts: DeploymentCounts{Total: int(c.Total), Succeeded: int(c.Succeeded), Failed: int(c.Failed),
			Pending: int(c.Pending), Unreported: int(c.Unreported), Waiting: int(c.Waiting)},
		LastError: d.Status.LastError}
}

// Deployments implements FleetService.
func (s *RealFleetService) Deployments(ctx context.Context) ([]Deployment, error) {
	var l fleet.DeploymentList
	if err := s.cfg.Reader.List(ctx, &l, s.ns()); err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	out := make([]Deployment, len(l.Items))
	for i := range l.Items {
		out[i] = toDeployment(&l.Items[i])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Deployment implements FleetService.
func (s *RealFleetService) Deployment(ctx context.Context, name string) (DeploymentDetail, error) {
	var d fleet.Deployment
	if err := s.get(ctx, "deployment", name, &d); err != nil {
		return DeploymentDetail{}, err
	}
	out := DeploymentDetail{Deployment: toDeployment(&d), Waves: wavesFromAPI(d.Status.Waves),
		Conditions: conditionsFromAPI(d.Status.Conditions)}
	devs, err := s.devices(ctx)
	if err != nil {
		return DeploymentDetail{}, err
	}
	for i := range devs {
		for _, p := range devs[i].Status.Deployments {
			if p.Deployment == name && p.Phase == string(core.PhaseFailed) && len(out.Failing) < MaxAttention {
				out.Failing = append(out.Failing, DeviceDeployment{Deployment: name, Phase: core.PhaseFailed, LastError: p.LastError})
				out.FailingDevices = append(out.FailingDevices, devs[i].Name)
			}
		}
	}
	return out, nil
}

func toRollout(r *fleet.AgentRollout) Rollout {
	out := Rollout{Name: r.Name, Selector: selectorFromAPI(r.Spec.TargetSelector), Paused: r.Spec.Rollout.Paused,
		LastError: r.Status.LastError}
	if v, err := core.ParseVersion(r.Spec.Version); err == nil {
		out.Version = v
	}
	c := r.Status.Counts
	out.Counts = RolloutCounts{Total: int(c.Total), Succeeded: int(c.Succeeded), Failed: int(c.Failed),
		InProgress: int(c.InProgress), Waiting: int(c.Waiting)}
	return out
}

// Rollouts implements FleetService.
func (s *RealFleetService) Rollouts(ctx context.Context) ([]Rollout, error) {
	var l fleet.AgentRolloutList
	if err := s.cfg.Reader.List(ctx, &l, s.ns()); err != nil {
		return nil, fmt.Errorf("list agent rollouts: %w", err)
	}
	out := make([]Rollout, len(l.Items))
	for i := range l.Items {
		out[i] = toRollout(&l.Items[i])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Rollout implements FleetService.
func (s *RealFleetService) Rollout(ctx context.Context, name string) (RolloutDetail, error) {
	var r fleet.AgentRollout
	if err := s.get(ctx, "rollout", name, &r); err != nil {
		return RolloutDetail{}, err
	}
	out := RolloutDetail{Rollout: toRollout(&r), Waves: wavesFromAPI(r.Status.Waves),
		Conditions: conditionsFromAPI(r.Status.Conditions)}
	order := append([]string{"Waiting", "Marked"}, func() []string {
		var o []string
		for _, p := range core.UpgradePhases {
			o = append(o, string(p))
		}
		return o
	}()...)
	order = append(order, "TimedOut", "Succeeded")
	for _, k := range order {
		if n := r.Status.ByPhase[k]; n > 0 {
			out.ByPhase = append(out.ByPhase, Count{Key: k, N: int(n)})
		}
	}
	for _, k := range core.SortedKeys(r.Status.ByPhase) {
		if !slices.Contains(order, k) && r.Status.ByPhase[k] > 0 {
			out.ByPhase = append(out.ByPhase, Count{Key: k, N: int(r.Status.ByPhase[k])})
		}
	}
	return out, nil
}

// ---- actions --------------------------------------------------------------

// SetBlacklisted implements FleetService: it patches spec.blacklisted; the
// operator removes the device's desired state.
func (s *RealFleetService) SetBlacklisted(ctx context.Context, id string, blacklisted bool) (Device, error) {
	var d fleet.Device
	if err := s.get(ctx, "device", id, &d); err != nil {
		return Device{}, err
	}
	if d.Spec.Blacklisted != blacklisted {
		base := d.DeepCopy()
		d.Spec.Blacklisted = blacklisted
		if err := s.cfg.Writer.Patch(ctx, &d, client.MergeFrom(base)); err != nil {
			return Device{}, fmt.Errorf("patch device %s: %w", id, err)
		}
		s.Notify(KindDevice, id)
	}
	return s.toDevice(&d, s.cfg.Clock.Now()), nil
}

// SetRolloutPaused implements FleetService: it patches spec.rollout.paused.
func (s *RealFleetService) SetRolloutPaused(ctx context.Context, name string, paused bool) (Rollout, error) {
	var r fleet.AgentRollout
	if err := s.get(ctx, "rollout", name, &r); err != nil {
		return Rollout{}, err
	}
	if r.Spec.Rollout.Paused != paused {
		base := r.DeepCopy()
		r.Spec.Rollout.Paused = paused
		if err := s.cfg.Writer.Patch(ctx, &r, client.MergeFrom(base)); err != nil {
			return Rollout{}, fmt.Errorf("patch agent rollout %s: %w", name, err)
		}
		s.Notify(KindRollout, name)
	}
	return toRollout(&r), nil
}

// command sends one typed request and decodes the reply into typed errors.
func (s *RealFleetService) command(ctx context.Context, id string, req core.CommandRequest) (core.CommandReply, error) {
	if s.cfg.NATS == nil {
		return core.CommandReply{}, errors.New("commands need NATS: start the dashboard with --nats")
	}
	var d fleet.Device
	if err := s.get(ctx, "device", id, &d); err != nil {
		return core.CommandReply{}, err
	}
	body, err := req.Encode()
	if err != nil {
		return core.CommandReply{}, fmt.Errorf("%s: %v: %w", req.Verb, err, ErrInvalid)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CommandTimeout)
	defer cancel()
	msg, err := s.cfg.NATS.RequestWithContext(ctx, core.CommandSubject(id, req.Verb), body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return core.CommandReply{}, &core.CommandError{Code: core.ErrCodeOffline, Message: "no agent subscribed to " + core.CommandSubject(id, req.Verb)}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return core.CommandReply{}, &core.CommandError{Code: core.ErrCodeTimeout, Message: fmt.Sprintf("no reply within %s", s.cfg.CommandTimeout)}
	case err != nil:
		return core.CommandReply{}, fmt.Errorf("%s %s: %w", req.Verb, id, err)
	}
	reply, err := core.DecodeCommandReply(msg.Data)
	if err != nil {
		return core.CommandReply{}, err
	}
	if reply.Verb != req.Verb {
		return core.CommandReply{}, &core.CommandError{Code: core.ErrCodeBadReply, Message: fmt.Sprintf("reply for %q to a %q request", reply.Verb, req.Verb)}
	}
	return reply, reply.Err()
}

// Ping implements FleetService.
func (s *RealFleetService) Ping(ctx context.Context, id string) (core.PingResult, error) {
	reply, err := s.command(ctx, id, core.CommandRequest{Verb: core.VerbPing})
	if err != nil {
		return core.PingResult{}, err
	}
	return *reply.Ping, nil
}

// Logs implements FleetService.
func (s *RealFleetService) Logs(ctx context.Context, id string, args core.LogsArgs) (core.LogsResult, error) {
	reply, err := s.command(ctx, id, core.CommandRequest{Verb: core.VerbLogs, Logs: &args})
	if err != nil {
		return core.LogsResult{}, err
	}
	return *reply.Logs, nil
}
