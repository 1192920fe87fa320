package stepflow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/stepflow-io/go-stepflow/internal/blocks"
)

// Options configures a flow. The zero value is ready to use; each field
// documents its default.
type Options struct {
	// Record is how many completed steps State.Record keeps, newest last.
	// Zero (the default) keeps none and costs nothing; DefaultRecord is a
	// good value when people will read states to debug processes.
	Record int
	// Interceptors wrap every call of user code, outermost first. Interceptors
	// carried by the context (WithInterceptor) run inside these.
	Interceptors []Interceptor
	// MaxSignals bounds State.Signals: a Signal beyond it is refused with
	// ErrSignalOverflow. Zero means DefaultMaxSignals.
	MaxSignals int
}

// Defaults for Options.
const (
	DefaultRecord     = 32
	DefaultMaxSignals = 16
)

func (o Options) withDefaults() Options {
	if o.MaxSignals <= 0 {
		o.MaxSignals = DefaultMaxSignals
	}
	if o.Record < 0 {
		o.Record = 0
	}
	return o
}

// Flow is a compiled, versioned, immutable program. It is safe for
// concurrent use by any number of goroutines: Apply keeps all per-process
// data in the State it returns.
type Flow[S any] struct {
	version string
	opts    Options
	root    *compiled[S]
	top     *rootNode[S] // root.node, called directly
	// byPath indexes every node by its full path, for Describe and checks.
	byPath map[string]*compiled[S]
	// order lists every node in depth-first flow order.
	order []*compiled[S]
	// clone is S's Clone method, when it has one. It is handed a pointer
	// into the pooled working memory, where the data is already: handing
	// it the value would move a copy of it to the heap at every Apply.
	clone func(*S) S
	pool  sync.Pool
	// noStraight turns applyStep off, for tests that compare it with the
	// general path.
	noStraight bool
}

// compiled is a node placed in the tree: its path and its children, with
// a name index so that resuming is O(depth), never O(size of the flow).
type compiled[S any] struct {
	node  Node[S]
	info  Info
	path  string
	depth int
	// frames is how deep this node's frame sits below the root frame: its
	// depth plus one level per enclosing ForEach (Info.Instances), whose
	// instance frames stand between it and its children.
	frames   int
	parent   *compiled[S]
	index    int
	children []*compiled[S]
	byName   map[string]int
	// names holds the children's names end to end; each child's
	// Info.Name is a substring of it, and so are the names of the frames
	// Apply creates. nameAt maps an offset in names to child index+1, so a
	// frame created by this flow finds its node without hashing its name.
	names  string
	nameAt []int32
	// plans[i] is child i's plan when Apply runs it straight (fn is nil
	// otherwise), side by side so that a sequence's steps are in
	// consecutive memory.
	plans []stepPlan[S]
	// poller is the node as a PollNode, when Apply may poll it without
	// walking the tree (see applyPoll), and pollFn its predicate.
	poller PollNode[S]
	pollFn func(context.Context, *S) (bool, error)
	// fresh is the frame of this node just entered, as a one-element
	// children slice that states share until they write to it. The fresh
	// frames of a flow are one array in flow order (see freshFrames).
	fresh []Frame
	// call and first are what CallFrom reports of the node and of its
	// usual call (see callInfo).
	call  callMeta
	first callInfo
	// meta is what Annotate attached to the node.
	meta Meta
}

// New compiles a flow from its top-level nodes, which run in sequence.
// It validates the whole tree and returns every problem at once, joined with
// errors.Join; each is a *DefinitionError matching ErrInvalidFlow. New never
// panics.
func New[S any](version string, nodes ...Node[S]) (*Flow[S], error) {
	return NewWithOptions(version, nil, nodes...)
}

// NewWithOptions is New with options; opts may be nil.
func NewWithOptions[S any](version string, opts *Options, nodes ...Node[S]) (*Flow[S], error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	f := &Flow[S]{version: version, opts: o.withDefaults(), byPath: map[string]*compiled[S]{}}
	var problems []error
	if strings.TrimSpace(version) == "" {
		problems = append(problems, &DefinitionError{Reason: "empty version"})
	}
	if len(nodes) == 0 {
		problems = append(problems, &DefinitionError{Reason: "a flow needs at least one node"})
	}
	f.top = &rootNode[S]{nodes: nodes}
	f.root = f.compile(f.top, nil, 0, &problems)
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	f.freshFrames()
	f.planSteps()
	f.pool.New = func() any {
		return &exec[S]{flow: f, frameBlocks: blocks.Blocks[Frame]{Size: frameBlock, Max: frameBlock / 2}}
	}
	var zero S
	if _, ok := any(&zero).(interface{ Clone() S }); ok {
		f.clone = func(s *S) S { return any(s).(interface{ Clone() S }).Clone() }
	}
	return f, nil
}

// Must is New that panics on error, for flows defined in package variables.
func Must[S any](f *Flow[S], err error) *Flow[S] {
	if err != nil {
		panic(err)
	}
	return f
}

func (f *Flow[S]) compile(n Node[S], parent *compiled[S], index int, problems *[]error) *compiled[S] {
	n, meta := unannotate(n)
	c := &compiled[S]{node: n, parent: parent, index: index, meta: meta}
	if n == nil {
		path := "?"
		if parent != nil {
			path = joinPath(parent.path, fmt.Sprintf("#%d", index))
		}
		*problems = append(*problems, &DefinitionError{Path: path, Reason: "nil node"})
		return c
	}
	c.info = n.Info()
	if parent != nil {
		c.path = joinPath(parent.path, c.info.Name)
		c.depth = parent.depth + 1
		c.frames = parent.frames + 1
		if parent.info.Instances {
			c.frames++
		}
		if c.frames > MaxDepth && parent.frames <= MaxDepth {
			*problems = append(*problems, &DefinitionError{Path: c.path, Reason: fmt.Sprintf("nested too deep: its state frame would sit %d levels below the root, and states hold at most MaxDepth (%d)", c.frames, MaxDepth)})
		}
		switch {
		case c.info.Name == "":
			c.path = joinPath(parent.path, fmt.Sprintf("#%d", index))
			*problems = append(*problems, &DefinitionError{Path: c.path, Reason: fmt.Sprintf("%s node has an empty name", c.info.Kind)})
		case strings.Contains(c.info.Name, "/"):
			*problems = append(*problems, &DefinitionError{Path: c.path, Reason: "name contains '/'"})
		}
		if prev, dup := f.byPath[c.path]; dup && prev != c {
			*problems = append(*problems, &DefinitionError{Path: c.path, Reason: "duplicate name among siblings"})
		} else {
			f.byPath[c.path] = c
		}
		f.order = append(f.order, c)
	}
	c.call = callMeta{version: f.version, path: c.path, kind: c.info.Kind}
	c.first = callInfo{meta: &c.call, attempt: 1}
	for _, p := range n.Check() {
		*problems = append(*problems, &DefinitionError{Path: c.path, Reason: p})
	}
	kids := n.Children()
	c.children = make([]*compiled[S], len(kids))
	if len(kids) > smallFanout {
		c.byName = make(map[string]int, len(kids))
	}
	for i, k := range kids {
		cc := f.compile(k, c, i, problems)
		c.children[i] = cc
		if c.byName != nil {
			c.byName[cc.info.Name] = i
		}
	}
	c.indexNames()
	return c
}

// indexNames lays the children's names out in c.names (see there).
func (c *compiled[S]) indexNames() {
	var b strings.Builder
	for _, k := range c.children {
		b.WriteString(k.info.Name)
	}
	c.names = b.String()
	c.nameAt = make([]int32, len(c.names))
	c.plans = make([]stepPlan[S], len(c.children))
	off := 0
	for i, k := range c.children {
		n := len(k.info.Name)
		if n == 0 {
			continue
		}
		k.info.Name = c.names[off : off+n]
		c.nameAt[off] = int32(i) + 1
		off += n
	}
}

// freshFrames makes every node's fresh frame, all in one array in flow
// order, so that the steps of a sequence are next to each other. (An
// array per parent would start each long sequence on a page boundary,
// putting the frames of Parallel branches at the same step a multiple of
// the page size apart, where they compete for the same cache sets.)
func (f *Flow[S]) freshFrames() {
	all := make([]Frame, len(f.order))
	for i, c := range f.order {
		all[i].Name = c.info.Name
		c.fresh = all[i : i+1 : i+1]
	}
}

// smallFanout is the child count up to which a linear scan beats a map.
const smallFanout = 8

// childIndex finds a child by name.
func (c *compiled[S]) childIndex(name string) (int, bool) {
	// A name this flow created points into c.names: no need to hash it,
	// nor to compare its bytes, since a child's name starts at the same
	// address and ends where the next child's starts (or names ends).
	// Any other string gives an offset out of range, or no child starting
	// or ending there. (Strings that point into names are the children's
	// names and their prefixes: nothing longer can be made from them.)
	off := uintptr(unsafe.Pointer(unsafe.StringData(name))) - uintptr(unsafe.Pointer(unsafe.StringData(c.names)))
	if off < uintptr(len(c.nameAt)) {
		if i := c.nameAt[off] - 1; i >= 0 {
			end := off + uintptr(len(name))
			if end == uintptr(len(c.nameAt)) || end < uintptr(len(c.nameAt)) && c.nameAt[end] == i+2 {
				return int(i), true
			}
		}
	}
	if c.byName != nil {
		i, ok := c.byName[name]
		return i, ok
	}
	for i, k := range c.children {
		if k.info.Name == name {
			return i, true
		}
	}
	return 0, false
}

// Version returns the flow's version name.
func (f *Flow[S]) Version() string { return f.version }

// Options returns the flow's options with defaults filled in.
func (f *Flow[S]) Options() Options { return f.opts }

// Start returns the initial state of a new process with the given data.
// The first node is already entered, so Positions names it.
func (f *Flow[S]) Start(data S) State[S] {
	st := State[S]{Version: f.version, Status: Running, Data: data}
	if len(f.root.children) > 0 {
		st.Root.Children = []Frame{{Name: f.root.children[0].info.Name}}
	}
	return st
}

// rootNode is the implicit sequence around a flow's top-level nodes.
type rootNode[S any] struct{ nodes []Node[S] }

func (r *rootNode[S]) Info() Info          { return Info{Kind: "flow"} }
func (r *rootNode[S]) Children() []Node[S] { return r.nodes }
func (r *rootNode[S]) Check() []string     { return nil }
func (r *rootNode[S]) Advance(c *Cursor[S]) Result {
	if c.f.Branch != "" {
		// Canceled or exited: unwind whatever is still active.
		return c.Unwind()
	}
	return c.Sequence(0, c.NumChildren())
}
