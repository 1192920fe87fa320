package combinators

import (
	"context"
	"fmt"

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
	return n
}

// DoOption configures Do.
type DoOption func(*doOptions)

type doOptions struct {
	atMostOnce bool
	onUnknown  OnUnknown
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
	if n.opts.atMostOnce {
		d := "at most once, ask a person if unknown"
		if n.opts.onUnknown == RunAgain {
			d = "at most once, run again if unknown"
		}
		return stepflow.Info{Name: n.name, Kind: "do", Detail: d, Leaf: true, Inert: true}
	}
	return stepflow.Info{Name: n.name, Kind: "do", Leaf: true, Inert: true}
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
	if n.fn == nil {
		return []string{"nil step function"}
	}
	return nil
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
