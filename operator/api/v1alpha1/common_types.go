package v1alpha1

import (
	"k8s.io/apimachinery/pkg/util/intstr"
)

// LabelSelector selects devices by their labels, as a Kubernetes label
// selector does: every matchLabels pair and every matchExpressions
// requirement must hold. The empty selector selects every device.
type LabelSelector struct {
	// matchLabels: label key → value, all of which must match.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",message="every matchLabels key must be a label key: an optional DNS-subdomain prefix and '/', then 1-63 characters [A-Za-z0-9-_.] starting and ending alphanumeric"
	MatchLabels map[string]LabelValue `json:"matchLabels,omitempty"`
	// matchExpressions: requirements, all of which must hold.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelValue is a label value: at most 63 characters [A-Za-z0-9-_.],
// starting and ending alphanumeric, or empty.
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`
type LabelValue string

// LabelSelectorRequirement is one match expression.
// +kubebuilder:validation:XValidation:rule="(self.operator == 'In' || self.operator == 'NotIn') ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",message="operators In and NotIn need at least one value; Exists and DoesNotExist take no values"
type LabelSelectorRequirement struct {
	// key is the label key.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`
	Key string `json:"key"`
	// operator is In, NotIn, Exists or DoesNotExist.
	// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist
	Operator string `json:"operator"`
	// values for In and NotIn.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`
	// +listType=atomic
	Values []string `json:"values,omitempty"`
}

// RolloutStrategy says how fast a change reaches the fleet. The same
// strategy drives workload rollouts (Deployment) and agent upgrades
// (AgentRollout).
type RolloutStrategy struct {
	// waves are the sizes of successive waves, each a device count (3) or a
	// share of the targeted devices ("25%"). A wave starts when every device
	// of the waves before it is done (succeeded or failed). Devices left
	// over after the listed waves form one final wave. Empty: one wave with
	// every device. At most 5 waves (the API server's CEL cost budget).
	// +optional
	// +kubebuilder:validation:MaxItems=5
	// +listType=atomic
	// +kubebuilder:validation:items:XValidation:rule="type(self) == int ? self > 0 : self.matches('^(100|[1-9][0-9]?)%$')",message="each wave must be a positive device count or a percentage between 1% and 100%"
	Waves []intstr.IntOrString `json:"waves,omitempty"`
	// maxUnavailable bounds the devices in flight (started, not done) at
	// once: a count or a percentage of the targeted devices (rounded down,
	// at least 1). Unset: no bound beyond the waves.
	// +optional
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="maxUnavailable must be a non-negative count or a percentage between 0% and 100%"
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
	// failureThreshold: when more devices than this have failed, the rollout
	// pauses (no new device starts). A count or a percentage of the targeted
	// devices (rounded down). Unset: never pause on failures.
	// +optional
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="failureThreshold must be a non-negative count or a percentage between 0% and 100%"
	FailureThreshold *intstr.IntOrString `json:"failureThreshold,omitempty"`
	// paused stops new devices from starting; devices in flight continue.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// ArtifactRef names a downloadable artifact and how to verify it: exactly
// one of object (a name in the "artifacts" object store) and url (https).
// +kubebuilder:validation:XValidation:rule="has(self.object) != has(self.url)",message="set exactly one of object and url"
type ArtifactRef struct {
	// object is <name>/<version> in the artifacts object store.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[^/\s]+/[^/\s]+$`
	Object string `json:"object,omitempty"`
	// url is an https:// URL.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https://[^\s/]+`
	URL string `json:"url,omitempty"`
	// sha256 is the lower-case hex SHA-256 of the artifact.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	SHA256 string `json:"sha256"`
	// size is the artifact's length in bytes.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=268435456
	Size int64 `json:"size"`
	// signature is an optional base64 ed25519 signature over the artifact.
	// +optional
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9+/]{86}==$`
	Signature string `json:"signature,omitempty"`
}

// WaveStatus is the progress of one wave.
type WaveStatus struct {
	Index   int32  `json:"index"`
	Devices int32  `json:"devices"`
	Started int32  `json:"started"`
	Done    int32  `json:"done"`
	Phase   string `json:"phase"`
}

// MatchLabelsOf converts a plain label map for LabelSelector.MatchLabels.
func MatchLabelsOf(m map[string]string) map[string]LabelValue {
	if m == nil {
		return nil
	}
	out := make(map[string]LabelValue, len(m))
	for k, v := range m {
		out[k] = LabelValue(v)
	}
	return out
}
