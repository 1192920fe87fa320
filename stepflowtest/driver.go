package stepflowtest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// DefaultMaxSteps is the default bound on the Apply calls of one Run.
const DefaultMaxSteps = 1000

// Errors returned by Run, besides the errors of Apply and of the codec.
var (
	// ErrMaxSteps: the flow did not end within RunOptions.MaxSteps applies.
	ErrMaxSteps = errors.New("stepflowtest: flow did not end within the step limit")
	// ErrMutatedInput: Apply changed the state it was given, which it must
	// never do.
	ErrMutatedInput = errors.New("stepflowtest: Apply modified its input state")
	// ErrIdle: the state waits for a signal only, and no event of
	// RunOptions.Events is left to deliver. The trace ends with that state.
	ErrIdle = errors.New("stepflowtest: waiting for a signal that nothing will send")
)

// Event is something from outside the flow that Run delivers while it
// runs: a signal (with Flow.Signal) or a cancellation (with Flow.Cancel).
type Event struct {
	// After is how long after the start of the run the event happens, on
	// the run's clock. When the state waits past that time, the clock stops
	// at it to deliver the event first.
	After time.Duration
	// Signal is the name of the signal to deliver, with Payload.
	Signal  string
	Payload []byte
	// Cancel, when true, cancels the process with Reason instead.
	Cancel bool
	Reason string
}

func (e Event) String() string {
	if e.Cancel {
		return fmt.Sprintf("cancel %q after %s", e.Reason, e.After)
	}
	return fmt.Sprintf("signal %s %q after %s", e.Signal, e.Payload, e.After)
}

// RunOptions configures Run. A nil *RunOptions means all defaults.
type RunOptions[S any] struct {
	// Script forces the outcomes of calls by path. Nil: every call runs the
	// real step or predicate.
	Script Script
	// Clock is the time the flow sees. Run moves it to WakeAt whenever the
	// state waits. Nil: a new clock at Epoch.
	Clock *Clock
	// Codec encodes each new state and decodes it again before the next
	// Apply, as a store does between two runs. Nil: codec.Msgpack.
	Codec codec.Codec[S]
	// MaxSteps bounds the number of Apply calls, crashed ones included.
	// Zero: DefaultMaxSteps.
	MaxSteps int
	// Tick is how far the clock moves after each Apply, so that steps get
	// distinct timestamps. Zero: the clock moves only to wake times.
	Tick time.Duration
	// Events are delivered in order of After (in the given order for equal
	// times), each before the first Apply at or after its time. Nil: none.
	Events []Event
}

func (o *RunOptions[S]) withDefaults() RunOptions[S] {
	var r RunOptions[S]
	if o != nil {
		r = *o
	}
	if r.Clock == nil {
		r.Clock = NewClock(time.Time{})
	}
	if r.Codec == nil {
		r.Codec = codec.Msgpack[S](nil)
	}
	if r.MaxSteps <= 0 {
		r.MaxSteps = DefaultMaxSteps
	}
	return r
}

// Call is one call of user code seen by the driver.
type Call struct {
	// Path and Kind of the node that made the call.
	Path string
	Kind string
	// Attempt as the engine numbered it (1 for the first try).
	Attempt uint32
	// Iterations of the enclosing loops, outermost first.
	Iterations []uint32
	// Outcome the script forced (Normal when the script did not mention it).
	Outcome Outcome
	// Err is the text of the error the call returned, or of its panic; empty
	// when it succeeded.
	Err string
}

// Transition is one Apply of a Run.
type Transition[S any] struct {
	// N counts the applies of the run from 1.
	N int
	// At is the clock's time when Apply was called.
	At time.Time
	// Given is the state Apply was given: the previous state, or, after a
	// crash, the one before it, with the Events delivered.
	Given stepflow.State[S]
	// Before are the positions of Given.
	Before []string
	// Events are the events delivered just before this Apply.
	Events []Event
	// Calls are the calls of user code Apply made, in order.
	Calls []Call
	// After is the state Apply returned, as decoded from Encoded. For a
	// crashed transition it is the state that was thrown away.
	After stepflow.State[S]
	// Encoded is After as the codec wrote it.
	Encoded []byte
	// Err is what Apply returned with it.
	Err error
	// Crashed reports that a Crash outcome discarded After: the next Apply
	// starts again from the state before this one.
	Crashed bool
}

// Trace is the record of one Run.
type Trace[S any] struct {
	// Version of the flow.
	Version string
	// Start is the state the run started from.
	Start stepflow.State[S]
	// Transitions lists every Apply in order.
	Transitions []Transition[S]
	// Final is the last state kept (not counting crashed transitions).
	Final stepflow.State[S]
	// Err is the error returned with Final: a *stepflow.StepError when the
	// flow failed, nil when it is done.
	Err error
}

// Run drives flow from start until the state is terminal or needs
// attention, the way a runner would: before each Apply it moves the clock to
// the state's WakeAt, and after each Apply it encodes the new state and
// decodes it again. It authorizes an at-most-once step whose intent was
// just saved (stepflow.WithIntentSaved), except after a crash, when the
// state counts as reloaded. The script decides the outcome of each call of
// user code, through an interceptor added to ctx.
//
// Run returns the trace so far and an error when the run could not go on:
// ErrMaxSteps, ErrIdle, ErrMutatedInput, a codec error, an event that
// could not be delivered, or an Apply error
// other than a *stepflow.StepError (such as a *stepflow.StateError). A flow
// that fails is not an error of Run: the trace ends with the Failed state and
// Trace.Err holds the *stepflow.StepError.
func Run[S any](ctx context.Context, flow *stepflow.Flow[S], start stepflow.State[S], opts *RunOptions[S]) (*Trace[S], error) {
	o := opts.withDefaults()
	in := newInjector(o.Script)
	ctx = stepflow.WithInterceptor(o.Clock.Context(ctx), in.intercept)

	tr := &Trace[S]{Version: flow.Version(), Start: start}
	// The start state goes through the codec too: a process is created,
	// saved, and loaded before its first Apply.
	stored, err := o.Codec.Encode(start)
	if err != nil {
		return tr, fmt.Errorf("stepflowtest: encode start state: %w", err)
	}
	st, err := o.Codec.Decode(stored)
	if err != nil {
		return tr, fmt.Errorf("stepflowtest: decode start state: %w", err)
	}
	tr.Start, tr.Final = st, st
	events := slices.Clone(o.Events)
	slices.SortStableFunc(events, func(a, b Event) int { return cmp.Compare(a.After, b.After) })
	began := o.Clock.Now()
	// saved is true while st is the state this run has just saved (as
	// opposed to one loaded after a crash): only then may an at-most-once
	// step whose intent st records run, as with a runner.
	saved := false
	for n := 1; !st.Terminal() && st.Status != stepflow.NeedsAttention; n++ {
		if n > o.MaxSteps {
			return tr, fmt.Errorf("%w (%d applies, at %v)", ErrMaxSteps, o.MaxSteps, st.Positions())
		}
		// Move the clock to the next thing that can happen: the state's
		// wake time, or an event due before it.
		if st.Status == stepflow.Waiting {
			wake := st.WakeAt
			if len(events) > 0 {
				if at := began.Add(events[0].After); wake.IsZero() || at.Before(wake) {
					wake = at
				}
			}
			if wake.IsZero() {
				return tr, fmt.Errorf("%w (at %v)", ErrIdle, st.Positions())
			}
			if wake.After(o.Clock.Now()) {
				o.Clock.Set(wake)
			}
		}
		t := Transition[S]{N: n, At: o.Clock.Now()}
		for len(events) > 0 && !began.Add(events[0].After).After(t.At) {
			e := events[0]
			events = events[1:]
			var err error
			if e.Cancel {
				st, err = flow.Cancel(st, e.Reason)
			} else {
				st, err = flow.Signal(st, e.Signal, e.Payload)
			}
			if err != nil {
				return tr, fmt.Errorf("stepflowtest: deliver %v: %w", e, err)
			}
			// The runner saves the state with the event before applying it.
			if stored, err = o.Codec.Encode(st); err != nil {
				return tr, fmt.Errorf("stepflowtest: encode state after %v: %w", e, err)
			}
			if st, err = o.Codec.Decode(stored); err != nil {
				return tr, fmt.Errorf("stepflowtest: decode state after %v: %w", e, err)
			}
			// An event does not authorize an intent that a crash left
			// unauthorized: only the Apply that recorded it does.
			t.Events = append(t.Events, e)
			tr.Final = st
		}
		// A cancellation without cleanups may have ended the process: the
		// Apply below then returns it unchanged, and the run ends.
		t.Given, t.Before = st, st.Positions()
		actx := ctx
		if saved && st.Intent != "" {
			actx = stepflow.WithIntentSaved(ctx, st)
		}
		next, applyErr := flow.Apply(actx, st)
		t.Calls, t.Crashed = in.take()
		t.Err = applyErr
		if again, err := o.Codec.Encode(st); err != nil || !bytes.Equal(again, stored) {
			return tr, fmt.Errorf("%w at apply %d%s", ErrMutatedInput, n, mutationHint(o.Codec, stored, st))
		}
		var se *stepflow.StepError
		if applyErr != nil && !errors.As(applyErr, &se) {
			tr.Transitions = append(tr.Transitions, t)
			return tr, fmt.Errorf("stepflowtest: apply %d: %w", n, applyErr)
		}
		if t.Encoded, err = o.Codec.Encode(next); err != nil {
			return tr, fmt.Errorf("stepflowtest: encode state after apply %d: %w", n, err)
		}
		if t.After, err = o.Codec.Decode(t.Encoded); err != nil {
			return tr, fmt.Errorf("stepflowtest: decode state after apply %d: %w", n, err)
		}
		tr.Transitions = append(tr.Transitions, t)
		o.Clock.Advance(o.Tick)
		if t.Crashed {
			saved = false
			continue
		}
		st, stored, saved = t.After, t.Encoded, true
		tr.Final, tr.Err = st, applyErr
	}
	return tr, nil
}

// Calls returns every call of the run in order, crashed transitions
// included.
func (tr *Trace[S]) Calls() []Call {
	var out []Call
	for _, t := range tr.Transitions {
		out = append(out, t.Calls...)
	}
	return out
}

// Visited returns the paths of every call of the run, in order, with
// repeats: retries, polls and re-runs after a crash each appear again.
func (tr *Trace[S]) Visited() []string {
	var out []string
	for _, t := range tr.Transitions {
		for _, c := range t.Calls {
			out = append(out, c.Path)
		}
	}
	return out
}

// Ran returns the paths of the calls whose user code actually ran (the
// script's Normal, FailAfter and Crash outcomes), in order.
func (tr *Trace[S]) Ran() []string {
	var out []string
	for _, t := range tr.Transitions {
		for _, c := range t.Calls {
			if c.Outcome.calls() {
				out = append(out, c.Path)
			}
		}
	}
	return out
}

// Attempts returns the attempt numbers of the calls made at path, in order.
func (tr *Trace[S]) Attempts(path string) []uint32 {
	var out []uint32
	for _, t := range tr.Transitions {
		for _, c := range t.Calls {
			if c.Path == path {
				out = append(out, c.Attempt)
			}
		}
	}
	return out
}

// States returns every state the run kept, starting with the start state as
// decoded, in order; crashed transitions are left out.
func (tr *Trace[S]) States() []stepflow.State[S] {
	out := []stepflow.State[S]{tr.Start}
	for _, t := range tr.Transitions {
		if !t.Crashed {
			out = append(out, t.After)
		}
	}
	return out
}

// Elapsed is the clock time from the first Apply to the last.
func (tr *Trace[S]) Elapsed() time.Duration {
	if len(tr.Transitions) == 0 {
		return 0
	}
	return tr.Transitions[len(tr.Transitions)-1].At.Sub(tr.Transitions[0].At)
}

// mutationHint explains the usual cause of ErrMutatedInput: the data holds
// a map, a slice or a pointer that a step changed in place, and so changed
// the previous state too.
func mutationHint[S any](c codec.Codec[S], stored []byte, now stepflow.State[S]) string {
	before, err := c.Decode(stored)
	if err != nil {
		return ""
	}
	before.Data = now.Data
	if b, err := c.Encode(before); err == nil && bytes.Equal(b, mustEncode(c, now)) {
		return ": only the data changed; a step modified a map, slice or pointer that the previous state shares (give the data type a Clone() method returning a deep copy, which Apply then uses)"
	}
	return ""
}

func mustEncode[S any](c codec.Codec[S], st stepflow.State[S]) []byte {
	b, _ := c.Encode(st)
	return b
}
