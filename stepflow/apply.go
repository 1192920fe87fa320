package stepflow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/stepflow-io/go-stepflow/internal/blocks"
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
	e := envOf(ctx)
	// The clock is read once per Apply, here when the state waits, else
	// when a node or the record first asks (exec.now); now is zero until
	// then.
	var now time.Time
	if prev.Status == Waiting && !prev.WakeAt.IsZero() {
		if now = readClock(e.clock); now.Before(prev.WakeAt) {
			return prev, nil
		}
	}
	if prev.Intent == "" && prev.Root.Branch == "" && !f.noStraight {
		switch prev.Status {
		case Running:
			if p := f.stepAt(&prev.Root); p != nil {
				// prev is this call's own copy: the next state is made in it.
				err := f.applyStep(ctx, e, &prev, p)
				return prev, err
			}
		case Waiting:
			if c, depth := f.pollAt(&prev.Root); c != nil {
				if now.IsZero() {
					now = readClock(e.clock)
				}
				err := f.applyPoll(ctx, e, now, &prev, c, depth)
				return prev, err
			}
		}
	}
	var next State[S]
	x := f.getExec(&prev)
	x.nowT, x.nowSet = now, !now.IsZero()
	err := x.run(ctx, &prev, 1, &next)
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
func (f *Flow[S]) applyStep(ctx context.Context, e *env, st *State[S], p *stepPlan[S]) error {
	// getExec, by hand: the compiler does not inline it.
	x := f.pool.Get().(*exec[S])
	x.data = st.Data
	if f.clone != nil {
		x.data = f.clone(&x.data)
	}
	x.interceptors = e.interceptors
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
			s := x.frames(1)
			s[0] = fr.Children[0]
			fr.Children = s
			fr = &s[0]
		}
		fr.Children = p.enter
	}
	if rec {
		var r *Record
		st.Record, r = recordSlot(st.Record, f.opts.Record)
		r.Seq, r.Path, r.Outcome, r.Attempt, r.Start, r.End = st.Steps, p.path, "ok", 1, start, end
	}
	var zero S
	x.data, x.interceptors = zero, nil
	f.pool.Put(x)
	return nil
}

// pollAt returns the polling node at the position of a waiting state whose
// frames lead through Sequential nodes to it (see PollNode), and its
// depth, or nil.
func (f *Flow[S]) pollAt(root *Frame) (*compiled[S], int) {
	n, fr, depth := f.root, root, 0
	for len(fr.Children) == 1 {
		fr = &fr.Children[0]
		depth++
		i, ok := n.childIndex(fr.Name)
		if !ok {
			return nil, 0
		}
		k := n.children[i]
		switch {
		case k.poller != nil && len(fr.Children) == 0:
			return k, depth
		case !k.info.Sequential:
			return nil, 0
		}
		n = k
	}
	return nil, 0
}

// applyPoll is Apply for a waiting state positioned at the polling node c,
// depth frames down, below Sequential nodes only, making the next state in
// st, Apply's own copy of its input. When the poll is due and the
// predicate answers false, it copies the frames down to c's, in one block,
// and counts the poll there, giving the state that walking the tree would
// give. Any other answer is handed to the general path with the outcome of
// the call, and so is a frame that is not one for a plain poll (the
// general path then does whatever the node does), at the time read here.
func (f *Flow[S]) applyPoll(ctx context.Context, e *env, now time.Time, st *State[S], c *compiled[S], depth int) error {
	// The leaf's frame is in a children slice (depth >= 1): a pointer to
	// it given to the node does not make st escape.
	leaf := &st.Root.Children[0]
	for range depth - 1 {
		leaf = &leaf.Children[0]
	}
	next, ok := c.poller.PollNext(leaf, now)
	x := f.pool.Get().(*exec[S]) // getExec, by hand, as in applyStep
	x.data = st.Data
	if f.clone != nil {
		x.data = f.clone(&x.data)
	}
	if !ok {
		// Not a plain poll: the general path does what the node does, at
		// the time already read.
		x.nowT, x.nowSet = now, true
		prev := *st
		return x.run(ctx, &prev, 1, st)
	}
	x.interceptors = e.interceptors
	cc := x.newCallCtx()
	*cc = callCtx{parent: ctx, info: &c.first, id: st.ID, seq: st.Steps}
	rec := f.opts.Record > 0
	var start, end time.Time
	if rec {
		start = readClock(e.clock)
	}
	x.cond, x.condOK = c.pollFn, false
	if x.condRun == nil {
		x.condRun = x.runCond
	}
	err := x.call(cc, x.condRun, c.path)
	answer := x.condOK
	x.cond = nil
	if rec {
		end = readClock(e.clock)
	}
	if err != nil || answer {
		// The general path takes over with the call's outcome, at the
		// time already read.
		x.nowT, x.nowSet = now, true
		x.replayed, x.replayErr, x.replayStart, x.replayEnd, x.replayOK = c, err, start, end, answer
		prev := *st
		return x.run(ctx, &prev, 1, st)
	}
	block := x.frames(depth)
	fr := &st.Root
	for i := range block {
		block[i] = fr.Children[0]
		fr.Children = block[i : i+1 : i+1]
		fr = &block[i]
	}
	fr.Count++
	fr.Until = next
	st.Data = x.data
	st.Steps++
	st.WakeAt = next
	if rec {
		var r *Record
		st.Record, r = recordSlot(st.Record, f.opts.Record)
		r.Seq, r.Path, r.Outcome, r.Attempt, r.Start, r.End = st.Steps, c.path, "false", 1, start, end
	}
	var zero S
	x.data, x.interceptors = zero, nil
	f.pool.Put(x)
	return nil
}

// runCond is condRun: it calls the predicate in progress.
func (x *exec[S]) runCond(ctx context.Context, d *S) (err error) {
	x.condOK, err = x.cond(ctx, d)
	return err
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
		if pn, ok := c.node.(PollNode[S]); ok && pn.PollFunc() != nil && f.straightDown(c) {
			c.poller, c.pollFn = pn, pn.PollFunc()
		}
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
	return f.getExec(prev).run(ctx, prev, budget, next)
}

// getExec takes working memory from the pool for an Apply of st, holding
// the data its steps see. What outlives the Apply (new frames, record
// blocks, the context handed to user code) is allocated apart, so that a
// typical step allocates nothing of its own.
func (f *Flow[S]) getExec(st *State[S]) *exec[S] {
	x := f.pool.Get().(*exec[S])
	x.data = st.Data
	if f.clone != nil {
		x.data = f.clone(&x.data)
	}
	return x
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
	if out, ok := claimRecords(old, n); ok {
		copy(out[len(old):], add)
		return out[max(0, len(out)-limit):]
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

// recordSlot is appendBounded for one record that the caller writes in
// place: it returns old with room for one more record, keeping the newest
// limit, and the zeroed slot of the new one. Writing the record where it
// stays saves the two copies of building it apart.
func recordSlot(old []Record, limit int) ([]Record, *Record) {
	if out, ok := claimRecords(old, 1); ok {
		return out[max(0, len(out)-limit):], &out[len(old)]
	}
	out := appendBounded(old, zeroRecord[:], limit)
	return out, &out[len(out)-1]
}

// claimRecords returns old extended by n slots of its own block when the
// block has them free after the newest state's records, claiming them
// with a compare-and-swap of the block's sentinel (see appendBounded).
func claimRecords(old []Record, n int) ([]Record, bool) {
	c := cap(old)
	if c-len(old)-1 < n {
		return nil, false
	}
	full := old[:c]
	sent := &full[c-1]
	free := uint32(c - len(old) - 1)
	if unsafe.StringData(sent.Path) != unsafe.StringData(recMark) ||
		!atomic.CompareAndSwapUint32(&sent.Attempt, free, free-uint32(n)) {
		return nil, false
	}
	return full[:len(old)+n], true
}

// zeroRecord is the record recordSlot appends when it needs a new block.
var zeroRecord [1]Record

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
	// slab holds contexts not yet handed out (see newCallCtx), and
	// frameBlocks frames (see frames).
	slab        []callCtx
	frameBlocks blocks.Blocks[Frame]
	// chain is the call in progress through the interceptors.
	chain chain[S]
	// cond is the predicate RunCond is calling, condOK its answer, and
	// condRun the function Run calls for it: made once per exec, so that
	// a predicate's call allocates nothing.
	cond    func(context.Context, *S) (bool, error)
	condOK  bool
	condRun func(context.Context, *S) error
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
	replayOK               bool // the predicate's answer, for a replayed poll
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

// frameBlock is how many frames are allocated at once for the small frame
// slices of new states: as many as fill the kilobyte size class once the
// allocator's 8-byte header is counted (7).
const frameBlock = (1024 - 8) / int(unsafe.Sizeof(Frame{}))

// frames returns n zeroed frames owned by the new state. Slices of up to
// three frames are cut from a block the exec holds (package blocks): a
// poll or a step that enters a child then allocates a seventh of a block,
// not one of its own. A state keeps its block alive: at most six frames
// of other states.
func (x *exec[S]) frames(n int) []Frame { return x.frameBlocks.Take(n) }

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
