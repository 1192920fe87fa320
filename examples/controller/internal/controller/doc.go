// Package controller drives Rollouts with a stepflow process kept in each
// Rollout's status.
//
// RolloutReconciler is a kube.Reconciler: Reconcile loads a Rollout, loads
// its process from status.state, calls Flow.Apply a bounded number of
// times, writes the new state and the conditions derived from it with
// optimistic concurrency, and asks to be called again when the state's
// WakeAt comes. What is the Rollout's own lives here: the flow (flow.go),
// whose steps act on the cluster through the same client (write a
// ConfigMap, create or update a Deployment, wait until it is available,
// tear both down when the Rollout is deleted mid-flight), the plan taken
// from the spec, and the reconciler's options.
package controller
