package stepflow_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

type deploy struct {
	App, Env string
	PR       int
	Live     bool
}

func ok(context.Context, *deploy) error { return nil }

func yes(context.Context, *deploy) (bool, error) { return true, nil }

func TestNewReportsEveryProblemAtOnce(t *testing.T) {
	_, err := stepflow.New[deploy]("",
		combinators.Do("", ok),
		combinators.Do("a/b", ok),
		combinators.Do("dup", ok),
		combinators.Do("dup", ok),
		combinators.Do[deploy]("nilfn", nil),
		combinators.Sequence[deploy]("empty"),
		combinators.WaitFor("w", yes, combinators.Every(-time.Second)),
		combinators.Case[deploy]("c", nil, combinators.Do("x", ok)),
		nil,
	)
	require.Error(t, err)
	require.ErrorIs(t, err, stepflow.ErrInvalidFlow)
	var all []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var de *stepflow.DefinitionError
		require.ErrorAs(t, e, &de)
		all = append(all, e.Error())
	}
	msg := strings.Join(all, "\n")
	for _, want := range []string{
		"empty version",
		`"#0": do node has an empty name`,
		`"a/b": name contains '/'`,
		`"dup": duplicate name`,
		`"nilfn": nil step function`,
		`"empty": empty sequence`,
		`"w": poll interval -1s must be positive`,
		`"c": nil predicate`,
		"nil node",
	} {
		assert.Contains(t, msg, want)
	}
	assert.Len(t, all, 9)
}

func TestNewEmptyFlow(t *testing.T) {
	_, err := stepflow.New[deploy]("x/v1")
	require.ErrorIs(t, err, stepflow.ErrInvalidFlow)
	assert.Panics(t, func() { stepflow.Must(stepflow.New[deploy]("x/v1")) })
}

func TestSequenceCompletesInExactlyNApplies(t *testing.T) {
	for _, n := range []int{1, 2, 10, 100} {
		f := seqFlow(t, n, nil)
		st := f.Start(stepflow.None{})
		ctx := context.Background()
		for i := 0; i < n; i++ {
			require.False(t, st.Terminal(), "terminal after %d of %d", i, n)
			assert.Equal(t, []string{fmt.Sprintf("s%d", i)}, st.Positions())
			var err error
			st, err = f.Apply(ctx, st)
			require.NoError(t, err)
			assert.Equal(t, uint64(i+1), st.Steps)
		}
		assert.Equal(t, stepflow.Done, st.Status)
		assert.Empty(t, st.Positions())
	}
}

func TestTerminalStatesAreFixedPoints(t *testing.T) {
	f := seqFlow(t, 2, nil)
	for _, s := range []stepflow.Status{stepflow.Done, stepflow.Failed, stepflow.Canceled, stepflow.NeedsAttention} {
		st := f.Start(stepflow.None{})
		st.Status = s
		next, err := f.Apply(context.Background(), st)
		require.NoError(t, err)
		assert.Equal(t, st, next, s.String())
	}
}

func TestApplyRejectsForeignAndInvalidStates(t *testing.T) {
	f := seqFlow(t, 3, nil)
	st := f.Start(stepflow.None{})

	other := st
	other.Version = "bench/2"
	got, err := f.Apply(context.Background(), other)
	var ve *stepflow.VersionError
	require.ErrorAs(t, err, &ve)
	assert.ErrorIs(t, err, stepflow.ErrVersionMismatch)
	assert.Equal(t, "bench/2", ve.Got)
	assert.Equal(t, other, got)

	bad := st
	bad.Root = stepflow.Frame{Children: []stepflow.Frame{{Name: "nope"}}}
	got, err = f.Apply(context.Background(), bad)
	var se *stepflow.StateError
	require.ErrorAs(t, err, &se)
	assert.ErrorIs(t, err, stepflow.ErrInvalidState)
	assert.Equal(t, "nope", se.Path)
	assert.Contains(t, err.Error(), `"nope"`)
	assert.Equal(t, bad, got)
	assert.ErrorIs(t, f.Validate(bad), stepflow.ErrInvalidState)

	two := st
	two.Root = stepflow.Frame{Children: []stepflow.Frame{{Name: "s0"}, {Name: "s1"}}}
	_, err = f.Apply(context.Background(), two)
	assert.ErrorIs(t, err, stepflow.ErrInvalidState)

	weird := st
	weird.Status = 42
	_, err = f.Apply(context.Background(), weird)
	assert.ErrorIs(t, err, stepflow.ErrInvalidState)
}

func TestCanceledContextLeavesStateUnchanged(t *testing.T) {
	called := false
	f := stepflow.Must(stepflow.New("c/v1", combinators.Do("a", func(context.Context, *deploy) error { called = true; return nil })))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st := f.Start(deploy{})
	got, err := f.Apply(ctx, st)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, st, got)
	assert.False(t, called)
}

func TestStepErrorFailsTheProcess(t *testing.T) {
	boom := errors.New("boom")
	f := stepflow.Must(stepflow.New("e/v1",
		combinators.Do("a", ok),
		combinators.Sequence("grp", combinators.Do("b", func(context.Context, *deploy) error { return boom })),
		combinators.Do("c", ok),
	))
	clk := newClock()
	ctx := stepflow.WithClock(context.Background(), clk)
	st, err := f.Apply(ctx, f.Start(deploy{}))
	require.NoError(t, err)
	st, err = f.Apply(ctx, st)
	require.Error(t, err)
	assert.ErrorIs(t, err, boom)
	assert.ErrorIs(t, err, stepflow.ErrStep)
	var se *stepflow.StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "grp/b", se.Path)
	assert.Equal(t, stepflow.Failed, st.Status)
	require.NotNil(t, st.Err)
	assert.Equal(t, stepflow.Failure{Path: "grp/b", Kind: "error", Message: "boom", Attempt: 1, At: clk.Now()}, *st.Err)
	// The failed state still shows where it failed.
	assert.Equal(t, []string{"grp/b"}, st.Positions())
	// And is terminal.
	again, err := f.Apply(ctx, st)
	require.NoError(t, err)
	assert.Equal(t, st, again)
}

func TestPanickingStepIsRecovered(t *testing.T) {
	f := stepflow.Must(stepflow.New("p/v1", combinators.Do("explode", func(context.Context, *deploy) error { panic("kaboom") })))
	st, err := f.Apply(context.Background(), f.Start(deploy{}))
	require.Error(t, err)
	assert.ErrorIs(t, err, stepflow.ErrPanic)
	var pe *stepflow.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "kaboom", pe.Value)
	assert.Equal(t, "explode", pe.Path)
	assert.NotEmpty(t, pe.Stack)
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "panic", st.Err.Kind)
	assert.Equal(t, "explode", st.Err.Path)
	assert.Contains(t, st.Err.Message, "kaboom")
}

func TestCaseDecidesOnceAndRecordsIt(t *testing.T) {
	calls := 0
	pred := func(_ context.Context, d *deploy) (bool, error) { calls++; return d.Env == "prod", nil }
	build := func() *stepflow.Flow[deploy] {
		return stepflow.Must(stepflow.NewWithOptions("case/v1", &stepflow.Options{Record: 10},
			combinators.Case("shouldDeploy", pred,
				combinators.Do("createDeployRequest", func(_ context.Context, d *deploy) error { d.PR = 7; d.Env = "changed"; return nil }),
				combinators.Do("merge", ok),
			).Else(combinators.Do("skip", ok)),
		))
	}
	f := build()
	ctx := context.Background()
	st, err := f.Apply(ctx, f.Start(deploy{Env: "prod"}))
	require.NoError(t, err)
	assert.Equal(t, []string{"shouldDeploy/createDeployRequest"}, st.Positions())
	assert.Equal(t, "then", st.Root.Children[0].Branch)
	st, err = f.Apply(ctx, st) // createDeployRequest changes Env: the decision must hold
	require.NoError(t, err)
	st, err = f.Apply(ctx, st)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, 1, calls)
	assert.Equal(t, []string{"shouldDeploy", "shouldDeploy/createDeployRequest", "shouldDeploy/merge"}, recordPaths(st))
	assert.Equal(t, "then", st.Record[0].Outcome)

	st, err = f.Apply(ctx, f.Start(deploy{Env: "dev"}))
	require.NoError(t, err)
	assert.Equal(t, []string{"shouldDeploy/skip"}, st.Positions())
	assert.Equal(t, "else", st.Root.Children[0].Branch)
}

func TestCaseWithoutElseCompletes(t *testing.T) {
	f := stepflow.Must(stepflow.New("case/v1",
		combinators.Case("c", func(context.Context, *deploy) (bool, error) { return false, nil }, combinators.Do("x", ok)),
		combinators.Do("after", ok)))
	st, err := f.Apply(context.Background(), f.Start(deploy{}))
	require.NoError(t, err)
	assert.Equal(t, []string{"after"}, st.Positions())
}

func TestSwitchUnknownBranchFails(t *testing.T) {
	f := stepflow.Must(stepflow.New("sw/v1",
		combinators.Switch("pick", func(context.Context, *deploy) (string, error) { return "blue", nil },
			combinators.On("red", combinators.Do("r", ok)),
			combinators.On[deploy]("none"))))
	st, err := f.Apply(context.Background(), f.Start(deploy{}))
	require.Error(t, err)
	assert.True(t, stepflow.IsPermanent(err))
	assert.Contains(t, st.Err.Message, `chose branch "blue"`)
}

func TestWaitForPollsOnScheduleAndTimesOut(t *testing.T) {
	polls := 0
	f := stepflow.Must(stepflow.New("w/v1",
		combinators.WaitFor("ready", func(context.Context, *deploy) (bool, error) { polls++; return false, nil },
			combinators.Backoff(time.Second, 4*time.Second), combinators.Timeout(10*time.Second))))
	clk := newClock()
	t0 := clk.Now()
	ctx := stepflow.WithClock(context.Background(), clk)
	st := f.Start(deploy{})
	var wakes []time.Duration
	for !st.Terminal() {
		var err error
		prev := st
		st, err = f.Apply(ctx, st)
		if st.Status == stepflow.Waiting {
			wakes = append(wakes, st.WakeAt.Sub(t0))
			// An early Apply is a no-op: the predicate is not polled.
			early, err := f.Apply(ctx, st)
			require.NoError(t, err)
			assert.Equal(t, st, early)
			clk.Set(st.WakeAt)
		} else {
			require.Error(t, err, "prev %+v", prev)
		}
	}
	// 1s, then doubling to the 4s cap, and the last wake exactly at the 10s deadline.
	assert.Equal(t, []time.Duration{1 * time.Second, 3 * time.Second, 7 * time.Second, 10 * time.Second}, wakes)
	assert.Equal(t, 4, polls)
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "timeout", st.Err.Kind)
	_, err := f.Apply(ctx, st)
	require.NoError(t, err)

	// The typed error is returned by the Apply that times out.
	st = f.Start(deploy{})
	st, _ = f.Apply(ctx, st)
	clk.Advance(time.Hour)
	_, err = f.Apply(ctx, st)
	var te *stepflow.TimeoutError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 10*time.Second, te.Limit)
	assert.ErrorIs(t, err, stepflow.ErrTimeout)
}

func TestWaitForKeepsStartAndCountInState(t *testing.T) {
	answers := []bool{false, false, true}
	i := 0
	f := stepflow.Must(stepflow.New("w/v1",
		combinators.WaitFor("merged", func(context.Context, *deploy) (bool, error) { i++; return answers[i-1], nil }, combinators.Every(10*time.Second))))
	clk := newClock()
	ctx := stepflow.WithClock(context.Background(), clk)
	st, err := f.Apply(ctx, f.Start(deploy{}))
	require.NoError(t, err)
	fr := st.Root.Children[0]
	assert.Equal(t, clk.Now(), fr.Since)
	assert.Equal(t, uint32(1), fr.Count)
	assert.Equal(t, clk.Now().Add(10*time.Second), st.WakeAt)
	assert.Equal(t, stepflow.Waiting, st.Status)
	clk.Advance(10 * time.Second)
	st, _ = f.Apply(ctx, st)
	assert.Equal(t, uint32(2), st.Root.Children[0].Count)
	assert.Equal(t, clk.Now().Add(-10*time.Second), st.Root.Children[0].Since, "start time is kept")
	clk.Advance(10 * time.Second)
	st, _ = f.Apply(ctx, st)
	assert.Equal(t, stepflow.Done, st.Status)
}

func TestRecordIsBounded(t *testing.T) {
	f := seqFlow(t, 10, &stepflow.Options{Record: 3})
	st := f.Start(stepflow.None{})
	for !st.Terminal() {
		st, _ = f.Apply(context.Background(), st)
	}
	assert.Equal(t, []string{"s7", "s8", "s9"}, recordPaths(st))
	assert.Equal(t, []uint64{8, 9, 10}, []uint64{st.Record[0].Seq, st.Record[1].Seq, st.Record[2].Seq})

	off := seqFlow(t, 3, nil)
	st = off.Start(stepflow.None{})
	st, _ = off.Apply(context.Background(), st)
	assert.Nil(t, st.Record)
}

func TestInterceptorsAndCallInfo(t *testing.T) {
	var seen []string
	var keys []string
	flowIC := func(ctx context.Context, c stepflow.Call, next func(context.Context) error) error {
		seen = append(seen, "flow:"+c.Path)
		return next(ctx)
	}
	ctxIC := func(ctx context.Context, c stepflow.Call, next func(context.Context) error) error {
		seen = append(seen, fmt.Sprintf("ctx:%s:%s:%d", c.Path, c.Kind, c.Attempt))
		err := next(ctx)
		seen = append(seen, fmt.Sprintf("ctx-done:%v", err))
		return err
	}
	f := stepflow.Must(stepflow.NewWithOptions("i/v1", &stepflow.Options{Interceptors: []stepflow.Interceptor{flowIC}},
		combinators.Do("a", func(ctx context.Context, _ *deploy) error {
			c, ok := stepflow.CallFrom(ctx)
			if !ok {
				return errors.New("no call info")
			}
			keys = append(keys, c.IdempotencyKey())
			return nil
		}),
		combinators.WaitFor("w", yes)))
	ctx := stepflow.WithInterceptor(context.Background(), ctxIC)
	st := f.Start(deploy{})
	st.ID = "proc-1"
	st1, err := f.Apply(ctx, st)
	require.NoError(t, err)
	// Re-running the same state (as after a crash) gives the same key.
	_, err = f.Apply(ctx, st)
	require.NoError(t, err)
	_, err = f.Apply(ctx, st1)
	require.NoError(t, err)
	assert.Equal(t, []string{
		"flow:a", "ctx:a:do:1", "ctx-done:<nil>",
		"flow:a", "ctx:a:do:1", "ctx-done:<nil>",
		"flow:w", "ctx:w:wait:1", "ctx-done:<nil>",
	}, seen)
	assert.Equal(t, []string{"i/v1|proc-1|a#1", "i/v1|proc-1|a#1"}, keys)
	assert.Equal(t, "v|p|x/y.2.5", stepflow.Call{Version: "v", ID: "p", Path: "x/y", Attempt: 3, Iterations: []uint32{2, 5}}.OperationKey())
	assert.Equal(t, "v|p|x/y#3.2.5", stepflow.Call{Version: "v", ID: "p", Path: "x/y", Attempt: 3, Iterations: []uint32{2, 5}}.IdempotencyKey())

	// An interceptor can inject a failure without running the step.
	inject := stepflow.WithInterceptor(context.Background(), func(context.Context, stepflow.Call, func(context.Context) error) error {
		return errors.New("injected")
	})
	failed, err := f.Apply(inject, st)
	require.Error(t, err)
	assert.Equal(t, "injected", failed.Err.Message)
}

func TestApplyNeverMutatesItsInput(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		f, data := genFlow(t)
		clk := newClock()
		st := f.Start(data)
		run(f, st, clk, 200, func(prev, next stepflow.State[Data], err error) {
			before := snapshot(t, prev)
			// Apply the same input concurrently: under -race this also
			// proves Apply shares nothing mutable between calls.
			ctx := stepflow.WithClock(context.Background(), clk)
			var wg sync.WaitGroup
			for range 3 {
				wg.Add(1)
				go func() { defer wg.Done(); _, _ = f.Apply(ctx, prev) }()
			}
			wg.Wait()
			if after := snapshot(t, prev); after != before {
				t.Fatalf("Apply mutated its input:\nbefore %s\nafter  %s", before, after)
			}
		})
	})
}

func TestApplyIsDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		f, data := genFlow(t)
		var a, b []string
		run(f, f.Start(data), newClock(), 200, func(_, next stepflow.State[Data], err error) { a = append(a, snapshot(t, next)+errText(err)) })
		run(f, f.Start(data), newClock(), 200, func(_, next stepflow.State[Data], err error) { b = append(b, snapshot(t, next)+errText(err)) })
		if len(a) != len(b) {
			t.Fatalf("runs differ in length: %d vs %d", len(a), len(b))
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("step %d differs:\n%s\n%s", i, a[i], b[i])
			}
		}
	})
}

func TestEveryGeneratedFlowTerminatesAndSurvivesSaveAndLoad(t *testing.T) {
	mp := codec.Msgpack[Data](nil)
	rapid.Check(t, func(t *rapid.T) {
		f, data := genFlow(t)
		// Bound: every node can be called at most (script length + 1) times
		// before it succeeds or fails, and waits time out within 300 polls.
		inMemory, n := run(f, f.Start(data), newClock(), 5000, nil)
		if !inMemory.Terminal() {
			t.Fatalf("not terminal after %d applies: %v", n, inMemory.Positions())
		}
		if s := inMemory.Status; s != stepflow.Done && s != stepflow.Failed {
			t.Fatalf("unexpected final status %v", s)
		}
		// Saving and loading between every Apply changes nothing.
		clk := newClock()
		ctx := stepflow.WithClock(context.Background(), clk)
		st := f.Start(data)
		for i := 0; !st.Terminal(); i++ {
			b, err := mp.Encode(st)
			if err != nil {
				t.Fatal(err)
			}
			if st, err = mp.Decode(b); err != nil {
				t.Fatal(err)
			}
			if st.Status == stepflow.Waiting {
				clk.Set(st.WakeAt)
			}
			st, _ = f.Apply(ctx, st)
		}
		if got, want := snapshot(t, st), snapshot(t, inMemory); got != want {
			t.Fatalf("save/load run ended differently:\n%s\n%s", got, want)
		}
	})
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return " err=" + err.Error()
}

// snapshot is a canonical text of a state, for comparisons.
func snapshot(t interface{ Fatal(...any) }, st stepflow.State[Data]) string {
	b, err := codec.JSON[Data](nil).Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func recordPaths[S any](st stepflow.State[S]) []string {
	var out []string
	for _, r := range st.Record {
		out = append(out, r.Path)
	}
	return out
}

// probe counts in its frame how often it is advanced without a budget, and
// completes when it may run.
type probe struct{ inert bool }

func (p probe) Info() stepflow.Info {
	return stepflow.Info{Name: "probe", Kind: "probe", Leaf: true, Inert: p.inert}
}
func (probe) Children() []stepflow.Node[stepflow.None] { return nil }
func (probe) Check() []string                          { return nil }
func (probe) Advance(c *stepflow.Cursor[stepflow.None]) stepflow.Result {
	if !c.CanRun() {
		c.Frame().Count++
		return stepflow.Continue()
	}
	if err := c.Run(func(context.Context, *stepflow.None) error { return nil }); err != nil {
		return stepflow.Fail(err)
	}
	return stepflow.Complete()
}

func TestSequenceStopsAtInertNodes(t *testing.T) {
	for _, inert := range []bool{true, false} {
		f := stepflow.Must(stepflow.New("inert/v1", combinators.Plain.Do("a", noop), stepflow.Node[stepflow.None](probe{inert})))
		st, err := f.Apply(context.Background(), f.Start(stepflow.None{}))
		require.NoError(t, err)
		require.Equal(t, []string{"probe"}, st.Positions())
		want := uint32(1)
		if inert {
			want = 0 // entered, not advanced
		}
		assert.Equal(t, want, st.Root.Children[0].Count, "inert=%v", inert)
		st, err = f.Apply(context.Background(), st)
		require.NoError(t, err)
		assert.Equal(t, stepflow.Done, st.Status)
	}
}

func TestStepContextThroughInterceptorsAndAfterTheCall(t *testing.T) {
	type key struct{}
	var kept context.Context
	var seenValue any
	var seenCall bool
	f := stepflow.Must(stepflow.New("ctx/v1", combinators.Plain.Do("a", func(ctx context.Context) error {
		kept = ctx
		seenValue = ctx.Value(key{})
		_, seenCall = stepflow.CallFrom(ctx)
		return nil
	})))
	// An interceptor may hand the step a context of its own, derived from
	// the one it got (a tracing span, say).
	ctx, cancel := context.WithCancel(stepflow.WithInterceptor(context.Background(),
		func(ctx context.Context, _ stepflow.Call, next func(context.Context) error) error {
			return next(context.WithValue(ctx, key{}, "from interceptor"))
		}))
	_, err := f.Apply(ctx, f.Start(stepflow.None{}))
	require.NoError(t, err)
	assert.Equal(t, "from interceptor", seenValue)
	assert.True(t, seenCall, "CallFrom through the interceptor's context")
	// A context a step kept still follows the caller's cancellation.
	require.NoError(t, kept.Err())
	cancel()
	select {
	case <-kept.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a kept step context did not see the caller's cancellation")
	}
}

// Step contexts are never reused: contexts kept from many Applies (more
// than one allocation batch) still describe their own calls.
func TestKeptStepContextsStayTheirOwn(t *testing.T) {
	var kept []context.Context
	keep := func(ctx context.Context) error { kept = append(kept, ctx); return nil }
	f := stepflow.Must(stepflow.New("kept/v1", combinators.Plain.Do("a", keep), combinators.Plain.Do("b", keep)))
	for range 25 {
		st := f.Start(stepflow.None{})
		for !st.Terminal() {
			var err error
			st, err = f.Apply(context.Background(), st)
			require.NoError(t, err)
		}
	}
	require.Len(t, kept, 50)
	for i, ctx := range kept {
		c, ok := stepflow.CallFrom(ctx)
		require.True(t, ok)
		assert.Equal(t, []string{"a", "b"}[i%2], c.Path, "context %d", i)
		assert.Equal(t, uint64(i%2), c.Seq, "context %d", i)
	}
}

// States whose new frames were cut from one block (exec.frames) stay their
// own: changing or appending to the frames of one, as Redrive does, leaves
// every other untouched.
func TestStatesSharingAFrameBlockStayTheirOwn(t *testing.T) {
	never := func(context.Context) (bool, error) { return false, nil }
	f := stepflow.Must(stepflow.New("slab/v1", combinators.Sequence("outer",
		combinators.Plain.WaitFor("wait", never, combinators.Every(time.Second)))))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := stepflow.WithClock(context.Background(), stepflow.ClockFunc(func() time.Time { return now }))
	states := make([]stepflow.State[stepflow.None], 20)
	for i := range states {
		st, err := f.Apply(ctx, f.Start(stepflow.None{})) // enters the wait and polls it
		require.NoError(t, err)
		require.Equal(t, stepflow.Waiting, st.Status)
		states[i] = st
	}
	now = states[0].WakeAt
	for i := range states { // polls one after the other, from one block
		var err error
		states[i], err = f.Apply(ctx, states[i])
		require.NoError(t, err)
		require.EqualValues(t, 2, states[i].Root.Children[0].Children[0].Count)
	}
	want := make([]stepflow.State[stepflow.None], len(states))
	for i := range states {
		want[i] = states[i]
		want[i].Root = states[i].Root.Clone()
	}
	for i := range states {
		if i%2 == 1 {
			continue
		}
		outer := &states[i].Root.Children[0]
		outer.Children = append(outer.Children, stepflow.Frame{Name: "extra"})
		outer.Children[0].Count = 99
		states[i].Root.Children = append(states[i].Root.Children, stepflow.Frame{Name: "extra"})
	}
	for i := 1; i < len(states); i += 2 {
		assert.Equal(t, want[i].Root, states[i].Root, "state %d", i)
	}
}

// A context's clock and interceptors are kept whatever order they are
// added in, and the innermost clock wins.
func TestClockAndInterceptorsCompose(t *testing.T) {
	at := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	clk := stepflow.ClockFunc(func() time.Time { return at })
	var calls int
	ic := func(ctx context.Context, _ stepflow.Call, next func(context.Context) error) error {
		calls++
		return next(ctx)
	}
	f := stepflow.Must(stepflow.NewWithOptions("env/v1", &stepflow.Options{Record: 4}, combinators.Plain.Do("a", noop)))
	for name, ctx := range map[string]context.Context{
		"clock then interceptor": stepflow.WithInterceptor(stepflow.WithClock(context.Background(), clk), ic),
		"interceptor then clock": stepflow.WithClock(stepflow.WithInterceptor(context.Background(), ic), clk),
		"clock replaced":         stepflow.WithClock(stepflow.WithInterceptor(stepflow.WithClock(context.Background(), fixedClock), ic), clk),
	} {
		calls = 0
		st, err := f.Apply(ctx, f.Start(stepflow.None{}))
		require.NoError(t, err, name)
		assert.Equal(t, 1, calls, name)
		require.Len(t, st.Record, 1, name)
		assert.Equal(t, at, st.Record[0].End, name)
		assert.Equal(t, at, stepflow.Now(ctx), name)
	}
}

// fakeSequence claims Info.Sequential but advances nothing.
type fakeSequence struct {
	kids []stepflow.Node[stepflow.None]
}

func (n fakeSequence) Info() stepflow.Info {
	return stepflow.Info{Name: "fake", Kind: "sequence", Sequential: true}
}
func (n fakeSequence) Children() []stepflow.Node[stepflow.None] { return n.kids }
func (n fakeSequence) Check() []string                          { return nil }
func (n fakeSequence) Advance(c *stepflow.Cursor[stepflow.None]) stepflow.Result {
	return stepflow.Continue()
}

// TestBrokenSequentialPromiseIsReported: Apply runs a step below
// Sequential nodes directly; when such a node then fails to advance it,
// Apply must say so rather than lose the step's failure.
func TestBrokenSequentialPromiseIsReported(t *testing.T) {
	calls := 0
	step := combinators.Plain.Do("step", func(context.Context) error { calls++; return errors.New("boom") })
	f := stepflow.Must(stepflow.New("fake/v1", stepflow.Node[stepflow.None](fakeSequence{kids: []stepflow.Node[stepflow.None]{step}})))
	st := f.Start(stepflow.None{})
	st.Root.Children[0].Children = []stepflow.Frame{{Name: "step"}}
	next, err := f.Apply(context.Background(), st)
	var se *stepflow.StateError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "fake/step", se.Path)
	assert.Contains(t, se.Reason, "Info.Sequential")
	assert.Equal(t, st, next, "the state stays as it was")
	assert.Equal(t, 1, calls)
}

// TestWhichStepsRunStraight: a plain Do whose ancestors are sequences is
// run without walking the tree; anything else is walked.
func TestWhichStepsRunStraight(t *testing.T) {
	ok := func(context.Context) error { return nil }
	yes := func(context.Context) (bool, error) { return true, nil }
	f := stepflow.Must(stepflow.New("straight/v1",
		combinators.Plain.Do("a", ok),
		combinators.Sequence("s", combinators.Plain.Do("b", ok), combinators.Sequence("t", combinators.Plain.Do("c", ok))),
		combinators.Do("once", func(context.Context, *stepflow.None) error { return nil }, combinators.AtMostOnce(combinators.RunAgain)),
		combinators.Plain.Case("if", yes, combinators.Plain.Do("d", ok)),
		combinators.Plain.Do("e", ok),
	))
	want := map[string]bool{"a": true, "s/b": true, "s/t/c": true, "once": false, "if": false, "if/d": false, "e": true}
	ctx := context.Background()
	st := f.Start(stepflow.None{})
	seen := map[string]bool{}
	for !st.Terminal() {
		pos := st.Positions()[0]
		w, known := want[pos]
		require.True(t, known, "unexpected position %s", pos)
		assert.Equal(t, w, stepflow.RunsStraight(f, st), pos)
		seen[pos] = true
		var err error
		st, err = f.Apply(ctx, st)
		require.NoError(t, err)
	}
	assert.Len(t, seen, len(want))
	assert.Equal(t, stepflow.Done, st.Status)
}

// TestInterceptorCallingNextTwice: an interceptor that runs the call a
// second time (a retrying interceptor) runs everything inside it again,
// the inner interceptors included, and each call sees its own details.
func TestInterceptorCallingNextTwice(t *testing.T) {
	var seen []string
	again := func(ctx context.Context, c stepflow.Call, next func(context.Context) error) error {
		seen = append(seen, "outer:"+c.Path)
		if err := next(ctx); err != nil {
			return err
		}
		return next(ctx)
	}
	inner := func(ctx context.Context, c stepflow.Call, next func(context.Context) error) error {
		seen = append(seen, "inner:"+c.Path)
		return next(ctx)
	}
	runs := 0
	f := stepflow.Must(stepflow.NewWithOptions("twice/v1", &stepflow.Options{Interceptors: []stepflow.Interceptor{again}},
		combinators.Plain.Do("a", func(context.Context) error { runs++; return nil }),
		combinators.Plain.WaitFor("w", func(context.Context) (bool, error) { runs++; return true, nil })))
	ctx := stepflow.WithInterceptor(context.Background(), inner)
	st := f.Start(stepflow.None{})
	for !st.Terminal() {
		var err error
		st, err = f.Apply(ctx, st)
		require.NoError(t, err)
	}
	assert.Equal(t, 4, runs)
	assert.Equal(t, []string{"outer:a", "inner:a", "inner:a", "outer:w", "inner:w", "inner:w"}, seen)
}

// TestNextKeptPastTheCall: an interceptor that keeps next and calls it
// once its call has returned gets an error, not a step run out of turn.
func TestNextKeptPastTheCall(t *testing.T) {
	var kept func(context.Context) error
	keep := func(ctx context.Context, _ stepflow.Call, next func(context.Context) error) error {
		kept = next
		return next(ctx)
	}
	runs := 0
	f := stepflow.Must(stepflow.New("kept/v1", combinators.Plain.Do("a", func(context.Context) error { runs++; return nil })))
	_, err := f.Apply(stepflow.WithInterceptor(context.Background(), keep), f.Start(stepflow.None{}))
	require.NoError(t, err)
	require.Error(t, kept(context.Background()))
	assert.Equal(t, 1, runs)
}
