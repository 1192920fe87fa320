package stepflow

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// NodeInfo describes one node of a compiled flow.
type NodeInfo struct {
	Info
	// Path is the node's full path, as used in states.
	Path string
	// Depth is 1 for top-level nodes.
	Depth int
	// Children are the names of the node's children, in flow order.
	Children []string
	// Branch names the branch of its parent (a Case or Switch) the node
	// belongs to; empty elsewhere.
	Branch string
	// Needs names the siblings the node waits for, when its parent runs
	// its children by their dependencies (Dependent, e.g. a Graph).
	Needs []string
	// Meta is what Annotate attached to the node.
	Meta Meta
}

// Nodes lists every node of the flow in depth-first flow order.
func (f *Flow[S]) Nodes() []NodeInfo {
	out := make([]NodeInfo, len(f.order))
	for i, c := range f.order {
		out[i] = c.nodeInfo()
	}
	return out
}

// Node returns the node at path.
func (f *Flow[S]) Node(path string) (NodeInfo, bool) {
	c, ok := f.byPath[path]
	if !ok {
		return NodeInfo{}, false
	}
	return c.nodeInfo(), true
}

func (c *compiled[S]) nodeInfo() NodeInfo {
	ni := NodeInfo{Info: c.info, Path: c.path, Depth: c.depth, Meta: c.meta}
	if b, ok := c.parent.node.(Brancher); ok {
		ni.Branch = b.BranchOf(c.index)
	}
	if d, ok := c.parent.node.(Dependent); ok {
		ni.Needs = d.Needs(c.index)
	}
	for _, k := range c.children {
		ni.Children = append(ni.Children, k.info.Name)
	}
	return ni
}

// Fingerprint is a stable hash of the flow's structure: every node's path,
// kind and policy detail, in order. It does not include the version name, so
// that tests can pin a released version's fingerprint and fail when someone
// edits it in place instead of adding a new version.
func (f *Flow[S]) Fingerprint() string {
	h := sha256.New()
	for _, c := range f.order {
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", c.path, c.info.Kind, c.info.Detail)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// Validate checks that every frame of st names a node of this flow, so that
// a loaded state can be rejected before any Apply. Apply performs the same
// check on the frames it visits.
func (f *Flow[S]) Validate(st State[S]) error {
	if err := f.check(&st); err != nil {
		return err
	}
	var bad error
	// inInstance is true for the frame of one instance of an Instances
	// node: its children are frames of the node's children.
	var walk func(c *compiled[S], fr *Frame, inInstance bool)
	walk = func(c *compiled[S], fr *Frame, inInstance bool) {
		for i := range fr.Children {
			ch := &fr.Children[i]
			if c.info.Instances && !inInstance {
				if !isInstance(ch.Name) {
					if bad == nil {
						bad = &StateError{Path: joinPath(c.path, ch.Name), Reason: "want an instance frame like [0]"}
					}
					return
				}
				walk(c, ch, true)
				continue
			}
			j, ok := c.childIndex(ch.Name)
			if !ok {
				if bad == nil {
					bad = &StateError{Path: joinPath(c.path, ch.Name), Reason: "no such node in flow " + f.version}
				}
				return
			}
			walk(c.children[j], ch, false)
		}
	}
	walk(f.root, &st.Root, false)
	return bad
}

// ActiveNode describes one active position of a process.
type ActiveNode struct {
	Path   string
	Kind   string
	Detail string
	// Branch, Count, Since, Until are the node's frame fields.
	Branch string
	Count  uint32
	Since  time.Time
	Until  time.Time
	// Leaf is true for the innermost active nodes (the positions).
	Leaf bool
}

// Description is what a person on call wants to know about a process.
type Description struct {
	Version string
	ID      string
	Status  Status
	Steps   uint64
	WakeAt  time.Time
	// Positions are the paths of the innermost active nodes.
	Positions []string
	// Active lists every active node, outermost first, in flow order,
	// with its frame's fields.
	Active []ActiveNode
	// Nodes is every node of the flow, in flow order, with where it
	// stands in this process. Tree, DescribeMermaid and the console render
	// it.
	Nodes []NodeState
	// Err is the error that matters now: the failure of a failed,
	// canceled or stuck process, or the failure a node on the current
	// path is handling (a Retry between attempts). A process that
	// recovered from an error and went on has none; its nodes keep
	// their LastError.
	Err *Failure
	// Last is the most recent entry of State.Record, if any.
	Last *Record
	// Why explains in one sentence why the process is where it is.
	Why string
	// Tree is a readable rendering of the flow with each node's status.
	Tree string
}

// Dependent is implemented by nodes whose children start when the siblings
// they need are done, rather than in flow order (combinators.Graph): Needs
// names the siblings child i needs. Nodes reports them, and Mermaid and the
// console draw them as edges.
type Dependent interface {
	Needs(i int) []string
}

// Brancher is implemented by nodes whose children form named branches, of
// which one is chosen and recorded in the frame's Branch (Case, Switch):
// BranchOf names the branch child i belongs to. Describe uses it to show the
// other branches as skipped.
type Brancher interface {
	BranchOf(child int) string
}

// Describe explains a state of this flow: every node's status, what the
// process waits for, the error that matters, and a text tree.
func (f *Flow[S]) Describe(st State[S]) (Description, error) {
	if err := f.Validate(st); err != nil {
		return Description{}, err
	}
	d := Description{Version: st.Version, ID: st.ID, Status: st.Status, Steps: st.Steps, WakeAt: st.WakeAt, Positions: st.Positions()}
	if n := len(st.Record); n > 0 {
		r := st.Record[n-1]
		d.Last = &r
	}
	st.Root.Walk(func(p string, fr *Frame) {
		c := f.byPath[stripInstances(p)]
		if c == nil || isInstance(fr.Name) {
			return
		}
		d.Active = append(d.Active, ActiveNode{Path: p, Kind: c.info.Kind, Detail: c.info.Detail, Branch: fr.Branch, Count: fr.Count, Since: fr.Since, Until: fr.Until, Leaf: len(fr.Children) == 0})
	})
	d.Nodes = f.nodeStates(&st)
	switch st.Status {
	case Failed, Canceled, NeedsAttention:
		d.Err = st.Err
	case Running, Waiting:
		for i := range d.Nodes {
			if n := &d.Nodes[i]; (n.Status == NodeWaiting || n.Status == NodeActive) && n.LastError != nil && st.Err != nil && n.LastError.same(st.Err) {
				d.Err = st.Err
			}
		}
	}
	d.Why = why(&st, &d)
	d.Tree = tree(&st, d.Nodes)
	return d, nil
}

func why[S any](st *State[S], d *Description) string {
	switch st.Status {
	case Done:
		return "the flow completed"
	case Failed:
		if st.Err != nil {
			return fmt.Sprintf("failed at %s (%s): %s", st.Err.Path, st.Err.Kind, st.Err.Detail())
		}
		return "failed"
	case Canceled:
		return "the process was canceled"
	case NeedsAttention:
		return fmt.Sprintf("needs a person: the outcome of %s is unknown", strings.Join(d.Positions, ", "))
	case Waiting:
		var leaves []string
		for i := range d.Nodes {
			n := &d.Nodes[i]
			if n.Status != NodeWaiting || !leafOf(d.Active, n.Path) {
				continue
			}
			s := n.Path
			if n.Waiting != "" {
				s += " (" + n.Waiting + ")"
			}
			leaves = append(leaves, s)
		}
		if st.WakeAt.IsZero() {
			return "waiting for " + strings.Join(leaves, ", ")
		}
		return fmt.Sprintf("waiting until %s for %s", st.WakeAt.Format(time.RFC3339), strings.Join(leaves, ", "))
	}
	return "runnable now at " + strings.Join(d.Positions, ", ")
}

// leafOf reports whether the node at path (without instances) is an
// innermost active node.
func leafOf(active []ActiveNode, path string) bool {
	for _, a := range active {
		if a.Leaf && stripInstances(a.Path) == path {
			return true
		}
	}
	return false
}

// isInstance reports whether a frame name is a ForEach instance ("[3]").
func isInstance(name string) bool {
	return len(name) > 2 && name[0] == '[' && name[len(name)-1] == ']'
}

// InstanceName is the frame name of ForEach instance i.
func InstanceName(i int) string { return "[" + string(appendUint(nil, uint64(i))) + "]" }

// Mermaid renders the flow as a Mermaid flowchart: composite nodes become
// subgraphs, siblings are linked in flow order.
func (f *Flow[S]) Mermaid() string { return f.mermaid(nil) }

// DescribeMermaid renders the flow as Mermaid with each node's status in
// the state (Description.Nodes) as its class: active, waiting, done,
// skipped, failed, canceled; pending nodes are left plain.
func (f *Flow[S]) DescribeMermaid(st State[S]) (string, error) {
	if err := f.Validate(st); err != nil {
		return "", err
	}
	return f.mermaid(f.nodeStates(&st)), nil
}

func (f *Flow[S]) mermaid(nodes []NodeState) string {
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	ids := make(map[*compiled[S]]string, len(f.order))
	for i, c := range f.order {
		ids[c] = fmt.Sprintf("n%d", i)
	}
	var emit func(c *compiled[S], indent string)
	emit = func(c *compiled[S], indent string) {
		for i, k := range c.children {
			label := fmt.Sprintf("%s<br/><small>%s</small>", k.info.Name, k.info.Kind)
			if k.info.Detail != "" {
				label = fmt.Sprintf("%s<br/><small>%s: %s</small>", k.info.Name, k.info.Kind, k.info.Detail)
			}
			if k.meta.Description != "" {
				label += fmt.Sprintf("<br/><i>%s</i>", k.meta.Description)
			}
			label = strings.ReplaceAll(label, `"`, "#quot;")
			if len(k.children) > 0 {
				fmt.Fprintf(&b, "%ssubgraph %s [\"%s\"]\n", indent, ids[k], label)
				emit(k, indent+"  ")
				fmt.Fprintf(&b, "%send\n", indent)
			} else {
				fmt.Fprintf(&b, "%s%s[\"%s\"]\n", indent, ids[k], label)
			}
			if d, ok := c.node.(Dependent); ok {
				for _, need := range d.Needs(i) {
					if j, ok := c.childIndex(need); ok {
						fmt.Fprintf(&b, "%s%s --> %s\n", indent, ids[c.children[j]], ids[k])
					}
				}
			} else if i > 0 && c.info.Kind != "parallel" {
				fmt.Fprintf(&b, "%s%s --> %s\n", indent, ids[c.children[i-1]], ids[k])
			}
		}
	}
	emit(f.root, "  ")
	if nodes != nil {
		b.WriteString("  classDef done fill:#d4f7d4,stroke:#2b8a3e\n")
		b.WriteString("  classDef active fill:#fff3bf,stroke:#f08c00,stroke-width:3px\n")
		b.WriteString("  classDef waiting fill:#e7f5ff,stroke:#1971c2,stroke-width:3px\n")
		b.WriteString("  classDef failed fill:#ffc9c9,stroke:#c92a2a,stroke-width:3px\n")
		b.WriteString("  classDef skipped fill:#f1f3f5,stroke:#adb5bd,color:#868e96\n")
		b.WriteString("  classDef canceled fill:#f1f3f5,stroke:#495057,stroke-dasharray:4\n")
		for i, c := range f.order {
			if s := nodes[i].Status; s != NodePending {
				fmt.Fprintf(&b, "  class %s %s\n", ids[c], s)
			}
		}
	}
	return b.String()
}
