package versions_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flaky fails until it has been called n times.
func flaky(name string, n int) stepflow.Node[D] {
	return combinators.Do(name, func(_ context.Context, d *D) error {
		d.Polls++
		if d.Polls < n {
			return errors.New("flaky")
		}
		d.Ran = append(d.Ran, name)
		return nil
	})
}

func inc(name string) stepflow.Node[D] {
	return combinators.Do(name, func(_ context.Context, d *D) error {
		d.N++
		d.Ran = append(d.Ran, name)
		return nil
	})
}

// renamed returns the frame with its top name replaced.
func renamed(f stepflow.Frame, name string) stepflow.Frame {
	f = f.Clone()
	f.Name = name
	return f
}

// TestMemoryOfEveryKindCarriesOver renames a node of every kind while a
// process is inside it, holding memory: its whole frame subtree (counters,
// times, phases, errors, payloads, instances, branches of a parallel)
// arrives unchanged under the new name, and the process ends as it would
// have on the old version.
func TestMemoryOfEveryKindCarriesOver(t *testing.T) {
	retryPolicy := combinators.RetryPolicy{MaxAttempts: 5, InitialInterval: time.Minute}
	for _, tc := range []struct {
		kind   string
		build  func(name string) stepflow.Node[D]
		extra  int // applies after entering the node
		signal bool
	}{
		{kind: "retry", build: func(n string) stepflow.Node[D] {
			return combinators.Retry(n, retryPolicy, step("r0", "r0"), flaky("r1", 3))
		}, extra: 3},
		{kind: "parallel", build: func(n string) stepflow.Node[D] {
			return combinators.Parallel(n,
				combinators.Sequence("left", step("l1", "l1"), step("l2", "l2"), step("l3", "l3")),
				wait("right", 5))
		}, extra: 2},
		{kind: "loop-until", build: func(n string) stepflow.Node[D] {
			return combinators.LoopUntil(n, func(_ context.Context, d *D) (bool, error) { return d.N >= 3, nil },
				[]stepflow.Node[D]{inc("i1"), step("i2", "i2")})
		}, extra: 4},
		{kind: "while", build: func(n string) stepflow.Node[D] {
			return combinators.While(n, func(_ context.Context, d *D) (bool, error) { return d.N < 3, nil },
				[]stepflow.Node[D]{inc("w1"), step("w2", "w2")})
		}, extra: 4},
		{kind: "timelimit", build: func(n string) stepflow.Node[D] {
			return combinators.TimeLimit(n, time.Hour, wait("inner", 4))
		}, extra: 2},
		{kind: "sleep", build: func(n string) stepflow.Node[D] {
			return combinators.Sleep[D](n, time.Hour)
		}},
		{kind: "signal", build: func(n string) stepflow.Node[D] {
			return combinators.WaitSignal[D](n, "go", nil, combinators.Timeout(time.Hour))
		}, signal: true},
		{kind: "catch", build: func(n string) stepflow.Node[D] {
			return combinators.Catch(n, combinators.Do("boom", func(context.Context, *D) error { return errors.New("boom") }),
				step("h1", "h1"), step("h2", "h2"))
		}, extra: 2},
		{kind: "finally", build: func(n string) stepflow.Node[D] {
			return combinators.Finally(n, step("body", "body"), step("c1", "c1"), step("c2", "c2"))
		}, extra: 2},
		{kind: "when", build: func(n string) stepflow.Node[D] {
			return combinators.When(n, func(context.Context, *D) (bool, error) { return true, nil }, step("t1", "t1"), step("t2", "t2"))
		}, extra: 1},
		{kind: "switch", build: func(n string) stepflow.Node[D] {
			return combinators.Switch(n, func(context.Context, *D) (string, error) { return "b", nil },
				combinators.On("a", step("a1", "a1")), combinators.On("b", step("b1", "b1"), step("b2", "b2")))
		}, extra: 1},
		{kind: "optional", build: func(n string) stepflow.Node[D] {
			return combinators.Optional(n, step("o1", "o1"), step("o2", "o2"))
		}, extra: 1},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			v1 := must(stepflow.New("f/v1", step("pre", "pre"), tc.build("x"), step("post", "post")))
			v2 := must(stepflow.New("f/v2", step("pre", "pre"), tc.build("y"), step("post", "post")))
			n, _ := v1.Node("x")
			require.Equal(t, tc.kind, n.Kind)
			reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2").Rename("x", "y"))
			require.NoError(t, err)

			ctx, c := newCtx()
			st := advance(t, ctx, c, v1, v1.Start(D{}), 1) // pre ran; x entered
			st = advance(t, ctx, c, v1, st, tc.extra)
			old := st.Root.Child("x")
			require.NotNil(t, old, "still inside x: %v", st.Positions())
			require.NotEqual(t, stepflow.Frame{Name: "x"}, ownFields(*old), "x holds memory")
			require.NoError(t, v1.Validate(st), "the old state is valid")

			moved, err := reg.Migrate(st)
			require.NoError(t, err)
			require.NoError(t, v2.Validate(moved))
			assert.Equal(t, renamed(*old, "y"), *moved.Root.Child("y"))
			var want []string
			for _, p := range st.Positions() {
				want = append(want, "y"+strings.TrimPrefix(p, "x"))
			}
			assert.Equal(t, want, moved.Positions())
			assert.Equal(t, st.Status, moved.Status)
			assert.Equal(t, st.WakeAt, moved.WakeAt)

			if tc.signal {
				st, err = v1.Signal(st, "go", nil)
				require.NoError(t, err)
				moved, err = reg.Signal(moved, "go", nil)
				require.NoError(t, err)
			}
			c1 := *c
			want1 := finish(t, ctx, c, v1, st)
			*c = c1
			got := finish(t, ctx, c, reg, moved)
			assert.Equal(t, want1.Status, got.Status)
			assert.Equal(t, want1.Data.Ran, got.Data.Ran, "finishing on v2 does what v1 would have done")
		})
	}
}

func TestWrapInNewRetryOrTimeLimit(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), wait("w", 3), step("b", "b")))
	for _, wrap := range []stepflow.Node[D]{
		combinators.Retry("guard", combinators.RetryPolicy{}, wait("w", 3)),
		combinators.TimeLimit("guard", time.Hour, wait("w", 3)),
		combinators.Finally("guard", wait("w", 3), step("cleanup", "cleanup")),
	} {
		v2 := must(stepflow.New("f/v2", step("a", "a"), wrap, step("b", "b")))
		reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2").Rename("w", "guard/w"))
		require.NoError(t, err)
		ctx, c := newCtx()
		st := advance(t, ctx, c, v1, until(t, ctx, c, v1, v1.Start(D{}), "w"), 1)
		moved, err := reg.Migrate(st)
		require.NoError(t, err)
		g := moved.Root.Child("guard")
		assert.Equal(t, stepflow.Frame{Name: "guard", Children: []stepflow.Frame{renamed(*st.Root.Child("w"), "w")}}, *g,
			"the new wrapper starts empty, the wait keeps its polls")
		assert.Equal(t, stepflow.Running, moved.Status)
		done := finish(t, ctx, c, reg, moved)
		assert.Equal(t, stepflow.Done, done.Status)
		assert.Equal(t, 3, done.Data.Polls, "no poll repeated")
	}
}

func TestNewParallelOrForEachAroundPositionNeedsARule(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), step("b", "b"), step("c", "c")))
	v2 := must(stepflow.New("f/v2", step("a", "a"),
		combinators.Parallel("both", step("b", "b"), step("c", "c"))))
	m := versions.NewMigration[D]("f/v1", "f/v2").Rename("b", "both/b").Rename("c", "both/c")
	err := versions.Check(m, versions.Structure(v1), versions.Structure(v2))
	assert.Equal(t, []string{
		`stepflow: invalid migration f/v1 -> f/v2: position "b" would enter "both", a parallel that is new or changed its kind, ` +
			`which would start all its children again; add a Restart or Continue rule to say so`,
	}, lines(err))

	// Saying where processes go is accepted.
	m = versions.NewMigration[D]("f/v1", "f/v2").Continue("b", "both").Continue("c", "both")
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m)
	require.NoError(t, err)
	ctx, c := newCtx()
	st := until(t, ctx, c, v1, v1.Start(D{}), "c")
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"both"}, moved.Positions())
	assert.Equal(t, []string{"a", "b", "b", "c"}, finish(t, ctx, c, reg, moved).Data.Ran)

	// A Custom rule that moves a position into the new parallel fails at
	// run time with the same message.
	m = versions.NewMigration[D]("f/v1", "f/v2").Continue("b", "both").
		Custom("c", func(d *versions.Decision[D]) error { d.MoveTo("both/c"); return nil })
	reg, err = versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m)
	require.NoError(t, err)
	_, err = reg.Migrate(st)
	require.ErrorIs(t, err, versions.ErrInvalidMigration)
	assert.Contains(t, err.Error(), `position "c" would enter "both", a parallel`)
}

func TestParallelBranchRemoved(t *testing.T) {
	v1 := must(stepflow.New("f/v1", combinators.Parallel("p",
		combinators.Sequence("l", step("l1", "l1"), step("l2", "l2")),
		combinators.Sequence("r", step("r1", "r1"), step("r2", "r2"), step("r3", "r3")))))
	v2 := must(stepflow.New("f/v2", combinators.Parallel("p",
		combinators.Sequence("l", step("l1", "l1"), step("l2", "l2")),
		combinators.Sequence("r", step("r1", "r1"), step("r3", "r3")))))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2").Continue("p/r/r2", "p/r/r3"))
	require.NoError(t, err)
	ctx, c := newCtx()
	st := until(t, ctx, c, v1, v1.Start(D{}), "p/r/r2")
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"p/l/l2", "p/r/r3"}, moved.Positions())
	assert.Equal(t, []string{"l1", "r1", "l2", "r3"}, finish(t, ctx, c, reg, moved).Data.Ran)
}

func TestRetryBecomingSequenceForgetsAttempts(t *testing.T) {
	policy := combinators.RetryPolicy{MaxAttempts: 5, InitialInterval: time.Minute}
	v1 := must(stepflow.New("f/v1", combinators.Retry("x", policy, flaky("call", 3)), step("end", "end")))
	v2 := must(stepflow.New("f/v2", combinators.Sequence("x", flaky("call", 3)), step("end", "end")))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2"))
	require.NoError(t, err)
	ctx, c := newCtx()
	st := advance(t, ctx, c, v1, v1.Start(D{}), 1) // first attempt fails
	require.Equal(t, stepflow.Waiting, st.Status)
	require.Equal(t, uint32(2), st.Root.Child("x").Count)
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Frame{Name: "x"}, *moved.Root.Child("x"), "retry -> sequence: attempts and backoff are dropped")
	assert.Equal(t, stepflow.Running, moved.Status)
	assert.True(t, moved.WakeAt.IsZero())
}

func TestDropParallelBranch(t *testing.T) {
	v1 := must(stepflow.New("f/v1", combinators.Parallel("p",
		combinators.Sequence("l", step("l1", "l1"), step("l2", "l2")),
		combinators.Sequence("r", step("r1", "r1"), step("r2", "r2"), step("r3", "r3"), step("r4", "r4"))),
		step("end", "end")))
	v2 := must(stepflow.New("f/v2", combinators.Parallel("p",
		combinators.Sequence("l", step("l1", "l1"), step("l2", "l2"))),
		step("end", "end")))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2").Drop("p/r"))
	require.NoError(t, err)
	ctx, c := newCtx()

	// Both branches running: the other branch goes on alone.
	st := until(t, ctx, c, v1, v1.Start(D{}), "p/r/r2")
	require.Equal(t, []string{"p/l/l2", "p/r/r2"}, st.Positions())
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"p/l/l2"}, moved.Positions())
	assert.Equal(t, ownFields(*st.Root.Child("p")), ownFields(*moved.Root.Child("p")), "the parallel keeps its memory")
	assert.Equal(t, []string{"l1", "r1", "l2", "end"}, finish(t, ctx, c, reg, moved).Data.Ran)

	// Only the dropped branch left: the parallel completes.
	st = until(t, ctx, c, v1, st, "p/r/r4")
	require.Equal(t, []string{"p/r/r4"}, st.Positions())
	moved, err = reg.Migrate(st)
	require.NoError(t, err)
	require.NotNil(t, moved.Root.Child("p"))
	assert.Equal(t, []string{"p"}, moved.Positions(), "the parallel, about to complete")
	assert.Equal(t, []string{"l1", "r1", "l2", "r2", "r3", "end"}, finish(t, ctx, c, reg, moved).Data.Ran)

	// Drop applies to branches of a Parallel only.
	err = versions.Check(versions.NewMigration[D]("f/v1", "f/v2").Drop("p/r/r2").Drop("end"),
		versions.Structure(v1), versions.Structure(v2))
	assert.Equal(t, []string{
		`stepflow: invalid migration f/v1 -> f/v2: Drop("p/r/r2"): "p/r/r2" is not a branch of a Parallel`,
		`stepflow: invalid migration f/v1 -> f/v2: Drop("end"): "end" is not a branch of a Parallel`,
	}, lines(err))
	seq := must(stepflow.New("f/v2", combinators.Sequence("p",
		combinators.Sequence("l", step("l1", "l1"), step("l2", "l2"))), step("end", "end")))
	err = versions.Check(versions.NewMigration[D]("f/v1", "f/v2").Drop("p/r"), versions.Structure(v1), versions.Structure(seq))
	assert.Equal(t, []string{
		`stepflow: invalid migration f/v1 -> f/v2: Drop("p/r"): its Parallel becomes "p", which is not a Parallel of f/v2`,
	}, lines(err))
}
