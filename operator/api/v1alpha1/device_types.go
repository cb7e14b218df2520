package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeviceSpec is what a platform team sets on a device. Its labels are the
// object's metadata labels.
type DeviceSpec struct {
	// blacklisted devices get no desired state and no upgrades; their
	// desired-state keys are deleted.
	// +optional
	// +kubebuilder:default=false
	Blacklisted bool `json:"blacklisted"`
}

// DeviceUpgradeStatus is where the device's agent self-upgrade stands.
type DeviceUpgradeStatus struct {
	// phase: Marked, the agent's phase (Staging, Verifying, CutoverReady,
	// WaitingForStop, Committed, Failed, Reverting, RolledBack, Idle), or
	// TimedOut.
	// +optional
	Phase string `json:"phase,omitempty"`
	// +optional
	Rollout string `json:"rollout,omitempty"`
	// +optional
	TargetVersion string `json:"targetVersion,omitempty"`
	// +optional
	Attempt int64 `json:"attempt,omitempty"`
	// stopSentAttempt is the last attempt for which the operator sent
	// upgrade-stop; a restarted operator sends none again for it.
	// +optional
	StopSentAttempt int64 `json:"stopSentAttempt,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// DeviceDeploymentPhase is one deployment's phase on this device.
type DeviceDeploymentPhase struct {
	Deployment string `json:"deployment"`
	// phase: Waiting, Unreported, Pending, Applying, Running, Failed.
	Phase string `json:"phase"`
	// +optional
	Generation int64 `json:"generation,omitempty"`
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// DeviceStatus is written by the operator.
type DeviceStatus struct {
	// currentVersion of the device's active agent.
	// +optional
	CurrentVersion string `json:"currentVersion,omitempty"`
	// +optional
	Upgrade DeviceUpgradeStatus `json:"upgrade,omitempty"`
	// lastSeen is when the operator last received a heartbeat (operator's
	// clock, updated at most once a minute while online).
	// +optional
	LastSeen *metav1.Time `json:"lastSeen,omitempty"`
	// +optional
	// +listType=atomic
	Deployments []DeviceDeploymentPhase `json:"deployments,omitempty"`
	// conditions: Online, Upgrading, Blacklisted.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Device is one edge device. The operator creates it when the device's
// agent first reports; its labels drive placement.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fdev,categories=flotilla
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.contains('.')",message="metadata.name must not contain '.': the name is a token of NATS keys"
// +kubebuilder:printcolumn:name="Online",type=string,JSONPath=`.status.conditions[?(@.type=="Online")].status`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.currentVersion`
// +kubebuilder:printcolumn:name="Upgrade",type=string,JSONPath=`.status.upgrade.phase`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.status.upgrade.targetVersion`
// +kubebuilder:printcolumn:name="Blacklisted",type=boolean,JSONPath=`.spec.blacklisted`
// +kubebuilder:printcolumn:name="Last-Seen",type=date,JSONPath=`.status.lastSeen`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Device struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec DeviceSpec `json:"spec,omitempty"`
	// +optional
	Status DeviceStatus `json:"status,omitempty"`
}

// DeviceList is a list of Devices.
//
// +kubebuilder:object:root=true
type DeviceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Device `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Device{}, &DeviceList{})
}
