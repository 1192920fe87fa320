package stepflow

import (
	"context"
	"time"
)

// Node is one element of a flow definition. Package combinators provides the
// standard nodes; the interface is exported so that a node with new behaviour
// can be written outside this package with the same guarantees.
//
// A Node is immutable once built and is shared by every process of its flow,
// so its methods must not keep per-process data: all of that goes in the
// Frame that the Cursor exposes, which is persisted.
type Node[S any] interface {
	// Info names the node and describes it. Name is persisted in states and
	// must be unique among siblings, non-empty and free of "/".
	Info() Info
	// Children returns the child nodes in flow order. It is called once, by
	// New; the result must not change afterwards.
	Children() []Node[S]
	// Check reports problems of this node's own definition (a nil function,
	// a negative interval). New collects them for every node.
	Check() []string
	// Advance moves the node forward. It reads and writes its own frame
	// through c, runs at most what c's budget allows, and returns what
	// happened. It must be deterministic given the frame, the data, the
	// clock and the outcomes of the calls it makes.
	Advance(c *Cursor[S]) Result
}

// Info describes a node for introspection and fingerprints.
type Info struct {
	// Name within the parent; persisted.
	Name string
	// Kind is the combinator's name, e.g. "do", "sequence", "case", "wait".
	Kind string
	// Detail is a short human description of the node's policy, e.g.
	// "every 10s, timeout 30m". Changing it changes the flow fingerprint.
	Detail string
	// Leaf reports whether the node calls user code itself (a step or a
	// predicate) rather than only arranging children.
	Leaf bool
	// Instances reports that the frames under this node are instances
	// (one per ForEach item, named "[i]"), each holding frames of the
	// node's children, rather than frames of the children themselves.
	Instances bool
	// Inert promises that the node, just entered, does nothing in an Apply
	// that may no longer call user code: Advance would return Continue and
	// change nothing. A sequence that has run its step for this Apply then
	// stops after entering the node instead of advancing it. Do steps are
	// inert; a Sleep is not (entering it starts its timer).
	Inert bool
	// Sequential promises that Advance is exactly
	// c.Sequence(0, c.NumChildren()): the node runs its children one after
	// the other and keeps nothing else in its frame. Apply then reaches a
	// step below it without calling Advance (see StepNode).
	Sequential bool
}

// StepNode is implemented by leaf nodes that are one step and nothing
// else. Their Advance, given budget, calls StepFunc's function through
// Cursor.Run, then records "ok" and completes, or records the failure and
// fails with it; without budget it returns Continue and changes nothing.
//
// A step whose ancestors are all Sequential is run by Apply directly,
// without walking the tree down to it, and the next position is entered
// from a plan made when the flow was compiled; the result is the state
// Advance would have produced. StepFunc returns nil for a node that is
// more than its step (an at-most-once Do), and Apply then uses Advance.
type StepNode[S any] interface {
	Node[S]
	StepFunc() func(context.Context, *S) error
}

// PollNode is implemented by leaf nodes that poll a predicate until it
// holds (combinators.WaitFor). Their Advance, on a frame that is due,
// increments Frame.Count, calls PollFunc's predicate through
// Cursor.RunCond and, when it answers false, records "false" and waits
// until the time PollNext gives, which it also stores in Frame.Until.
//
// A waiting process whose frames lead through Sequential nodes to such a
// node is polled by Apply directly, without walking the tree: the result
// is the state Advance would have produced. Any other answer (true, an
// error, a panic) goes the general way with the predicate's outcome.
type PollNode[S any] interface {
	Node[S]
	PollFunc() func(context.Context, *S) (bool, error)
	// PollNext returns, for the node's frame f polled at now, when to poll
	// next if the predicate answers false; ok is false when Advance would
	// do anything else with the frame (not due yet, timed out, never
	// polled before), and Apply then takes the general path.
	PollNext(f *Frame, now time.Time) (next time.Time, ok bool)
}

// Outcome says how an Advance call ended.
type Outcome uint8

const (
	// OutcomeContinue: progress was made or the budget ran out; the node has
	// more to do and can do it now.
	OutcomeContinue Outcome = iota
	// OutcomeWait: the node can do nothing before Result.WakeAt.
	OutcomeWait
	// OutcomeDone: the node completed.
	OutcomeDone
	// OutcomeFail: the node failed with Result.Err.
	OutcomeFail
)

// Result is what Advance returns.
type Result struct {
	Outcome Outcome
	// WakeAt is set with OutcomeWait.
	WakeAt time.Time
	// Err is set with OutcomeFail. Once it leaves the node that produced it,
	// it is a *StepError naming that node's path.
	Err error
}

// Continue reports progress with more work runnable now.
func Continue() Result { return Result{} }

// WaitUntil reports that nothing can happen before t.
func WaitUntil(t time.Time) Result { return Result{Outcome: OutcomeWait, WakeAt: t} }

// Complete reports that the node is done.
func Complete() Result { return Result{Outcome: OutcomeDone} }

// Fail reports that the node failed with err.
func Fail(err error) Result { return Result{Outcome: OutcomeFail, Err: err} }

// Earliest combines the results of concurrently active children: any
// Continue wins, otherwise the earliest wake time. A wait with a zero
// WakeAt waits for a signal only and loses to any timed wait.
func Earliest(a, b Result) Result {
	switch {
	case a.Outcome == OutcomeContinue || b.Outcome == OutcomeContinue:
		return Continue()
	case a.Outcome != OutcomeWait:
		return b
	case b.Outcome != OutcomeWait:
		return a
	case a.WakeAt.IsZero():
		return b
	case !b.WakeAt.IsZero() && b.WakeAt.Before(a.WakeAt):
		return b
	}
	return a
}

// Call describes one invocation of user code: a step, a predicate, or any
// other function a node calls. Interceptors receive it, and steps can read it
// with CallFrom.
type Call struct {
	// Version of the flow.
	Version string
	// ID of the process (State.ID), empty if the caller set none.
	ID string
	// Path of the node making the call.
	Path string
	// Kind of the node ("do", "wait", "case", ...).
	Kind string
	// Attempt is 1 for the first try and grows with retries.
	Attempt uint32
	// Iterations holds the iteration numbers of enclosing loops, outermost
	// first; nil outside loops.
	Iterations []uint32
	// Seq is State.Steps before this Apply.
	Seq uint64
	// Item is the current ForEach item, JSON-encoded; nil outside ForEach.
	// combinators.Item decodes it.
	Item []byte
	// Caught is the failure being handled, inside a Catch handler or a
	// Finally cleanup (nil when the body succeeded).
	Caught *Failure
}

// IdempotencyKey returns a key that is the same every time this call is
// re-executed (after a crash, the state is reloaded and the same call is
// made again) and different for every other call of the same process:
// another step, another attempt, another loop iteration.
func (c Call) IdempotencyKey() string { return c.key(true) }

// OperationKey is IdempotencyKey without the attempt: the same for every
// retry of this call. Use it when the external system should see all
// retries of one step as one operation (a reply lost after the operation
// succeeded is then answered by the system's record of the first attempt);
// use IdempotencyKey when each attempt is a new operation.
func (c Call) OperationKey() string { return c.key(false) }

// key is version|id|path, then #attempt when asked, then .iteration for
// each enclosing loop.
func (c Call) key(attempt bool) string {
	b := make([]byte, 0, 64)
	b = append(b, c.Version...)
	b = append(b, '|')
	b = append(b, c.ID...)
	b = append(b, '|')
	b = append(b, c.Path...)
	if attempt {
		b = append(b, '#')
		b = appendUint(b, uint64(c.Attempt))
	}
	for _, it := range c.Iterations {
		b = append(b, '.')
		b = appendUint(b, uint64(it))
	}
	return string(b)
}

func appendUint(b []byte, v uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

type callKey struct{}

// CallFrom returns the call being executed, when ctx is the context a step
// or predicate was given. Use Call.IdempotencyKey for requests to external
// systems that accept one.
func CallFrom(ctx context.Context) (Call, bool) {
	c, ok := ctx.Value(callKey{}).(*callCtx)
	if !ok || c == nil {
		return Call{}, false
	}
	return c.call(), true
}

// Interceptor wraps every call of user code. It must call next exactly once
// to run the call (or return an error without calling it, to inject a
// failure in tests) and return what next returned or a replacement. next
// is valid until the interceptor returns; calling it twice runs the call,
// and the interceptors inside this one, twice.
// Use it for logging, tracing, metrics and fault injection.
type Interceptor func(ctx context.Context, call Call, next func(context.Context) error) error

// WithInterceptor returns a context whose Apply calls are also wrapped by i,
// inside the flow's own interceptors.
func WithInterceptor(ctx context.Context, i Interceptor) context.Context {
	e := *envOf(ctx)
	all := make([]Interceptor, 0, len(e.interceptors)+1)
	e.interceptors = append(append(all, e.interceptors...), i)
	return context.WithValue(ctx, envKey, &e)
}
