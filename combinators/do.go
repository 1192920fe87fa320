package combinators

import (
	"context"
	"errors"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Do runs fn once as a step. fn receives the process data and may change
// it; the change is saved with the next state. A returned error fails the
// step (and the process, unless an enclosing node handles it).
func Do[S any](name string, fn func(context.Context, *S) error) stepflow.Node[S] {
	return &doNode[S]{name: name, fn: fn}
}

type doNode[S any] struct {
	name string
	fn   func(context.Context, *S) error
}

func (n *doNode[S]) Info() stepflow.Info {
	return stepflow.Info{Name: n.name, Kind: "do", Leaf: true}
}

func (n *doNode[S]) Children() []stepflow.Node[S] { return nil }

func (n *doNode[S]) Check() []string {
	if n.fn == nil {
		return []string{"nil step function"}
	}
	return nil
}

func (n *doNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	if !c.CanRun() {
		return stepflow.Continue()
	}
	err := c.Run(n.fn)
	if c.Aborted() {
		return stepflow.Continue()
	}
	if err != nil {
		c.Record(outcomeOf(err), err)
		return stepflow.Fail(err)
	}
	c.Record("ok", nil)
	return stepflow.Complete()
}

// outcomeOf names a failed call's outcome for State.Record.
func outcomeOf(err error) string {
	if errors.Is(err, stepflow.ErrPanic) {
		return "panic"
	}
	return "error"
}
