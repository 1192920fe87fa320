// Package v1alpha1 holds the Rollout custom resource of the example
// controller, API group examples.stepflow.io.
//
// A Rollout asks for one application image to be rolled out to one
// environment. Its spec is what people write; its status is written by the
// controller only, through the status subresource, and carries the whole
// stepflow process: the encoded state, the flow version, and the standard
// conditions derived from them.
//
// +kubebuilder:object:generate=true
// +groupName=examples.stepflow.io
package v1alpha1
