// Package stepflow advances long-running processes one step at a time.
//
// A process (a deployment, a migration, an approval chain) is described once,
// at start-up, as a tree of nodes built with package combinators, and
// compiled by New into a versioned, immutable Flow. Everything one process
// needs to resume lives in a State: the flow version, its position as named
// paths, per-node memory (a chosen branch, a wait's start, a retry's attempt),
// the caller's typed data, and a bounded record of completed steps. A State
// is a plain value that package codec turns into bytes and back.
//
// The core is one pure function:
//
//	next, err := flow.Apply(ctx, prev)
//
// It runs at most one step (one per branch inside Parallel), never modifies
// prev, never sleeps, starts no goroutine, does no I/O of its own and reads
// the time only from the Clock carried by ctx (WithClock). The same flow,
// state, step outcomes and clock give the same result, byte for byte once
// encoded. One goroutine can therefore multiplex any number of processes:
//
//  1. load a state (codec.Decode);
//  2. if it is terminal, or Waiting with WakeAt in the future, skip it;
//  3. call Apply;
//  4. save the returned state, even when Apply also returned an error: a
//     *StepError comes with the Failed state that records it;
//  5. schedule the next Apply at WakeAt (now if it is zero and the status is
//     Running; never, until a Signal, if Waiting with a zero WakeAt).
//
// Errors returned by Apply tell the caller what to do: a *StepError means
// the process failed and the returned state says how; a *VersionError or a
// *StateError means the state does not belong to this flow and was returned
// unchanged (quarantine it, or migrate it with package versions); ctx.Err()
// means nothing ran.
//
// Steps run at least once: a crash between a step's effect and the save of
// the next state runs the step again after restart. Steps receive a stable
// idempotency key through CallFrom(ctx).IdempotencyKey(). Steps that must
// not repeat use combinators.AtMostOnce, whose protocol is described at
// WithIntentSaved.
//
// Nodes are written against the Node interface with a Cursor; the standard
// ones are in package combinators. Introspection (Nodes, Describe, Mermaid,
// Fingerprint) answers what a person on call asks about a process.
package stepflow
