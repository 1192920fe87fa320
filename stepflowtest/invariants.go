package stepflowtest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/stretchr/testify/assert"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// InvariantOptions configures CheckInvariants. A nil *InvariantOptions
// means all defaults.
type InvariantOptions[S any] struct {
	// Script is the outcome script of the runs checked. Nil: every call runs
	// normally.
	Script Script
	// Events are delivered during every run, as RunOptions.Events.
	Events []Event
	// Reset is called before every run, to put back in their first state the
	// fakes that the steps talk to. Nil: nothing is reset.
	Reset func()
	// AllowFailure turns off the completion check, for flows that are
	// expected to fail with the given start state even when every call runs
	// normally.
	AllowFailure bool
	// IgnoreData leaves State.Data out when a crashed run is compared with
	// the uninterrupted one, for flows whose steps store values that differ
	// when a step runs twice (a counter kept by a fake, say).
	IgnoreData bool
	// MaxSteps bounds each run. Zero: DefaultMaxSteps.
	MaxSteps int
	// MaxCrashes bounds the crash points tried, spread over the run. Zero:
	// a crash after every Apply that calls user code.
	MaxCrashes int
}

// Invariant names, as used in failure messages.
const (
	InvariantRuns          = "runs"
	InvariantCompletes     = "completes"
	InvariantDeterministic = "deterministic"
	InvariantProgress      = "keeps progress"
	InvariantRoundTrip     = "round-trips"
	InvariantCrashResume   = "crash and resume"
)

// CheckInvariants runs flow from start several times and checks, in one
// call, the properties every flow should have:
//
//   - runs: every run ends (done, failed, canceled or needs attention)
//     within MaxSteps, without an engine error and without Apply modifying
//     its input;
//   - completes: with every call running normally, the flow ends Done
//     (unless AllowFailure);
//   - deterministic: the same script gives the same trace twice;
//   - keeps progress: each Apply adds one to Steps and only appends to
//     Record (dropping the oldest entries beyond the flow's Record limit);
//     a terminal state never changes;
//   - round-trips: every state passes flow.Validate, and encodes with both
//     codecs, decodes and encodes again to the same bytes;
//   - crash and resume: for every Apply that calls user code, a run that
//     crashes there (the step runs, its state is lost, the previous state is
//     applied again) ends in the same state, with the same calls apart from
//     the re-run ones, as the uninterrupted run; or, for an at-most-once
//     step that asks a person when its outcome is unknown, stops in
//     NeedsAttention at that step.
//
// It reports each broken invariant to t once, with the trace that shows it,
// and returns whether all held. The flow's steps must be deterministic
// given the fakes they use; Reset puts those back before each run.
func CheckInvariants[S any](t TestingT, flow *stepflow.Flow[S], start stepflow.State[S], opts *InvariantOptions[S]) bool {
	markHelper(t)
	var o InvariantOptions[S]
	if opts != nil {
		o = *opts
	}
	c := &checker[S]{t: t, flow: flow, start: start, o: o, broken: map[string]bool{}}
	run := func(s Script) (*Trace[S], bool) {
		if o.Reset != nil {
			o.Reset()
		}
		tr, err := Run(context.Background(), flow, start, &RunOptions[S]{Script: s, MaxSteps: o.MaxSteps, Events: o.Events})
		if err != nil {
			c.fail(InvariantRuns, s, tr, "%v", err)
			return tr, false
		}
		c.checkStates(s, tr)
		return tr, true
	}

	if !o.AllowFailure && o.Script != nil {
		if tr, ok := run(nil); ok && tr.Final.Status != stepflow.Done {
			c.fail(InvariantCompletes, nil, tr, "ended %s with every call running normally", tr.Final.Status)
		}
	}
	base, ok := run(o.Script)
	if !ok {
		return false
	}
	if !o.AllowFailure && o.Script == nil && base.Final.Status != stepflow.Done {
		c.fail(InvariantCompletes, nil, base, "ended %s with every call running normally", base.Final.Status)
	}
	if again, ok := run(o.Script); ok && again.String() != base.String() {
		c.fail(InvariantDeterministic, o.Script, again, "a second run with the same script differs at line %s\nfirst run:\n%s",
			firstDiff(base.String(), again.String()), base)
	}

	points := crashPoints(base)
	if o.MaxCrashes > 0 && len(points) > o.MaxCrashes {
		picked := make([]int, o.MaxCrashes)
		for i := range picked {
			picked[i] = points[i*len(points)/o.MaxCrashes]
		}
		points = picked
	}
	want := c.comparable(base.Final)
	for _, k := range points {
		s := crashScript(o.Script, base, k)
		tr, ok := run(s)
		if !ok {
			continue
		}
		if crashed := base.Transitions[k].Calls[0].Path; tr.Final.Status == stepflow.NeedsAttention && tr.Final.Intent == crashed {
			// An at-most-once step that asks a person when its outcome is
			// unknown: stopping is the right end after a crash there.
			continue
		}
		if got := c.comparable(tr.Final); !bytes.Equal(got, want) {
			c.fail(InvariantCrashResume, s, tr, "a crash after apply %d ends in a different state: %s, want %s\nuninterrupted run:\n%s",
				k+1, stateLine(tr.Final), stateLine(base.Final), base)
			continue
		}
		if got, want := keptCalls(tr), keptCalls(base); !slices.EqualFunc(got, want, sameCall) {
			c.fail(InvariantCrashResume, s, tr, "a crash after apply %d changes the calls made: %v, want %v\nuninterrupted run:\n%s",
				k+1, got, want, base)
		}
	}
	return len(c.broken) == 0
}

type checker[S any] struct {
	t      TestingT
	flow   *stepflow.Flow[S]
	start  stepflow.State[S]
	o      InvariantOptions[S]
	broken map[string]bool
}

// fail reports the first breach of each invariant.
func (c *checker[S]) fail(inv string, s Script, tr *Trace[S], format string, args ...any) {
	markHelper(c.t)
	if c.broken[inv] {
		return
	}
	c.broken[inv] = true
	assert.Fail(c.t, fmt.Sprintf("invariant %q broken for flow %s: %s\nscript: %v\n%s",
		inv, c.flow.Version(), fmt.Sprintf(format, args...), s, tr))
}

func (c *checker[S]) checkStates(s Script, tr *Trace[S]) {
	limit := c.flow.Options().Record
	check := func(what string, st stepflow.State[S]) {
		if err := c.flow.Validate(st); err != nil {
			c.fail(InvariantRoundTrip, s, tr, "%s does not validate: %v", what, err)
		}
		if err := roundTrip(codec.Msgpack[S](nil), st); err != nil {
			c.fail(InvariantRoundTrip, s, tr, "%s: %v", what, err)
		}
		if err := roundTrip(codec.JSON[S](nil), st); err != nil {
			c.fail(InvariantRoundTrip, s, tr, "%s: %v", what, err)
		}
	}
	check("the start state", tr.Start)
	prev := tr.Start
	for _, t := range tr.Transitions {
		what := fmt.Sprintf("the state after apply %d", t.N)
		check(what, t.After)
		if len(t.Events) > 0 {
			check(fmt.Sprintf("the state after the events before apply %d", t.N), t.Given)
			if err := kept(prev, t.Given, limit, false); err != nil {
				c.fail(InvariantProgress, s, tr, "delivering %v before apply %d: %v", t.Events, t.N, err)
			}
		}
		if t.Given.Terminal() {
			if !t.After.Terminal() || t.After.Steps != t.Given.Steps {
				c.fail(InvariantProgress, s, tr, "apply %d changed a %s state", t.N, t.Given.Status)
			}
		} else if err := kept(t.Given, t.After, limit, true); err != nil {
			c.fail(InvariantProgress, s, tr, "apply %d: %v", t.N, err)
		}
		if !t.Crashed {
			prev = t.After
		}
	}
	// A terminal state is final: applying it again changes nothing.
	if last := tr.Final; last.Terminal() {
		mp := codec.Msgpack[S](nil)
		before, _ := mp.Encode(last)
		next, err := c.flow.Apply(context.Background(), last)
		after, _ := mp.Encode(next)
		if err != nil || !bytes.Equal(before, after) {
			c.fail(InvariantProgress, s, tr, "applying the final %s state changed it (err %v)", last.Status, err)
		}
	}
}

// comparable encodes the parts of a final state that a crash must not
// change.
func (c *checker[S]) comparable(st stepflow.State[S]) []byte {
	if c.o.IgnoreData {
		var zero S
		st.Data = zero
	}
	b, err := codec.Msgpack[S](nil).Encode(st)
	if err != nil {
		return []byte(err.Error())
	}
	return b
}

func roundTrip[S any](c codec.Codec[S], st stepflow.State[S]) error {
	b1, err := c.Encode(st)
	if err != nil {
		return fmt.Errorf("%s encode: %w", c.Name(), err)
	}
	st2, err := c.Decode(b1)
	if err != nil {
		return fmt.Errorf("%s decode: %w", c.Name(), err)
	}
	b2, err := c.Encode(st2)
	if err != nil {
		return fmt.Errorf("%s encode after decode: %w", c.Name(), err)
	}
	if !bytes.Equal(b1, b2) {
		return fmt.Errorf("%s encoding is not stable across decode: %q then %q", c.Name(), b1, b2)
	}
	return nil
}

// kept checks that next keeps everything prev recorded. An Apply (step
// true) adds exactly one to Steps; other changes (a signal, a cancellation)
// add at most one.
func kept[S any](prev, next stepflow.State[S], limit int, step bool) error {
	switch {
	case step && next.Steps != prev.Steps+1:
		return fmt.Errorf("Steps went from %d to %d, want %d", prev.Steps, next.Steps, prev.Steps+1)
	case !step && (next.Steps < prev.Steps || next.Steps > prev.Steps+1):
		return fmt.Errorf("Steps went from %d to %d", prev.Steps, next.Steps)
	}
	var added []stepflow.Record
	for _, r := range next.Record {
		if r.Seq > prev.Steps && r.Seq == next.Steps {
			added = append(added, r)
		}
	}
	want := append(slices.Clone(prev.Record), added...)
	if limit > 0 && len(want) > limit {
		want = want[len(want)-limit:]
	}
	if limit <= 0 {
		want = nil
	}
	if !slices.EqualFunc(next.Record, want, recordEqual) {
		return fmt.Errorf("Record went from %v to %v: only appending %v was allowed", prev.Record, next.Record, added)
	}
	return nil
}

func recordEqual(a, b stepflow.Record) bool {
	return a.Seq == b.Seq && a.Path == b.Path && a.Outcome == b.Outcome && a.Attempt == b.Attempt &&
		a.Start.Equal(b.Start) && a.End.Equal(b.End) && a.Err == b.Err
}

// crashPoints lists the transitions of a run after which a crash can be
// injected: the kept ones that call user code.
func crashPoints[S any](tr *Trace[S]) []int {
	var out []int
	for i, t := range tr.Transitions {
		if !t.Crashed && len(t.Calls) > 0 {
			out = append(out, i)
		}
	}
	return out
}

// crashScript returns base's script with a crash added at transition k of
// tr: the first call there crashes, and its re-run gets the outcome that
// call had. (The other calls of the crashed Apply are not counted, so they
// keep their outcomes.)
func crashScript[S any](base Script, tr *Trace[S], k int) Script {
	// Number the calls per path as the injector does: calls of crashed
	// applies count only when they crashed.
	seen := map[string]int{}
	for _, t := range tr.Transitions[:k] {
		for _, c := range t.Calls {
			if !t.Crashed || c.Outcome == Crash {
				seen[c.Path]++
			}
		}
	}
	s := make(Script, len(base)+1)
	for p, plan := range base {
		s[p] = plan
	}
	c := tr.Transitions[k].Calls[0]
	n := seen[c.Path]
	plan := s[c.Path]
	// Calls before n keep their outcomes; call n crashes; its re-run gets
	// the outcome call n had.
	os := make([]Outcome, 0, max(len(plan.Outcomes), n)+1)
	for i := 0; i < n; i++ {
		os = append(os, plan.At(i))
	}
	os = append(os, Crash)
	if n < len(plan.Outcomes) {
		os = append(os, plan.Outcomes[n:]...)
	} else {
		os = append(os, plan.Then)
	}
	s[c.Path] = Plan{Outcomes: os, Then: plan.Then}
	return s
}

// keptCalls returns the calls of the kept transitions.
func keptCalls[S any](tr *Trace[S]) []Call {
	var out []Call
	for _, t := range tr.Transitions {
		if !t.Crashed {
			out = append(out, t.Calls...)
		}
	}
	return out
}

func sameCall(a, b Call) bool {
	return a.Path == b.Path && a.Attempt == b.Attempt && a.Outcome == b.Outcome && slices.Equal(a.Iterations, b.Iterations)
}

func stateLine[S any](st stepflow.State[S]) string {
	var b strings.Builder
	writeState(&b, st)
	return b.String()
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("%d:\n- %s\n+ %s", i+1, x, y)
		}
	}
	return "(none)"
}
