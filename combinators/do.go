package combinators

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Do runs fn once as a step. fn receives the process data and may change
// it; the change is saved with the next state. A returned error fails the
// step (and the process, unless an enclosing node handles it).
//
// Steps run at least once: after a crash between a step's effect and the
// save of the next state, the step runs again. Use
// stepflow.CallFrom(ctx).IdempotencyKey() with external systems, or the
// AtMostOnce option for effects that must not be repeated.
func Do[S any](name string, fn func(context.Context, *S) error, opts ...DoOption) stepflow.Node[S] {
	n := &doNode[S]{name: name, fn: fn}
	for _, o := range opts {
		o(&n.opts)
	}
	if d := n.opts.callTimeout; d > 0 && fn != nil {
		n.fn = func(ctx context.Context, s *S) error { return callWithin(ctx, d, fn, s) }
	}
	return n
}

// CallTimeout gives each call of the step a context whose deadline is d
// after the call starts (Temporal's start-to-close timeout): a step blocked
// on a slow API is interrupted instead of holding the Apply. A step that
// fails after the deadline passed fails with a *CallTimeoutError, which
// matches stepflow.ErrTimeout and the step's own error (usually
// context.DeadlineExceeded); Retry retries it like any other error, and
// RetryPolicy.RetryIf can tell it apart. A step that ignores its context
// is not stopped: the deadline is a request that the step honours through
// its context, as every Go API does.
//
// d is real time, measured while the step runs, not the process clock of
// stepflow.WithClock: it bounds I/O, and the result of Apply still depends
// only on what the step returned.
func CallTimeout(d time.Duration) DoOption {
	return func(o *doOptions) { o.callTimeout = d }
}

// CallTimeoutError is the failure of a step that ran past its CallTimeout.
type CallTimeoutError struct {
	// Limit is the CallTimeout.
	Limit time.Duration
	// Err is what the step returned.
	Err error
}

func (e *CallTimeoutError) Error() string {
	return fmt.Sprintf("call timed out after %s: %v", e.Limit, e.Err)
}

// Unwrap returns the step's error and stepflow.ErrTimeout.
func (e *CallTimeoutError) Unwrap() []error { return []error{e.Err, stepflow.ErrTimeout} }

func callWithin[S any](ctx context.Context, d time.Duration, fn func(context.Context, *S) error, s *S) error {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := fn(cctx, s)
	if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return &CallTimeoutError{Limit: d, Err: err}
	}
	return err
}

// DoOption configures Do.
type DoOption func(*doOptions)

type doOptions struct {
	atMostOnce  bool
	onUnknown   OnUnknown
	callTimeout time.Duration
}

// OnUnknown says what an at-most-once step does when it finds its intent
// recorded but no outcome: the process stopped while the step ran, so
// nobody knows whether its effect happened.
type OnUnknown uint8

const (
	// AskPerson stops the process in stepflow.NeedsAttention, with
	// stepflow.ErrUnknownOutcome recorded, until Flow.Resolve says what
	// happened. This is the default.
	AskPerson OnUnknown = iota
	// RunAgain runs the step again, as a plain step would.
	RunAgain
)

// AtMostOnce makes the step record its intent first: one Apply returns a
// state naming the step in State.Intent without calling it; the caller
// saves that state, then applies it with stepflow.WithIntentSaved, and
// only that Apply runs the step. An Apply that finds the intent without
// that authorization follows onUnknown.
func AtMostOnce(onUnknown OnUnknown) DoOption {
	return func(o *doOptions) { o.atMostOnce, o.onUnknown = true, onUnknown }
}

type doNode[S any] struct {
	name string
	fn   func(context.Context, *S) error
	opts doOptions
}

func (n *doNode[S]) Info() stepflow.Info {
	var d string
	if n.opts.atMostOnce {
		d = "at most once, ask a person if unknown"
		if n.opts.onUnknown == RunAgain {
			d = "at most once, run again if unknown"
		}
	}
	if n.opts.callTimeout > 0 {
		d = detail(d, "call timeout "+n.opts.callTimeout.String())
	}
	return stepflow.Info{Name: n.name, Kind: "do", Detail: d, Leaf: true, Inert: true}
}

func (n *doNode[S]) Children() []stepflow.Node[S] { return nil }

// StepFunc lets Apply run a plain Do without walking the tree to it (see
// stepflow.StepNode); an at-most-once Do has more to it than its step.
func (n *doNode[S]) StepFunc() func(context.Context, *S) error {
	if n.opts.atMostOnce {
		return nil
	}
	return n.fn
}

func (n *doNode[S]) Check() []string {
	var p []string
	if n.fn == nil {
		p = append(p, "nil step function")
	}
	if n.opts.callTimeout < 0 {
		p = append(p, fmt.Sprintf("call timeout %s must not be negative", n.opts.callTimeout))
	}
	return p
}

func (n *doNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	if n.opts.atMostOnce {
		switch f := c.Frame(); f.Branch {
		case "":
			if c.CanRun() {
				c.RecordIntent()
			}
			return stepflow.Continue()
		case stepflow.IntentResolved:
			c.Record("resolved", nil)
			return stepflow.Complete()
		case stepflow.IntentFailed:
			err := stepflow.Permanent(fmt.Errorf("%w: resolved as failed", stepflow.ErrUnknownOutcome))
			c.Record("resolved-failed", err)
			return stepflow.Fail(err)
		case stepflow.IntentRecorded:
			if !c.CanRun() {
				return stepflow.Continue()
			}
			if !c.IntentAuthorized() {
				if n.opts.onUnknown == AskPerson {
					c.NeedsAttention(fmt.Errorf("%w: %s", stepflow.ErrUnknownOutcome, c.Path()))
					return stepflow.Continue()
				}
				c.Record("unknown-rerun", nil)
			}
			c.ClearIntent()
		default:
			return c.Invalid("unknown at-most-once phase %q", f.Branch)
		}
	}
	if res, ok := call(c, n.fn); !ok {
		return res
	}
	c.Record("ok", nil)
	return stepflow.Complete()
}
