package versions_test

import (
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
