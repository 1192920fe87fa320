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
	// Active lists every active node, outermost first, in flow order.
	Active []ActiveNode
	// Err is the last recorded error.
	Err *Failure
	// Last is the most recent entry of State.Record, if any.
	Last *Record
	// Why explains in one sentence why the process is where it is.
	Why string
	// Tree is a readable rendering of the flow with each node's status.
	Tree string
}

// Node statuses used in Description.Tree and DescribeMermaid.
const (
	nodeDone    = "done"
	nodeActive  = "active"
	nodeFailed  = "failed"
	nodePending = "pending"
	nodeSkipped = "skipped"
)

// Brancher is implemented by nodes whose children form named branches, of
// which one is chosen and recorded in the frame's Branch (Case, Switch):
// BranchOf names the branch child i belongs to. Describe uses it to show the
// other branches as skipped.
type Brancher interface {
	BranchOf(child int) string
}

func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// Describe explains a state of this flow.
func (f *Flow[S]) Describe(st State[S]) (Description, error) {
	if err := f.Validate(st); err != nil {
		return Description{}, err
	}
	d := Description{Version: st.Version, ID: st.ID, Status: st.Status, Steps: st.Steps, WakeAt: st.WakeAt, Err: st.Err, Positions: st.Positions()}
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
	d.Why = f.why(st, d)
	marks := f.marks(st)
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] steps=%d\n", st.Version, st.Status, st.Steps)
	for _, c := range f.order {
		m := marks[c.path]
		fmt.Fprintf(&b, "%s%s %s (%s)", strings.Repeat("  ", c.depth), glyph(m), c.info.Name, c.info.Kind)
		for _, a := range d.Active {
			if a.Path == c.path {
				b.WriteString(describeFrame(a))
			}
		}
		if m == nodeFailed && st.Err != nil {
			fmt.Fprintf(&b, " error: %s", st.Err.Message)
		}
		b.WriteByte('\n')
	}
	d.Tree = b.String()
	return d, nil
}

func describeFrame(a ActiveNode) string {
	var parts []string
	if a.Branch != "" {
		parts = append(parts, "branch="+a.Branch)
	}
	if a.Count > 0 {
		parts = append(parts, fmt.Sprintf("count=%d", a.Count))
	}
	if !a.Since.IsZero() {
		parts = append(parts, "since="+a.Since.Format(time.RFC3339))
	}
	if !a.Until.IsZero() {
		parts = append(parts, "until="+a.Until.Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

func glyph(m string) string {
	switch m {
	case nodeDone:
		return "[x]"
	case nodeActive:
		return "[>]"
	case nodeFailed:
		return "[!]"
	case nodeSkipped:
		return "[-]"
	}
	return "[ ]"
}

func (f *Flow[S]) why(st State[S], d Description) string {
	switch st.Status {
	case Done:
		return "the flow completed"
	case Failed:
		if st.Err != nil {
			return fmt.Sprintf("failed at %s (%s): %s", st.Err.Path, st.Err.Kind, st.Err.Message)
		}
		return "failed"
	case Canceled:
		return "the process was canceled"
	case NeedsAttention:
		return fmt.Sprintf("needs a person: the outcome of %s is unknown", strings.Join(d.Positions, ", "))
	case Waiting:
		var leaves []string
		for _, a := range d.Active {
			if a.Leaf {
				s := fmt.Sprintf("%s (%s", a.Path, a.Kind)
				if a.Detail != "" {
					s += ", " + a.Detail
				}
				if a.Count > 0 {
					s += fmt.Sprintf(", %d so far", a.Count)
				}
				leaves = append(leaves, s+")")
			}
		}
		return fmt.Sprintf("waiting until %s for %s", st.WakeAt.Format(time.RFC3339), strings.Join(leaves, ", "))
	}
	return "runnable now at " + strings.Join(d.Positions, ", ")
}

// marks computes each node's status for rendering: active frames, nodes
// that precede an active node among its siblings (done), the failed node.
func (f *Flow[S]) marks(st State[S]) map[string]string {
	m := make(map[string]string, len(f.order))
	if st.Status == Done {
		for _, c := range f.order {
			m[c.path] = nodeDone
		}
		return m
	}
	frames := map[string]*Frame{"": &st.Root}
	st.Root.Walk(func(p string, fr *Frame) {
		frames[p] = fr
		c := f.byPath[stripInstances(p)]
		if c == nil || isInstance(fr.Name) {
			return
		}
		m[c.path] = nodeActive
		parent := frames[parentPath(p)]
		if b, ok := c.parent.node.(Brancher); ok && parent != nil && parent.Branch != "" {
			// A decided Case or Switch: the other branches were skipped.
			for _, sib := range c.parent.children {
				if b.BranchOf(sib.index) != parent.Branch {
					markTree(m, sib, nodeSkipped)
				}
			}
		}
		for _, sib := range c.parent.children[:c.index] {
			if _, seen := m[sib.path]; !seen && c.parent.info.Kind != "parallel" {
				markTree(m, sib, nodeDone)
			}
		}
	})
	if st.Status == Failed && st.Err != nil {
		if c, ok := f.byPath[stripInstances(st.Err.Path)]; ok {
			m[c.path] = nodeFailed
		}
	}
	return m
}

// isInstance reports whether a frame name is a ForEach instance ("[3]").
func isInstance(name string) bool {
	return len(name) > 2 && name[0] == '[' && name[len(name)-1] == ']'
}

// InstanceName is the frame name of ForEach instance i.
func InstanceName(i int) string { return "[" + string(appendUint(nil, uint64(i))) + "]" }

func markTree[S any](m map[string]string, c *compiled[S], mark string) {
	m[c.path] = mark
	for _, k := range c.children {
		markTree(m, k, mark)
	}
}

// Mermaid renders the flow as a Mermaid flowchart: composite nodes become
// subgraphs, siblings are linked in flow order.
func (f *Flow[S]) Mermaid() string { return f.mermaid(nil) }

// DescribeMermaid renders the flow as Mermaid with the state's position
// highlighted: active nodes, completed ones, and the failed one.
func (f *Flow[S]) DescribeMermaid(st State[S]) (string, error) {
	if err := f.Validate(st); err != nil {
		return "", err
	}
	return f.mermaid(f.marks(st)), nil
}

func (f *Flow[S]) mermaid(marks map[string]string) string {
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
			if len(k.children) > 0 {
				fmt.Fprintf(&b, "%ssubgraph %s [\"%s\"]\n", indent, ids[k], label)
				emit(k, indent+"  ")
				fmt.Fprintf(&b, "%send\n", indent)
			} else {
				fmt.Fprintf(&b, "%s%s[\"%s\"]\n", indent, ids[k], label)
			}
			if i > 0 && c.info.Kind != "parallel" {
				fmt.Fprintf(&b, "%s%s --> %s\n", indent, ids[c.children[i-1]], ids[k])
			}
		}
	}
	emit(f.root, "  ")
	if marks != nil {
		b.WriteString("  classDef done fill:#d4f7d4,stroke:#2b8a3e\n")
		b.WriteString("  classDef active fill:#fff3bf,stroke:#f08c00,stroke-width:3px\n")
		b.WriteString("  classDef failed fill:#ffc9c9,stroke:#c92a2a,stroke-width:3px\n")
		b.WriteString("  classDef skipped fill:#f1f3f5,stroke:#adb5bd,color:#868e96\n")
		for _, c := range f.order {
			if m := marks[c.path]; m != "" && m != nodePending {
				fmt.Fprintf(&b, "  class %s %s\n", ids[c], m)
			}
		}
	}
	return b.String()
}
