package combinators

import (
	"context"
	"fmt"
	"strings"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Branch names for Case decisions, as recorded in the case's frame and in
// State.Record.
const (
	Then = "then"
	Else = "else"
)

// Case evaluates pred once, records the decision in the state, and runs the
// nodes of the chosen branch: then when pred is true, the Else nodes (none
// unless Else is called) when false. The decision is never re-evaluated,
// even if the data changes, so a resumed process stays on its branch.
//
// The nodes of both branches share the case's namespace: their paths are
// "case/step", and their names must differ.
func Case[S any](name string, pred func(context.Context, *S) (bool, error), then ...stepflow.Node[S]) *CaseNode[S] {
	return &CaseNode[S]{sw: switchNode[S]{
		name:     name,
		kind:     "case",
		branches: []Branch[S]{{Name: Then, Nodes: then}, {Name: Else}},
		choose: func(ctx context.Context, d *S) (string, error) {
			ok, err := pred(ctx, d)
			if ok {
				return Then, err
			}
			return Else, err
		},
		checkFn: pred == nil,
	}}
}

// When runs body only if pred is true: a Case without an else branch,
// recorded the same way.
func When[S any](name string, pred func(context.Context, *S) (bool, error), body ...stepflow.Node[S]) stepflow.Node[S] {
	c := Case(name, pred, body...)
	c.sw.kind = "when"
	return c
}

// CaseNode is a Case; its Else method adds the nodes run when the predicate
// is false.
type CaseNode[S any] struct{ sw switchNode[S] }

// Else returns a copy of the case with nodes as its else branch.
func (n *CaseNode[S]) Else(nodes ...stepflow.Node[S]) *CaseNode[S] {
	cp := *n
	cp.sw.branches = []Branch[S]{n.sw.branches[0], {Name: Else, Nodes: nodes}}
	return &cp
}

func (n *CaseNode[S]) Info() stepflow.Info                           { return n.sw.Info() }
func (n *CaseNode[S]) Children() []stepflow.Node[S]                  { return n.sw.Children() }
func (n *CaseNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result { return n.sw.Advance(c) }

// BranchOf names the branch, Then or Else, of child i.
func (n *CaseNode[S]) BranchOf(i int) string { return n.sw.BranchOf(i) }

func (n *CaseNode[S]) Check() []string {
	p := n.sw.Check()
	if len(n.sw.branches[0].Nodes) == 0 && len(n.sw.branches[1].Nodes) == 0 {
		p = append(p, "case has no nodes in either branch")
	}
	return p
}

// Branch is one named branch of a Switch.
type Branch[S any] struct {
	Name  string
	Nodes []stepflow.Node[S]
}

// On builds a Branch.
func On[S any](name string, nodes ...stepflow.Node[S]) Branch[S] {
	return Branch[S]{Name: name, Nodes: nodes}
}

// Switch calls choose once, records the branch name it returns, and runs that
// branch. A name that matches no branch fails the process with an error
// naming it (use a Branch with no nodes for "do nothing"). As with Case, the
// nodes of all branches share the switch's namespace.
func Switch[S any](name string, choose func(context.Context, *S) (string, error), branches ...Branch[S]) stepflow.Node[S] {
	return &switchNode[S]{name: name, kind: "switch", choose: choose, branches: branches, checkFn: choose == nil}
}

type switchNode[S any] struct {
	name     string
	kind     string
	choose   func(context.Context, *S) (string, error)
	branches []Branch[S]
	checkFn  bool
}

func (n *switchNode[S]) Info() stepflow.Info {
	names := make([]string, len(n.branches))
	for i, b := range n.branches {
		names[i] = b.Name
	}
	return stepflow.Info{Name: n.name, Kind: n.kind, Detail: strings.Join(names, "|"), Leaf: true}
}

func (n *switchNode[S]) Children() []stepflow.Node[S] {
	var all []stepflow.Node[S]
	for _, b := range n.branches {
		all = append(all, b.Nodes...)
	}
	return all
}

func (n *switchNode[S]) Check() []string {
	var p []string
	if n.checkFn {
		p = append(p, "nil predicate")
	}
	seen := map[string]bool{}
	for _, b := range n.branches {
		switch {
		case b.Name == "":
			p = append(p, "branch with an empty name")
		case seen[b.Name]:
			p = append(p, fmt.Sprintf("duplicate branch %q", b.Name))
		}
		seen[b.Name] = true
	}
	if len(n.branches) == 0 {
		p = append(p, "switch without branches")
	}
	return p
}

// BranchOf names the branch child i belongs to (stepflow.Brancher).
func (n *switchNode[S]) BranchOf(i int) string {
	lo := 0
	for _, b := range n.branches {
		if i < lo+len(b.Nodes) {
			return b.Name
		}
		lo += len(b.Nodes)
	}
	return ""
}

// span returns the child index range of the named branch.
func (n *switchNode[S]) span(name string) (lo, hi int, ok bool) {
	for _, b := range n.branches {
		hi = lo + len(b.Nodes)
		if b.Name == name {
			return lo, hi, true
		}
		lo = hi
	}
	return 0, 0, false
}

func (n *switchNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Peek()
	if f.Branch == "" {
		// For Case and When, a call that an interceptor answers without
		// running the predicate (a test scripting "false") takes else.
		var branch string
		if n.kind != "switch" {
			branch = Else
		}
		if res, ok := call(c, func(ctx context.Context, d *S) (e error) {
			branch, e = n.choose(ctx, d)
			return e
		}); !ok {
			return res
		}
		if _, _, ok := n.span(branch); !ok || branch == "" {
			err := fmt.Errorf("%s %q chose branch %q; branches are %v", n.kind, n.name, branch, n.Info().Detail)
			c.Record("error", err)
			return stepflow.Fail(stepflow.Permanent(err))
		}
		c.Record(branch, nil)
		f = c.Frame()
		f.Branch = branch
	}
	lo, hi, ok := n.span(f.Branch)
	if !ok {
		return c.Invalid("unknown branch %q", f.Branch)
	}
	return c.Sequence(lo, hi)
}
