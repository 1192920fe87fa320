package versions_test

import (
	"context"
	"testing"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func items3(context.Context, *D) ([]int, error) { return []int{1, 2, 3}, nil }

// TestForEachMemoryCarriesOver renames a ForEach while two items are in
// progress: items, progress counters and the instances arrive unchanged.
func TestForEachMemoryCarriesOver(t *testing.T) {
	build := func(n string) stepflow.Node[D] {
		return combinators.ForEach(n, items3, step("e1", "e1"), step("e2", "e2")).Concurrency(2)
	}
	v1 := must(stepflow.New("f/v1", step("pre", "pre"), build("x"), step("post", "post")))
	v2 := must(stepflow.New("f/v2", step("pre", "pre"), build("y"), step("post", "post")))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2").Rename("x", "y"))
	require.NoError(t, err)
	ctx, c := newCtx()
	st := advance(t, ctx, c, v1, v1.Start(D{}), 3)
	require.Equal(t, []string{"x/[0]/e2", "x/[1]/e2"}, st.Positions())
	require.NoError(t, v1.Validate(st), "the old state is valid")

	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	require.NoError(t, v2.Validate(moved))
	assert.Equal(t, renamed(*st.Root.Child("x"), "y"), *moved.Root.Child("y"))
	assert.Equal(t, []string{"y/[0]/e2", "y/[1]/e2"}, moved.Positions())
	c0 := *c
	want := finish(t, ctx, c, v1, st)
	*c = c0
	assert.Equal(t, want.Data.Ran, finish(t, ctx, c, reg, moved).Data.Ran)
}

func TestContinueInsideForEachKeepsTheInstance(t *testing.T) {
	items := func(context.Context, *D) ([]int, error) { return []int{1, 2}, nil }
	v1 := must(stepflow.New("f/v1", combinators.ForEach("each", items, step("e1", "e1"), step("e2", "e2"), step("e3", "e3"))))
	v2 := must(stepflow.New("f/v2", combinators.ForEach("each", items, step("e1", "e1"), step("e3", "e3"))))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2").Continue("each/e2", "each/e3"))
	require.NoError(t, err)
	ctx, c := newCtx()
	st := until(t, ctx, c, v1, v1.Start(D{}), "each/[0]/e2")
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"each/[0]/e3"}, moved.Positions())
	assert.Equal(t, ownFields(*st.Root.Child("each")), ownFields(*moved.Root.Child("each")), "the ForEach keeps its items and progress")
	assert.Equal(t, []string{"e1", "e3", "e1", "e3"}, finish(t, ctx, c, reg, moved).Data.Ran)
}

func TestNodeBecomingForEachNeedsARule(t *testing.T) {
	v1 := must(stepflow.New("f/v1", combinators.Sequence("g", step("e1", "e1"), step("e2", "e2"))))
	v2 := must(stepflow.New("f/v2", combinators.ForEach("g", items3, step("e1", "e1"), step("e2", "e2"))))
	err := versions.Check(versions.NewMigration[D]("f/v1", "f/v2"), versions.Structure(v1), versions.Structure(v2))
	assert.Equal(t, []string{
		`stepflow: invalid migration f/v1 -> f/v2: position "g/e1" would enter "g", a foreach that is new or changed its kind, ` +
			`which would start all its children again; add a Restart or Continue rule to say so`,
	}, lines(err))
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, versions.NewMigration[D]("f/v1", "f/v2").Restart("g"))
	require.NoError(t, err)
	ctx, c := newCtx()
	st := advance(t, ctx, c, v1, v1.Start(D{}), 1)
	require.Equal(t, []string{"g/e2"}, st.Positions())
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"g"}, moved.Positions())
	assert.Equal(t, []string{"e1", "e1", "e2", "e1", "e2", "e1", "e2"}, finish(t, ctx, c, reg, moved).Data.Ran)
}
