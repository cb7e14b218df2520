package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AgentRolloutSpec upgrades the agents of the targeted devices to version.
type AgentRolloutSpec struct {
	// version is the agent's semantic version (v1.2.3).
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`
	Version string `json:"version"`
	// artifact is the agent binary of that version.
	Artifact ArtifactRef `json:"artifact"`
	// targetSelector picks the devices; blacklisted devices are skipped. A
	// device matched by several AgentRollouts belongs to the first by name.
	TargetSelector LabelSelector `json:"targetSelector"`
	// rollout strategy.
	// +optional
	Rollout RolloutStrategy `json:"rollout,omitempty"`
}

// AgentRolloutCounts are the per-device outcomes.
type AgentRolloutCounts struct {
	Total      int32 `json:"total"`
	Succeeded  int32 `json:"succeeded"`
	Failed     int32 `json:"failed"`
	InProgress int32 `json:"inProgress"`
	Waiting    int32 `json:"waiting"`
}

// AgentRolloutStatus is written by the operator.
type AgentRolloutStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Counts AgentRolloutCounts `json:"counts,omitempty"`
	// byPhase counts devices by upgrade phase (Waiting, Marked, Staging, …,
	// Succeeded, Failed, RolledBack, TimedOut).
	// +optional
	ByPhase map[string]int32 `json:"byPhase,omitempty"`
	// +optional
	// +listType=atomic
	Waves []WaveStatus `json:"waves,omitempty"`
	// +optional
	LastError string `json:"lastError,omitempty"`
	// conditions: Complete, Progressing, Paused, Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AgentRollout upgrades the Flotilla agent itself, wave by wave.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=far,categories=flotilla
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.contains('.')",message="metadata.name must not contain '.': the name is a token of NATS keys"
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Targets",type=integer,JSONPath=`.status.counts.total`
// +kubebuilder:printcolumn:name="Upgraded",type=integer,JSONPath=`.status.counts.succeeded`
// +kubebuilder:printcolumn:name="In-Progress",type=integer,JSONPath=`.status.counts.inProgress`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.counts.failed`
// +kubebuilder:printcolumn:name="Complete",type=string,JSONPath=`.status.conditions[?(@.type=="Complete")].status`
// +kubebuilder:printcolumn:name="Paused",type=string,JSONPath=`.status.conditions[?(@.type=="Paused")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AgentRollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AgentRolloutSpec `json:"spec"`
	// +optional
	Status AgentRolloutStatus `json:"status,omitempty"`
}

// AgentRolloutList is a list of AgentRollouts.
//
// +kubebuilder:object:root=true
type AgentRolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AgentRollout `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AgentRollout{}, &AgentRolloutList{})
}
