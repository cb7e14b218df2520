package opcore

import (
	"fmt"

	"github.com/flotilla-fleet/flotilla/core"
)

// Planted bugs measure the simulator: each one is a realistic protocol
// mistake that the `plantedbugs` build tag can switch on by name
// (SetPlantedBug), so a test can assert that a bounded seed sweep finds it.
// In the default build plantedBuild is the constant false, every
// `if plantedBuild && planted(...)` branch is removed by the compiler, and
// the functions below are dead code the linker drops. See docs/sim-depth.md.

// Names of the operator core's planted bugs.
const (
	// BugStopBeforeHeartbeat: the operator sends upgrade-stop as soon as
	// the status says WaitingForStop, without having seen a heartbeat of
	// the new version for the attempt.
	BugStopBeforeHeartbeat = "op-stop-before-heartbeat"
	// BugMaxUnavailableOffByOne: the wave planner lets one device more
	// than maxUnavailable be in flight.
	BugMaxUnavailableOffByOne = "op-max-unavailable-off-by-one"
	// BugBlacklistedGetDesired: deployments keep targeting (and writing
	// new desired state for) blacklisted devices.
	BugBlacklistedGetDesired = "op-blacklisted-get-desired-state"
)

// PlantedBugs lists the operator core's planted bugs.
var PlantedBugs = []string{BugStopBeforeHeartbeat, BugMaxUnavailableOffByOne, BugBlacklistedGetDesired}

// plantedStop is BugStopBeforeHeartbeat: maybeStop without the heartbeat
// condition, called on the WaitingForStop status.
func (o *Operator) plantedStop(dev *device) {
	if !o.converged() || dev.marker == nil || dev.status == nil {
		return
	}
	m, s := dev.marker, dev.status
	a := m.Attempt
	if s.Phase != core.UpgradeWaitingForStop || s.Attempt != a || dev.stopSent >= a {
		return
	}
	dev.stopSent = a
	dev.upMessage = fmt.Sprintf("status WaitingForStop for attempt %d; sent upgrade-stop", a)
	dev.last, dev.hasLast = o.deviceStatus(dev), true
	o.emit(PatchDeviceStatus{Name: dev.name, Status: dev.last})
	o.stats.CommandsSent++
	o.emit(SendCommand{Device: dev.name, Attempt: a, Request: core.CommandRequest{
		Schema: core.SchemaVersion, Verb: core.VerbUpgradeStop, ID: StopCommandID(dev.name, a),
		UpgradeStop: &core.UpgradeStopArgs{Attempt: a, TargetVersion: m.TargetVersion}}})
}
