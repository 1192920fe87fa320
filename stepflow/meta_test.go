package stepflow_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Metadata is reported by Nodes and NodesTagged, changes neither the
// fingerprint nor what the flow does, and annotations compose.
func TestAnnotateAttachesMetadataOnly(t *testing.T) {
	var calls []string
	step := func(name string) func(context.Context, *int) error {
		return func(context.Context, *int) error { calls = append(calls, name); return nil }
	}
	build := func(annotate bool) *stepflow.Flow[int] {
		var a, b stepflow.Node[int] = combinators.Do("migrate", step("migrate")), combinators.Do("notify", step("notify"))
		if annotate {
			a = stepflow.Annotate(stepflow.Annotate(a, stepflow.Meta{Description: "old", Tags: []string{"db"}}),
				stepflow.Meta{Description: "Runs the schema migration.", Tags: []string{"owner=platform"}})
			b = stepflow.Annotate(b, stepflow.Meta{Tags: []string{"external"}})
		}
		return stepflow.Must(stepflow.New("meta/v1", combinators.Sequence("main", a, b)))
	}
	plain, annotated := build(false), build(true)
	assert.Equal(t, plain.Fingerprint(), annotated.Fingerprint(), "metadata does not enter the fingerprint")

	n, ok := annotated.Node("main/migrate")
	require.True(t, ok)
	assert.Equal(t, "migrate", n.Name)
	assert.Equal(t, "do", n.Kind)
	assert.Equal(t, "Runs the schema migration.", n.Meta.Description)
	assert.Equal(t, []string{"db", "owner=platform"}, n.Meta.Tags)

	tagged := annotated.NodesTagged("external")
	require.Len(t, tagged, 1)
	assert.Equal(t, "main/notify", tagged[0].Path)
	assert.Empty(t, plain.NodesTagged("external"))

	for _, f := range []*stepflow.Flow[int]{plain, annotated} {
		calls = nil
		st := f.Start(0)
		var err error
		for !st.Terminal() {
			st, err = f.Apply(context.Background(), st)
			require.NoError(t, err)
		}
		assert.Equal(t, []string{"migrate", "notify"}, calls)
		assert.Equal(t, uint64(2), st.Steps)
	}
}

// Data with a Clone method is cloned once per Apply at no cost beyond the
// method's own: a Clone that allocates nothing leaves Apply allocating
// nothing of its own (the step contexts come in slabs, one allocation per
// 21 calls, which the average of 100 rounds down to zero).
func TestCloneCostsNoAllocation(t *testing.T) {
	nodes := make([]stepflow.Node[cloned], 10)
	for i := range nodes {
		nodes[i] = combinators.Do(fmt.Sprintf("s%d", i), func(_ context.Context, d *cloned) error { d.N++; return nil })
	}
	f := stepflow.Must(stepflow.New("clone/v1", nodes...))
	ctx := stepflow.WithClock(context.Background(), fixedClock)
	st := f.Start(cloned{})
	allocs := testing.AllocsPerRun(100, func() {
		next, err := f.Apply(ctx, st)
		if err != nil || next.Data.N != st.Data.N+1 {
			t.Fatalf("apply: %v, %d", err, next.Data.N)
		}
		if next.Terminal() {
			next = f.Start(cloned{})
		}
		st = next
	})
	assert.Zero(t, allocs)
}
