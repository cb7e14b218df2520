package core

import (
	"fmt"
	"strings"
)

// KV buckets, subjects and the object store. These names are the contract
// between the operator and the agents; nothing else spells them.
const (
	BucketDesiredState       = "desired-state"
	BucketDeviceInfo         = "device-info"
	BucketDeviceState        = "device-state"
	BucketDeviceHeartbeat    = "device-heartbeat"
	BucketAgentUpgrade       = "agent-upgrade"
	BucketAgentUpgradeStatus = "agent-upgrade-status"
	ObjectStoreArtifacts     = "artifacts"

	// SubjectCommandsPrefix is the first token of every command subject:
	// device-commands.<device>.<verb>.
	SubjectCommandsPrefix = "device-commands"
)

// Buckets lists every KV bucket, in a fixed order, for shells that create them.
var Buckets = []string{
	BucketDesiredState,
	BucketDeviceInfo,
	BucketDeviceState,
	BucketDeviceHeartbeat,
	BucketAgentUpgrade,
	BucketAgentUpgradeStatus,
}

// KeyError reports a KV key or subject that does not parse.
type KeyError struct {
	What string // "desired-state key", "command subject", ...
	Key  string
	Why  string
}

func (e *KeyError) Error() string { return fmt.Sprintf("invalid %s %q: %s", e.What, e.Key, e.Why) }

// DesiredStateKey is the desired-state key of one deployment on one device:
// <device>.<deployment>.
func DesiredStateKey(device, deployment string) string { return device + "." + deployment }

// DesiredStateDeviceFilter is the KV watch filter for every desired-state key
// of one device: <device>.*.
func DesiredStateDeviceFilter(device string) string { return device + ".*" }

// ParseDesiredStateKey splits a desired-state key into device and deployment.
func ParseDesiredStateKey(key string) (device, deployment string, err error) {
	parts := strings.Split(key, ".")
	if len(parts) != 2 {
		return "", "", &KeyError{"desired-state key", key, "want <device>.<deployment>"}
	}
	if err := ValidateDeviceName(parts[0]); err != nil {
		return "", "", &KeyError{"desired-state key", key, err.Error()}
	}
	if err := ValidateDeploymentName(parts[1]); err != nil {
		return "", "", &KeyError{"desired-state key", key, err.Error()}
	}
	return parts[0], parts[1], nil
}

// DeviceInfoKey is the device-info key of a device: info.<device>.
func DeviceInfoKey(device string) string { return "info." + device }

// ParseDeviceInfoKey returns the device of a device-info key.
func ParseDeviceInfoKey(key string) (string, error) {
	return parsePrefixed("device-info key", "info", key)
}

// DeviceStateKey is the device-state key of one deployment on one device:
// state.<device>.<deployment>.
func DeviceStateKey(device, deployment string) string {
	return "state." + device + "." + deployment
}

// ParseDeviceStateKey splits a device-state key.
func ParseDeviceStateKey(key string) (device, deployment string, err error) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 || parts[0] != "state" {
		return "", "", &KeyError{"device-state key", key, "want state.<device>.<deployment>"}
	}
	if err := ValidateDeviceName(parts[1]); err != nil {
		return "", "", &KeyError{"device-state key", key, err.Error()}
	}
	if err := ValidateDeploymentName(parts[2]); err != nil {
		return "", "", &KeyError{"device-state key", key, err.Error()}
	}
	return parts[1], parts[2], nil
}

// HeartbeatKey is the device-heartbeat key of a device: <device>.
func HeartbeatKey(device string) string { return device }

// AgentUpgradeKey is the agent-upgrade (marker) key of a device: <device>.
func AgentUpgradeKey(device string) string { return device }

// AgentUpgradeStatusKey is the agent-upgrade-status key of a device: <device>.
func AgentUpgradeStatusKey(device string) string { return device }

// ParseDeviceKey validates a key that is just a device name (heartbeat,
// agent-upgrade and agent-upgrade-status buckets).
func ParseDeviceKey(key string) (string, error) {
	if err := ValidateDeviceName(key); err != nil {
		return "", &KeyError{"device key", key, err.Error()}
	}
	return key, nil
}

// CommandSubject is the request subject of one command verb on one device:
// device-commands.<device>.<verb>.
func CommandSubject(device string, verb Verb) string {
	return SubjectCommandsPrefix + "." + device + "." + string(verb)
}

// CommandSubscription is the subject an agent subscribes to for all of its
// commands: device-commands.<device>.>.
func CommandSubscription(device string) string {
	return SubjectCommandsPrefix + "." + device + ".>"
}

// ParseCommandSubject splits a command subject into device and verb.
func ParseCommandSubject(subject string) (device string, verb Verb, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != SubjectCommandsPrefix {
		return "", "", &KeyError{"command subject", subject, "want device-commands.<device>.<verb>"}
	}
	if err := ValidateDeviceName(parts[1]); err != nil {
		return "", "", &KeyError{"command subject", subject, err.Error()}
	}
	v := Verb(parts[2])
	if !v.Valid() {
		return "", "", &KeyError{"command subject", subject, fmt.Sprintf("unknown verb %q (want one of %s)", parts[2], verbList())}
	}
	return parts[1], v, nil
}

// ArtifactObjectName is the object-store name of an artifact: <name>/<version>.
func ArtifactObjectName(name, version string) string { return name + "/" + version }

func parsePrefixed(what, prefix, key string) (string, error) {
	p, rest, ok := strings.Cut(key, ".")
	if !ok || p != prefix {
		return "", &KeyError{what, key, "want " + prefix + ".<device>"}
	}
	if err := ValidateDeviceName(rest); err != nil {
		return "", &KeyError{what, key, err.Error()}
	}
	return rest, nil
}
