package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow-io/go-stepflow/kube"
)

// Condition types set on a Rollout: those of every object driven by
// package kube. Each is always present once the controller has seen the
// resource, so `kubectl wait --for=condition=Ready` and dashboards can rely
// on them. The controller also keeps one condition per step of the flow
// (kube.StepConditions).
const (
	// ConditionProgressing is True while the rollout's process is running
	// or waiting; its reason names the current step.
	ConditionProgressing = kube.ConditionProgressing
	// ConditionReady is True once every step has completed.
	ConditionReady = kube.ConditionReady
	// ConditionFailed is True when the process failed; its reason names the
	// step that failed and its message carries the error.
	ConditionFailed = kube.ConditionFailed
)

// RolloutSpec is the desired rollout: which image of which application
// runs in which environment, and how many replicas.
type RolloutSpec struct {
	// App names the application. The controller creates a ConfigMap
	// "<app>-config" and a Deployment "<app>" in the Rollout's namespace.
	// It cannot be changed once set.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=50
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="app is immutable"
	App string `json:"app"`

	// Image is the container image to run.
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`

	// Environment is handed to the application in its ConfigMap
	// (for example "staging" or "production").
	// +kubebuilder:validation:MinLength=1
	Environment string `json:"environment"`

	// Replicas is the number of pods to run. Defaults to 1.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
}

// RolloutStatus is written by the controller only. It is the process
// status of package kube, inline: observedGeneration, flowVersion, phase,
// step, wakeAt, lastError, conditions, and the process itself in state.
type RolloutStatus struct {
	kube.ProcessStatus `json:",inline"`
}

// Rollout rolls out one image of one application to one environment,
// step by step, with its progress kept in its status.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="App",type=string,JSONPath=`.spec.app`
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.image`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.status.step`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Rollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RolloutSpec   `json:"spec,omitempty"`
	Status RolloutStatus `json:"status,omitempty"`
}

// RolloutList is a list of Rollouts.
//
// +kubebuilder:object:root=true
type RolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Rollout `json:"items"`
}

// GetProcessStatus returns the Rollout's process status, for the
// reconciler of package kube to read and write.
func (r *Rollout) GetProcessStatus() *kube.ProcessStatus { return &r.Status.ProcessStatus }

// DesiredReplicas returns Spec.Replicas, or 1 when unset.
func (s *RolloutSpec) DesiredReplicas() int32 {
	if s.Replicas == nil {
		return 1
	}
	return *s.Replicas
}
