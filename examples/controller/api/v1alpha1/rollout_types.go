package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Condition types set on a Rollout. Each is always present once the
// controller has seen the resource, so `kubectl wait --for=condition=Ready`
// and dashboards can rely on them.
const (
	// ConditionProgressing is True while the rollout's process is running
	// or waiting; its reason names the current step.
	ConditionProgressing = "Progressing"
	// ConditionReady is True once every step has completed.
	ConditionReady = "Ready"
	// ConditionFailed is True when the process failed; its reason names the
	// step that failed and its message carries the error.
	ConditionFailed = "Failed"
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

// RolloutStatus is written by the controller only.
type RolloutStatus struct {
	// ObservedGeneration is the metadata.generation of the spec that the
	// current process rolls out. When it differs from metadata.generation,
	// the controller has not started rolling out the newest spec yet.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// FlowVersion is the version of the flow that owns State.
	// +optional
	FlowVersion string `json:"flowVersion,omitempty"`

	// Phase is the process status: running, waiting, done, failed,
	// canceled or needs-attention, or unreadable when status.state
	// cannot be read. It repeats State for printer columns.
	// +optional
	Phase string `json:"phase,omitempty"`

	// Step is the path of the step the process is at, empty once it ended.
	// It repeats State for printer columns.
	// +optional
	Step string `json:"step,omitempty"`

	// WakeAt is when a waiting process will next make progress.
	// +optional
	WakeAt *metav1.Time `json:"wakeAt,omitempty"`

	// Conditions are Progressing, Ready and Failed.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// State is the stepflow process, in the library's JSON encoding. It is
	// kept as an embedded object rather than a string so that
	// `kubectl get -o yaml` shows it as readable YAML. Only the controller
	// interprets it.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +optional
	State *runtime.RawExtension `json:"state,omitempty"`
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

// DesiredReplicas returns Spec.Replicas, or 1 when unset.
func (s *RolloutSpec) DesiredReplicas() int32 {
	if s.Replicas == nil {
		return 1
	}
	return *s.Replicas
}
