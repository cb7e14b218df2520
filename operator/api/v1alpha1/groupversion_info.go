// Package v1alpha1 holds the fleet.flotilla.dev/v1alpha1 API: Deployment,
// Device and AgentRollout. The CRDs under operator/config/crd are generated
// from these types by controller-gen (make manifests).
//
// +kubebuilder:object:generate=true
// +groupName=fleet.flotilla.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of these types.
	GroupVersion = schema.GroupVersion{Group: "fleet.flotilla.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// DeploymentFinalizer keeps a Deployment until the operator has deleted its
// desired-state keys.
const DeploymentFinalizer = "fleet.flotilla.dev/desired-state"
