package kube

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ProcessStatus is the part of an object's status that holds its process.
// Embed it inline in the status of a custom resource:
//
//	type RolloutStatus struct {
//		kube.ProcessStatus `json:",inline"`
//		// fields of your own
//	}
//
// so that its fields sit directly under .status, where printer columns and
// kubectl jsonpath find them. Only the controller writes it. State is the
// process itself; every other field repeats something the state says, for
// people, printer columns and `kubectl wait`, and is rewritten from the
// state at every status write.
//
// The CRD must declare each field (see docs/kubernetes.md for the schema);
// State needs x-kubernetes-preserve-unknown-fields, or the API server
// prunes the process away.
type ProcessStatus struct {
	// ObservedGeneration is the metadata.generation of the spec that the
	// process in State was started for. When it differs from
	// metadata.generation, the controller has not started on the newest
	// spec yet.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// FlowVersion is the version of the flow that State belongs to.
	// +optional
	FlowVersion string `json:"flowVersion,omitempty"`

	// Phase is the process status: running, waiting, done, failed,
	// canceled or needs-attention; or unreadable, unknown-version,
	// unwritable or migration-failed when the controller cannot continue
	// the process in State (the Failed condition says why).
	// +optional
	Phase string `json:"phase,omitempty"`

	// Step is the path of the step the process is at (the paths of all
	// its positions, comma-separated, inside a Parallel); empty once it
	// ended.
	// +optional
	Step string `json:"step,omitempty"`

	// WakeAt is when a waiting process will next make progress, to the
	// second; the exact time is in State.
	// +optional
	WakeAt *metav1.Time `json:"wakeAt,omitempty"`

	// LastError is the error that matters now: why the process failed,
	// the failure a step is retrying after, or why the controller cannot
	// continue it.
	// +optional
	LastError string `json:"lastError,omitempty"`

	// Conditions are Progressing, Ready and Failed, and, when the
	// controller keeps them, one per step.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// State is the stepflow process in the library's JSON encoding
	// (package codec), kept as an embedded object rather than a string so
	// that `kubectl get -o yaml` shows it as YAML. Only the controller
	// interprets it.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +optional
	State *runtime.RawExtension `json:"state,omitempty"`
}

// Phases that do not come from stepflow.Status: the controller cannot
// continue the process in State, and leaves it there for a person to
// look at.
const (
	// PhaseUnreadable: State does not decode, or names steps the flow
	// does not have.
	PhaseUnreadable = "unreadable"
	// PhaseUnknownVersion: State belongs to a flow version the
	// controller does not know (written by a newer release, or by an old
	// one whose migration was dropped).
	PhaseUnknownVersion = "unknown-version"
	// PhaseUnwritable: the process could not be encoded (it outgrew the
	// size limit); State holds the last one written.
	PhaseUnwritable = "unwritable"
	// PhaseMigrationFailed: the process is of an older version the
	// controller knows, and its migration to the current one failed.
	PhaseMigrationFailed = "migration-failed"
)

// DeepCopyInto copies in into out; out shares no memory with in.
func (in *ProcessStatus) DeepCopyInto(out *ProcessStatus) {
	*out = *in
	if in.WakeAt != nil {
		out.WakeAt = in.WakeAt.DeepCopy()
	}
	if in.Conditions != nil {
		out.Conditions = make([]metav1.Condition, len(in.Conditions))
		for i := range in.Conditions {
			in.Conditions[i].DeepCopyInto(&out.Conditions[i])
		}
	}
	if in.State != nil {
		out.State = new(runtime.RawExtension)
		in.State.DeepCopyInto(out.State)
	}
}

// DeepCopy returns a copy of in that shares no memory with it.
func (in *ProcessStatus) DeepCopy() *ProcessStatus {
	if in == nil {
		return nil
	}
	out := new(ProcessStatus)
	in.DeepCopyInto(out)
	return out
}

// stored reports whether ps holds a process.
func (ps *ProcessStatus) stored() bool { return ps.State != nil && len(ps.State.Raw) > 0 }
