// Package combinators provides the nodes flows are built from.
//
// Steps and decisions:
//   - Do runs a step; AtMostOnce makes it record its intent first.
//   - Case, When and Switch decide once and record the decision.
//   - WaitFor polls a predicate on a schedule, with a timeout.
//   - WaitSignal waits for an event delivered with Flow.Signal.
//   - Sleep and SleepUntil are durable timers.
//   - Succeed and Fail end the process deliberately.
//
// Structure:
//   - Sequence groups nodes under a name.
//   - Retry re-runs its body with backoff and deterministic jitter.
//   - TimeLimit abandons its body at a deadline.
//   - Catch handles failures; Finally always cleans up; Optional ignores
//     failures. Together they express compensation (sagas).
//   - Parallel runs branches side by side; ForEach runs a body per item;
//     LoopUntil and While repeat a body under an iteration guard.
//
// Every counter, deadline and decision of these nodes is kept in the state,
// so a process that is saved, stopped and resumed behaves exactly as one that
// never stopped. Each constructor takes a name that is persisted in states
// and must not change once processes run; to change a flow, add a version
// (package versions).
//
// Steps that keep no per-process data can use the plain signatures
// func(ctx) error and func(ctx) (bool, error) through Plain (for flows of
// stepflow.None) or Dataless[S] (to mix them into typed flows).
package combinators
