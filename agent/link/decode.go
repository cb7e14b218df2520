package link

import (
	"fmt"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/core"
)

// DesiredInput turns a desired-state entry of device into the core's input:
// DesiredDeleted for a delete or purge, DesiredPut for a value that decodes
// and names the deployment of its key, DesiredInvalid otherwise. A key that
// is not one of device's desired-state keys gives an error and no input.
//
// It is the one decoding path from a desired-state entry to the core, used
// by the production shell and the simulator alike.
func DesiredInput(device string, e Entry) (agentcore.Input, error) {
	dev, dep, err := core.ParseDesiredStateKey(e.Key)
	if err != nil {
		return nil, err
	}
	if dev != device {
		return nil, fmt.Errorf("desired-state key %q belongs to device %q", e.Key, dev)
	}
	if e.Op != OpPut {
		return agentcore.DesiredDeleted{Deployment: dep, Revision: e.Rev}, nil
	}
	spec, err := core.DecodeWorkloadSpec(e.Value)
	if err == nil && spec.Deployment != dep {
		err = fmt.Errorf("spec names deployment %q but its key names %q", spec.Deployment, dep)
	}
	if err != nil {
		return agentcore.DesiredInvalid{Deployment: dep, Revision: e.Rev, Err: core.Truncate(err.Error(), core.MaxErrorLen)}, nil
	}
	return agentcore.DesiredPut{Deployment: dep, Spec: spec, Revision: e.Rev}, nil
}

// MarkerInput turns an agent-upgrade entry of device into the core's input:
// MarkerDeleted for a delete or purge, MarkerPut for a value that decodes,
// MarkerInvalid otherwise. Another key gives an error and no input.
func MarkerInput(device string, e Entry) (agentcore.Input, error) {
	if e.Key != core.AgentUpgradeKey(device) {
		return nil, fmt.Errorf("agent-upgrade key %q is not device %q's", e.Key, device)
	}
	if e.Op != OpPut {
		return agentcore.MarkerDeleted{}, nil
	}
	m, err := core.DecodeUpgradeMarker(e.Value)
	if err != nil {
		return agentcore.MarkerInvalid{Err: core.Truncate(err.Error(), core.MaxErrorLen)}, nil
	}
	return agentcore.MarkerPut{Marker: m}, nil
}
