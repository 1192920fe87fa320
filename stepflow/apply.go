package stepflow

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// Apply advances one process by one step and returns its next state.
//
// It runs at most one step or predicate (Parallel runs at most one per
// branch), never modifies prev, and is deterministic: the same flow, state,
// step outcomes and clock give the same result. The caller persists the
// returned state and calls Apply again when it is runnable (Status Running,
// or WakeAt reached).
//
// Apply returns:
//   - prev unchanged and nil for a terminal state, a NeedsAttention state,
//     or a Waiting state whose WakeAt has not come;
//   - prev unchanged and a *VersionError for a state of another version;
//   - prev unchanged and a *StateError for a state that names a path the
//     flow does not have, or is otherwise malformed;
//   - prev unchanged and ctx.Err() if ctx is done before a step runs;
//   - the Failed state and a *StepError when a failure reached the top of
//     the flow (errors.Is/As reach the step's own error through it);
//   - the next state and nil otherwise.
func (f *Flow[S]) Apply(ctx context.Context, prev State[S]) (State[S], error) {
	if err := f.check(&prev); err != nil {
		return prev, err
	}
	if prev.Status.Terminal() || prev.Status == NeedsAttention {
		return prev, nil
	}
	if err := ctx.Err(); err != nil {
		return prev, err
	}
	if prev.Status == Waiting && !prev.WakeAt.IsZero() && Now(ctx).Before(prev.WakeAt) {
		return prev, nil
	}
	if prev.Status == Running && prev.Intent == "" && prev.Root.Branch == "" && !f.noStraight {
		if p := f.stepAt(&prev.Root); p != nil {
			// prev is this call's own copy: the next state is made in it.
			err := f.applyStep(ctx, &prev, p)
			return prev, err
		}
	}
	var next State[S]
	err := f.apply(ctx, &prev, 1, &next)
	return next, err
}

// stepAt returns the step at the position of a state whose frames lead
// through Sequential nodes to a step with a plan (see StepNode), or nil.
// Any frame it does not understand sends the state down the general path,
// which reports it.
func (f *Flow[S]) stepAt(root *Frame) *stepPlan[S] {
	n, fr := f.root, root
	for len(fr.Children) == 1 {
		fr = &fr.Children[0]
		i, ok := n.childIndex(fr.Name)
		if !ok {
			return nil
		}
		if p := &n.plans[i]; p.fn != nil {
			return p
		}
		if n = n.children[i]; !n.info.Sequential {
			return nil // no step below has a plan (planSteps)
		}
	}
	return nil
}

// applyStep is Apply for a state positioned at the step of plan p, below
// Sequential nodes only, making the next state in st, Apply's own copy of
// its input. It runs the step and, when it succeeds, enters the next
// position from the plan, giving the state that walking the tree would
// give. A failure, or a next node that is not inert, is handed to the
// general path with the outcome of the call, which it uses instead of
// calling the step again.
func (f *Flow[S]) applyStep(ctx context.Context, st *State[S], p *stepPlan[S]) error {
	e := envOf(ctx)
	x := f.pool.Get().(*exec[S])
	x.interceptors = e.interceptors
	x.data = st.Data
	if f.clone != nil {
		x.data = f.clone(st.Data)
	}
	cc := x.newCallCtx()
	*cc = callCtx{parent: ctx, info: p.first, id: st.ID, seq: st.Steps}
	rec := f.opts.Record > 0
	var start, end time.Time
	if rec {
		start = readClock(e.clock)
	}
	err := x.call(cc, p.fn, p.path)
	if rec {
		end = readClock(e.clock)
	}
	if err != nil || p.general {
		x.replayed, x.replayErr, x.replayStart, x.replayEnd = p.node, err, start, end
		prev := *st
		return x.run(ctx, &prev, 1, st)
	}
	st.Data = x.data
	st.Steps++
	st.WakeAt = time.Time{}
	if p.done {
		st.Status, st.Root = Done, Frame{}
	} else {
		// Copy the frames down to the ancestor that moves on, as the
		// general path's copy on write would; the rest stays shared.
		fr := &st.Root
		for range p.level {
			s := make([]Frame, 1)
			s[0] = fr.Children[0]
			fr.Children = s
			fr = &s[0]
		}
		fr.Children = p.enter
	}
	if rec {
		x.recBuf[0] = Record{Seq: st.Steps, Path: p.path, Outcome: "ok", Attempt: 1, Start: start, End: end}
		st.Record = appendBounded(st.Record, x.recBuf[:1], f.opts.Record)
	}
	var zero S
	x.data, x.interceptors = zero, nil
	f.pool.Put(x)
	return nil
}

// stepPlan is what Apply needs to run a step whose ancestors are all
// Sequential without walking the tree (see applyStep).
//
// path and first repeat node's, so that a straight step reads its plan
// and not its node: a step deep in a long flow then touches one cache line
// fewer. node itself serves only the hand-over to the general path.
type stepPlan[S any] struct {
	fn    func(context.Context, *S) error
	node  *compiled[S]
	path  string    // node.path, for the record and a panic's error
	first *callInfo // &node.first, the step's usual call
	// level is the depth of the ancestor that enters its next child when
	// the step completes (0: the flow itself), and enter is that child's
	// fresh frame.
	level int
	enter []Frame
	// done: completing the step completes the flow.
	done bool
	// general: the child entered next is not inert, so the general path
	// completes the step.
	general bool
}

// planSteps gives a plan to every step that applyStep can run.
func (f *Flow[S]) planSteps() {
	for _, c := range f.order {
		sn, ok := c.node.(StepNode[S])
		if !ok || sn.StepFunc() == nil || !f.straightDown(c) {
			continue
		}
		p := &c.parent.plans[c.index]
		p.fn, p.node, p.path, p.first = sn.StepFunc(), c, c.path, &c.first
		for k := c; ; k = k.parent {
			if a := k.parent; k.index+1 < len(a.children) {
				sib := a.children[k.index+1]
				p.level, p.enter, p.general = a.depth, sib.fresh, !sib.info.Inert
				break
			}
			if k.parent == f.root {
				p.done = true
				break
			}
		}
	}
}

// straightDown reports whether every ancestor of c below the flow itself
// is Sequential.
func (f *Flow[S]) straightDown(c *compiled[S]) bool {
	for a := c.parent; a != f.root; a = a.parent {
		if !a.info.Sequential {
			return false
		}
	}
	return true
}

// apply advances prev with the given budget of user calls into next. Cancel
// uses a budget of zero to unwind what it can without running anything.
// States travel by pointer: a copy of one costs a good part of a step.
func (f *Flow[S]) apply(ctx context.Context, prev *State[S], budget int, next *State[S]) error {
	// The working memory comes from a pool; what outlives the Apply (new
	// frames, record blocks, the context handed to user code) is allocated
	// apart, so that a typical step allocates nothing of its own.
	x := f.pool.Get().(*exec[S])
	x.data = prev.Data
	if f.clone != nil {
		x.data = f.clone(prev.Data)
	}
	return x.run(ctx, prev, budget, next)
}

// run is apply once x holds the data the steps see, and gives x back to
// the pool.
func (x *exec[S]) run(ctx context.Context, prev *State[S], budget int, next *State[S]) error {
	f := x.flow
	x.parent, x.budget = ctx, budget
	x.ctxChecked = true // by Apply; Cancel's context is never done
	x.root, x.err, x.signals, x.intent = prev.Root, prev.Err, prev.Signals, prev.Intent
	x.id, x.steps = prev.ID, prev.Steps
	e := envOf(ctx)
	x.interceptors, x.clock = e.interceptors, e.clock
	x.recs = x.recBuf[:0]

	r := x.advanceRoot()
	if x.exit != "" && x.abort == nil && x.root.Branch == "" {
		// A node ended the process (Succeed): unwind the rest of the flow
		// now, running nothing, so enclosing cleanups are entered.
		x.root.Branch, x.budget = x.exit, 0
		r = x.advanceRoot()
	}
	var err error
	switch {
	case x.replayed != nil && x.abort == nil:
		// The tree walk did not reach the step applyStep ran, so its
		// outcome has nowhere to go: the state stays as it was, and the
		// step runs again at the next Apply, as after a crash.
		*next, err = *prev, &StateError{Path: x.replayed.path, Reason: "the step ran but the nodes above it did not advance it, breaking the promise of Info.Sequential"}
	case x.abort != nil:
		*next, err = *prev, x.abort
	default:
		err = x.finish(prev, r, next)
	}
	f.release(x)
	return err
}

func (x *exec[S]) advanceRoot() Result {
	root := &x.cursors[0]
	*root = Cursor[S]{x: x, n: x.flow.root, f: &x.root, fOwned: true}
	return x.flow.top.Advance(root)
}

// release returns working memory to the pool, dropping every reference to
// the process or the caller. (A panic in a node leaves it to the garbage
// collector instead.)
func (f *Flow[S]) release(x *exec[S]) {
	clear(x.scopes[:x.nscopes])
	x.applyState = applyState[S]{}
	f.pool.Put(x)
}

// check rejects states that do not belong to this flow.
func (f *Flow[S]) check(st *State[S]) error {
	if st.Version != f.version {
		return &VersionError{Want: f.version, Got: st.Version}
	}
	if !st.Status.Valid() {
		return &StateError{Reason: fmt.Sprintf("unknown status %d", uint8(st.Status))}
	}
	return nil
}

// finish turns the root's result into the next state.
func (x *exec[S]) finish(prev *State[S], r Result, next *State[S]) error {
	*next = *prev
	next.Root, next.Err, next.Signals, next.Intent = x.root, x.err, x.signals, x.intent
	next.Data = x.data
	next.Steps++
	next.WakeAt = time.Time{}
	var err error
	switch r.Outcome {
	case OutcomeContinue:
		next.Status = Running
	case OutcomeWait:
		next.Status = Waiting
		next.WakeAt = r.WakeAt
	case OutcomeDone:
		next.Status = Done
		if next.Root.Branch == rootCancel {
			next.Status, next.Err = Canceled, next.Root.Err
		}
		next.Root = Frame{}
		next.Intent = ""
	case OutcomeFail:
		se := x.locate("", r.Err)
		next.Status = Failed
		if next.Root.Branch == rootCancel {
			// A cleanup failed while canceling: the process still ends
			// canceled, with the cleanup's failure recorded.
			next.Status = Canceled
			next.Root = Frame{}
		}
		next.Err = x.failure(se)
		err = se
	}
	if x.attention != nil {
		next.Status = NeedsAttention
		next.WakeAt = time.Time{}
		next.Err = x.attention
	}
	if x.flow.opts.Record > 0 && len(x.recs) > 0 {
		next.Record = appendBounded(next.Record, x.recs, x.flow.opts.Record)
	}
	return err
}

// appendBounded returns old+add keeping only the newest limit records.
//
// Records live in blocks with room to grow: the block's last slot is a
// sentinel (marked by recMark) counting the free slots after the newest
// state's records. An Apply that extends the newest state claims the free
// slots with a compare-and-swap and writes there, so recording a step
// costs no copy of the record; an Apply from any other state (an older
// one, a concurrent one that lost the race, a decoded one) copies the
// newest limit records into a new block. Slots a state shows are never
// written again, so no state ever changes under its holder.
func appendBounded(old, add []Record, limit int) []Record {
	n := len(add)
	if c := cap(old); c-len(old)-1 >= n {
		full := old[:c]
		sent := &full[c-1]
		if unsafe.StringData(sent.Path) == unsafe.StringData(recMark) {
			free := uint32(c - len(old) - 1)
			if atomic.CompareAndSwapUint32(&sent.Attempt, free, free-uint32(n)) {
				out := full[:len(old)+n]
				copy(out[len(old):], add)
				return out[max(0, len(out)-limit):]
			}
		}
	}
	keep := min(len(old)+n, limit)
	// A new record starts with room for 16 steps, enough for a short
	// process never to grow it; then twice what it keeps, at most twice
	// the limit, so that copies are one per limit records at worst.
	size := min(max(16, 2*keep), 2*limit)
	block := make([]Record, size+1)
	block[size] = Record{Path: recMark, Attempt: uint32(size - keep)}
	k := copy(block[keep-min(n, keep):keep], add[n-min(n, keep):])
	copy(block[:keep-k], old[len(old)-(keep-k):])
	return block[:keep]
}

// recMark marks the sentinel slot of record blocks (see appendBounded).
// Its bytes are allocated at start-up, so no other string shares them.
var recMark = strings.Clone("stepflow record block")

// exec holds one Apply's working memory. It is pooled per flow.
type exec[S any] struct {
	flow *Flow[S]
	applyState[S]
	recBuf  [2]Record
	cursors [8]Cursor[S]
	scopes  [16]scope // see newScope
	// slab holds contexts not yet handed out (see newCallCtx).
	slab []callCtx
	// chain is the call in progress through the interceptors.
	chain chain[S]
}

// chain runs a call through the interceptors without allocating: the
// function each interceptor receives as next is made once per exec and
// depth, and finds the call in progress here.
type chain[S any] struct {
	fn   func(context.Context, *S) error
	desc Call
	// levels[i] runs interceptor i, or fn past the last one.
	levels []func(context.Context) error
	// run is levels[0] as protect takes it.
	run func(context.Context, *S) error
}

// slabSize is how many step contexts are allocated at once: as many as
// fill the kilobyte size class once the allocator's 8-byte header of a
// block this large is counted (21), so that no byte of it is wasted.
const slabSize = (1024 - 8) / int(unsafe.Sizeof(callCtx{}))

// newCallCtx returns a context for one call of user code. Contexts are
// allocated slabSize at a time and each is handed out once, never reused:
// a step may keep its context after the call (a goroutine waiting on
// ctx.Done()), so it must stay what it was. A kept context keeps its slab
// alive, a kilobyte at most.
func (x *exec[S]) newCallCtx() *callCtx {
	if len(x.slab) == 0 {
		x.slab = make([]callCtx, slabSize)
	}
	cc := &x.slab[0]
	x.slab = x.slab[1:]
	return cc
}

// applyState is what one Apply sets up and reads; it is zeroed, in one
// piece, when the exec goes back to the pool.
type applyState[S any] struct {
	parent context.Context
	data   S
	// What an Apply may change of the state, the rest being copied from
	// the input when the result is assembled (finish).
	root         Frame
	err          *Failure
	signals      []Signal
	intent       string
	id           string
	steps        uint64
	budget       int
	abort        error
	interceptors []Interceptor
	nowT         time.Time
	nowSet       bool
	ctxChecked   bool  // Apply checked parent.Err and no call was made since
	clock        Clock // the context's clock, nil for the real one
	callStart    time.Time
	callEnd      time.Time
	callNode     *compiled[S] // node of the last call, whose times callStart/End are
	// replayed is the step applyStep has run, whose outcome its Run call
	// returns instead of calling it again.
	replayed               *compiled[S]
	replayErr              error
	replayStart, replayEnd time.Time
	recs                   []Record
	nscopes                int
	attempt                uint32   // attempt of the last call, for locate
	exit                   string   // set by Cursor.Exit
	attention              *Failure // set by Cursor.NeedsAttention
	// origins are the failures made by Cursor.Failure in this Apply, with
	// the errors they were made from (see Cursor.Raise).
	origins []origin
}

// origin pairs a failure made in this Apply with the located error it was
// made from.
type origin struct {
	f   Failure
	err *StepError
}

// callCtx is the context user code receives: the caller's context plus
// what CallFrom reports. It holds only what differs between processes and
// points at the rest, to keep the slabs it comes in small (newCallCtx):
// 48 bytes.
type callCtx struct {
	parent context.Context
	info   *callInfo
	id     string
	seq    uint64
}

// callInfo is what a call's context knows besides its process. A first
// attempt outside loops, ForEach and handlers, the usual call, points at
// its node's, made when the flow is compiled (compiled.first); any other
// call gets its own.
type callInfo struct {
	meta    *callMeta
	attempt uint32
	iters   []uint32
	item    []byte
	caught  *Failure
}

// callMeta is what a call's context knows of its node.
type callMeta struct{ version, path, kind string }

func (c *callCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *callCtx) Done() <-chan struct{}       { return c.parent.Done() }
func (c *callCtx) Err() error                  { return c.parent.Err() }
func (c *callCtx) Value(k any) any {
	if _, ok := k.(callKey); ok {
		return c
	}
	return c.parent.Value(k)
}

// call returns the Call this context describes.
func (c *callCtx) call() Call {
	i := c.info
	return Call{Version: i.meta.version, ID: c.id, Path: i.meta.path, Kind: i.meta.kind, Attempt: i.attempt, Seq: c.seq,
		Iterations: i.iters, Item: i.item, Caught: i.caught}
}

// now is the Apply's notion of the current time, read once.
func (x *exec[S]) now() time.Time {
	if !x.nowSet {
		x.nowT, x.nowSet = x.clockNow(), true
	}
	return x.nowT
}

// clockNow reads the context's clock (see Now).
func (x *exec[S]) clockNow() time.Time { return readClock(x.clock) }

// cursor returns the cursor slot for a depth. Slots live in the exec so that
// handing a cursor to a Node (an interface call) does not allocate.
func (x *exec[S]) cursor(depth int) *Cursor[S] {
	if depth < len(x.cursors) {
		return &x.cursors[depth]
	}
	return new(Cursor[S])
}

// frames returns n zeroed frames owned by the new state.
func (x *exec[S]) frames(n int) []Frame { return make([]Frame, n) }

// locate makes sure a failure names the node it came from.
func (x *exec[S]) locate(path string, err error) *StepError {
	var se *StepError
	if errors.As(err, &se) {
		return se
	}
	return &StepError{Path: path, Attempt: x.attempt, Err: err}
}

// failure converts a located error to its persisted form.
func (x *exec[S]) failure(se *StepError) *Failure {
	return &Failure{Path: se.Path, Kind: kindOf(se.Err), Message: se.Err.Error(), Attempt: se.Attempt, At: x.now()}
}

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
	var ok bool
	err := c.Run(func(ctx context.Context, d *S) (e error) {
		ok, e = fn(ctx, d)
		return e
	})
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

// begin prepares a call of user code: it takes the budget and makes the
// context the code receives.
func (c *Cursor[S]) begin() (*callCtx, error) {
	x := c.x
	if x.budget <= 0 {
		c.Invalid("node %s called user code twice in one Apply", c.n.info.Kind)
		return nil, errNoBudget
	}
	if x.ctxChecked {
		// Apply has just checked the context; later calls of the same
		// Apply (Parallel branches) check it again.
		x.ctxChecked = false
	} else if err := x.parent.Err(); err != nil {
		x.abort = err
		return nil, err
	}
	x.budget--
	x.attempt = c.Attempt()
	cc := x.newCallCtx()
	*cc = callCtx{parent: x.parent, info: &c.n.first, id: x.id, seq: x.steps}
	if sc := c.sc; x.attempt != 1 || sc != nil && (sc.iters != nil || sc.item != nil || sc.caught != nil) {
		info := c.n.first
		info.attempt = x.attempt
		if sc != nil {
			info.iters, info.item, info.caught = sc.iters, sc.item, sc.caught
		}
		cc.info = &info
	}
	if x.flow.opts.Record > 0 {
		x.callStart, x.callNode = x.clockNow(), c.n
	}
	return cc, nil
}

var errNoBudget = errors.New("stepflow: no budget left in this Apply")

// call calls fn, the user code of the node at path, inside the
// interceptors, turning a panic into a *PanicError.
func (x *exec[S]) call(cc *callCtx, fn func(context.Context, *S) error, path string) error {
	n := len(x.flow.opts.Interceptors) + len(x.interceptors)
	if n == 0 {
		return protect(cc, fn, &x.data, path)
	}
	ch := &x.chain
	for len(ch.levels) <= n {
		i := len(ch.levels)
		ch.levels = append(ch.levels, func(ctx context.Context) error { return x.level(ctx, i) })
	}
	if ch.run == nil {
		ch.run = func(ctx context.Context, _ *S) error { return x.chain.levels[0](ctx) }
	}
	ch.fn, ch.desc = fn, cc.call()
	err := protect(cc, ch.run, &x.data, path)
	ch.fn, ch.desc = nil, Call{}
	return err
}

// level runs interceptor i of the call in progress, the flow's first, or
// the call itself past the last.
func (x *exec[S]) level(ctx context.Context, i int) error {
	ch := &x.chain
	own := x.flow.opts.Interceptors
	switch {
	case i < len(own):
		return own[i](ctx, ch.desc, ch.levels[i+1])
	case i-len(own) < len(x.interceptors):
		return x.interceptors[i-len(own)](ctx, ch.desc, ch.levels[i+1])
	case ch.fn == nil:
		return errNextTooLate
	}
	return ch.fn(ctx, &x.data)
}

var errNextTooLate = errors.New("stepflow: an interceptor called next after its call had returned")

// protect returns fn(ctx, d), or a *PanicError naming path if fn panics.
func protect[S any](ctx context.Context, fn func(context.Context, *S) error, d *S, path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Path: path, Value: r, Stack: debug.Stack()}
		}
	}()
	return fn(ctx, d)
}

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
