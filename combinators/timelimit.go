package combinators

import (
	"fmt"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// TimeLimit runs body with a deadline of d, fixed when the node is entered
// and kept in the state. At the first Apply at or after the deadline the
// body is abandoned (its Finally cleanups run, nothing else) and a
// *stepflow.TimeoutError propagates, which Catch and Retry can handle. No
// step of the body starts after the deadline; a step already running when
// it passes is not interrupted (give steps their own context deadlines).
func TimeLimit[S any](name string, d time.Duration, body ...stepflow.Node[S]) stepflow.Node[S] {
	return &timeLimitNode[S]{name: name, d: d, body: body}
}

type timeLimitNode[S any] struct {
	name string
	d    time.Duration
	body []stepflow.Node[S]
}

const phaseExpired = "expired"

func (n *timeLimitNode[S]) Info() stepflow.Info {
	return stepflow.Info{Name: n.name, Kind: "timelimit", Detail: n.d.String()}
}

func (n *timeLimitNode[S]) Children() []stepflow.Node[S] { return n.body }

func (n *timeLimitNode[S]) Check() []string {
	var p []string
	if n.d <= 0 {
		p = append(p, fmt.Sprintf("time limit %s must be positive", n.d))
	}
	if len(n.body) == 0 {
		p = append(p, "time limit with an empty body")
	}
	return p
}

func (n *timeLimitNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	now := c.Now()
	if f.Since.IsZero() {
		f.Since, f.Until = now, now.Add(n.d)
	}
	if f.Branch == phaseExpired || !now.Before(f.Until) {
		terr := &stepflow.TimeoutError{Path: c.Path(), Limit: n.d, Started: f.Since}
		if f.Branch != phaseExpired {
			f.Branch = phaseExpired
			f.Err = c.Failure(terr)
		}
		r := c.Unwind()
		if r.Outcome == stepflow.OutcomeDone {
			return stepflow.Fail(terr)
		}
		return r
	}
	r := c.Sequence(0, len(n.body))
	if r.Outcome == stepflow.OutcomeWait && (r.WakeAt.IsZero() || f.Until.Before(r.WakeAt)) {
		return stepflow.WaitUntil(f.Until)
	}
	return r
}

// Redrive gives a redriven time limit a fresh deadline.
func (n *timeLimitNode[S]) Redrive(f *stepflow.Frame) {
	*f = stepflow.Frame{Name: f.Name, Children: f.Children}
}
