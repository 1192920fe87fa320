package stepflow

import (
	"context"
	"errors"
	"runtime/debug"
	"time"
	"unsafe"
)

// This file holds the contexts that user code receives (what CallFrom
// reports) and the path of a call through the interceptors.

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
