package stepflow

import (
	"fmt"
	"strings"
	"time"
)

// NodeStatus is where one node of a flow stands in one process.
type NodeStatus uint8

const (
	// NodePending: not reached yet (or to run again: the body of a Retry
	// waiting for its next attempt, the rest of a failed process that a
	// Redrive would run).
	NodePending NodeStatus = iota
	// NodeActive: on the process's current path, with work to do at the
	// next Apply.
	NodeActive
	// NodeWaiting: on the current path, waiting for a time, a poll, a
	// signal.
	NodeWaiting
	// NodeDone: ran to its end.
	NodeDone
	// NodeSkipped: will never run: a branch not taken, or a node left
	// unreached by a process that has ended.
	NodeSkipped
	// NodeFailed: its failure failed the process, or failed the node
	// that handled it.
	NodeFailed
	// NodeCanceled: it was on the current path when the process was
	// canceled.
	NodeCanceled
)

var nodeStatusNames = [...]string{"pending", "active", "waiting", "done", "skipped", "failed", "canceled"}

// String returns the lower-case name used in descriptions and JSON.
func (s NodeStatus) String() string {
	if int(s) < len(nodeStatusNames) {
		return nodeStatusNames[s]
	}
	return fmt.Sprintf("nodestatus(%d)", uint8(s))
}

// MarshalText encodes the status by name.
func (s NodeStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// NodeState is one node of a flow as one process sees it: what Describe,
// DescribeMermaid and the console render.
type NodeState struct {
	NodeInfo
	// Status is where the node stands.
	Status NodeStatus
	// Attempts counts the node's tries or rounds so far, as its frame
	// keeps them: a Retry's attempts made, a WaitFor's polls. Zero when
	// the node keeps no such count (see Calls).
	Attempts uint32
	// Calls counts the entries of State.Record for this node (0 when the
	// flow keeps no record, or the record no longer holds them).
	Calls int
	// FirstStart and LastEnd bound the node's calls found in the record.
	FirstStart, LastEnd time.Time
	// LastError is the node's most recent failure: the one its frame
	// holds, else the last error the record has for it, else the
	// process's error when it names this node.
	LastError *Failure
	// WakeAt is when a waiting node next does something; zero when it
	// waits for a signal only, or does not wait.
	WakeAt time.Time
	// Waiting says, for a waiting or active node, what it waits for or
	// does, in words: `poll 3 answered not yet`, `signal "approved"`,
	// `attempt 2 failed; attempt 3 next`.
	Waiting string
	// Chosen is the branch a Case or Switch took, when known.
	Chosen string
	// Items are the items of a ForEach, in order, once it has its list.
	Items []ItemState
}

// ItemState is one item of a ForEach.
type ItemState struct {
	// Index of the item.
	Index int
	// Status of the item as a whole.
	Status NodeStatus
}

// Explainer is implemented by nodes whose frame means more than "this
// child is active": a Retry between attempts, a Catch running its handler,
// a wait. Describe calls Explain for a node that has a frame in the state
// being described.
type Explainer interface {
	Explain(fr *Frame) Explanation
}

// Explanation is what a node says of its own frame.
type Explanation struct {
	// Waiting says what the node waits for or is doing, in words.
	Waiting string
	// Attempts is the node's count of tries or rounds (see
	// NodeState.Attempts).
	Attempts uint32
	// Children gives the status of children that have no frame, by
	// index; the others follow the usual rule: children before the active
	// one are done, the rest pending. Entries of children that have a
	// frame are ignored.
	Children map[int]NodeStatus
	// Items are a ForEach's items; an item in progress is NodeActive, and
	// Describe gives it its node's status.
	Items []ItemState
}

// nodeStates computes every node's state, in flow order.
func (f *Flow[S]) nodeStates(st *State[S]) []NodeState {
	d := describer[S]{f: f, st: st, at: make(map[*compiled[S]]int, len(f.order)), out: make([]NodeState, len(f.order))}
	for i, c := range f.order {
		d.at[c] = i
		d.out[i] = NodeState{NodeInfo: c.nodeInfo()}
	}
	if st.Err != nil && (st.Status == Failed || st.Status == Canceled) {
		d.failPath = stripInstances(st.Err.Path)
	}
	if st.Status == Done {
		for _, k := range f.root.children {
			d.mark(k, NodeDone)
		}
	} else {
		d.visit(f.root, &st.Root)
	}
	d.fromRecord()
	if st.Status == Canceled || st.Status == Done {
		for i := range d.out {
			if d.out[i].Status == NodePending {
				d.out[i].Status = NodeSkipped
			}
		}
	}
	return d.out
}

type describer[S any] struct {
	f        *Flow[S]
	st       *State[S]
	at       map[*compiled[S]]int
	out      []NodeState
	failPath string
}

func (d *describer[S]) state(c *compiled[S]) *NodeState { return &d.out[d.at[c]] }

// onPath reports whether p is path or below it.
func onPath(p, path string) bool {
	return p == path || len(p) > len(path) && p[:len(path)] == path && p[len(path)] == '/'
}

// visit describes c, which has frame fr, and its subtree.
func (d *describer[S]) visit(c *compiled[S], fr *Frame) {
	if c != d.f.root {
		ns := d.state(c)
		switch d.st.Status {
		case Failed:
			ns.Status = NodeFailed
		case Canceled:
			ns.Status = NodeCanceled
		case Waiting:
			ns.Status = NodeWaiting
		default:
			ns.Status = NodeActive
		}
		if fr.Err != nil {
			ns.LastError = fr.Err
		}
		if !fr.Until.IsZero() && d.st.Status == Waiting {
			ns.WakeAt = fr.Until
		}
	}
	var exp Explanation
	if e, ok := c.node.(Explainer); ok {
		exp = e.Explain(fr)
		if c != d.f.root {
			ns := d.state(c)
			ns.Waiting, ns.Attempts, ns.Items = exp.Waiting, exp.Attempts, exp.Items
			for i := range ns.Items {
				if ns.Items[i].Status == NodeActive {
					ns.Items[i].Status = ns.Status
				}
			}
		}
	}
	br, isBrancher := c.node.(Brancher)
	if isBrancher && fr.Branch != "" && c != d.f.root {
		d.state(c).Chosen = fr.Branch
	}
	frames := fr.Children
	if c.info.Instances {
		// The body's frames are those of the first item in progress.
		frames = nil
		for i := range fr.Children {
			if isInstance(fr.Children[i].Name) {
				frames = fr.Children[i].Children
				break
			}
		}
	}
	kidFrame := make([]*Frame, len(c.children))
	first := -1
	for i := range frames {
		if j, ok := c.childIndex(frames[i].Name); ok {
			kidFrame[j] = &frames[i]
			if first < 0 || j < first {
				first = j
			}
		}
	}
	ended := d.st.Status == Failed || d.st.Status == Canceled
	if first < 0 && d.failPath != "" && ended {
		// Nothing active below: the child on the path where the process
		// stopped, if any, is where it stopped.
		for j, k := range c.children {
			if onPath(d.failPath, k.path) {
				first = j
				break
			}
		}
	}
	for j, k := range c.children {
		if kidFrame[j] != nil {
			d.visit(k, kidFrame[j])
			continue
		}
		s, explained := exp.Children[j]
		switch {
		case explained:
		case isBrancher && fr.Branch != "" && br.BranchOf(j) != fr.Branch:
			s = NodeSkipped
		case first >= 0 && j < first:
			s = NodeDone
		case first == j && ended:
			s = NodeFailed
			if d.st.Status == Canceled {
				s = NodeCanceled
			}
		default:
			s = NodePending
		}
		if s == NodeFailed || s == NodeCanceled {
			// Where below it the failure happened: the path held by
			// this node's frame (a Catch handling it), else the
			// process's.
			at := d.failPath
			if fr.Err != nil && fr.Err.Path != "" {
				at = stripInstances(fr.Err.Path)
			}
			d.stopped(k, s, at)
			continue
		}
		d.mark(k, s)
	}
}

// stopped marks c, which has no frame, as stopped with status s (failed or
// canceled) by something at path at: along that path, the children before
// it ran, the one on it stopped too, those after it did not run.
func (d *describer[S]) stopped(c *compiled[S], s NodeStatus, at string) {
	d.state(c).Status = s
	on := -1
	for j, k := range c.children {
		if at != "" && onPath(at, k.path) {
			on = j
			break
		}
	}
	for j, k := range c.children {
		switch {
		case on < 0 || j > on:
			d.mark(k, NodePending)
		case j < on:
			d.mark(k, NodeDone)
		default:
			d.stopped(k, s, at)
		}
	}
}

// mark gives c and its subtree status s.
func (d *describer[S]) mark(c *compiled[S], s NodeStatus) {
	d.state(c).Status = s
	for _, k := range c.children {
		d.mark(k, s)
	}
}

// fromRecord adds what State.Record knows: calls, their times, errors,
// and the branch a finished Case or Switch took.
func (d *describer[S]) fromRecord() {
	for i := range d.st.Record {
		r := &d.st.Record[i]
		c, ok := d.f.byPath[stripInstances(r.Path)]
		if !ok {
			continue
		}
		ns := d.state(c)
		ns.Calls++
		if ns.FirstStart.IsZero() || r.Start.Before(ns.FirstStart) {
			ns.FirstStart = r.Start
		}
		if r.End.After(ns.LastEnd) {
			ns.LastEnd = r.End
		}
		if r.Err != "" && (ns.LastError == nil || ns.LastError.At.Before(r.End)) {
			ns.LastError = &Failure{Path: r.Path, Kind: outcomeKind(r.Outcome), Message: r.Err, Attempt: r.Attempt, At: r.End}
		}
		if b, ok := c.node.(Brancher); ok && ns.Status == NodeDone && isBranch(b, c, r.Outcome) {
			ns.Chosen = r.Outcome
			for j, k := range c.children {
				if b.BranchOf(j) != r.Outcome {
					d.mark(k, NodeSkipped)
				} else if d.state(k).Status == NodeSkipped {
					d.mark(k, NodeDone)
				}
			}
		}
	}
	if e := d.st.Err; e != nil {
		if c, ok := d.f.byPath[stripInstances(e.Path)]; ok && d.state(c).LastError == nil {
			d.state(c).LastError = e
		}
	}
}

// isBranch reports whether outcome names a branch of c (a Case records
// "then" or "else", a Switch its branch), rather than another outcome.
func isBranch[S any](b Brancher, c *compiled[S], outcome string) bool {
	switch outcome {
	case "then", "else":
		return true
	}
	for j := range c.children {
		if b.BranchOf(j) == outcome {
			return true
		}
	}
	return false
}

// outcomeKind is the failure kind of a record outcome.
func outcomeKind(outcome string) string {
	switch outcome {
	case "panic":
		return KindPanic
	case "timeout":
		return KindTimeout
	case "fail":
		return KindFail
	}
	return KindError
}

// glyph is a node status in the text tree.
func glyph(s NodeStatus) string {
	switch s {
	case NodeActive:
		return "[>]"
	case NodeWaiting:
		return "[~]"
	case NodeDone:
		return "[x]"
	case NodeSkipped:
		return "[-]"
	case NodeFailed:
		return "[!]"
	case NodeCanceled:
		return "[/]"
	}
	return "[ ]"
}

// tree renders nodes as the indented text of Description.Tree.
func tree[S any](st *State[S], nodes []NodeState) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] steps=%d\n", st.Version, st.Status, st.Steps)
	for i := range nodes {
		n := &nodes[i]
		fmt.Fprintf(&b, "%s%s %s (%s)", strings.Repeat("  ", n.Depth), glyph(n.Status), n.Name, n.Kind)
		if n.Meta.Description != "" {
			fmt.Fprintf(&b, " - %s", n.Meta.Description)
		}
		if len(n.Needs) > 0 {
			fmt.Fprintf(&b, " after %s", strings.Join(n.Needs, ", "))
		}
		var parts []string
		if n.Chosen != "" {
			parts = append(parts, "took "+n.Chosen)
		}
		if n.Waiting != "" && (n.Status == NodeWaiting || n.Status == NodeActive) {
			parts = append(parts, n.Waiting)
		}
		if !n.WakeAt.IsZero() {
			parts = append(parts, "until "+n.WakeAt.Format(time.RFC3339))
		}
		if len(n.Items) > 0 {
			parts = append(parts, "items: "+n.ItemSummary())
		}
		if n.LastError != nil && (n.Status == NodeFailed || n.Status == NodeWaiting || n.Status == NodeActive) {
			parts = append(parts, "error: "+n.LastError.Detail())
		}
		if len(parts) > 0 {
			b.WriteString(": ")
			b.WriteString(strings.Join(parts, "; "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// ItemSummary counts a ForEach's items by status, "3 done, 1 active, 6
// pending"; it is "" for a node without items.
func (n NodeState) ItemSummary() string {
	var count [len(nodeStatusNames)]int
	for _, it := range n.Items {
		if int(it.Status) < len(count) {
			count[it.Status]++
		}
	}
	var parts []string
	for s, k := range count {
		if k > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", k, NodeStatus(s)))
		}
	}
	return strings.Join(parts, ", ")
}
