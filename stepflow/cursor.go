package stepflow

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// This file holds Cursor, the API through which nodes read and change
// their frames, run their children and call user code.

// Cursor is a node's view of the process during Advance: its own frame
// (writable: it is already a private copy), the data, the clock, and the
// means to advance its children and to call user code.
type Cursor[S any] struct {
	x *exec[S]
	n *compiled[S]
	f *Frame
	// Frames are copied on write: f may still point into a children slice
	// shared with the input state (or with the flow's fresh frames) until
	// the node writes to it. parent and idx locate f for that copy.
	parent *Cursor[S]
	// sc is shared with the parent until this node changes it (scopeW);
	// nil is the empty scope.
	sc       *scope
	idx      int32
	owned    bool // f.Children is private to the new state
	inInst   bool // f is an instance frame of n (see Instance)
	fOwned   bool // f is private to the new state
	ownScope bool // sc is this cursor's own
	// forkBudget is the budget a fork was made with (Fork).
	forkBudget int32
}

// scope is what a node passes down to the calls made below it: the retry
// attempt, loop iterations, the current ForEach item, the error a handler
// handles. Children inherit their parent's scope.
type scope struct {
	attempt uint32
	iters   []uint32
	item    []byte
	caught  *Failure
	insts   []instSeg
}

// scopeW returns this cursor's scope for writing, copying the one it
// shares with its parent first.
func (c *Cursor[S]) scopeW() *scope {
	if !c.ownScope {
		s := c.x.newScope()
		if c.sc != nil {
			*s = *c.sc
		}
		c.sc, c.ownScope = s, true
	}
	return c.sc
}

// newScope returns a zero scope that lives until the end of the Apply.
func (x *exec[S]) newScope() *scope {
	if x.nscopes < len(x.scopes) {
		x.nscopes++
		return &x.scopes[x.nscopes-1]
	}
	return new(scope)
}

// instSeg notes that below the node at path at, frames sit in the
// instance frame name: failure paths include it ("each/[3]/step").
type instSeg struct{ at, name string }

// FullPath is the node's path with ForEach instance segments included,
// as failures report it.
func (c *Cursor[S]) FullPath() string {
	p := c.n.path
	if c.sc == nil {
		return p
	}
	insts := c.sc.insts
	for i := len(insts) - 1; i >= 0; i-- {
		s := insts[i]
		if len(p) > len(s.at) && p[:len(s.at)] == s.at && p[len(s.at)] == '/' {
			p = s.at + "/" + s.name + p[len(s.at):]
		}
	}
	return p
}

// Frame returns the node's frame for reading and writing. The first call
// copies it (and the slices leading to it) into the new state, so writes
// never reach the input state.
func (c *Cursor[S]) Frame() *Frame {
	c.mutable()
	return c.f
}

// Peek returns the node's frame for reading only: it may be shared with the
// input state and must not be modified. It costs no copy.
func (c *Cursor[S]) Peek() *Frame { return c.f }

// mutable makes c.f private to the new state.
func (c *Cursor[S]) mutable() {
	if c.fOwned {
		return
	}
	c.parent.own()
	c.f = &c.parent.f.Children[c.idx]
	c.fOwned = true
}

// Path returns the node's full path.
func (c *Cursor[S]) Path() string { return c.n.path }

// Context returns the context of this Apply.
func (c *Cursor[S]) Context() context.Context { return c.x.parent }

// Now returns the time of this Apply, read once from the context's clock.
func (c *Cursor[S]) Now() time.Time { return c.x.now() }

// Data returns the process data being built for the next state.
func (c *Cursor[S]) Data() *S { return &c.x.data }

// Signals returns the pending signals of the state being built.
func (c *Cursor[S]) Signals() []Signal { return c.x.signals }

// ConsumeSignal removes pending signal i from the new state.
func (c *Cursor[S]) ConsumeSignal(i int) {
	old := c.x.signals
	s := make([]Signal, 0, len(old)-1)
	s = append(append(s, old[:i]...), old[i+1:]...)
	c.x.signals = s
}

// NumChildren returns the number of child nodes.
func (c *Cursor[S]) NumChildren() int { return len(c.n.children) }

// Aborted reports whether this Apply has been abandoned (invalid state or a
// canceled context). A node that sees it must return at once; the result is
// ignored and Apply returns its input unchanged.
func (c *Cursor[S]) Aborted() bool { return c.x.abort != nil }

// Invalid abandons the Apply with a *StateError at this node.
func (c *Cursor[S]) Invalid(format string, args ...any) Result {
	if c.x.abort == nil {
		c.x.abort = &StateError{Path: c.n.path, Reason: fmt.Sprintf(format, args...)}
	}
	return Continue()
}

// CanRun reports whether this Apply may still call user code.
func (c *Cursor[S]) CanRun() bool { return c.x.budget > 0 && c.x.abort == nil }

// Run calls fn, the user code of this node. It consumes the Apply's budget,
// so a node calls it only when CanRun is true. It runs the interceptors,
// recovers a panic into a *PanicError, and returns fn's error. If the
// context is done before fn is called, the Apply is abandoned (see Aborted)
// and Run returns the context's error.
func (c *Cursor[S]) Run(fn func(context.Context, *S) error) error {
	x := c.x
	if x.replayed == c.n && x.budget > 0 {
		// applyStep made this call already; this is its outcome.
		x.budget--
		x.ctxChecked, x.replayed = false, nil
		x.attempt = c.Attempt()
		x.callStart, x.callEnd, x.callNode = x.replayStart, x.replayEnd, c.n
		x.condOK = x.replayOK
		return x.replayErr
	}
	cc, err := c.begin()
	if err != nil {
		return err
	}
	err = x.call(cc, fn, c.n.path)
	if x.flow.opts.Record > 0 {
		x.callEnd = x.clockNow()
	}
	if err != nil && c.sc != nil && len(c.sc.insts) > 0 {
		// A panic is reported at the node's full path, ForEach
		// instances included, as its failure is.
		var pe *PanicError
		if errors.As(err, &pe) && pe.Path == c.n.path {
			pe.Path = c.FullPath()
		}
	}
	return err
}

// RunCond is Run for a predicate.
func (c *Cursor[S]) RunCond(fn func(context.Context, *S) (bool, error)) (bool, error) {
	x := c.x
	if x.condRun == nil {
		x.condRun = x.runCond
	}
	x.cond, x.condOK = fn, false
	err := c.Run(x.condRun)
	ok := x.condOK
	x.cond = nil
	return ok, err
}

// Attempt returns the attempt number of this node's calls: 1, or the
// attempt of the innermost enclosing Retry.
func (c *Cursor[S]) Attempt() uint32 {
	if c.sc == nil {
		return 1
	}
	return max(c.sc.attempt, 1)
}

// SetAttempt makes the calls below this node, for the rest of this Apply,
// report attempt n. Retry nodes use it.
func (c *Cursor[S]) SetAttempt(n uint32) { c.scopeW().attempt = n }

// AddIteration makes the calls below this node report one more enclosing
// loop iteration, n. Loop nodes use it.
func (c *Cursor[S]) AddIteration(n uint32) {
	s := c.scopeW()
	s.iters = append(s.iters[:len(s.iters):len(s.iters)], n)
}

// SetItem makes the calls below this node see item (encoded) as the
// current ForEach item.
func (c *Cursor[S]) SetItem(item []byte) { c.scopeW().item = item }

// SetCaught makes the calls below this node see f as the error being
// handled (CallFrom(ctx).Caught).
func (c *Cursor[S]) SetCaught(f *Failure) { c.scopeW().caught = f }

// ProcessID returns State.ID of the process.
func (c *Cursor[S]) ProcessID() string { return c.x.id }

// Record notes a completed call of this node in State.Record (when the flow
// keeps a record). outcome is "ok", "true", "false", a branch name, and so
// on; err, if not nil, is recorded as text.
func (c *Cursor[S]) Record(outcome string, err error) {
	if c.x.flow.opts.Record > 0 {
		c.record(outcome, err)
	}
}

// RecordFrom is Record for a node whose work took several rounds (a
// WaitFor polled over many Applies): the entry starts at start, the
// node's first round, rather than at its last call.
func (c *Cursor[S]) RecordFrom(start time.Time, outcome string, err error) {
	if c.x.flow.opts.Record > 0 {
		c.record(outcome, err)
		if r := &c.x.recs[len(c.x.recs)-1]; !start.IsZero() && start.Before(r.Start) {
			r.Start = start
		}
	}
}

func (c *Cursor[S]) record(outcome string, err error) {
	x := c.x
	r := Record{Seq: x.steps + 1, Path: c.n.path, Outcome: outcome, Attempt: c.Attempt(), Start: x.callStart, End: x.callEnd}
	if x.callNode != c.n {
		// A decision made without calling user code (a timeout, an error
		// ignored by Optional) happened at the time of this Apply.
		r.Start, r.End = x.now(), x.now()
	}
	if err != nil {
		r.Err = err.Error()
	}
	x.recs = append(x.recs, r)
}

// Failure converts err, as it would be recorded if it failed this node, to
// its persisted form. Nodes that hold on to an error across Applies (Catch,
// Finally, Retry) store it in their frame with it.
func (c *Cursor[S]) Failure(err error) *Failure {
	se := c.x.locate(c.FullPath(), err)
	f := c.x.failure(se)
	c.x.origins = append(c.x.origins, origin{*f, se})
	return f
}

// Raise turns a persisted failure back into an error to return with Fail.
// A failure made by Failure in the same Apply gives back the error it was
// made from, so errors.Is and errors.As reach the step's own error (a
// *PanicError, a sentinel) as they do when no node kept it in between; a
// failure restored from a saved state gives an error carrying its text
// and kind.
func (c *Cursor[S]) Raise(f *Failure) error {
	for i := len(c.x.origins) - 1; i >= 0; i-- {
		if o := &c.x.origins[i]; o.f.same(f) {
			return o.err
		}
	}
	return &StepError{Path: f.Path, Attempt: f.Attempt, Err: &failureError{*f}}
}

// Active returns the index of the single active child. ok is false when no
// child is active. A frame naming an unknown child, or several active
// children, abandons the Apply (check Aborted).
func (c *Cursor[S]) Active() (i int, ok bool) {
	switch len(c.f.Children) {
	case 0:
		return 0, false
	case 1:
		name := c.f.Children[0].Name
		i, ok = c.n.childIndex(name)
		if !ok {
			c.invalidChild(name)
		}
		return i, ok
	default:
		c.Invalid("expected one active child, found %d", len(c.f.Children))
		return 0, false
	}
}

func (c *Cursor[S]) invalidChild(name string) {
	if c.x.abort == nil {
		c.x.abort = &StateError{Path: joinPath(c.n.path, name), Reason: "no such node in flow " + c.x.flow.version}
	}
}

// own makes the frame's children slice private to the new state.
func (c *Cursor[S]) own() {
	if c.owned {
		return
	}
	c.mutable()
	s := c.x.frames(len(c.f.Children))
	copy(s, c.f.Children)
	c.f.Children = s
	c.owned = true
}

// Enter makes child i the only active child, with a fresh frame. The
// fresh frame is shared with the flow until someone writes to it.
func (c *Cursor[S]) Enter(i int) {
	c.mutable()
	c.f.Children = c.n.children[i].fresh
	c.owned = false
}

// EnterAll makes the given children active, with fresh frames, in the
// order given (which must be flow order).
func (c *Cursor[S]) EnterAll(idx []int) {
	c.mutable()
	s := c.x.frames(len(idx))
	for j, i := range idx {
		s[j] = Frame{Name: c.n.children[i].info.Name}
	}
	c.f.Children = s
	c.owned = true
}

// EnterMore makes the given children active too, with fresh frames,
// keeping the frames of the children already active; the frames stay in
// flow order. Nodes that start children one by one as they become ready
// (combinators.Graph) use it. idx must be in flow order and name children
// that are not active.
func (c *Cursor[S]) EnterMore(idx []int) {
	if len(idx) == 0 {
		return
	}
	c.mutable()
	old := c.f.Children
	s := c.x.frames(len(old) + len(idx))
	k, j := 0, 0
	for n := range s {
		take := j >= len(idx)
		if !take && k < len(old) {
			i, ok := c.n.childIndex(old[k].Name)
			take = !ok || i < idx[j]
		}
		if take {
			s[n] = old[k]
			k++
		} else {
			s[n] = Frame{Name: c.n.children[idx[j]].info.Name}
			j++
		}
	}
	c.f.Children = s
	c.owned = true
}

// ClearChildren leaves no child active.
func (c *Cursor[S]) ClearChildren() {
	if len(c.f.Children) == 0 {
		return
	}
	c.mutable()
	c.f.Children, c.owned = nil, false
}

// AdvanceChild advances the active child i and returns its result. A
// failure leaving the child names the child's path.
func (c *Cursor[S]) AdvanceChild(i int) Result {
	j := c.frameOf(i)
	if j < 0 {
		return c.Invalid("child %q is not active", c.n.children[i].info.Name)
	}
	return c.advanceAt(i, j)
}

// NumActive returns the number of active child frames.
func (c *Cursor[S]) NumActive() int { return len(c.f.Children) }

// AdvanceActive advances the child whose frame is the j-th active frame,
// returning its result and the child's index. Nodes with many active
// children (Parallel) use it to avoid looking frames up by name.
func (c *Cursor[S]) AdvanceActive(j int) (Result, int) {
	i, ok := c.n.childIndex(c.f.Children[j].Name)
	if !ok {
		c.invalidChild(c.f.Children[j].Name)
		return Continue(), -1
	}
	return c.advanceAt(i, j), i
}

// RemoveActive drops the j-th active frame.
func (c *Cursor[S]) RemoveActive(j int) { c.removeFrame(j) }

// frameOf returns the index in f.Children of child i's frame, or -1.
func (c *Cursor[S]) frameOf(i int) int {
	name := c.n.children[i].info.Name
	for j := range c.f.Children {
		if c.f.Children[j].Name == name {
			return j
		}
	}
	return -1
}

// child prepares the cursor of child node i over frame j.
func (c *Cursor[S]) child(i, j int) *Cursor[S] {
	k := c.n.children[i]
	cc := c.x.cursor(k.depth)
	*cc = Cursor[S]{x: c.x, n: k, f: &c.f.Children[j], fOwned: c.owned, parent: c, idx: int32(j), sc: c.sc}
	return cc
}

// advanceAt advances child node i over frame j.
func (c *Cursor[S]) advanceAt(i, j int) Result {
	cc := c.child(i, j)
	r := cc.n.node.Advance(cc)
	if r.Outcome == OutcomeFail {
		r.Err = c.x.locate(cc.FullPath(), r.Err)
	}
	return r
}

// unwindAt unwinds child node i over frame j.
func (c *Cursor[S]) unwindAt(i, j int) Result {
	cc := c.child(i, j)
	var r Result
	if u, ok := cc.n.node.(Unwinder[S]); ok {
		r = u.Unwind(cc)
	} else {
		r = cc.Unwind()
	}
	if r.Outcome == OutcomeFail {
		r.Err = c.x.locate(cc.FullPath(), r.Err)
	}
	return r
}

// Unwinder is implemented by nodes that must act when the process abandons
// them: a Finally runs its cleanup. Nodes without it are unwound by
// Cursor.Unwind, which unwinds their active children.
type Unwinder[S any] interface {
	// Unwind is called instead of Advance while the node is being
	// abandoned (canceled, timed out, or a sibling branch failed). It
	// returns Complete once nothing remains to be done.
	Unwind(c *Cursor[S]) Result
}

// Unwind abandons everything active below this node: each active child is
// unwound (its Finally cleanups run; everything else stops at once) and
// its frame dropped when done. It returns Complete when no child remains,
// otherwise the combined result of the children still cleaning up.
func (c *Cursor[S]) Unwind() Result {
	if c.n.info.Instances && !c.inInst {
		return c.unwindInstances()
	}
	res := Complete()
	for j := 0; j < len(c.f.Children); {
		i, ok := c.n.childIndex(c.f.Children[j].Name)
		if !ok {
			c.invalidChild(c.f.Children[j].Name)
			return Continue()
		}
		r := c.unwindAt(i, j)
		if c.Aborted() {
			return Continue()
		}
		switch r.Outcome {
		case OutcomeDone:
			c.removeFrame(j)
			continue
		case OutcomeFail:
			// A cleanup failed while unwinding: the failure wins.
			return r
		}
		res = combine(res, r)
		j++
	}
	return res
}

// combine merges the results of children that run side by side: a failure
// wins, then Continue, then the earliest wake; Complete only if both are.
func combine(a, b Result) Result {
	switch {
	case a.Outcome == OutcomeFail:
		return a
	case b.Outcome == OutcomeFail:
		return b
	case a.Outcome == OutcomeDone:
		return b
	case b.Outcome == OutcomeDone:
		return a
	}
	return Earliest(a, b)
}

// Combine is the exported form of the rule used to merge the results of
// concurrently active children: a failure wins, then Continue, then the
// earliest wake time; Complete only when both completed.
func Combine(a, b Result) Result { return combine(a, b) }

func (c *Cursor[S]) removeFrame(j int) {
	c.mutable()
	s := c.x.frames(len(c.f.Children) - 1)
	copy(s, c.f.Children[:j])
	copy(s[j:], c.f.Children[j+1:])
	if len(s) == 0 {
		s = nil
	}
	c.f.Children, c.owned = s, true
}

// Instances returns the number of instance frames of a node whose Info has
// Instances set (ForEach): each instance runs the node's children once.
func (c *Cursor[S]) Instances() int { return len(c.f.Children) }

// Instance returns a cursor over instance frame j of this node. Through it
// the node's children are advanced as usual; the instance frame holds their
// frames.
func (c *Cursor[S]) Instance(j int) *Cursor[S] {
	ic := &Cursor[S]{x: c.x, n: c.n, f: &c.f.Children[j], inInst: true, fOwned: c.owned, parent: c, idx: int32(j), sc: c.sc}
	s := ic.scopeW()
	s.insts = append(s.insts[:len(s.insts):len(s.insts)], instSeg{c.n.path, c.f.Children[j].Name})
	return ic
}

// AddInstance appends a fresh instance frame named name and returns its index.
func (c *Cursor[S]) AddInstance(name string) int {
	c.mutable()
	s := c.x.frames(len(c.f.Children) + 1)
	copy(s, c.f.Children)
	s[len(c.f.Children)] = Frame{Name: name}
	c.f.Children, c.owned = s, true
	return len(s) - 1
}

// RemoveInstance drops instance frame j.
func (c *Cursor[S]) RemoveInstance(j int) { c.removeFrame(j) }

func (c *Cursor[S]) unwindInstances() Result {
	res := Complete()
	for j := 0; j < len(c.f.Children); {
		r := c.Instance(j).Unwind()
		if c.Aborted() {
			return Continue()
		}
		if r.Outcome == OutcomeDone {
			c.removeFrame(j)
			continue
		}
		if r.Outcome == OutcomeFail {
			return r
		}
		res = combine(res, r)
		j++
	}
	return res
}

// Budget returns how many user calls this Apply may still make.
func (c *Cursor[S]) Budget() int { return c.x.budget }

// SetBudget sets the number of user calls this Apply may still make.
// Parallel gives each branch its own budget of one.
func (c *Cursor[S]) SetBudget(n int) { c.x.budget = n }

// NoteError records err as the process's last error (State.Err) without
// failing anything: for nodes that handle an error and continue.
func (c *Cursor[S]) NoteError(err error) {
	c.x.err = c.Failure(err)
}

// Sequence runs children lo..hi-1 one after the other: the usual body of a
// Sequence, a Case branch, a Retry or a loop. It enters child lo when no
// child is active, and completes after child hi-1 completes, leaving no
// child active. After a step ran it still enters the next child (so the
// state names the next position) but runs nothing more.
func (c *Cursor[S]) Sequence(lo, hi int) Result {
	if lo >= hi {
		return Complete()
	}
	// The active child, if any, is the only frame: index 0.
	var i int
	switch len(c.f.Children) {
	case 0:
		c.Enter(lo)
		i = lo
	case 1:
		name := c.f.Children[0].Name
		var ok bool
		if i, ok = c.n.childIndex(name); !ok {
			c.invalidChild(name)
			return Continue()
		}
		if i < lo || i >= hi {
			return c.Invalid("child %q is not in the active branch", name)
		}
	default:
		return c.Invalid("expected one active child, found %d", len(c.f.Children))
	}
	for {
		r := c.advanceAt(i, 0)
		if r.Outcome != OutcomeDone || c.x.abort != nil {
			return r
		}
		i++
		if i >= hi {
			c.ClearChildren()
			return Complete()
		}
		c.Enter(i)
		if c.x.budget <= 0 && c.n.children[i].info.Inert {
			return Continue()
		}
	}
}
