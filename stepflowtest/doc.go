// Package stepflowtest helps test flows built with package stepflow: it
// runs a flow to its end on a fake clock with scripted step outcomes, and
// checks the properties every flow should have.
//
// It is meant to be imported from _test.go files only.
//
// # Running a flow
//
// Run drives a flow from a start state until it is done, failed, canceled
// or needs attention, as a runner would, but without waiting: whenever the
// state waits, the Clock jumps to its WakeAt. Between two applies the state
// is encoded and decoded with a codec, exactly as a store would, so a field
// that does not survive encoding shows up in tests. Apply is also checked
// never to modify the state it is given.
//
// Signals and cancellations reach the process at the times given in
// RunOptions.Events; an at-most-once step runs only right after its intent
// was saved, as with a runner.
//
// The result is a Trace: for each Apply, the positions before it, the calls
// of user code it made (path, attempt, outcome), the clock's time and the
// state after it. Trace.String renders it as text for failure messages and
// golden files.
//
// # Scripting outcomes
//
// A Script says, per node path, what the successive calls of user code at
// that path do: run normally, fail without running (Fail), run and then
// fail (FailAfter), fail with a permanent error, answer false without
// running (False, for predicates), panic, or run and then crash before the
// new state is saved (Crash), in which case the driver applies the previous
// state again. Scripts are played through a stepflow.Interceptor, so the
// flow under test is the production flow, unchanged.
//
// OutcomeScript generates scripts with pgregory.net/rapid, for properties
// such as "whatever fails, the flow ends done or failed within 50 applies
// and never ships a gift card":
//
//	rapid.Check(t, func(t *rapid.T) {
//		script := stepflowtest.OutcomeScript(stepflowtest.Leaves(flow)).Draw(t, "script")
//		tr, err := stepflowtest.Run(ctx, flow, start, &stepflowtest.RunOptions[Order]{Script: script})
//		require.NoError(t, err)
//		stepflowtest.EndsWith(t, tr, stepflow.Done, stepflow.Failed)
//		stepflowtest.NeverVisited(t, tr, "physical/ship")
//	})
//
// # Assertions and invariants
//
// VisitedInOrder, NeverVisited, CompletesWithin and EndsWith report to any
// TestingT (a *testing.T, a *rapid.T) in the manner of testify's assert
// functions. CheckInvariants checks in one call that a flow completes when
// every call runs normally, is deterministic, never loses recorded
// progress, round-trips through both codecs, and ends the same when the
// process crashes between any two steps.
//
// # Golden traces
//
// Golden compares a trace with testdata/<name>.golden; `go test -update`
// rewrites the file. Committing golden traces makes a change of a flow's
// behaviour visible in review.
package stepflowtest
