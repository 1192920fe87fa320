package combinators

import (
	"errors"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Catch runs body; when it fails, the failure is recorded (State.Err and
// the catch's frame) and the handler nodes run, after which the flow
// continues as if body had succeeded. Handler steps find the failure in
// stepflow.CallFrom(ctx).Caught. A handler that fails fails the catch.
// Cancellation is never caught. Use Sequence for a body of several nodes.
func Catch[S any](name string, body stepflow.Node[S], handler ...stepflow.Node[S]) stepflow.Node[S] {
	return &catchNode[S]{name: name, kids: append([]stepflow.Node[S]{body}, handler...)}
}

type catchNode[S any] struct {
	name string
	kids []stepflow.Node[S]
}

const (
	phaseHandler = "handler"
	phaseCleanup = "cleanup"
	phaseUnwound = "unwound"
)

func (n *catchNode[S]) Info() stepflow.Info          { return stepflow.Info{Name: n.name, Kind: "catch"} }
func (n *catchNode[S]) Children() []stepflow.Node[S] { return n.kids }
func (n *catchNode[S]) Check() []string {
	if n.kids[0] == nil {
		return []string{"catch without a body"}
	}
	return nil
}

func (n *catchNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	if f.Branch == "" {
		r := runBody(c)
		if r.Outcome != stepflow.OutcomeFail || errors.Is(r.Err, stepflow.ErrCanceled) {
			return r
		}
		f.Branch = phaseHandler
		f.Err = c.Failure(r.Err)
		c.NoteError(r.Err)
		c.ClearChildren()
	}
	c.SetCaught(f.Err)
	return c.Sequence(1, len(n.kids))
}

// runBody advances child 0, entering it first if needed; it clears the
// children when the body completes.
func runBody[S any](c *stepflow.Cursor[S]) stepflow.Result {
	if _, ok := c.Active(); !ok {
		if c.Aborted() {
			return stepflow.Continue()
		}
		c.Enter(0)
	}
	r := c.AdvanceChild(0)
	if r.Outcome == stepflow.OutcomeDone {
		c.ClearChildren()
	}
	return r
}

// Finally runs body and then cleanup, exactly once, whatever happened to
// body: it succeeded, failed, timed out (an enclosing TimeLimit expired),
// or the process was canceled. After the cleanup a failure of body
// propagates again (with its path, kind and message); cleanup steps find it
// in stepflow.CallFrom(ctx).Caught. If the cleanup itself fails, its
// failure propagates instead and the body's stays recorded in the frame.
//
// Together with Catch this expresses compensation (sagas): each step that
// needs undoing is wrapped in a Finally whose cleanup undoes it when
// Caught is not nil.
func Finally[S any](name string, body stepflow.Node[S], cleanup ...stepflow.Node[S]) stepflow.Node[S] {
	return &finallyNode[S]{name: name, kids: append([]stepflow.Node[S]{body}, cleanup...)}
}

type finallyNode[S any] struct {
	name string
	kids []stepflow.Node[S]
}

func (n *finallyNode[S]) Info() stepflow.Info          { return stepflow.Info{Name: n.name, Kind: "finally"} }
func (n *finallyNode[S]) Children() []stepflow.Node[S] { return n.kids }
func (n *finallyNode[S]) Check() []string {
	var p []string
	if n.kids[0] == nil {
		p = append(p, "finally without a body")
	}
	if len(n.kids) < 2 {
		p = append(p, "finally without cleanup nodes")
	}
	return p
}

func (n *finallyNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	if f.Branch == "" {
		r := runBody(c)
		switch r.Outcome {
		case stepflow.OutcomeDone:
		case stepflow.OutcomeFail:
			f.Err = c.Failure(r.Err)
			c.ClearChildren()
		default:
			return r
		}
		f.Branch = phaseCleanup
	}
	return n.cleanup(c)
}

func (n *finallyNode[S]) cleanup(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	c.SetCaught(f.Err)
	r := c.Sequence(1, len(n.kids))
	if r.Outcome != stepflow.OutcomeDone {
		return r
	}
	if f.Branch == phaseCleanup && f.Err != nil {
		return stepflow.Fail(c.Raise(f.Err))
	}
	return r
}

// Unwind runs the cleanup when the process abandons the body: first the
// body's own cleanups, then this one. Once abandoned, the body's failure
// is not raised again.
func (n *finallyNode[S]) Unwind(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	if f.Branch == "" {
		if r := c.Unwind(); r.Outcome != stepflow.OutcomeDone {
			return r
		}
		if f.Err == nil {
			f.Err = &stepflow.Failure{Path: c.Path(), Kind: stepflow.KindCanceled, Message: "abandoned"}
		}
	}
	f.Branch = phaseUnwound
	return n.cleanup(c)
}

// Optional runs body and, if it fails, records the failure (State.Err and
// State.Record) and continues after it. Cancellation is not swallowed.
func Optional[S any](name string, body ...stepflow.Node[S]) stepflow.Node[S] {
	return &optionalNode[S]{name: name, body: body}
}

type optionalNode[S any] struct {
	name string
	body []stepflow.Node[S]
}

func (n *optionalNode[S]) Info() stepflow.Info          { return stepflow.Info{Name: n.name, Kind: "optional"} }
func (n *optionalNode[S]) Children() []stepflow.Node[S] { return n.body }
func (n *optionalNode[S]) Check() []string {
	if len(n.body) == 0 {
		return []string{"optional with an empty body"}
	}
	return nil
}

func (n *optionalNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	r := c.Sequence(0, len(n.body))
	if r.Outcome != stepflow.OutcomeFail || errors.Is(r.Err, stepflow.ErrCanceled) {
		return r
	}
	c.NoteError(r.Err)
	c.Record("ignored", r.Err)
	c.ClearChildren()
	return stepflow.Complete()
}
