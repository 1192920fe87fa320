// Package controller drives Rollouts with a stepflow process kept in each
// Rollout's status.
//
// RolloutReconciler is ordinary controller-runtime code: Reconcile loads a
// Rollout, loads its process from status.state, calls Flow.Apply a bounded
// number of times, writes the new state and the conditions derived from it
// with optimistic concurrency, and asks to be called again when the state's
// WakeAt comes. The steps of the flow act on the cluster through the same
// client: write a ConfigMap, create or update a Deployment, wait until it is
// available. See Reconcile for the exact order of duties and the choices
// made (spec changes, flow versions, conflicts, deletion).
package controller
