package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WorkloadTemplate is what a Deployment runs on each targeted device.
// +kubebuilder:validation:XValidation:rule="!has(self.runtime) || self.runtime != 'podman' || (has(self.image) && size(self.image) > 0)",message="image is required for the podman runtime"
type WorkloadTemplate struct {
	// name of the workload on the device.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[^.\s*>]+$`
	Name string `json:"name"`
	// version of the workload ("1.25", "2026.11.3-arm64").
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[^\s*>]+$`
	Version string `json:"version"`
	// runtime: process or podman; empty uses the agent's default.
	// +optional
	// +kubebuilder:validation:Enum="";process;podman
	Runtime string `json:"runtime,omitempty"`
	// artifact to download and verify before starting.
	// +optional
	Artifact *ArtifactRef `json:"artifact,omitempty"`
	// image is the podman image reference.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`
	// args of the process.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Args []string `json:"args,omitempty"`
	// env of the process.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Env map[string]string `json:"env,omitempty"`
}

// DeploymentSpec says what runs where and how fast it rolls out.
type DeploymentSpec struct {
	// targetSelector picks the devices by label; blacklisted devices are
	// never targeted.
	TargetSelector LabelSelector `json:"targetSelector"`
	// workload to run on every targeted device.
	Workload WorkloadTemplate `json:"workload"`
	// rollout strategy for changes to this Deployment.
	// +optional
	Rollout RolloutStrategy `json:"rollout,omitempty"`
}

// DeploymentCounts are the per-device outcomes of the current generation;
// total = succeeded + failed + pending + unreported + waiting.
type DeploymentCounts struct {
	Total      int32 `json:"total"`
	Succeeded  int32 `json:"succeeded"`
	Failed     int32 `json:"failed"`
	Pending    int32 `json:"pending"`
	Unreported int32 `json:"unreported"`
	Waiting    int32 `json:"waiting"`
}

// DeploymentStatus is written by the operator.
type DeploymentStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Counts DeploymentCounts `json:"counts,omitempty"`
	// lastError is the last device failure or spec problem.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// +optional
	// +listType=atomic
	Waves []WaveStatus `json:"waves,omitempty"`
	// conditions: Available, Progressing, Paused, Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Deployment runs one workload on every device its selector targets.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fdeploy,categories=flotilla
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.contains('.')",message="metadata.name must not contain '.': the name is a token of NATS keys"
// +kubebuilder:printcolumn:name="Workload",type=string,JSONPath=`.spec.workload.name`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.workload.version`
// +kubebuilder:printcolumn:name="Targets",type=integer,JSONPath=`.status.counts.total`
// +kubebuilder:printcolumn:name="Running",type=integer,JSONPath=`.status.counts.succeeded`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.counts.failed`
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.counts.pending`
// +kubebuilder:printcolumn:name="Waiting",type=integer,JSONPath=`.status.counts.waiting`,priority=1
// +kubebuilder:printcolumn:name="Available",type=string,JSONPath=`.status.conditions[?(@.type=="Available")].status`
// +kubebuilder:printcolumn:name="Paused",type=string,JSONPath=`.status.conditions[?(@.type=="Paused")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Deployment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec DeploymentSpec `json:"spec"`
	// +optional
	Status DeploymentStatus `json:"status,omitempty"`
}

// DeploymentList is a list of Deployments.
//
// +kubebuilder:object:root=true
type DeploymentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Deployment `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Deployment{}, &DeploymentList{})
}
