package combinators

import (
	"fmt"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Succeed ends the whole process as Done when reached, from however deep
// in the flow. Cleanups of enclosing Finally nodes still run first.
func Succeed[S any](name string) stepflow.Node[S] { return &exitNode[S]{name: name} }

// Fail ends the branch with a deliberate failure carrying reason
// (stepflow.ErrFailed, Failure.Kind "fail"). Retry never retries it; Catch
// can handle it.
func Fail[S any](name, reason string) stepflow.Node[S] {
	return &exitNode[S]{name: name, fail: true, reason: reason}
}

type exitNode[S any] struct {
	name   string
	fail   bool
	reason string
}

func (n *exitNode[S]) Info() stepflow.Info {
	if n.fail {
		return stepflow.Info{Name: n.name, Kind: "fail", Detail: n.reason}
	}
	return stepflow.Info{Name: n.name, Kind: "succeed"}
}

func (n *exitNode[S]) Children() []stepflow.Node[S] { return nil }
func (n *exitNode[S]) Check() []string              { return nil }

func (n *exitNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	if n.fail {
		err := stepflow.Permanent(fmt.Errorf("%w: %s", stepflow.ErrFailed, n.reason))
		c.Record("fail", err)
		return stepflow.Fail(err)
	}
	c.Record("succeed", nil)
	c.Exit()
	return stepflow.Continue()
}
