package versions_test

import (
	"context"
	"errors"
	"github.com/stepflow-io/go-stepflow/combinators"
	"testing"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAutomaticMappingInsertedStep(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), step("b", "b"), step("c", "c")))
	v2 := must(stepflow.New("f/v2", step("a", "a"), step("new", "new"), step("b", "b"), step("c", "c")))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2"))
	require.NoError(t, err)

	ctx, c := newCtx()
	// Before the inserted step: the process runs it.
	st := v1.Start(D{})
	st = finish(t, ctx, c, reg, st)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, []string{"a", "new", "b", "c"}, st.Data.Ran)

	// Past it: the process goes on where it was and does not go back.
	st = until(t, ctx, c, v1, v1.Start(D{}), "b")
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, "f/v2", moved.Version)
	assert.Equal(t, []string{"b"}, moved.Positions())
	assert.Equal(t, "f/v1", st.Version, "the input is not changed")
	moved = finish(t, ctx, c, reg, moved)
	assert.Equal(t, []string{"a", "b", "c"}, moved.Data.Ran)
}

func TestRenameCarriesMemory(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), wait("monitor", 3), step("c", "c")))
	v2 := must(stepflow.New("f/v2", step("a", "a"), wait("monitorRollout", 3), step("c", "c")))
	m := versions.NewMigration[D]("f/v1", "f/v2").Rename("monitor", "monitorRollout")
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m)
	require.NoError(t, err)

	ctx, c := newCtx()
	st := until(t, ctx, c, v1, v1.Start(D{}), "monitor")
	st = advance(t, ctx, c, v1, st, 2) // two polls, both false
	require.Equal(t, stepflow.Waiting, st.Status)
	old := *st.Root.Child("monitor")
	require.Equal(t, uint32(2), old.Count)

	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	got := *moved.Root.Child("monitorRollout")
	assert.Equal(t, old.Count, got.Count)
	assert.Equal(t, old.Since, got.Since)
	assert.Equal(t, old.Until, got.Until)
	assert.Equal(t, stepflow.Waiting, moved.Status, "everything carried over: the state keeps waiting")
	assert.Equal(t, st.WakeAt, moved.WakeAt)

	moved = finish(t, ctx, c, reg, moved)
	assert.Equal(t, []string{"a", "c"}, moved.Data.Ran)
	assert.Equal(t, 3, moved.Data.Polls, "the wait's third poll is its first on v2")
}

func TestRenameGroupMovesItsChildren(t *testing.T) {
	v1 := must(stepflow.New("f/v1", combinators.Sequence("g", step("a", "a"), step("b", "b")), step("c", "c")))
	v2 := must(stepflow.New("f/v2", combinators.Sequence("h", step("a", "a"), step("b2", "b")), step("c", "c")))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil,
		versions.NewMigration[D]("f/v1", "f/v2").Rename("g", "h").Rename("g/b", "h/b2"))
	require.NoError(t, err)
	ctx, c := newCtx()
	for _, tc := range []struct{ at, want string }{{"g", "h"}, {"g/b", "h/b2"}, {"c", "c"}} {
		st := until(t, ctx, c, v1, v1.Start(D{}), tc.at)
		moved, err := reg.Migrate(st)
		require.NoError(t, err, tc.at)
		assert.Equal(t, []string{tc.want}, moved.Positions())
		assert.Equal(t, []string{"a", "b", "c"}, finish(t, ctx, c, reg, moved).Data.Ran)
	}
}

func TestWrapInCaseIsARename(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), step("b", "b"), step("c", "c")))
	v2 := must(stepflow.New("f/v2", step("a", "a"),
		combinators.Case("guard", flag, step("b", "b")), step("c", "c")))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil,
		versions.NewMigration[D]("f/v1", "f/v2").Rename("b", "guard/b"))
	require.NoError(t, err)
	ctx, c := newCtx()
	st := until(t, ctx, c, v1, v1.Start(D{Flag: true}), "b")
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"guard/b"}, moved.Positions())
	assert.Empty(t, moved.Root.Child("guard").Branch, "the new enclosing node starts fresh")
	assert.Equal(t, []string{"a", "b", "c"}, finish(t, ctx, c, reg, moved).Data.Ran)
}

func TestContinueAfterRemovedStep(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), combinators.Sequence("g", step("x", "x"), step("y", "y")), step("b", "b"), step("c", "c")))
	v2 := must(stepflow.New("f/v2", step("a", "a"), step("c", "c")))
	m := versions.NewMigration[D]("f/v1", "f/v2").Continue("g", "c").Continue("b", "c")
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m)
	require.NoError(t, err)
	ctx, c := newCtx()
	for _, at := range []string{"g/x", "g/y", "b"} {
		st := until(t, ctx, c, v1, v1.Start(D{}), at)
		moved, err := reg.Migrate(st)
		require.NoError(t, err, at)
		assert.Equal(t, []string{"c"}, moved.Positions(), at)
		done := finish(t, ctx, c, reg, moved)
		assert.Equal(t, "c", done.Data.Ran[len(done.Data.Ran)-1])
		assert.Equal(t, st.Data.Ran, done.Data.Ran[:len(done.Data.Ran)-1], "nothing ran twice")
	}
}

func TestRestartGroup(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), combinators.Sequence("g", step("x", "x"), step("y", "y"))))
	v2 := must(stepflow.New("f/v2", step("a", "a"), combinators.Sequence("g", step("x", "x"), step("check", "check"), step("y", "y"))))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2").Restart("g"))
	require.NoError(t, err)
	ctx, c := newCtx()
	st := until(t, ctx, c, v1, v1.Start(D{}), "g/y")
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"g"}, moved.Positions(), "the group is entered anew")
	assert.Equal(t, []string{"a", "x", "x", "check", "y"}, finish(t, ctx, c, reg, moved).Data.Ran,
		"the rule says so: x runs again")
}

func TestRestartRenamedGroupAndPrecedence(t *testing.T) {
	v1 := must(stepflow.New("f/v1", combinators.Sequence("g", step("x", "x"), step("y", "y"), step("z", "z"))))
	v2 := must(stepflow.New("f/v2", combinators.Sequence("h", step("x", "x"), step("y2", "y"), step("z", "z"))))
	m := versions.NewMigration[D]("f/v1", "f/v2").Rename("g", "h").Restart("g").Continue("g/y", "h/z")
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m)
	require.NoError(t, err)
	ctx, c := newCtx()
	// The nearest rule wins: Continue for g/y, Restart for the rest of g.
	st := until(t, ctx, c, v1, v1.Start(D{}), "g/y")
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"h/z"}, moved.Positions())
	st = until(t, ctx, c, v1, v1.Start(D{}), "g/z")
	moved, err = reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"h"}, moved.Positions())
}

func TestCustomRule(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), step("prepare", "prepare"), step("b", "b")))
	v2 := must(stepflow.New("f/v2", step("a", "a"), step("prepareStaging", "ps"), step("prepareProd", "pp"), step("b", "b")))
	m := versions.NewMigration[D]("f/v1", "f/v2").Custom("prepare", func(d *versions.Decision[D]) error {
		assert.Equal(t, "prepare", d.Path)
		d.Data.Env = "migrated"
		if d.Data.Flag {
			d.ContinueAt("prepareProd")
		} else {
			d.MoveTo("prepareStaging")
		}
		return nil
	})
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m)
	require.NoError(t, err)
	ctx, c := newCtx()
	for _, tc := range []struct {
		flag bool
		ran  []string
	}{{false, []string{"a", "ps", "pp", "b"}}, {true, []string{"a", "pp", "b"}}} {
		st := until(t, ctx, c, v1, v1.Start(D{Flag: tc.flag}), "prepare")
		moved, err := reg.Migrate(st)
		require.NoError(t, err)
		assert.Equal(t, "migrated", moved.Data.Env)
		assert.Empty(t, st.Data.Env, "the input's data is not changed")
		assert.Equal(t, tc.ran, finish(t, ctx, c, reg, moved).Data.Ran)
	}
}

func TestCustomRuleFailures(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), step("b", "b")))
	v2 := must(stepflow.New("f/v2", step("a", "a"), step("c", "c")))
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		fn   func(*versions.Decision[D]) error
		is   error
		msg  string
	}{
		{"no decision", func(*versions.Decision[D]) error { return nil }, versions.ErrNoTarget,
			`stepflow: f/v1 -> f/v2: position "b" has no target (no node "b" in f/v2); add a Rename, Continue, Restart or Custom rule for it`},
		{"error", func(*versions.Decision[D]) error { return boom }, boom,
			`stepflow: f/v1 -> f/v2: Custom("b") at "b": boom`},
		{"unknown target", func(d *versions.Decision[D]) error { d.MoveTo("nowhere"); return nil }, versions.ErrInvalidMigration,
			`stepflow: invalid migration f/v1 -> f/v2: Custom("b"): decided "nowhere" for "b", which is not a node of f/v2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2").Custom("b", tc.fn))
			require.NoError(t, err)
			ctx, c := newCtx()
			st := until(t, ctx, c, v1, v1.Start(D{}), "b")
			got, err := reg.Migrate(st)
			require.ErrorIs(t, err, tc.is)
			assert.EqualError(t, err, tc.msg)
			assert.Equal(t, st, got, "a failed migration returns the state unchanged")
			got, err = reg.Apply(ctx, st)
			require.ErrorIs(t, err, tc.is)
			assert.Equal(t, st, got)
		})
	}
}

func TestFixHook(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), step("b", "b")))
	v2 := must(stepflow.New("f/v2", step("a", "a"), step("b", "b")))
	m := versions.NewMigration[D]("f/v1", "f/v2").Fix(func(from stepflow.State[D], to *stepflow.State[D]) error {
		assert.Equal(t, "f/v1", from.Version)
		assert.Equal(t, "f/v2", to.Version)
		if to.Data.Env == "" {
			to.Data.Env = "production"
		}
		return nil
	})
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m)
	require.NoError(t, err)
	ctx, c := newCtx()
	st := until(t, ctx, c, v1, v1.Start(D{}), "b")
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, "production", moved.Data.Env)

	bad := versions.NewMigration[D]("f/v1", "f/v2").Fix(func(stepflow.State[D], *stepflow.State[D]) error { return errors.New("no env") })
	reg, err = versions.New([]*stepflow.Flow[D]{v1, v2}, nil, bad)
	require.NoError(t, err)
	got, err := reg.Migrate(st)
	assert.EqualError(t, err, "stepflow: f/v1 -> f/v2: fix: no env")
	assert.Equal(t, st, got)
}

func TestContinueStartsFresh(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), wait("w", 5), step("b", "b")))
	v2 := must(stepflow.New("f/v2", step("a", "a"), wait("w2", 5), step("b", "b")))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2").Continue("w", "w2"))
	require.NoError(t, err)
	ctx, c := newCtx()
	st := advance(t, ctx, c, v1, until(t, ctx, c, v1, v1.Start(D{}), "w"), 2)
	require.Equal(t, uint32(2), st.Root.Child("w").Count)
	require.Equal(t, stepflow.Waiting, st.Status)
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Frame{Name: "w2"}, *moved.Root.Child("w2"), "a Continue target is entered fresh")
	assert.Equal(t, stepflow.Running, moved.Status)
	assert.True(t, moved.WakeAt.IsZero())
}

// TestContinueBackIntoCompletedCase follows docs/versioning.md: processes
// past the rollout are sent back to run the new smoke tests. The case is
// re-entered with a fresh frame; the Fix hook keeps its decision.
func TestContinueBackIntoCompletedCase(t *testing.T) {
	v1, v2 := deployV1(), deployV2()
	for _, fix := range []bool{false, true} {
		m := versions.NewMigration[Deploy]("deploy/v1", "deploy/v2").
			Rename("shouldDeploy/monitorDeploymentProgress", "shouldDeploy/monitorRollout").
			Continue("postActualState", "shouldDeploy/runSmokeTests")
		if fix {
			m.Fix(func(_ stepflow.State[Deploy], to *stepflow.State[Deploy]) error {
				if c := to.Root.Child("shouldDeploy"); c != nil && c.Branch == "" {
					c.Branch = combinators.Then
				}
				return nil
			})
		}
		reg, err := versions.New([]*stepflow.Flow[Deploy]{v1, v2}, nil, m)
		require.NoError(t, err)
		st := stepflow.State[Deploy]{Version: "deploy/v1", Status: stepflow.Running,
			Root: stepflow.Frame{Children: []stepflow.Frame{{Name: "postActualState"}}}}
		moved, err := reg.Migrate(st)
		require.NoError(t, err)
		assert.Equal(t, []string{"shouldDeploy/runSmokeTests"}, moved.Positions())
		ctx := context.Background()
		for !moved.Terminal() {
			moved, err = reg.Apply(ctx, moved)
			require.NoError(t, err)
		}
		assert.Equal(t, "passed", moved.Data.Smoke)
	}
}
