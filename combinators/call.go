package combinators

import (
	"context"
	"errors"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// call runs fn as the node's user code. When ok is false the node must
// return res at once: the Apply has no call left (Continue), it was
// abandoned (Continue, ignored), or fn failed (Fail, recorded).
func call[S any](c *stepflow.Cursor[S], fn func(context.Context, *S) error) (res stepflow.Result, ok bool) {
	if !c.CanRun() {
		return stepflow.Continue(), false
	}
	err := c.Run(fn)
	return settle(c, err)
}

// callCond is call for a predicate.
func callCond[S any](c *stepflow.Cursor[S], fn func(context.Context, *S) (bool, error)) (answer bool, res stepflow.Result, ok bool) {
	if !c.CanRun() {
		return false, stepflow.Continue(), false
	}
	answer, err := c.RunCond(fn)
	res, ok = settle(c, err)
	return answer, res, ok
}

func settle[S any](c *stepflow.Cursor[S], err error) (stepflow.Result, bool) {
	switch {
	case c.Aborted():
		return stepflow.Continue(), false
	case err != nil:
		c.Record(outcomeOf(err), err)
		return stepflow.Fail(err), false
	}
	return stepflow.Result{}, true
}

// outcomeOf names a failed call's outcome for State.Record.
func outcomeOf(err error) string {
	if errors.Is(err, stepflow.ErrPanic) {
		return "panic"
	}
	return "error"
}

// sideBySide shares one Apply between children that run side by side
// (Parallel branches, concurrent ForEach items): each gets a budget of one
// call, and the Apply's budget is spent once any of them used it.
type sideBySide struct {
	budget int
	ran    bool
}

func share[S any](c *stepflow.Cursor[S]) sideBySide { return sideBySide{budget: c.Budget()} }

// give sets the budget for the next child; a child entered during this
// Apply gets none, so it starts at the next one.
func (s *sideBySide) give(c interface{ SetBudget(int) }, fresh bool) {
	if fresh {
		c.SetBudget(0)
		return
	}
	c.SetBudget(min(s.budget, 1))
}

// took notes whether the child just advanced used its call.
func (s *sideBySide) took(c interface{ Budget() int }) {
	s.ran = s.ran || (s.budget > 0 && c.Budget() == 0)
}

// done leaves the Apply's budget as the children left it.
func (s *sideBySide) done(c interface{ SetBudget(int) }) {
	if s.ran {
		c.SetBudget(0)
		return
	}
	c.SetBudget(s.budget)
}

// abandonThenFail unwinds the children that remain after a failure held in
// the node's frame (their Finally cleanups run, over several Applies if
// needed), then raises that failure.
func abandonThenFail[S any](c *stepflow.Cursor[S]) stepflow.Result {
	r := c.Unwind()
	if r.Outcome == stepflow.OutcomeDone {
		return stepflow.Fail(c.Raise(c.Peek().Err))
	}
	return r
}
