package stepflowtest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Outcome is what a scripted call of user code does. The driver applies it
// through a stepflow.Interceptor, so the flow under test is unchanged: the
// same nodes, the same steps, only their results are forced.
type Outcome uint8

const (
	// Normal calls the step or predicate and returns what it returns. It is
	// the outcome of every call a script does not mention.
	Normal Outcome = iota
	// Fail returns ErrInjected without calling the step: the step's side
	// effects do not happen.
	Fail
	// FailAfter calls the step, then returns ErrInjected whatever the step
	// returned: the side effects happened but the flow sees a failure, as
	// when a reply is lost.
	FailAfter
	// FailPermanent returns stepflow.Permanent(ErrInjected) without calling
	// the step, so retry nodes give up at once.
	FailPermanent
	// False returns no error without calling the user code: a WaitFor's
	// predicate then answers false and the wait goes on, and a Do step counts
	// as done without having run. A Case or Switch, whose call chooses the
	// branch, is left without a branch and fails; force a Case's answer with
	// a fake in its predicate instead.
	False
	// Panic panics with an *InjectedPanic instead of calling the step. The
	// engine turns the panic into a *stepflow.PanicError.
	Panic
	// Crash calls the step and returns what it returns, and then the driver
	// throws away the state that Apply produced and applies the previous
	// state again, as when a process dies after a side effect and before its
	// new state is saved.
	Crash

	numOutcomes
)

var outcomeNames = [...]string{"normal", "fail", "fail-after", "fail-permanent", "false", "panic", "crash"}

// String returns the outcome's name as it appears in traces.
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// calls reports whether the outcome runs the user code.
func (o Outcome) calls() bool { return o == Normal || o == FailAfter || o == Crash }

// ErrInjected is the error returned by calls scripted to fail.
var ErrInjected = errors.New("stepflowtest: injected failure")

// InjectedPanic is the value a call scripted to Panic panics with.
type InjectedPanic struct {
	// Path and Attempt of the call.
	Path    string
	Attempt uint32
}

func (p *InjectedPanic) String() string {
	return fmt.Sprintf("stepflowtest: injected panic at %s attempt %d", p.Path, p.Attempt)
}

// Plan is the scripted outcomes of the calls made at one path, in call
// order. The calls of an Apply whose state a Crash discarded do not count,
// except the crashing call itself: when the previous state is applied
// again, the same calls get the same outcomes, and the crashing call's
// re-run gets the outcome after the Crash.
type Plan struct {
	// Outcomes of the first calls, one per call.
	Outcomes []Outcome
	// Then is the outcome of every later call. Its zero value is Normal.
	Then Outcome
}

// Calls returns a plan whose first calls have the given outcomes and whose
// later calls run normally.
func Calls(outcomes ...Outcome) Plan { return Plan{Outcomes: outcomes} }

// Times returns a plan whose first n calls have outcome o and whose later
// calls run normally: Times(Fail, 2) fails twice and then succeeds.
func Times(o Outcome, n int) Plan {
	p := Plan{Outcomes: make([]Outcome, max(n, 0))}
	for i := range p.Outcomes {
		p.Outcomes[i] = o
	}
	return p
}

// Always returns a plan whose every call has outcome o: Always(False) keeps
// a WaitFor waiting until its timeout.
func Always(o Outcome) Plan { return Plan{Then: o} }

// At returns the outcome of the n-th call (0-based).
func (p Plan) At(n int) Outcome {
	if n < len(p.Outcomes) {
		return p.Outcomes[n]
	}
	return p.Then
}

func (p Plan) String() string {
	var b strings.Builder
	for i, o := range p.Outcomes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(o.String())
	}
	if p.Then != Normal || len(p.Outcomes) == 0 {
		if len(p.Outcomes) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.Then.String())
		b.WriteString("...")
	}
	return b.String()
}

// Script maps node paths (as in stepflow.NodeInfo.Path and
// stepflow.Call.Path) to the plan of their calls. Paths not in the script
// run normally.
type Script map[string]Plan

// String lists the plans sorted by path, for failure messages.
func (s Script) String() string {
	paths := make([]string, 0, len(s))
	for p := range s {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range paths {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", p, s[p])
	}
	b.WriteByte('}')
	return b.String()
}

// injector plays a script through an interceptor and notes every call.
type injector struct {
	mu     sync.Mutex
	script Script
	counts map[string]int
	calls  []Call
	crash  bool
}

func newInjector(s Script) *injector {
	return &injector{script: s, counts: map[string]int{}}
}

// take returns the calls noted since the last take (the calls of one
// Apply), and whether one of them asked for a crash. A crash discards the
// Apply, so its calls are uncounted, except the crashing ones: applying the
// previous state again makes the same calls, which get the same outcomes,
// and the crashing call's re-run gets the next one.
func (in *injector) take() ([]Call, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	calls, crash := in.calls, in.crash
	in.calls, in.crash = nil, false
	if crash {
		for _, c := range calls {
			if c.Outcome != Crash {
				in.counts[c.Path]--
			}
		}
	}
	return calls, crash
}

func (in *injector) intercept(ctx context.Context, call stepflow.Call, next func(context.Context) error) error {
	in.mu.Lock()
	n := in.counts[call.Path]
	in.counts[call.Path] = n + 1
	o := in.script[call.Path].At(n)
	in.calls = append(in.calls, Call{
		Path: call.Path, Kind: call.Kind, Attempt: call.Attempt,
		Iterations: append([]uint32(nil), call.Iterations...), Outcome: o,
	})
	idx := len(in.calls) - 1
	if o == Crash {
		in.crash = true
	}
	in.mu.Unlock()

	note := func(msg string) {
		in.mu.Lock()
		in.calls[idx].Err = msg
		in.mu.Unlock()
	}
	if o.calls() {
		// Note a panic of the user code in the trace, then let the engine
		// recover it as it would in production.
		defer func() {
			if r := recover(); r != nil {
				note(fmt.Sprintf("panic: %v", r))
				panic(r)
			}
		}()
	}
	var err error
	switch o {
	case Fail:
		err = ErrInjected
	case FailPermanent:
		err = stepflow.Permanent(ErrInjected)
	case False:
	case Panic:
		p := &InjectedPanic{Path: call.Path, Attempt: call.Attempt}
		note(p.String())
		panic(p)
	case FailAfter:
		_ = next(ctx)
		err = ErrInjected
	default:
		err = next(ctx)
	}
	if err != nil {
		note(err.Error())
	}
	return err
}
