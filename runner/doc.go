// Package runner runs many persisted processes of many flows: it claims
// the due ones from a store, advances each by one Apply, and saves the
// results, so that a single goroutine can multiplex thousands of
// long-running processes.
//
// A caller's duties, in order:
//
//  1. Compile the flows (stepflow.New, or a versions.Registry holding
//     several versions of one flow) and open a store: store.NewMemory for
//     tests, boltstore.Open for an embedded file, pgstore.New to share a
//     PostgreSQL database between several runner processes.
//  2. Create the runner with New. Give each runner process its own
//     Options.Owner when several share a store (the default is unique).
//  3. Register each flow with Register (one version) or RegisterVersions
//     (a registry): each returns the typed handle, Processes[S], of that
//     flow's processes. A runner claims only the flow versions it hosts.
//  4. Start processes with Processes.Start or StartMany (an id and the
//     initial data). The id becomes State.ID and so part of every step's
//     idempotency key.
//  5. Call Runner.Run in a goroutine you own; cancel its context to stop.
//     Run returns once in-flight steps are saved and leases released.
//  6. Read a process with Processes.State, wait for its end with Wait,
//     change it with Signal, Cancel, Redrive, Resolve or Migrate, and watch
//     the totals with Runner.Counts or Options.Metrics. Alert on errors
//     matching ErrStalled in Options.OnError. A program that knows a
//     process by its id only (an operator console) uses the Runner's
//     methods of the same names, and Inspect to read it.
//
// # Scheduling
//
// Each worker (one by default, Options.Workers for more) loops: claim up to
// Options.Batch due processes under a lease, Apply each once, commit the new
// states, repeat. When nothing is due it sleeps until the earliest due time
// in the store, a notification from the store (a new or changed process),
// or Options.MaxIdle, whichever comes first: there is no busy polling.
//
// # Group commit and durability
//
// The writes of a batch share one store transaction (Options.GroupCommit
// bounds how many). That is what makes a runner fast: one transaction, and
// one disk flush, per batch instead of per step. The price is that a crash
// loses the results of every step of the batch that was not yet committed,
// up to Batch steps, and those steps run again after the restart. Because
// execution is at-least-once anyway (a crash between a step's effect and its
// save always re-runs the step), this changes how much is redone, not what
// is guaranteed. Set GroupCommit to 1 when each step is expensive enough
// that redoing a batch of them would hurt more than one transaction per step.
//
// # At-least-once steps and idempotency keys
//
// A step may run again after a crash, a lost lease, or a failed commit.
// Steps that call external systems should pass an idempotency key, which
// stays the same when the same call is re-executed and differs for every
// other call (another process, step, retry attempt or loop iteration):
//
//	func createPR(ctx context.Context, d *Deploy) error {
//		call, _ := stepflow.CallFrom(ctx)
//		pr, err := gitops.CreatePullRequest(ctx, d.Change, call.IdempotencyKey())
//		...
//	}
//
// # Leases and fencing tokens
//
// Leases guarantee at most one successful commit per revision of a
// process, not that one runner at a time runs its step: a runner that
// stalls for longer than Options.Lease keeps running its step while
// another runner, which claimed the process after the lease ended, runs it
// too (the stalled runner's commit is then refused). Besides idempotency
// keys, steps get a fencing token: LeaseFrom(ctx) returns the lease, whose
// Revision strictly increases with every commit of the process, so an
// external system that refuses tokens lower than the highest it has seen
// refuses an overtaken runner.
//
// # Quarantine
//
// A stored state that cannot be decoded or is malformed is quarantined:
// its bytes are kept untouched, the error is recorded with it, and it is
// never claimed again; all other processes carry on. State returns a
// *QuarantineError for it, Runner.Quarantined lists them, Runner.Retry
// puts one back once the code can read it, Processes.Migrate moves one of
// an older version forward, and Runner.Delete removes one. A process of a
// flow version the runner does not host is not quarantined: it is never
// claimed, and waits for a runner that hosts it. Runner.Verify checks every stored record the same way,
// including those of ended processes, which are never claimed: run it
// after disk trouble or a restore, before upgrades, and periodically.
//
// # Metrics
//
// Options.Metrics has hooks for step latency, status transitions, commits
// and quarantines, enough for a Prometheus or OpenTelemetry adapter; the
// runner itself depends on neither.
package runner
