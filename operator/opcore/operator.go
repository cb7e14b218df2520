package opcore

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// Operator is the operator's decision core. It is not safe for concurrent
// use: a shell serialises every Step.
type Operator struct {
	cfg   Config
	now   time.Time
	phase Phase

	synced   bool
	replayed map[string]bool

	devices     map[string]*device
	labelIdx    map[string]map[string]map[string]struct{} // label key → value → devices
	deployments map[string]*deployment
	rollouts    map[string]*rollout

	// desired is the operator's view of the desired-state bucket (key →
	// value); desiredByDep indexes it by deployment (→ devices).
	desired      map[string]string
	desiredByDep map[string]map[string]struct{}
	retryDelete  map[string]struct{} // desired-state keys whose delete failed

	dirtyDeps, dirtyRolls map[string]struct{}
	// dirtyDevs lists the devices whose status may have changed since the
	// last flush (device.dirty says whether one is listed): a flag and a
	// list rather than a set of names, because devices are marked on almost
	// every input and the set's hashing showed up in profiles.
	dirtyDevs []dirtyDevice

	deadlines deadlineHeap
	dlKeys    timeKeys
	announced time.Time // last WakeAt
	stats     Stats

	out []Effect

	// Messages that depend on cfg only, built once.
	msgOnline, msgStale string
	// scratch receives the status flush computes for a dirty device; its
	// slices are copied out only when the status changed (see flush).
	scratch      DeviceStatus
	scratchConds [3]Condition
	scratchDeps  []DeviceDeploymentStatus
}

type device struct {
	name string

	hasCR bool
	cr    DeviceRecord

	hasInfo bool
	info    core.DeviceInfo

	labels      map[string]string // effective: the object's, else device-info's
	blacklisted bool
	indexed     bool

	createAsked  bool // CreateDevice emitted; cleared when an object arrives or is deleted
	labelsPushed map[string]string

	states map[string]core.DeviceState // deployment → latest report
	deps   []string                    // deployments targeting this device, sorted

	// Heartbeats.
	hasHB       bool
	hb          core.Heartbeat
	seenLive    bool
	lastSeen    time.Time // operator clock, last live heartbeat
	online      bool
	expiryQueue bool

	currentVersion core.Version

	// Upgrade coordination.
	marker     *core.UpgradeMarker
	status     *core.UpgradeStatus
	maxAttempt uint32
	candAt     time.Time // when the last live candidate heartbeat arrived
	candAtt    uint32
	candVer    core.Version
	stopSent   uint32
	stopRetry  uint32    // attempt whose last stop was lost (timeout/offline): may be re-sent
	stopTries  uint8     // stops sent for stopSent in this process
	progressAt time.Time // operator clock of the last progress of the marker's attempt
	timedOut   uint32
	upMessage  string
	owner      string // agent rollout claiming this device

	// last is the last status emitted (valid if hasLast), held by value:
	// one allocation less per patch than a pointer to a copy.
	last    DeviceStatus
	hasLast bool

	dirty   bool // listed in Operator.dirtyDevs
	dropped bool // forgotten by dropIfGone; the name may have a new device
}

type category uint8

const (
	catNone category = iota
	catWaiting
	catUnreported
	catPending
	catSucceeded
	catFailed
)

type deployment struct {
	spec      DeploymentSpec
	err       string
	value     string // encoded desired value of the current generation
	targets   map[string]category
	counts    DeploymentCounts
	waiting   nameHeap
	inHeap    map[string]struct{}
	lastError string
	finalized bool
	last      *DeploymentStatus
}

type rollout struct {
	spec    AgentRolloutSpec
	err     string
	targets map[string]string // device → phase name
	counts  RolloutCounts
	byPhase map[string]int
	waiting nameHeap
	inHeap  map[string]struct{}
	lastErr string
	last    *AgentRolloutStatus
	// gone holds devices that left the rollout (blacklisted, relabelled)
	// while their attempt was in flight or had failed: true once that
	// attempt failed. Failures that happened stay failures, so they keep
	// counting against the failure threshold.
	gone map[string]bool
}

// Rollout phase names for devices (besides agent phases).
const (
	PhaseWaiting   = "Waiting"
	PhaseSucceeded = "Succeeded"
)

// New returns a core in the Recovering phase.
func New(cfg Config) *Operator {
	cfg = cfg.WithDefaults()
	return &Operator{
		cfg:          cfg,
		phase:        Recovering,
		replayed:     map[string]bool{},
		devices:      map[string]*device{},
		labelIdx:     map[string]map[string]map[string]struct{}{},
		deployments:  map[string]*deployment{},
		rollouts:     map[string]*rollout{},
		desired:      map[string]string{},
		desiredByDep: map[string]map[string]struct{}{},
		retryDelete:  map[string]struct{}{},
		dirtyDeps:    map[string]struct{}{},
		dirtyRolls:   map[string]struct{}{},
		msgOnline:    "heartbeat within " + cfg.OfflineAfter.String(),
		msgStale:     "no heartbeat for more than " + cfg.OfflineAfter.String(),
	}
}

// dirtyDevice is an entry of Operator.dirtyDevs; the name is a copy of
// dev.name, so that sorting the list reads no device.
type dirtyDevice struct {
	name string
	dev  *device
}

// markDirty lists dev for the next flush.
func (o *Operator) markDirty(dev *device) {
	if !dev.dirty {
		dev.dirty = true
		o.dirtyDevs = append(o.dirtyDevs, dirtyDevice{dev.name, dev})
	}
}

// watchedBuckets are the buckets the core must see replayed before it
// converges.
var watchedBuckets = []string{
	core.BucketDesiredState, core.BucketDeviceInfo, core.BucketDeviceState,
	core.BucketDeviceHeartbeat, core.BucketAgentUpgrade, core.BucketAgentUpgradeStatus,
}

// Step delivers one input at time now (the operator's clock) and returns the
// effects to carry out, in order.
func (o *Operator) Step(now time.Time, in Input) []Effect {
	if now.After(o.now) {
		o.now = now
	}
	o.out = nil
	switch in := in.(type) {
	case KVPut:
		o.kvPut(in)
	case KVDelete:
		o.kvDelete(in)
	case KVReplayed:
		if in.Bucket == "" {
			for _, b := range watchedBuckets {
				o.replayed[b] = true
			}
		} else {
			o.replayed[in.Bucket] = true
		}
		o.maybeConverge()
	case KVWriteFailed:
		o.kvWriteFailed(in)
	case CachesSynced:
		o.synced = true
		o.maybeConverge()
	case DeploymentUpsert:
		o.deploymentUpsert(in.Spec)
	case DeploymentDeleted:
		o.deploymentDeleted(in.Name)
	case DeviceUpsert:
		o.deviceUpsert(in.Device)
	case DeviceDeleted:
		o.deviceDeleted(in.Name)
	case AgentRolloutUpsert:
		o.rolloutUpsert(in.Spec)
	case AgentRolloutDeleted:
		o.rolloutDeleted(in.Name)
	case Tick:
		o.tick()
	case CommandResult:
		o.commandResult(in)
	}
	o.announceWake()
	out := o.out
	o.out = nil
	return out
}

func (o *Operator) emit(e Effect) { o.out = append(o.out, e) }

func (o *Operator) converged() bool { return o.phase == Converged }

// ---- Accessors ------------------------------------------------------------

// Phase returns the liveness latch.
func (o *Operator) Phase() Phase { return o.phase }

// DeploymentStatus returns the Deployment's status as of now (computed, not
// necessarily flushed yet).
func (o *Operator) DeploymentStatus(name string) (DeploymentStatus, bool) {
	d, ok := o.deployments[name]
	if !ok {
		return DeploymentStatus{}, false
	}
	return o.deploymentStatus(d), true
}

// DeviceStatus returns the Device's status as of now.
func (o *Operator) DeviceStatus(name string) (DeviceStatus, bool) {
	dev, ok := o.devices[name]
	if !ok {
		return DeviceStatus{}, false
	}
	return o.deviceStatus(dev), true
}

// AgentRolloutStatus returns the AgentRollout's status as of now: its
// progress by wave and counts by phase.
func (o *Operator) AgentRolloutStatus(name string) (AgentRolloutStatus, bool) {
	r, ok := o.rollouts[name]
	if !ok {
		return AgentRolloutStatus{}, false
	}
	return o.rolloutStatus(r), true
}

// DeviceUpgrade returns the device's upgrade phase, target and attempt.
func (o *Operator) DeviceUpgrade(name string) (DeviceUpgrade, bool) {
	dev, ok := o.devices[name]
	if !ok {
		return DeviceUpgrade{}, false
	}
	return o.deviceUpgrade(dev), true
}

// Online reports whether the device's last heartbeat arrived within
// OfflineAfter on the operator's clock.
func (o *Operator) Online(name string) bool {
	dev, ok := o.devices[name]
	return ok && dev.online
}

// DesiredValue returns the operator's view of a desired-state key.
func (o *Operator) DesiredValue(key string) ([]byte, bool) {
	v, ok := o.desired[key]
	if !ok {
		return nil, false
	}
	return []byte(v), true
}

// DesiredKeys returns the number of desired-state keys in the operator's view.
func (o *Operator) DesiredKeys() int { return len(o.desired) }

// Stats returns counters for metrics.
func (o *Operator) Stats() Stats {
	s := o.stats
	s.Devices = len(o.devices)
	s.Deployments = len(o.deployments)
	s.Rollouts = len(o.rollouts)
	s.DevicesOnline = 0
	for _, dev := range o.devices {
		if dev.online {
			s.DevicesOnline++
		}
	}
	s.RolloutsActive = 0
	for _, r := range o.rollouts {
		if r.counts.Waiting+r.counts.InProgress > 0 {
			s.RolloutsActive++
		}
	}
	return s
}

// ---- Recovery latch -----------------------------------------------------

func (o *Operator) maybeConverge() {
	if o.converged() || !o.synced {
		return
	}
	for _, b := range watchedBuckets {
		if !o.replayed[b] {
			return
		}
	}
	o.phase = Converged
	for _, name := range core.SortedKeys(o.devices) {
		o.syncDeviceObject(o.devices[name])
	}
	for _, name := range core.SortedKeys(o.deployments) {
		d := o.deployments[name]
		if d.spec.Deleting {
			o.finishDeleting(d)
		}
	}
	// Orphans: keys of unknown deployments or of devices the deployment
	// does not target.
	purged := 0
	for _, key := range core.SortedKeys(o.desired) {
		if o.orphan(key) {
			o.deleteDesired(key)
			purged++
		}
	}
	for name := range o.deployments {
		o.dirtyDeps[name] = struct{}{}
	}
	for name := range o.rollouts {
		o.dirtyRolls[name] = struct{}{}
	}
	for _, dev := range o.devices {
		o.markDirty(dev)
	}
	o.emit(Notice{Reason: "Converged", Message: fmt.Sprintf(
		"caches synced and KV replayed: %d devices, %d deployments, %d agent rollouts; purged %d orphaned desired-state keys",
		len(o.devices), len(o.deployments), len(o.rollouts), purged)})
}

// orphan reports whether a desired-state key belongs to no current placement.
func (o *Operator) orphan(key string) bool {
	dev, dep, err := core.ParseDesiredStateKey(key)
	if err != nil {
		return true
	}
	d, ok := o.deployments[dep]
	if !ok {
		return true
	}
	_, targeted := d.targets[dev]
	return !targeted
}

// ---- KV -------------------------------------------------------------------

func (o *Operator) bad(bucket, key string, err error) {
	o.stats.BadValues++
	n := Notice{Warning: true, Reason: "BadValue", Message: core.Truncate(
		fmt.Sprintf("%s key %q: %v", bucket, key, err), core.MaxErrorLen)}
	o.emit(n)
}

func (o *Operator) kvPut(in KVPut) {
	live := o.replayed[in.Bucket]
	switch in.Bucket {
	case core.BucketDesiredState:
		o.desiredPut(in.Key, in.Value)
	case core.BucketDeviceInfo:
		name, err := core.ParseDeviceInfoKey(in.Key)
		if err != nil {
			o.bad(in.Bucket, in.Key, err)
			return
		}
		info, err := core.DecodeDeviceInfo(in.Value)
		if err == nil && info.Device != name {
			err = fmt.Errorf("value names device %q", info.Device)
		}
		if err != nil {
			o.bad(in.Bucket, in.Key, err)
			return
		}
		dev := o.device(name)
		dev.hasInfo, dev.info = true, info
		if !info.AgentVersion.IsZero() && dev.currentVersion.Compare(info.AgentVersion) != 0 && dev.status == nil {
			dev.currentVersion = info.AgentVersion
			o.refreshRolloutOf(dev)
		}
		o.relabel(dev)
		if o.converged() {
			o.syncDeviceObject(dev)
		}
		o.markDirty(dev)
	case core.BucketDeviceState:
		devName, dep, err := core.ParseDeviceStateKey(in.Key)
		if err != nil {
			o.bad(in.Bucket, in.Key, err)
			return
		}
		st, err := core.DecodeDeviceState(in.Value)
		if err == nil && (st.Device != devName || st.Deployment != dep) {
			err = fmt.Errorf("value names %s/%s", st.Device, st.Deployment)
		}
		if err != nil {
			o.bad(in.Bucket, in.Key, err)
			return
		}
		dev := o.devices[devName]
		if dev == nil {
			// A report from a device the operator does not know yet: keep
			// it, the device may appear later.
			dev = o.device(devName)
		}
		if dev.states == nil {
			dev.states = map[string]core.DeviceState{}
		}
		dev.states[dep] = st
		o.markDirty(dev)
		if d := o.deployments[dep]; d != nil {
			if _, ok := d.targets[devName]; ok {
				if st.Phase == core.PhaseFailed && st.Generation == d.spec.Generation {
					d.lastError = core.Truncate(devName+": "+st.LastError, core.MaxErrorLen)
					if live {
						o.emit(Notice{Kind: KindDeployment, Name: dep, Warning: true, Reason: "DeviceFailed",
							Message: d.lastError})
					}
				}
				o.setCat(d, devName, dev, o.depCategory(d, dev))
			}
		}
	case core.BucketDeviceHeartbeat:
		name, err := core.ParseDeviceKey(in.Key)
		if err != nil {
			o.bad(in.Bucket, in.Key, err)
			return
		}
		hb, err := core.DecodeHeartbeat(in.Value)
		if err != nil {
			o.bad(in.Bucket, in.Key, err)
			return
		}
		o.heartbeat(o.device(name), hb, live)
	case core.BucketAgentUpgrade:
		name, err := core.ParseDeviceKey(in.Key)
		if err != nil {
			o.bad(in.Bucket, in.Key, err)
			return
		}
		m, err := core.DecodeUpgradeMarker(in.Value)
		if err != nil {
			o.bad(in.Bucket, in.Key, err)
			return
		}
		dev := o.device(name)
		if dev.marker == nil || dev.marker.Attempt != m.Attempt {
			dev.progressAt = o.now
			o.pushDeadline(o.now.Add(o.cfg.AttemptTimeout), dlAttempt, dev, m.Attempt)
		}
		dev.marker = &m
		dev.maxAttempt = max(dev.maxAttempt, m.Attempt)
		o.markDirty(dev)
		o.refreshRolloutOf(dev)
	case core.BucketAgentUpgradeStatus:
		name, err := core.ParseDeviceKey(in.Key)
		if err != nil {
			o.bad(in.Bucket, in.Key, err)
			return
		}
		s, err := core.DecodeUpgradeStatus(in.Value)
		if err != nil {
			o.bad(in.Bucket, in.Key, err)
			return
		}
		o.upgradeStatus(o.device(name), s, live)
	}
}

func (o *Operator) kvDelete(in KVDelete) {
	switch in.Bucket {
	case core.BucketDesiredState:
		o.desiredRemove(in.Key)
		if devName, dep, err := core.ParseDesiredStateKey(in.Key); err == nil {
			if d := o.deployments[dep]; d != nil {
				if _, ok := d.targets[devName]; ok {
					dev := o.devices[devName]
					o.setCat(d, devName, dev, o.depCategory(d, dev))
				}
			}
		}
	case core.BucketDeviceInfo:
		name, err := core.ParseDeviceInfoKey(in.Key)
		if err != nil {
			return
		}
		if dev := o.devices[name]; dev != nil {
			dev.hasInfo = false
			o.relabel(dev)
			o.dropIfGone(dev)
		}
	case core.BucketDeviceState:
		devName, dep, err := core.ParseDeviceStateKey(in.Key)
		if err != nil {
			return
		}
		if dev := o.devices[devName]; dev != nil {
			delete(dev.states, dep)
			o.markDirty(dev)
			if d := o.deployments[dep]; d != nil {
				if _, ok := d.targets[devName]; ok {
					o.setCat(d, devName, dev, o.depCategory(d, dev))
				}
			}
		}
	case core.BucketDeviceHeartbeat:
		if dev := o.devices[in.Key]; dev != nil {
			dev.hasHB = false
		}
	case core.BucketAgentUpgrade:
		if dev := o.devices[in.Key]; dev != nil {
			dev.marker = nil
			o.markDirty(dev)
			o.refreshRolloutOf(dev)
		}
	case core.BucketAgentUpgradeStatus:
		if dev := o.devices[in.Key]; dev != nil {
			dev.status = nil
			o.markDirty(dev)
			o.refreshRolloutOf(dev)
		}
	}
}

func (o *Operator) kvWriteFailed(in KVWriteFailed) {
	o.stats.KVWriteErrors++
	o.emit(Notice{Warning: true, Reason: "KVWriteFailed", Message: core.Truncate(
		fmt.Sprintf("%s key %q: %s", in.Bucket, in.Key, in.Err), core.MaxErrorLen)})
	switch in.Bucket {
	case core.BucketDesiredState:
		if in.Delete {
			// The key is still there as far as we know: retry on a tick.
			o.retryDelete[in.Key] = struct{}{}
			return
		}
		// The put did not happen: forget it so the planner starts the
		// device again.
		o.desiredRemove(in.Key)
		if devName, dep, err := core.ParseDesiredStateKey(in.Key); err == nil {
			if d := o.deployments[dep]; d != nil {
				if _, ok := d.targets[devName]; ok {
					dev := o.devices[devName]
					o.setCat(d, devName, dev, o.depCategory(d, dev))
				}
			}
		}
	case core.BucketAgentUpgrade:
		if dev := o.devices[in.Key]; dev != nil && !in.Delete {
			// The marker never reached the device; the attempt number stays
			// used (maxAttempt), the device is retried with a fresh one.
			dev.marker = nil
			o.refreshRolloutOf(dev)
		}
	}
}

func (o *Operator) desiredPut(key string, value []byte) {
	devName, dep, err := core.ParseDesiredStateKey(key)
	if err != nil {
		o.bad(core.BucketDesiredState, key, err)
		if o.converged() {
			o.putDelete(core.BucketDesiredState, key)
		}
		return
	}
	if d := o.deployments[dep]; d != nil && string(value) == d.value {
		o.desired[key] = d.value // shared: one copy per deployment, not per device
	} else {
		o.desired[key] = string(value)
	}
	set := o.desiredByDep[dep]
	if set == nil {
		set = map[string]struct{}{}
		o.desiredByDep[dep] = set
	}
	set[devName] = struct{}{}
	if o.orphan(key) {
		if o.converged() {
			o.deleteDesired(key)
		}
		return
	}
	d := o.deployments[dep]
	dev := o.devices[devName]
	o.setCat(d, devName, dev, o.depCategory(d, dev))
}

func (o *Operator) desiredRemove(key string) {
	if _, ok := o.desired[key]; !ok {
		return
	}
	delete(o.desired, key)
	if dev, dep, err := core.ParseDesiredStateKey(key); err == nil {
		if set := o.desiredByDep[dep]; set != nil {
			delete(set, dev)
			if len(set) == 0 {
				delete(o.desiredByDep, dep)
			}
		}
	}
}

// deleteDesired deletes a desired-state key (converged only).
func (o *Operator) deleteDesired(key string) {
	o.desiredRemove(key)
	delete(o.retryDelete, key)
	o.putDelete(core.BucketDesiredState, key)
}

func (o *Operator) putKV(bucket, key string, value []byte) {
	o.stats.KVPuts++
	o.emit(PutKV{Bucket: bucket, Key: key, Value: value})
}

func (o *Operator) putDelete(bucket, key string) {
	o.stats.KVDeletes++
	o.emit(DeleteKV{Bucket: bucket, Key: key})
}

// ---- Devices --------------------------------------------------------------

func (o *Operator) device(name string) *device {
	dev := o.devices[name]
	if dev == nil {
		dev = &device{name: name}
		o.devices[name] = dev
	}
	return dev
}

func (o *Operator) deviceUpsert(rec DeviceRecord) {
	if err := core.ValidateDeviceName(rec.Name); err != nil {
		o.emit(Notice{Kind: KindDevice, Name: rec.Name, Warning: true, Reason: "InvalidDevice", Message: err.Error()})
		return
	}
	if err := core.ValidateLabels(rec.Labels); err != nil {
		o.emit(Notice{Kind: KindDevice, Name: rec.Name, Warning: true, Reason: "InvalidLabels", Message: err.Error()})
		return
	}
	dev := o.device(rec.Name)
	first := !dev.hasCR
	dev.hasCR, dev.cr = true, rec
	dev.createAsked = false // the object is here: a later deletion asks again
	if first {
		dev.stopSent = max(dev.stopSent, rec.StopSentAttempt)
		if dev.currentVersion.IsZero() {
			dev.currentVersion = rec.CurrentVersion
		}
		if dev.lastSeen.IsZero() {
			dev.lastSeen = rec.LastSeen
		}
	}
	if dev.blacklisted != rec.Blacklisted && o.converged() {
		reason := "Blacklisted"
		if !rec.Blacklisted {
			reason = "Unblacklisted"
		}
		o.emit(Notice{Kind: KindDevice, Name: rec.Name, Reason: reason,
			Message: "placement updated: " + reason})
	}
	o.relabel(dev)
	if o.converged() {
		o.syncDeviceObject(dev)
	}
	o.markDirty(dev)
}

func (o *Operator) deviceDeleted(name string) {
	dev := o.devices[name]
	if dev == nil {
		return
	}
	dev.hasCR = false
	dev.cr = DeviceRecord{}
	dev.createAsked = false // gone (even if it never reached us): the next device-info asks again
	dev.last, dev.hasLast = DeviceStatus{}, false
	o.relabel(dev)
	o.dropIfGone(dev)
}

// dropIfGone forgets a device that has neither object nor device-info.
func (o *Operator) dropIfGone(dev *device) {
	if dev.hasCR || dev.hasInfo {
		return
	}
	if dev.owner != "" {
		o.unclaim(dev)
	}
	delete(o.devices, dev.name)
	// Stale references to dev (in the dirty list, in deadlines) see these.
	dev.dirty = false
	dev.dropped = true
}

// syncDeviceObject asks the shell to create or relabel the Device object
// from device-info (converged only).
func (o *Operator) syncDeviceObject(dev *device) {
	if !dev.hasInfo || !o.cfg.CreateDevices {
		return
	}
	if !dev.hasCR {
		if !dev.createAsked {
			dev.createAsked = true
			o.emit(CreateDevice{Name: dev.name, Labels: cloneLabels(dev.info.Labels)})
		}
		return
	}
	missing := false
	for k, v := range dev.info.Labels {
		if got, ok := dev.cr.Labels[k]; !ok || got != v {
			missing = true
			break
		}
	}
	if missing && !labelsEqual(dev.labelsPushed, dev.info.Labels) {
		dev.labelsPushed = cloneLabels(dev.info.Labels)
		o.emit(PatchDeviceLabels{Name: dev.name, Labels: cloneLabels(dev.info.Labels)})
	}
}

func labelsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func cloneLabels(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// relabel recomputes a device's effective labels and blacklist flag and, if
// they changed, its placement under every deployment and rollout.
func (o *Operator) relabel(dev *device) {
	var labels map[string]string
	switch {
	case dev.hasCR:
		labels = dev.cr.Labels
	case dev.hasInfo:
		labels = dev.info.Labels
	}
	black := dev.hasCR && dev.cr.Blacklisted
	known := dev.hasCR || dev.hasInfo
	if dev.indexed == known && labelsEqual(labels, dev.labels) && black == dev.blacklisted {
		return
	}
	o.unindex(dev)
	dev.labels = cloneLabels(labels)
	dev.blacklisted = black
	if known {
		o.index(dev)
	}
	for _, name := range core.SortedKeys(o.deployments) {
		o.refreshTarget(o.deployments[name], dev)
	}
	o.reclaim(dev)
	o.markDirty(dev)
}

func (o *Operator) index(dev *device) {
	for k, v := range dev.labels {
		vals := o.labelIdx[k]
		if vals == nil {
			vals = map[string]map[string]struct{}{}
			o.labelIdx[k] = vals
		}
		set := vals[v]
		if set == nil {
			set = map[string]struct{}{}
			vals[v] = set
		}
		set[dev.name] = struct{}{}
	}
	dev.indexed = true
}

func (o *Operator) unindex(dev *device) {
	if !dev.indexed {
		return
	}
	for k, v := range dev.labels {
		if set := o.labelIdx[k][v]; set != nil {
			delete(set, dev.name)
			if len(set) == 0 {
				delete(o.labelIdx[k], v)
			}
		}
		if len(o.labelIdx[k]) == 0 {
			delete(o.labelIdx, k)
		}
	}
	dev.indexed = false
}

// candidates returns, sorted, the known devices that match sel, using the
// label index to avoid a scan of the fleet where the selector allows it.
func (o *Operator) candidates(sel core.LabelSelector) []string {
	var best map[string]struct{}
	bestN := -1
	consider := func(set map[string]struct{}) {
		if bestN < 0 || len(set) < bestN {
			best, bestN = set, len(set)
		}
	}
	for k, v := range sel.MatchLabels {
		consider(o.labelIdx[k][v])
	}
	for _, r := range sel.MatchExpressions {
		switch r.Operator {
		case core.OpIn:
			u := map[string]struct{}{}
			for _, v := range r.Values {
				for n := range o.labelIdx[r.Key][v] {
					u[n] = struct{}{}
				}
			}
			consider(u)
		case core.OpExists:
			u := map[string]struct{}{}
			for _, set := range o.labelIdx[r.Key] {
				for n := range set {
					u[n] = struct{}{}
				}
			}
			consider(u)
		}
	}
	var out []string
	if bestN >= 0 {
		out = make([]string, 0, bestN)
		for n := range best {
			if dev := o.devices[n]; dev != nil && sel.Matches(dev.labels) {
				out = append(out, n)
			}
		}
	} else {
		out = make([]string, 0, len(o.devices))
		for n, dev := range o.devices {
			if dev.indexed && sel.Matches(dev.labels) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (o *Operator) heartbeat(dev *device, hb core.Heartbeat, live bool) {
	dev.hasHB, dev.hb = true, hb
	if hb.Attempt == 0 {
		if dev.currentVersion.Compare(hb.AgentVersion) != 0 || dev.currentVersion.IsZero() {
			dev.currentVersion = hb.AgentVersion
			o.markDirty(dev)
			o.refreshRolloutOf(dev)
		}
	}
	dev.maxAttempt = max(dev.maxAttempt, hb.Attempt)
	if !live {
		return
	}
	dev.seenLive = true
	prev := dev.lastSeen
	dev.lastSeen = o.now
	if hb.Attempt != 0 {
		dev.candAt, dev.candAtt, dev.candVer = o.now, hb.Attempt, hb.AgentVersion
	}
	if !dev.online {
		dev.online = true
		o.markDirty(dev)
		if !prev.IsZero() && o.converged() {
			o.emit(Notice{Kind: KindDevice, Name: dev.name, Reason: "DeviceOnline",
				Message: "heartbeat received from " + hb.AgentVersion.String()})
		}
		if dev.owner != "" {
			// An offline device may be startable now.
			if r := o.rollouts[dev.owner]; r != nil && r.targets[dev.name] == PhaseWaiting {
				o.pushWaiting(&r.waiting, r.inHeap, dev.name)
			}
		}
	}
	if !dev.hasLast || o.now.Sub(dev.last.LastSeen) >= o.cfg.LastSeenResolution {
		o.markDirty(dev)
	}
	if !dev.expiryQueue {
		dev.expiryQueue = true
		o.pushDeadline(o.now.Add(o.cfg.OfflineAfter), dlOffline, dev, 0)
	}
	if hb.Attempt != 0 {
		o.maybeStop(dev)
	}
}

// ---- Upgrade coordinator ------------------------------------------------

func (o *Operator) upgradeStatus(dev *device, s core.UpgradeStatus, live bool) {
	prev := dev.status
	dev.status = &s
	dev.maxAttempt = max(dev.maxAttempt, s.Attempt)
	if dev.currentVersion.Compare(s.RunningVersion) != 0 || dev.currentVersion.IsZero() {
		dev.currentVersion = s.RunningVersion
	}
	changed := prev == nil || prev.Attempt != s.Attempt || prev.Phase != s.Phase
	if changed {
		dev.progressAt = o.now
		if s.Phase.InFlight() {
			o.pushDeadline(o.now.Add(o.cfg.AttemptTimeout), dlAttempt, dev, s.Attempt)
		}
	}
	if changed && live && o.converged() {
		switch s.Phase {
		case core.UpgradeFailed, core.UpgradeRolledBack:
			o.emit(Notice{Kind: KindDevice, Name: dev.name, Warning: true, Reason: "Upgrade" + string(s.Phase),
				Message: core.Truncate(s.String()+" "+s.Detail, core.MaxErrorLen)})
		case core.UpgradeCommitted:
			o.emit(Notice{Kind: KindDevice, Name: dev.name, Reason: "UpgradeCommitted", Message: s.String()})
		}
	}
	o.markDirty(dev)
	o.refreshRolloutOf(dev)
	if plantedBuild && planted(BugStopBeforeHeartbeat) && live && changed && s.Phase == core.UpgradeWaitingForStop {
		o.plantedStop(dev)
	}
}

// maybeStop is called when a live candidate heartbeat arrives. It sends
// upgrade-stop(A, target) when, and only when, the device's status is
// WaitingForStop(A) for the current marker at the moment this operator
// itself receives a heartbeat of the target version for attempt A, and no
// stop was sent for A before (by this process or, per the Device object,
// by an earlier one). A heartbeat seen before the old agent armed does not
// count: the candidate heartbeats again within its interval.
func (o *Operator) maybeStop(dev *device) {
	if !o.converged() || dev.marker == nil || dev.status == nil {
		return
	}
	m, s := dev.marker, dev.status
	a := m.Attempt
	switch {
	case s.Phase != core.UpgradeWaitingForStop || s.Attempt != a:
		return
	case s.TargetVersion == nil || s.TargetVersion.Compare(m.TargetVersion) != 0:
		return
	case dev.candAtt != a || dev.candVer.Compare(m.TargetVersion) != 0 || !dev.candAt.Equal(o.now):
		return
	case dev.stopSent > a:
		return
	case dev.stopSent == a && (dev.stopRetry != a || dev.stopTries >= MaxStopTries):
		return
	}
	if dev.stopSent == a {
		dev.stopTries++
	} else {
		dev.stopTries = 1
	}
	dev.stopRetry = 0
	dev.stopSent = a
	dev.upMessage = fmt.Sprintf("observed heartbeat of %s for attempt %d; sent upgrade-stop", m.TargetVersion, a)
	dev.last, dev.hasLast = o.deviceStatus(dev), true
	o.emit(PatchDeviceStatus{Name: dev.name, Status: dev.last})
	o.stats.CommandsSent++
	o.emit(SendCommand{Device: dev.name, Attempt: a, Request: core.CommandRequest{
		Schema: core.SchemaVersion, Verb: core.VerbUpgradeStop, ID: StopCommandID(dev.name, a),
		UpgradeStop: &core.UpgradeStopArgs{Attempt: a, TargetVersion: m.TargetVersion}}})
}

// MaxStopTries bounds how often one process sends upgrade-stop for one
// attempt. A stop whose request or reply was lost (timeout, no responders)
// is sent again on the next live heartbeat of the candidate while the device
// still reports WaitingForStop for that attempt: only the armed old agent
// acts on it, so a repeat is harmless, and without it one lost message turns
// a healthy upgrade into a CutoverTimeout rollback. A rejected stop, or one
// recorded by an earlier operator process, is never repeated.
const MaxStopTries = 4

// StopCommandID is the request id of the upgrade-stop for one attempt.
func StopCommandID(device string, attempt uint32) string {
	return fmt.Sprintf("upgrade-stop/%s/%d", device, attempt)
}

func (o *Operator) commandResult(r CommandResult) {
	dev := o.devices[r.Device]
	if dev == nil {
		return
	}
	if r.Code != "" {
		o.stats.CommandErrors++
	}
	if r.Verb != core.VerbUpgradeStop {
		return
	}
	if r.Code == "" {
		if dev.marker != nil && dev.marker.Attempt == r.Attempt {
			dev.currentVersion = dev.marker.TargetVersion
			dev.upMessage = fmt.Sprintf("attempt %d committed: %s acknowledged upgrade-stop", r.Attempt, dev.marker.TargetVersion)
			o.emit(Notice{Kind: KindDevice, Name: dev.name, Reason: "UpgradeStopAcknowledged", Message: dev.upMessage})
		}
	} else {
		if (r.NotSent || r.Code == core.ErrCodeTimeout || r.Code == core.ErrCodeOffline) && r.Attempt == dev.stopSent {
			dev.stopRetry = r.Attempt
		}
		dev.upMessage = core.Truncate(fmt.Sprintf("upgrade-stop for attempt %d failed: %s: %s", r.Attempt, r.Code, r.Message), core.MaxErrorLen)
		o.emit(Notice{Kind: KindDevice, Name: dev.name, Warning: true, Reason: "UpgradeStopFailed", Message: dev.upMessage})
	}
	o.markDirty(dev)
	o.refreshRolloutOf(dev)
}

// addDep records that deployment dep targets dev.
func (dev *device) addDep(dep string) {
	if i, ok := slices.BinarySearch(dev.deps, dep); !ok {
		dev.deps = slices.Insert(dev.deps, i, dep)
	}
}

// removeDep forgets deployment dep and reports whether it targeted dev.
func (dev *device) removeDep(dep string) bool {
	i, ok := slices.BinarySearch(dev.deps, dep)
	if ok {
		dev.deps = slices.Delete(dev.deps, i, i+1)
	}
	return ok
}

// inFlight reports whether the device's current marker names an attempt
// that has not ended (and has not timed out).
func (dev *device) inFlight() bool {
	if dev.marker == nil {
		return false
	}
	a := dev.marker.Attempt
	if dev.timedOut == a {
		return false
	}
	if dev.status != nil && dev.status.Attempt == a {
		return !dev.status.Phase.Terminal()
	}
	if dev.status != nil && dev.status.Attempt > a {
		return false
	}
	return true
}

func (o *Operator) deviceUpgrade(dev *device) DeviceUpgrade {
	var u DeviceUpgrade
	o.deviceUpgradeInto(dev, &u)
	return u
}

// deviceUpgradeInto sets *u to dev's upgrade status (in place: the struct
// is large and computed on every flush).
func (o *Operator) deviceUpgradeInto(dev *device, u *DeviceUpgrade) {
	*u = DeviceUpgrade{StopSentAttempt: dev.stopSent, Message: dev.upMessage}
	if dev.marker != nil {
		u.Rollout, u.Target, u.Attempt = dev.marker.Rollout, dev.marker.TargetVersion, dev.marker.Attempt
		u.Phase = UpgradeMarked
		if dev.status != nil && dev.status.Attempt == u.Attempt {
			u.Phase = UpgradePhase(dev.status.Phase)
			if u.Message == "" || dev.status.Phase.Terminal() {
				if dev.status.Reason != "" || dev.status.Detail != "" {
					u.Message = reasonMessage(string(dev.status.Reason), dev.status.Detail, dev.last.Upgrade.Message)
				}
			}
		}
		if dev.timedOut == u.Attempt && u.Phase != UpgradePhase(core.UpgradeCommitted) {
			u.Phase = UpgradeTimedOut
		}
	} else if dev.status != nil {
		u.Attempt = dev.status.Attempt
		u.Phase = UpgradePhase(dev.status.Phase)
		if dev.status.TargetVersion != nil {
			u.Target = *dev.status.TargetVersion
		}
	}
}

// reasonMessage is core.Truncate(reason+" "+detail, core.MaxErrorLen). The
// message last emitted for the device (last; "" if none) usually holds that
// very text already and is returned instead of a new concatenation.
func reasonMessage(reason, detail, last string) string {
	if n := len(reason) + 1 + len(detail); n <= core.MaxErrorLen && len(last) == n &&
		last[:len(reason)] == reason && last[len(reason)] == ' ' && last[len(reason)+1:] == detail {
		return last
	}
	return core.Truncate(reason+" "+detail, core.MaxErrorLen)
}

// ---- Deployments ----------------------------------------------------------

func validateDeployment(s DeploymentSpec) (string, error) {
	if err := core.ValidateDeploymentName(s.Name); err != nil {
		return "", fmt.Errorf("metadata.name: %w", err)
	}
	if err := s.Selector.Validate(); err != nil {
		return "", fmt.Errorf("targetSelector.%w", err)
	}
	if err := validateStrategy(s.Rollout); err != nil {
		return "", err
	}
	w := s.Workload
	b, err := core.WorkloadSpec{Deployment: s.Name, Generation: s.Generation, Name: w.Name, Version: w.Version,
		Runtime: w.Runtime, Artifact: w.Artifact, Image: w.Image, Args: w.Args, Env: w.Env}.Encode()
	if err != nil {
		return "", fmt.Errorf("workload: %w", err)
	}
	return string(b), nil
}

func (o *Operator) deploymentUpsert(s DeploymentSpec) {
	d := o.deployments[s.Name]
	if d != nil && reflect.DeepEqual(d.spec, s) {
		return
	}
	value, err := validateDeployment(s)
	if d == nil {
		d = &deployment{targets: map[string]category{}, inHeap: map[string]struct{}{}}
		o.deployments[s.Name] = d
	}
	o.dirtyDeps[s.Name] = struct{}{}
	if err != nil {
		// Keep whatever was placed before: an invalid edit must not tear
		// down a running fleet.
		d.err = err.Error()
		d.spec.Deleting = s.Deleting
		o.emit(Notice{Kind: KindDeployment, Name: s.Name, Warning: true, Reason: "InvalidSpec", Message: d.err})
		if s.Deleting && o.converged() {
			o.finishDeleting(d)
		}
		return
	}
	d.err = ""
	oldGen := d.spec.Generation
	d.spec = s
	if d.value != value || oldGen != s.Generation {
		d.value = value
		d.lastError = ""
	}
	if s.Deleting {
		if o.converged() {
			o.finishDeleting(d)
		}
		return
	}
	// Re-place: every device targeted before or matching now.
	names := o.candidates(s.Selector)
	for n := range d.targets {
		if _, ok := slices.BinarySearch(names, n); !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		o.refreshTarget(d, o.devices[n])
	}
}

func (o *Operator) deploymentDeleted(name string) {
	d := o.deployments[name]
	if d == nil {
		return
	}
	for _, n := range core.SortedKeys(d.targets) {
		if dev := o.devices[n]; dev != nil {
			dev.removeDep(name)
			o.markDirty(dev)
		}
	}
	delete(o.deployments, name)
	delete(o.dirtyDeps, name)
	if o.converged() {
		o.purgeDeployment(name)
	}
}

// finishDeleting deletes every desired-state key of a deleting Deployment
// and then releases its finalizer.
func (o *Operator) finishDeleting(d *deployment) {
	for _, n := range core.SortedKeys(d.targets) {
		o.untarget(d, n)
	}
	o.purgeDeployment(d.spec.Name)
	if !d.finalized {
		d.finalized = true
		o.emit(RemoveFinalizer{Kind: KindDeployment, Name: d.spec.Name})
		o.emit(Notice{Kind: KindDeployment, Name: d.spec.Name, Reason: "DesiredStatePurged",
			Message: "every desired-state key of this deployment was deleted"})
	}
}

func (o *Operator) purgeDeployment(name string) {
	set := o.desiredByDep[name]
	devs := make([]string, 0, len(set))
	for n := range set {
		devs = append(devs, n)
	}
	slices.Sort(devs)
	for _, n := range devs {
		o.deleteDesired(core.DesiredStateKey(n, name))
	}
}

// refreshTarget recomputes whether d targets dev and, if so, its category.
func (o *Operator) refreshTarget(d *deployment, dev *device) {
	if dev == nil {
		return
	}
	if d.err != "" && len(d.targets) > 0 {
		// Frozen by an invalid edit: placement stays as it was, but a
		// blacklisted device still loses its keys.
		if _, ok := d.targets[dev.name]; ok && dev.blacklisted {
			o.untarget(d, dev.name)
		}
		return
	}
	want := d.err == "" && d.value != "" && !d.spec.Deleting && dev.indexed && !dev.blacklisted &&
		d.spec.Selector.Matches(dev.labels)
	if plantedBuild && planted(BugBlacklistedGetDesired) {
		want = d.err == "" && d.value != "" && !d.spec.Deleting && dev.indexed && d.spec.Selector.Matches(dev.labels)
	}
	if !want {
		o.untarget(d, dev.name)
		return
	}
	dev.addDep(d.spec.Name)
	o.setCat(d, dev.name, dev, o.depCategory(d, dev))
}

func (o *Operator) untarget(d *deployment, name string) {
	if old, ok := d.targets[name]; ok {
		adjust(&d.counts, old, -1)
		delete(d.targets, name)
		o.dirtyDeps[d.spec.Name] = struct{}{}
	}
	if dev := o.devices[name]; dev != nil {
		if dev.removeDep(d.spec.Name) {
			o.markDirty(dev)
		}
	}
	key := core.DesiredStateKey(name, d.spec.Name)
	if _, ok := o.desired[key]; ok && o.converged() {
		o.deleteDesired(key)
	}
}

func (o *Operator) depCategory(d *deployment, dev *device) category {
	if dev == nil {
		return catNone
	}
	if o.desired[core.DesiredStateKey(dev.name, d.spec.Name)] != d.value {
		return catWaiting
	}
	st, ok := dev.states[d.spec.Name]
	if !ok || st.Generation != d.spec.Generation {
		return catUnreported
	}
	switch st.Phase {
	case core.PhaseRunning:
		return catSucceeded
	case core.PhaseFailed:
		return catFailed
	default:
		return catPending
	}
}

// setCat records name's category c in d; dev is the device of that name
// (nil if there is none).
func (o *Operator) setCat(d *deployment, name string, dev *device, c category) {
	old, had := d.targets[name]
	if had && old == c {
		return
	}
	if had {
		adjust(&d.counts, old, -1)
	}
	d.targets[name] = c
	adjust(&d.counts, c, +1)
	if c == catWaiting {
		o.pushWaiting(&d.waiting, d.inHeap, name)
	}
	o.dirtyDeps[d.spec.Name] = struct{}{}
	if dev != nil {
		// A name without a device needs no patch: a device created under it
		// later is marked dirty when it gets its Device object.
		o.markDirty(dev)
	}
}

func adjust(c *DeploymentCounts, cat category, n int) {
	c.Total += n
	switch cat {
	case catWaiting:
		c.Waiting += n
	case catUnreported:
		c.Unreported += n
	case catPending:
		c.Pending += n
	case catSucceeded:
		c.Succeeded += n
	case catFailed:
		c.Failed += n
	}
}

func (o *Operator) pushWaiting(h *nameHeap, in map[string]struct{}, name string) {
	if _, ok := in[name]; ok {
		return
	}
	in[name] = struct{}{}
	h.push(name)
}

// planDeployment starts as many waiting devices as the wave planner allows.
func (o *Operator) planDeployment(d *deployment) {
	if d.err != "" || d.spec.Deleting || d.counts.Waiting == 0 {
		return
	}
	c := d.counts
	started := c.Total - c.Waiting
	p := PlanWaves(d.spec.Rollout, c.Total, started, c.Succeeded+c.Failed, c.Failed)
	n := p.CanStart
	for n > 0 && d.waiting.Len() > 0 {
		name := d.waiting.pop()
		delete(d.inHeap, name)
		if d.targets[name] != catWaiting {
			continue
		}
		key := core.DesiredStateKey(name, d.spec.Name)
		o.desiredPut(key, []byte(d.value))
		o.putKV(core.BucketDesiredState, key, []byte(d.value))
		n--
	}
}

func (o *Operator) deploymentStatus(d *deployment) DeploymentStatus {
	c := d.counts
	s := DeploymentStatus{ObservedGeneration: d.spec.Generation, Counts: c, LastError: d.lastError}
	if d.err != "" {
		s.LastError = d.err
	}
	p := PlanWaves(d.spec.Rollout, c.Total, c.Total-c.Waiting, c.Succeeded+c.Failed, c.Failed)
	s.Waves = p.Waves
	avail := Condition{Type: CondAvailable}
	switch {
	case c.Total == 0:
		avail.Reason, avail.Message = "NoTargets", "no device matches the target selector"
	case c.Succeeded == c.Total:
		avail.Status, avail.Reason = true, "AllDevicesRunning"
		avail.Message = fmt.Sprintf("%d/%d devices run generation %d", c.Succeeded, c.Total, d.spec.Generation)
	default:
		avail.Reason = "DevicesNotReady"
		avail.Message = fmt.Sprintf("%d/%d devices run generation %d", c.Succeeded, c.Total, d.spec.Generation)
	}
	prog := Condition{Type: CondProgressing}
	remaining := c.Waiting + c.Unreported + c.Pending
	switch {
	case d.err != "":
		prog.Reason, prog.Message = "InvalidSpec", d.err
	case p.Paused && remaining > 0:
		prog.Reason, prog.Message = p.PauseReason, fmt.Sprintf("%d devices not done", remaining)
	case remaining > 0:
		prog.Status, prog.Reason = true, "RolloutInProgress"
		prog.Message = fmt.Sprintf("%d devices not done (%d waiting)", remaining, c.Waiting)
	default:
		prog.Reason, prog.Message = "RolloutComplete", "every targeted device reported"
	}
	paused := Condition{Type: CondPaused, Reason: "NotPaused"}
	if p.Paused {
		paused.Status, paused.Reason = true, p.PauseReason
		if p.PauseReason == ReasonFailureThreshold {
			paused.Message = fmt.Sprintf("%d devices failed; the threshold is %d", c.Failed, p.Threshold)
		} else {
			paused.Message = "spec.rollout.paused is set"
		}
	}
	deg := Condition{Type: CondDegraded, Reason: "NoFailures"}
	switch {
	case d.err != "":
		deg.Status, deg.Reason, deg.Message = true, "InvalidSpec", d.err
	case c.Failed > 0:
		deg.Status, deg.Reason = true, "DevicesFailed"
		deg.Message = core.Truncate(fmt.Sprintf("%d devices failed; last: %s", c.Failed, d.lastError), core.MaxErrorLen)
	}
	s.Conditions = []Condition{avail, prog, paused, deg}
	return s
}

// ---- Agent rollouts -------------------------------------------------------

func (o *Operator) rolloutUpsert(s AgentRolloutSpec) {
	r := o.rollouts[s.Name]
	if r != nil && reflect.DeepEqual(r.spec, s) {
		return
	}
	var err error
	switch {
	case core.ValidateName("rollout", s.Name) != nil:
		err = fmt.Errorf("metadata.name: %w", core.ValidateName("rollout", s.Name))
	case s.Version.IsZero():
		err = fmt.Errorf("version: required")
	default:
		if e := s.Artifact.Validate(); e != nil {
			err = e
		} else if e := s.Selector.Validate(); e != nil {
			err = fmt.Errorf("targetSelector.%w", e)
		} else if e := validateStrategy(s.Rollout); e != nil {
			err = e
		}
	}
	if r == nil {
		r = &rollout{targets: map[string]string{}, byPhase: map[string]int{}, inHeap: map[string]struct{}{}}
		o.rollouts[s.Name] = r
	}
	o.dirtyRolls[s.Name] = struct{}{}
	if err != nil {
		r.err = err.Error()
		o.emit(Notice{Kind: KindAgentRollout, Name: s.Name, Warning: true, Reason: "InvalidSpec", Message: r.err})
		return
	}
	r.err = ""
	r.spec = s
	names := o.candidates(s.Selector)
	for n := range r.targets {
		if _, ok := slices.BinarySearch(names, n); !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		dev := o.devices[n]
		if dev == nil {
			continue
		}
		if dev.owner == s.Name {
			dev.owner = "" // re-decided below
			o.removeRolloutTarget(r, n)
		}
		o.reclaim(dev)
	}
}

func (o *Operator) rolloutDeleted(name string) {
	r := o.rollouts[name]
	if r == nil {
		return
	}
	delete(o.rollouts, name)
	delete(o.dirtyRolls, name)
	for _, n := range core.SortedKeys(r.targets) {
		if dev := o.devices[n]; dev != nil && dev.owner == name {
			dev.owner = ""
			o.reclaim(dev)
		}
	}
}

// claims reports whether r wants dev.
func (r *rollout) claims(dev *device) bool {
	return r.err == "" && dev.indexed && !dev.blacklisted && r.spec.Selector.Matches(dev.labels)
}

// reclaim decides which agent rollout owns dev: the first by name whose
// selector matches.
func (o *Operator) reclaim(dev *device) {
	want := ""
	for _, name := range core.SortedKeys(o.rollouts) {
		if o.rollouts[name].claims(dev) {
			want = name
			break
		}
	}
	if want == dev.owner {
		if want != "" {
			o.refreshRolloutOf(dev)
		}
		return
	}
	o.unclaim(dev)
	dev.owner = want
	if want != "" {
		o.refreshRolloutOf(dev)
	}
}

func (o *Operator) unclaim(dev *device) {
	if dev.owner == "" {
		return
	}
	if r := o.rollouts[dev.owner]; r != nil {
		o.removeRolloutTarget(r, dev.name)
	}
	dev.owner = ""
}

func (o *Operator) removeRolloutTarget(r *rollout, name string) {
	if old, ok := r.targets[name]; ok {
		if old != PhaseWaiting && old != PhaseSucceeded {
			if r.gone == nil {
				r.gone = map[string]bool{}
			}
			r.gone[name] = failedPhase(old)
		}
		adjustRollout(r, old, -1)
		delete(r.targets, name)
		o.dirtyRolls[r.spec.Name] = struct{}{}
	}
}

// failedPhase reports whether a rollout phase counts as a failed device.
func failedPhase(ph string) bool {
	return ph == string(core.UpgradeFailed) || ph == string(core.UpgradeRolledBack) || ph == string(UpgradeTimedOut)
}

// plan runs the wave planner for r. A device whose attempt timed out counts
// as failed (for the threshold) and stays unavailable (not done, against
// maxUnavailable) until its agent reports a terminal phase, as Kubernetes
// counts unavailable pods; devices that failed and then left the rollout
// still count as failed.
func (r *rollout) plan() WavePlan {
	c := r.counts
	failed := c.Failed
	for _, f := range r.gone {
		if f {
			failed++
		}
	}
	done := c.Succeeded + c.Failed - r.byPhase[string(UpgradeTimedOut)]
	return PlanWaves(r.spec.Rollout, c.Total, c.Total-c.Waiting, done, failed)
}

// noteGone records how the attempt of a device that left rollout r while
// in flight ended.
func (o *Operator) noteGone(dev *device) {
	if dev.marker == nil {
		return
	}
	r := o.rollouts[dev.marker.Rollout]
	if r == nil || dev.owner == r.spec.Name {
		return
	}
	if f, ok := r.gone[dev.name]; !ok || f {
		return
	}
	switch ph := o.rolloutPhase(r, dev); {
	case failedPhase(ph):
		r.gone[dev.name] = true
		o.dirtyRolls[r.spec.Name] = struct{}{}
	case ph == PhaseSucceeded || ph == PhaseWaiting:
		delete(r.gone, dev.name)
	}
}

func adjustRollout(r *rollout, phase string, n int) {
	r.counts.Total += n
	switch phase {
	case PhaseWaiting:
		r.counts.Waiting += n
	case PhaseSucceeded:
		r.counts.Succeeded += n
	case string(core.UpgradeFailed), string(core.UpgradeRolledBack), string(UpgradeTimedOut):
		r.counts.Failed += n
	default:
		r.counts.InProgress += n
	}
	r.byPhase[phase] += n
	if r.byPhase[phase] == 0 {
		delete(r.byPhase, phase)
	}
}

// rolloutPhase is where dev stands in r.
func (o *Operator) rolloutPhase(r *rollout, dev *device) string {
	target := r.spec.Version
	if !dev.currentVersion.IsZero() && dev.currentVersion.Compare(target) == 0 {
		return PhaseSucceeded
	}
	m := dev.marker
	if m == nil || m.Rollout != r.spec.Name || m.TargetVersion.Compare(target) != 0 {
		return PhaseWaiting
	}
	a := m.Attempt
	if s := dev.status; s != nil && s.Attempt == a {
		switch s.Phase {
		case core.UpgradeCommitted:
			return PhaseSucceeded
		case core.UpgradeIdle:
			if s.Reason == core.ReasonAlreadyRunning {
				return PhaseSucceeded
			}
		case core.UpgradeFailed, core.UpgradeRolledBack:
			return string(s.Phase)
		}
		if dev.timedOut == a {
			return string(UpgradeTimedOut)
		}
		return string(s.Phase)
	}
	if dev.timedOut == a {
		return string(UpgradeTimedOut)
	}
	return string(UpgradeMarked)
}

// refreshRolloutOf recomputes dev's phase in the rollout that owns it.
func (o *Operator) refreshRolloutOf(dev *device) {
	o.noteGone(dev)
	if dev.owner == "" {
		return
	}
	r := o.rollouts[dev.owner]
	if r == nil {
		return
	}
	ph := o.rolloutPhase(r, dev)
	old, had := r.targets[dev.name]
	if had && old == ph {
		return
	}
	if !had {
		delete(r.gone, dev.name)
	}
	if had {
		adjustRollout(r, old, -1)
	}
	r.targets[dev.name] = ph
	adjustRollout(r, ph, +1)
	if ph == PhaseWaiting {
		o.pushWaiting(&r.waiting, r.inHeap, dev.name)
	}
	o.dirtyRolls[r.spec.Name] = struct{}{}
	o.markDirty(dev)
	if o.converged() && had && (ph == PhaseSucceeded || ph == string(core.UpgradeFailed) ||
		ph == string(core.UpgradeRolledBack) || ph == string(UpgradeTimedOut)) {
		o.emit(Notice{Kind: KindAgentRollout, Name: r.spec.Name, Warning: ph != PhaseSucceeded,
			Reason: "Device" + ph, Message: fmt.Sprintf("device %s: %s", dev.name, ph)})
	}
}

// planRollout writes upgrade markers for as many waiting, online, idle
// devices as the wave planner allows.
func (o *Operator) planRollout(r *rollout) {
	if r.err != "" || r.counts.Waiting == 0 {
		return
	}
	p := r.plan()
	n := p.CanStart
	var skipped []string
	for n > 0 && r.waiting.Len() > 0 {
		name := r.waiting.pop()
		delete(r.inHeap, name)
		if r.targets[name] != PhaseWaiting {
			continue
		}
		dev := o.devices[name]
		if dev == nil || dev.owner != r.spec.Name {
			continue
		}
		if !dev.online || dev.inFlight() {
			skipped = append(skipped, name)
			continue
		}
		a := dev.maxAttempt + 1
		m := core.UpgradeMarker{Schema: core.SchemaVersion, Attempt: a, Rollout: r.spec.Name,
			TargetVersion: r.spec.Version, Artifact: r.spec.Artifact, CutoverTimeoutSec: o.cfg.CutoverTimeoutSec}
		b, err := m.Encode()
		if err != nil {
			r.lastErr = core.Truncate("encode upgrade marker: "+err.Error(), core.MaxErrorLen)
			o.dirtyRolls[r.spec.Name] = struct{}{}
			return
		}
		dev.marker = &m
		dev.maxAttempt = a
		dev.progressAt = o.now
		dev.upMessage = ""
		o.pushDeadline(o.now.Add(o.cfg.AttemptTimeout), dlAttempt, dev, a)
		o.putKV(core.BucketAgentUpgrade, core.AgentUpgradeKey(name), b)
		o.markDirty(dev)
		o.refreshRolloutOf(dev)
		n--
	}
	// Offline or busy devices go back to wait for the next tick (online
	// ones are re-queued when their heartbeat arrives).
	for _, name := range skipped {
		if dev := o.devices[name]; dev != nil && dev.online {
			o.pushWaiting(&r.waiting, r.inHeap, name)
		}
	}
}

func (o *Operator) rolloutStatus(r *rollout) AgentRolloutStatus {
	c := r.counts
	s := AgentRolloutStatus{ObservedGeneration: r.spec.Generation, Counts: c, LastError: r.lastErr,
		ByPhase: make(map[string]int, len(r.byPhase))}
	for k, v := range r.byPhase {
		s.ByPhase[k] = v
	}
	if r.err != "" {
		s.LastError = r.err
	}
	p := r.plan()
	s.Waves = p.Waves
	remaining := c.Waiting + c.InProgress
	prog := Condition{Type: CondProgressing}
	switch {
	case r.err != "":
		prog.Reason, prog.Message = "InvalidSpec", r.err
	case p.Paused && c.InProgress == 0 && remaining > 0:
		prog.Reason, prog.Message = p.PauseReason, fmt.Sprintf("%d devices waiting", c.Waiting)
	case remaining > 0:
		prog.Status, prog.Reason = true, "RolloutInProgress"
		prog.Message = fmt.Sprintf("%d in progress, %d waiting", c.InProgress, c.Waiting)
	default:
		prog.Reason, prog.Message = "RolloutFinished", "no device waiting or in progress"
	}
	paused := Condition{Type: CondPaused, Reason: "NotPaused"}
	if p.Paused {
		paused.Status, paused.Reason = true, p.PauseReason
		if p.PauseReason == ReasonFailureThreshold {
			paused.Message = fmt.Sprintf("%d devices failed; the threshold is %d", c.Failed, p.Threshold)
		} else {
			paused.Message = "spec.rollout.paused is set"
		}
	}
	complete := Condition{Type: CondComplete, Reason: "DevicesRemaining",
		Message: fmt.Sprintf("%d/%d devices run %s", c.Succeeded, c.Total, r.spec.Version)}
	if c.Total > 0 && c.Succeeded == c.Total {
		complete.Status, complete.Reason = true, "AllDevicesUpgraded"
	}
	deg := Condition{Type: CondDegraded, Reason: "NoFailures"}
	if r.err != "" {
		deg.Status, deg.Reason, deg.Message = true, "InvalidSpec", r.err
	} else if c.Failed > 0 {
		deg.Status, deg.Reason, deg.Message = true, "DevicesFailed", fmt.Sprintf("%d devices failed", c.Failed)
	}
	s.Conditions = []Condition{complete, prog, paused, deg}
	return s
}

// ---- Device status ------------------------------------------------------

// deviceStatus returns dev's status, detached from the core's buffers.
func (o *Operator) deviceStatus(dev *device) DeviceStatus {
	return o.computeDeviceStatus(dev).detach()
}

// computeDeviceStatus computes dev's status into o.scratch and returns it.
// Its slices are o's buffers, valid until the next call: flush compares the
// status with the last one emitted and copies it out (detach) only when it
// changed; a device marked dirty often has not.
func (o *Operator) computeDeviceStatus(dev *device) *DeviceStatus {
	s := &o.scratch
	*s = DeviceStatus{CurrentVersion: dev.currentVersion, Online: dev.online, LastSeen: dev.lastSeen}
	o.deviceUpgradeInto(dev, &s.Upgrade)
	if dev.hasLast && !dev.last.LastSeen.IsZero() && s.LastSeen.Sub(dev.last.LastSeen) < o.cfg.LastSeenResolution &&
		dev.online == dev.last.Online {
		s.LastSeen = dev.last.LastSeen
	}
	deps := o.scratchDeps[:0]
	for _, n := range dev.deps { // sorted
		d := o.deployments[n]
		if d == nil {
			continue
		}
		ds := DeviceDeploymentStatus{Deployment: n}
		st, ok := dev.states[n]
		if ok {
			ds.Generation, ds.LastError = st.Generation, st.LastError
		}
		switch c := d.targets[dev.name]; {
		case c == catWaiting:
			ds.Phase = PhaseWaiting
		case c == catUnreported:
			ds.Phase = "Unreported"
		case ok:
			ds.Phase = string(st.Phase)
		}
		deps = append(deps, ds)
	}
	o.scratchDeps = deps
	if len(deps) > 0 {
		s.Deployments = deps
	}
	online := Condition{Type: CondOnline}
	switch {
	case dev.online:
		online.Status, online.Reason, online.Message = true, "HeartbeatReceived", o.msgOnline
	case !dev.seenLive:
		online.Reason, online.Message = "NoHeartbeat", "no heartbeat received by this operator yet"
	default:
		online.Reason, online.Message = "HeartbeatStale", o.msgStale
	}
	up := Condition{Type: CondUpgrading, Reason: "Idle"}
	if dev.inFlight() {
		up.Status, up.Reason = true, string(s.Upgrade.Phase)
		up.Message = upgradingMessage(dev, &s.Upgrade)
	}
	bl := Condition{Type: CondBlacklisted, Reason: "NotBlacklisted"}
	if dev.blacklisted {
		bl.Status, bl.Reason, bl.Message = true, "Blacklisted", "spec.blacklisted is set: no desired state, no upgrades"
	}
	o.scratchConds = [3]Condition{online, up, bl}
	s.Conditions = o.scratchConds[:]
	return s
}

// upgradingMessage is the Upgrading condition's message for an attempt in
// flight. It depends on the attempt and target only, so the one last
// emitted is reused while they stay the same, instead of formatting it on
// every flush.
func upgradingMessage(dev *device, u *DeviceUpgrade) string {
	if l := &dev.last; dev.hasLast && l.Upgrade.Attempt == u.Attempt && versionEqual(&l.Upgrade.Target, &u.Target) {
		for _, c := range l.Conditions {
			if c.Type == CondUpgrading && c.Status {
				return c.Message
			}
		}
	}
	return fmt.Sprintf("attempt %d to %s", u.Attempt, u.Target)
}

// detach returns a copy of s that shares no slice with it.
func (s *DeviceStatus) detach() DeviceStatus {
	out := *s
	if s.Deployments != nil {
		out.Deployments = slices.Clone(s.Deployments)
	}
	if s.Conditions != nil {
		out.Conditions = slices.Clone(s.Conditions)
	}
	return out
}

// detachReusing is detach, but takes each slice that equals prev's from
// prev (statuses are never modified once emitted): when only lastSeen
// moved, the patch allocates no slice.
func (s *DeviceStatus) detachReusing(prev *DeviceStatus) DeviceStatus {
	out := *s
	if sliceEqual(s.Deployments, prev.Deployments) {
		out.Deployments = prev.Deployments
	} else if s.Deployments != nil {
		out.Deployments = slices.Clone(s.Deployments)
	}
	if sliceEqual(s.Conditions, prev.Conditions) {
		out.Conditions = prev.Conditions
	} else if s.Conditions != nil {
		out.Conditions = slices.Clone(s.Conditions)
	}
	return out
}

// ---- Tick, deadlines, flush -----------------------------------------------

func (o *Operator) tick() {
	o.expire()
	if o.converged() {
		for _, key := range core.SortedKeys(o.retryDelete) {
			if _, ok := o.desired[key]; ok || o.orphan(key) {
				o.deleteDesired(key)
			} else {
				delete(o.retryDelete, key)
			}
		}
		for _, name := range core.SortedKeys(o.deployments) {
			o.planDeployment(o.deployments[name])
		}
		for _, name := range core.SortedKeys(o.rollouts) {
			o.planRollout(o.rollouts[name])
		}
		o.flush()
	}
}

// flush turns the dirty set into status patches for objects whose status
// changed.
func (o *Operator) flush() {
	for _, name := range core.SortedKeys(o.dirtyDeps) {
		delete(o.dirtyDeps, name)
		d := o.deployments[name]
		if d == nil {
			continue
		}
		s := o.deploymentStatus(d)
		if d.last != nil && d.last.Equal(&s) {
			continue
		}
		o.transitions(KindDeployment, name, d.last, s.Conditions)
		d.last = &s
		o.emit(PatchDeploymentStatus{Name: name, Status: s})
	}
	for _, name := range core.SortedKeys(o.dirtyRolls) {
		delete(o.dirtyRolls, name)
		r := o.rollouts[name]
		if r == nil {
			continue
		}
		s := o.rolloutStatus(r)
		if r.last != nil && r.last.Equal(&s) {
			continue
		}
		var prev []Condition
		if r.last != nil {
			prev = r.last.Conditions
		}
		o.conditionNotices(KindAgentRollout, name, prev, s.Conditions)
		r.last = &s
		o.emit(PatchAgentRolloutStatus{Name: name, Status: s})
	}
	dirty := o.dirtyDevs
	slices.SortFunc(dirty, func(a, b dirtyDevice) int { return strings.Compare(a.name, b.name) })
	for _, e := range dirty {
		dev := e.dev
		if !dev.dirty {
			continue // dropped since it was listed
		}
		dev.dirty = false
		if !dev.hasCR {
			continue
		}
		s := o.computeDeviceStatus(dev)
		if !dev.hasLast {
			dev.last, dev.hasLast = s.detach(), true
		} else if dev.last.Equal(s) {
			continue
		} else {
			dev.last = s.detachReusing(&dev.last)
		}
		o.emit(PatchDeviceStatus{Name: dev.name, Status: dev.last})
	}
	clear(dirty) // keep no dropped device alive
	o.dirtyDevs = dirty[:0]
}

func (o *Operator) transitions(kind, name string, last *DeploymentStatus, now []Condition) {
	var prev []Condition
	if last != nil {
		prev = last.Conditions
	}
	o.conditionNotices(kind, name, prev, now)
}

// conditionNotices emits a Notice when Paused or Degraded turns true, or
// Available/Complete turns true.
func (o *Operator) conditionNotices(kind, name string, prev, now []Condition) {
	was := map[string]bool{}
	for _, c := range prev {
		was[c.Type] = c.Status
	}
	for _, c := range now {
		if !c.Status || was[c.Type] {
			continue
		}
		switch c.Type {
		case CondPaused, CondDegraded:
			o.emit(Notice{Kind: kind, Name: name, Warning: true, Reason: c.Reason, Message: c.Message})
		case CondAvailable, CondComplete:
			o.emit(Notice{Kind: kind, Name: name, Reason: c.Reason, Message: c.Message})
		}
	}
}

func (o *Operator) pushDeadline(at time.Time, kind deadlineKind, dev *device, attempt uint32) {
	key, exact := o.dlKeys.key(at)
	o.deadlines.push(deadline{at: at, key: key, exact: exact, kind: kind, name: dev.name, dev: dev, attempt: attempt})
}

func (o *Operator) expire() {
	for o.deadlines.Len() > 0 && !o.deadlines[0].at.After(o.now) {
		dl := o.deadlines.pop()
		// A deadline is for whatever device has the name now: the one it
		// was pushed for unless that one was dropped since.
		dev := dl.dev
		if dev.dropped {
			if dev = o.devices[dl.name]; dev == nil {
				continue
			}
		}
		switch dl.kind {
		case dlOffline:
			dev.expiryQueue = false
			if due := dev.lastSeen.Add(o.cfg.OfflineAfter); due.After(o.now) {
				dev.expiryQueue = true
				o.pushDeadline(due, dlOffline, dev, 0)
				continue
			}
			if dev.online {
				dev.online = false
				o.markDirty(dev)
				if o.converged() {
					o.emit(Notice{Kind: KindDevice, Name: dev.name, Warning: true, Reason: "DeviceOffline",
						Message: o.msgStale})
				}
			}
		case dlAttempt:
			if dev.marker == nil || dev.marker.Attempt != dl.attempt || !dev.inFlight() {
				continue
			}
			if due := dev.progressAt.Add(o.cfg.AttemptTimeout); due.After(o.now) {
				o.pushDeadline(due, dlAttempt, dev, dl.attempt)
				continue
			}
			if !o.converged() {
				// Time spent recovering does not count against the agent.
				dev.progressAt = o.now
				o.pushDeadline(o.now.Add(o.cfg.AttemptTimeout), dlAttempt, dev, dl.attempt)
				continue
			}
			dev.timedOut = dl.attempt
			dev.upMessage = fmt.Sprintf("attempt %d to %s made no progress for %s", dl.attempt,
				dev.marker.TargetVersion, o.cfg.AttemptTimeout)
			o.emit(Notice{Kind: KindDevice, Name: dev.name, Warning: true, Reason: "UpgradeTimedOut", Message: dev.upMessage})
			o.markDirty(dev)
			o.refreshRolloutOf(dev)
		}
	}
}

func (o *Operator) announceWake() {
	if o.deadlines.Len() == 0 {
		return
	}
	at := o.deadlines[0].at
	if at.Equal(o.announced) {
		// Already announced. Repeating it on every input while the
		// deadline is due and no tick has come yet told the shell nothing
		// new, and at 10k devices it was one effect in five.
		return
	}
	o.announced = at
	o.emit(WakeAt{At: at})
}
