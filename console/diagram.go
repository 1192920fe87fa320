package console

import (
	"strings"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// diagNode is one node of the flow diagram of the process page: the API's
// Node with its children, nested as in the flow.
type diagNode struct {
	Node
	Kids []*diagNode
	// Open: the node's subtree holds something to look at (an active,
	// waiting, failed or canceled node, or a current position), so the
	// page shows it unfolded. Done, skipped and pending subtrees are
	// folded, which keeps flows of hundreds of nodes readable.
	Open bool
	// Current: the node is one of the process's positions now.
	Current bool
	// Parallel: the children are branches that run side by side, and are
	// drawn side by side. ForEach: the children run once per item, and
	// the items are drawn as a row of cells.
	Parallel bool
	ForEach  bool
	// ItemSummary counts a ForEach's items by status.
	ItemSummary string
}

// diagram nests the nodes of a description (depth first, in flow order)
// into trees, one per top-level node.
func diagram(d *stepflow.Description) []*diagNode {
	current := map[string]bool{}
	for _, p := range d.Positions {
		current[stepflow.NodePath(p)] = true
	}
	byPath := make(map[string]*diagNode, len(d.Nodes))
	var roots []*diagNode
	for i := range d.Nodes {
		n := &d.Nodes[i]
		dn := &diagNode{Node: node(n), Current: current[n.Path], Parallel: n.Kind == "parallel", ForEach: n.Instances}
		dn.ItemSummary = n.ItemSummary()
		byPath[n.Path] = dn
		// Names hold no '/', so the parent is the path up to the last one.
		if j := strings.LastIndexByte(n.Path, '/'); j >= 0 && byPath[n.Path[:j]] != nil {
			p := byPath[n.Path[:j]]
			p.Kids = append(p.Kids, dn)
		} else {
			roots = append(roots, dn)
		}
	}
	for _, r := range roots {
		unfold(r)
	}
	return roots
}

// unfold sets Open on n and below, and reports whether n's subtree holds
// something to look at.
func unfold(n *diagNode) bool {
	hot := n.Current
	switch n.Status {
	case "active", "waiting", "failed", "canceled":
		hot = true
	}
	for _, k := range n.Kids {
		if unfold(k) {
			hot = true
		}
	}
	n.Open = hot
	return hot
}

// nodeStatuses are the node statuses, for the legend.
func nodeStatuses() []string {
	var out []string
	for s := stepflow.NodePending; s <= stepflow.NodeCanceled; s++ {
		out = append(out, s.String())
	}
	return out
}
