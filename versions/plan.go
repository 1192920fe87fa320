package versions

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// plan is a migration compiled against the structures of both versions.
type plan[S any] struct {
	m   *Migration[S]
	src *shape // structure of version From (kinds may be unknown)
	dst *shape
	// renames maps a From path to its To path.
	renames map[string]string
	// positional holds the Continue, Restart and Custom rules by From path.
	positional map[string]rule[S]
	clone      func(S) S
}

// compile checks the rules against the structures and indexes them. It
// returns every problem at once.
func compile[S any](m *Migration[S], src, dst *shape) (*plan[S], error) {
	p := &plan[S]{m: m, src: src, dst: dst, renames: map[string]string{}, positional: map[string]rule[S]{}}
	var problems []error
	bad := func(r rule[S], format string, args ...any) {
		problems = append(problems, &MigrationError{From: m.from, To: m.to, Rule: r.String(), Reason: fmt.Sprintf(format, args...)})
	}
	for _, r := range m.rules {
		if r.from == "" {
			bad(r, "empty path")
			continue
		}
		if src != nil && !src.has(r.from) {
			bad(r, "%q is not a node of %s", r.from, m.from)
		}
		switch r.kind {
		case ruleRename:
			if _, dup := p.renames[r.from]; dup {
				bad(r, "%q is renamed twice", r.from)
			}
			p.renames[r.from] = r.to
		default:
			if prev, dup := p.positional[r.from]; dup {
				bad(r, "%q already has the rule %s", r.from, prev)
			}
			if r.kind == ruleCustom && r.fn == nil {
				bad(r, "nil function")
			}
			p.positional[r.from] = r
		}
		if (r.kind == ruleRename || r.kind == ruleContinue) && !dst.has(r.to) {
			bad(r, "%q is not a node of %s", r.to, m.to)
		}
	}
	for _, r := range m.rules {
		switch r.kind {
		case ruleRestart:
			if !dst.has(p.mapPath(r.from)) {
				bad(r, "the group becomes %q, which is not a node of %s", p.mapPath(r.from), m.to)
			}
		case ruleDrop:
			par := parentOf(r.from)
			if k := src.kind(par); par == "" || k != "" && k != "parallel" {
				bad(r, "%q is not a branch of a Parallel", r.from)
			} else if t := p.mapPath(par); dst.kind(t) != "parallel" {
				bad(r, "its Parallel becomes %q, which is not a Parallel of %s", t, m.to)
			}
		}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	var zero S
	if _, ok := any(&zero).(interface{ Clone() S }); ok {
		p.clone = func(s S) S { return any(&s).(interface{ Clone() S }).Clone() }
	}
	return p, nil
}

// mapPath returns the path a From path has in version To after renames (the
// nearest renamed enclosing node decides), whether or not it exists there.
func (p *plan[S]) mapPath(path string) string {
	for q := path; q != ""; q = parentOf(q) {
		if to, ok := p.renames[q]; ok {
			return to + path[len(q):]
		}
	}
	return path
}

// positionRule returns the Continue, Restart or Custom rule for a From path:
// the one at the path or at its nearest enclosing node.
func (p *plan[S]) positionRule(path string) (rule[S], bool) {
	if len(p.positional) == 0 {
		return rule[S]{}, false
	}
	for q := path; q != ""; q = parentOf(q) {
		if r, ok := p.positional[q]; ok {
			return r, true
		}
	}
	return rule[S]{}, false
}

// check lists every node of version From that no rule and no path of
// version To can place: the static check.
func (p *plan[S]) check() error {
	var problems []error
	reported := map[string]bool{}
	for _, n := range p.src.nodes {
		if _, ok := p.positionRule(n.Path); ok {
			continue
		}
		t := p.mapPath(n.Path)
		if !p.dst.has(t) {
			problems = append(problems, &NoTargetError{From: p.m.from, To: p.m.to, Path: n.Path, Tried: t})
			continue
		}
		// Enclosing nodes of version To that start empty must not be ones
		// that start all their children again.
		kept := map[string]bool{}
		for q := parentOf(n.Path); q != ""; q = parentOf(q) {
			if u := p.mapPath(q); sameKind(p.src.kind(q), p.dst.kind(u)) {
				kept[u] = true
			}
		}
		for u := parentOf(t); u != ""; u = parentOf(u) {
			if !kept[u] && p.restartsChildren(u) && !reported[u] {
				reported[u] = true
				problems = append(problems, p.restartError(n.Path, u))
			}
		}
	}
	return errors.Join(problems...)
}

// restartsChildren reports whether the node at path u of version To,
// entered with an empty frame, would start all of its children again
// instead of resuming the active ones: a Parallel enters every branch, a
// ForEach starts its items.
func (p *plan[S]) restartsChildren(u string) bool {
	return p.dst.kind(u) == "parallel" || p.dst.instances(u)
}

func (p *plan[S]) restartError(pos, u string) error {
	return &MigrationError{From: p.m.from, To: p.m.to, Reason: fmt.Sprintf(
		"position %q would enter %q, a %s that is new or changed its kind, which would start all its children again; "+
			"add a Restart or Continue rule to say so", pos, u, p.dst.kind(u))}
}

// sameKind reports whether two kinds match, an unknown kind matching any.
func sameKind(a, b string) bool { return a == "" || b == "" || a == b }

// link is one frame on the way from the root to a position.
type link struct {
	// node is the path of the node the frame belongs to: the frame path
	// without ForEach instance segments ("[3]").
	node  string
	frame *stepflow.Frame
	// instance: the frame is a ForEach instance of node.
	instance bool
}

// placement is where one position of version From goes in version To.
type placement struct {
	target string
	// fresh: the target frame starts empty (Continue, Restart); otherwise
	// it keeps the position's memory.
	fresh bool
	// drop: the position's branch is gone; target is its Parallel, which
	// keeps its own memory.
	drop  bool
	chain []link
}

// migrate moves one state from version From to version To. It never
// changes st.
func (p *plan[S]) migrate(st stepflow.State[S]) (stepflow.State[S], error) {
	if st.Version != p.m.from {
		return st, &stepflow.VersionError{Want: p.m.from, Got: st.Version}
	}
	out := st
	out.Version = p.m.to
	if p.clone != nil {
		out.Data = p.clone(st.Data)
	}
	var places []placement
	var problems []error
	var chain []link
	var visit func(node string, f *stepflow.Frame)
	visit = func(node string, f *stepflow.Frame) {
		for i := range f.Children {
			c := &f.Children[i]
			l := link{node: joinPath(node, c.Name), frame: c}
			if isInstance(c.Name) {
				l = link{node: node, frame: c, instance: true}
			}
			chain = append(chain, l)
			if len(c.Children) > 0 {
				visit(l.node, c)
			} else if !l.instance {
				pl, err := p.place(l.node, c, &out.Data)
				if err != nil {
					problems = append(problems, err)
				} else {
					pl.chain = slices.Clone(chain)
					places = append(places, pl)
				}
			}
			chain = chain[:len(chain)-1]
		}
	}
	visit("", &st.Root)
	if st.Intent != "" {
		intent, err := p.intent(st.Intent, places)
		if err != nil {
			return st, err
		}
		out.Intent = intent
	}
	if len(problems) > 0 {
		return st, errors.Join(problems...)
	}
	b := builder[S]{p: p}
	for _, pl := range places {
		if err := b.insert(pl); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return st, errors.Join(problems...)
	}
	root := b.frame("", &b.root)
	// The root's own memory (a cancellation in progress) is the flow's.
	out.Root = ownFields(st.Root)
	out.Root.Children = root.Children
	// A waiting state keeps its wake time only if every frame kept its
	// memory: otherwise a fresh node may have work to do now, and the next
	// Apply recomputes the wake time (waits that are not due simply wait).
	if out.Status == stepflow.Waiting && (b.changed || b.used != countFrames(&st.Root)) {
		out.Status = stepflow.Running
		out.WakeAt = time.Time{}
	}
	if p.m.fix != nil {
		if err := p.m.fix(st, &out); err != nil {
			return st, fmt.Errorf("stepflow: %s -> %s: fix: %w", p.m.from, p.m.to, err)
		}
	}
	if err := p.dst.validate(&out.Root); err != nil {
		return st, err
	}
	return out, nil
}

// intent maps State.Intent, the path of an at-most-once step whose outcome
// is not known yet. The step's frame holds that fact, so the step must keep
// its frame: moving the process elsewhere could run the step's effect twice
// or lose track of it.
func (p *plan[S]) intent(path string, places []placement) (string, error) {
	for _, pl := range places {
		if pl.chain[len(pl.chain)-1].node != path {
			continue
		}
		if !pl.fresh && !pl.drop && sameKind(p.src.kind(path), p.dst.kind(pl.target)) {
			return pl.target, nil
		}
		return "", &MigrationError{From: p.m.from, To: p.m.to, Reason: fmt.Sprintf(
			"the at-most-once step %q has a recorded intent and its rule does not keep its frame; "+
				"let the process get past the step (or Resolve it) before migrating", path)}
	}
	return path, nil
}

// place resolves one position, given by its node path.
func (p *plan[S]) place(path string, f *stepflow.Frame, data *S) (placement, error) {
	r, ok := p.positionRule(path)
	if !ok {
		t := p.mapPath(path)
		if !p.dst.has(t) {
			return placement{}, &NoTargetError{From: p.m.from, To: p.m.to, Path: path, Tried: t}
		}
		return placement{target: t}, nil
	}
	switch r.kind {
	case ruleContinue:
		return placement{target: r.to, fresh: true}, nil
	case ruleRestart:
		return placement{target: p.mapPath(r.from), fresh: true}, nil
	case ruleDrop:
		// The position goes; its Parallel stays, with its memory.
		return placement{target: p.mapPath(parentOf(r.from)), drop: true}, nil
	}
	d := &Decision[S]{Path: path, Frame: f.Clone(), Data: data}
	if err := r.fn(d); err != nil {
		return placement{}, fmt.Errorf("stepflow: %s -> %s: %s at %q: %w", p.m.from, p.m.to, r, path, err)
	}
	if !d.set {
		return placement{}, &NoTargetError{From: p.m.from, To: p.m.to, Path: path, Tried: p.mapPath(path)}
	}
	if !p.dst.has(d.target) {
		return placement{}, &MigrationError{From: p.m.from, To: p.m.to, Rule: r.String(), Reason: fmt.Sprintf("decided %q for %q, which is not a node of %s", d.target, path, p.m.to)}
	}
	return placement{target: d.target, fresh: d.fresh}, nil
}

// builder assembles the frame tree of version To.
type builder[S any] struct {
	p    *plan[S]
	root bnode
	// changed: some frame of the result did not come from the old state.
	changed bool
	// used counts the old frames whose memory the result keeps.
	used int
}

type bnode struct {
	name  string
	frame stepflow.Frame // own fields only
	set   bool           // frame holds memory from the old state
	fresh bool           // restarted: no memory, no children
	reset bool           // changed kind: memory dropped
	kids  []*bnode
}

func (n *bnode) child(name string) *bnode {
	for _, k := range n.kids {
		if k.name == name {
			return k
		}
	}
	k := &bnode{name: name}
	n.kids = append(n.kids, k)
	return k
}

// take gives n the memory of an old frame, once.
func (b *builder[S]) take(n *bnode, f *stepflow.Frame) {
	if n.set {
		return
	}
	n.set = true
	b.used++
	n.frame = ownFields(*f)
}

// insert adds one placed position and the nodes enclosing it. Each node of
// the target path takes its memory from the old frame whose node maps to
// it; a ForEach keeps the instance the position was in.
func (b *builder[S]) insert(pl placement) error {
	p := b.p
	from := make(map[string]*stepflow.Frame, len(pl.chain))
	inst := map[string]*stepflow.Frame{}
	for _, l := range pl.chain {
		u := p.mapPath(l.node)
		if l.instance {
			if _, ok := inst[u]; !ok {
				inst[u] = l.frame
			}
		} else if _, ok := from[u]; !ok {
			from[u] = l.frame
		}
	}
	if !pl.fresh && !pl.drop {
		// The position itself always carries to its target, even when the
		// target came from a Custom rule rather than from the mapping.
		from[pl.target] = pl.chain[len(pl.chain)-1].frame
	}
	kinds := make(map[*stepflow.Frame]string, len(pl.chain))
	for _, l := range pl.chain {
		if !l.instance {
			kinds[l.frame] = p.src.kind(l.node)
		}
	}
	pos := pl.chain[len(pl.chain)-1].node
	n := &b.root
	var u string
	for _, name := range stepflow.SplitPath(pl.target) {
		if u != "" && p.restartsChildren(u) && (!n.set || n.reset) {
			return p.restartError(pos, u)
		}
		if p.dst.instances(u) {
			f, ok := inst[u]
			if !ok {
				// Kinds unknown: a node that became a ForEach.
				return p.restartError(pos, u)
			}
			n = n.child(f.Name)
			b.take(n, f)
		}
		u = joinPath(u, name)
		n = n.child(name)
		if u == pl.target && pl.fresh {
			n.fresh = true
			continue
		}
		f, ok := from[u]
		if !ok || n.set {
			continue
		}
		b.take(n, f)
		if sk, dk := kinds[f], p.dst.kind(u); sk != "" && dk != "" && sk != dk {
			// The node changed its kind: its memory means something else
			// now, so it starts empty (its active children still map).
			n.frame = stepflow.Frame{}
			n.reset = true
			b.changed = true
		}
	}
	return nil
}

// frame turns a built node at node path path into a frame, children in
// flow order (instances in their old order).
func (b *builder[S]) frame(path string, n *bnode) stepflow.Frame {
	if n.fresh {
		b.changed = true
		return stepflow.Frame{Name: n.name}
	}
	if !n.set && n != &b.root {
		b.changed = true
	}
	f := n.frame
	f.Name = n.name
	if len(n.kids) == 0 {
		return f
	}
	instances := n != &b.root && !isInstance(n.name) && b.p.dst.instances(path)
	if !instances {
		order := b.p.dst.children(path)
		slices.SortStableFunc(n.kids, func(x, y *bnode) int {
			return indexOr(order, x.name) - indexOr(order, y.name)
		})
	}
	f.Children = make([]stepflow.Frame, len(n.kids))
	for i, k := range n.kids {
		kp := path
		if !instances {
			kp = joinPath(path, k.name)
		}
		f.Children[i] = b.frame(kp, k)
	}
	return f
}

// ownFields is a frame without its children: the node's own memory.
func ownFields(f stepflow.Frame) stepflow.Frame {
	f.Children = nil
	if f.Err != nil {
		e := *f.Err
		f.Err = &e
	}
	f.Payload = slices.Clone(f.Payload)
	return f
}

// isInstance reports whether a frame name is a ForEach instance ("[3]").
func isInstance(name string) bool {
	return len(name) > 2 && name[0] == '[' && name[len(name)-1] == ']'
}

func indexOr(names []string, name string) int {
	if i := slices.Index(names, name); i >= 0 {
		return i
	}
	return len(names)
}

func countFrames(f *stepflow.Frame) int {
	n := 0
	f.Walk(func(string, *stepflow.Frame) { n++ })
	return n
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	var b strings.Builder
	b.Grow(len(prefix) + 1 + len(name))
	b.WriteString(prefix)
	b.WriteByte('/')
	b.WriteString(name)
	return b.String()
}
