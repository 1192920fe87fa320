// Package kube runs stepflow processes in Kubernetes controllers built with
// controller-runtime, each process kept in the status of the object it
// belongs to.
//
// A controller's Reconcile has the shape of Flow.Apply: state in, a little
// work, state out, and a time to come back. This package does the rest of
// what every such controller needs, so that its author writes the flow, the
// custom resource, and little else:
//
//   - ProcessStatus, embedded inline in the resource's status: the encoded
//     state (JSON, readable with kubectl), the flow version, the generation
//     of the spec it was started for, and mirrors for people (phase, step,
//     wake time, last error, conditions).
//   - Process: load the state by the version-skew rules (Load), advance it
//     a bounded number of steps (Advance), store it and derive the
//     conditions (Save), report a state that cannot go on once per
//     generation (Report), and tell controller-runtime when to come back
//     (Requeue).
//   - Conditions Progressing, Ready and Failed, with reasons naming steps,
//     and optionally one condition per step (StepConditions).
//   - Reconciler, a complete controller-runtime reconciler over Process,
//     with a finalizer that cancels the process of a deleted object, runs
//     its cleanups and only then releases the object.
//   - Reader, for a step that reads an object it created in the same
//     reconcile: a cache "not found" is confirmed with the API server.
//   - Metrics, a Prometheus collector of reconciles, steps and processes.
//
// Package kubetest starts a real API server for tests (envtest).
//
// # Using Reconciler
//
// The resource embeds ProcessStatus and returns it:
//
//	type RolloutStatus struct {
//		kube.ProcessStatus `json:",inline"`
//	}
//
//	func (r *Rollout) GetProcessStatus() *kube.ProcessStatus { return &r.Status.ProcessStatus }
//
// and the controller compiles its flow, then:
//
//	reg, _ := versions.New([]*stepflow.Flow[Plan]{flow}, nil)
//	r, _ := kube.NewReconciler(mgr.GetClient(), reg, newPlan, &kube.Options[Plan, *Rollout]{
//		Finalizer: "example.com/teardown",
//	})
//	_ = r.SetupWithManager(mgr)
//
// where newPlan(*Rollout) Plan snapshots the spec into the data of a new
// process. Reconciler.Reconcile documents the order of duties.
//
// # Version skew
//
// Every state names its flow version. A state of the current version
// continues; one of an older version that the registry knows (its flow, or
// its recorded structure, and a migration) continues after its migration
// (package versions); one of a version the registry does not know is
// reported (Failed=True, reason UnknownFlowVersion) and left untouched, so
// that the release that wrote it can go on with it after a rollback, unless
// ProcessOptions.RestartUnknown says to start over. A state that does not
// decode is reported (reason StateUnreadable) once per generation, without
// a requeue. A new spec (metadata.generation) always starts a new process.
//
// # Time
//
// Reconciler reads time only from Options.Clock, which it puts in the
// context with stepflow.WithClock: wait deadlines, condition transition
// times and RequeueAfter all come from it, so tests move a fake clock
// instead of sleeping.
package kube
