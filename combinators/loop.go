package combinators

import (
	"context"
	"fmt"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// DefaultMaxIterations is the loop guard when MaxIterations is not given.
const DefaultMaxIterations = 1000

// LoopOption configures LoopUntil and While.
type LoopOption func(*loopPolicy)

type loopPolicy struct {
	max      int
	problems []string
}

// MaxIterations sets the loop guard: running the body more than n times
// fails the loop with stepflow.ErrGuard instead of looping forever.
func MaxIterations(n int) LoopOption {
	return func(p *loopPolicy) {
		if n <= 0 {
			p.problems = append(p.problems, fmt.Sprintf("MaxIterations %d must be positive", n))
		}
		p.max = n
	}
}

// LoopUntil runs body, then evaluates cond; it repeats until cond is true.
// The body runs at least once. The iteration number is in the state and in
// stepflow.CallFrom(ctx).Iterations.
func LoopUntil[S any](name string, cond func(context.Context, *S) (bool, error), body []stepflow.Node[S], opts ...LoopOption) stepflow.Node[S] {
	return newLoop(name, "loop-until", cond, body, opts)
}

// While evaluates cond and runs body while it is true. The body may run zero
// times.
func While[S any](name string, cond func(context.Context, *S) (bool, error), body []stepflow.Node[S], opts ...LoopOption) stepflow.Node[S] {
	return newLoop(name, "while", cond, body, opts)
}

func newLoop[S any](name, kind string, cond func(context.Context, *S) (bool, error), body []stepflow.Node[S], opts []LoopOption) *loopNode[S] {
	p := loopPolicy{max: DefaultMaxIterations}
	for _, o := range opts {
		o(&p)
	}
	return &loopNode[S]{name: name, kind: kind, cond: cond, body: body, p: p}
}

type loopNode[S any] struct {
	name, kind string
	cond       func(context.Context, *S) (bool, error)
	body       []stepflow.Node[S]
	p          loopPolicy
}

const (
	phaseBody  = "body"
	phaseCheck = "check"
)

func (n *loopNode[S]) Info() stepflow.Info {
	return stepflow.Info{Name: n.name, Kind: n.kind, Detail: fmt.Sprintf("max %d", n.p.max), Leaf: true}
}

func (n *loopNode[S]) Children() []stepflow.Node[S] { return n.body }

func (n *loopNode[S]) Check() []string {
	p := n.p.problems
	if n.cond == nil {
		p = append(p, "nil loop condition")
	}
	if len(n.body) == 0 {
		p = append(p, "loop with an empty body")
	}
	return p
}

func (n *loopNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	if f.Branch == "" {
		f.Branch = phaseCheck
		if n.kind == "loop-until" {
			f.Branch = phaseBody
			f.Count = 1
		}
	}
	if f.Branch == phaseCheck {
		ok, res, proceed := callCond(c, n.cond)
		if !proceed {
			return res
		}
		// While continues on true; LoopUntil stops on true.
		if ok == (n.kind == "loop-until") {
			c.Record("exit", nil)
			return stepflow.Complete()
		}
		c.Record("again", nil)
		if int(f.Count) >= n.p.max {
			return stepflow.Fail(stepflow.Permanent(fmt.Errorf("%w: %s ran %d iterations", stepflow.ErrGuard, c.Path(), f.Count)))
		}
		f.Count++
		f.Branch = phaseBody
		c.ClearChildren()
	}
	c.AddIteration(f.Count)
	r := c.Sequence(0, len(n.body))
	if r.Outcome == stepflow.OutcomeDone {
		f.Branch = phaseCheck
		return stepflow.Continue()
	}
	return r
}
