package combinators

import "github.com/stepflow-io/go-stepflow/stepflow"

// Sequence groups nodes that run one after the other under one name, so
// that they can be nested, retried or timed out together. The top level of
// a flow is already a sequence.
func Sequence[S any](name string, nodes ...stepflow.Node[S]) stepflow.Node[S] {
	return &seqNode[S]{name: name, nodes: nodes}
}

type seqNode[S any] struct {
	name  string
	nodes []stepflow.Node[S]
}

func (n *seqNode[S]) Info() stepflow.Info {
	return stepflow.Info{Name: n.name, Kind: "sequence", Sequential: true}
}
func (n *seqNode[S]) Children() []stepflow.Node[S] { return n.nodes }

func (n *seqNode[S]) Check() []string {
	if len(n.nodes) == 0 {
		return []string{"empty sequence"}
	}
	return nil
}

func (n *seqNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	return c.Sequence(0, len(n.nodes))
}
