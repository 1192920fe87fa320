package stepflow_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

func introspectFlow(every time.Duration) *stepflow.Flow[deploy] {
	no := func(context.Context, *deploy) (bool, error) { return false, nil }
	return stepflow.Must(stepflow.New("intro/v1",
		combinators.Do("first", ok),
		combinators.Case("shouldDeploy", yes,
			combinators.Do("createDeployRequest", ok),
			combinators.WaitFor("acceptedDeployRequest", no, combinators.Every(every)),
		),
		combinators.Do("last", func(context.Context, *deploy) error { return errors.New("validation failed") }),
	))
}

func TestNodesAndFingerprint(t *testing.T) {
	f := introspectFlow(10 * time.Second)
	var paths []string
	for _, n := range f.Nodes() {
		paths = append(paths, n.Path+":"+n.Kind)
	}
	assert.Equal(t, []string{"first:do", "shouldDeploy:case", "shouldDeploy/createDeployRequest:do",
		"shouldDeploy/acceptedDeployRequest:wait", "last:do"}, paths)
	n, ok := f.Node("shouldDeploy")
	require.True(t, ok)
	assert.Equal(t, []string{"createDeployRequest", "acceptedDeployRequest"}, n.Children)
	inner, _ := f.Node("shouldDeploy/acceptedDeployRequest")
	assert.Equal(t, "then", inner.Branch)
	first, _ := f.Node("first")
	assert.Empty(t, first.Branch)
	_, ok = f.Node("nope")
	assert.False(t, ok)

	assert.Equal(t, f.Fingerprint(), introspectFlow(10*time.Second).Fingerprint(), "stable")
	assert.NotEqual(t, f.Fingerprint(), introspectFlow(20*time.Second).Fingerprint(), "a policy change changes it")
	assert.Len(t, f.Fingerprint(), 24)
}

func TestDescribeWaitingAndFailed(t *testing.T) {
	f := introspectFlow(10 * time.Second)
	clk := newClock()
	ctx := stepflow.WithClock(context.Background(), clk)
	st := f.Start(deploy{})
	for st.Status != stepflow.Waiting {
		var err error
		st, err = f.Apply(ctx, st)
		require.NoError(t, err)
	}
	d, err := f.Describe(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"shouldDeploy/acceptedDeployRequest"}, d.Positions)
	assert.Equal(t, "waiting until 2026-01-02T03:04:15Z for shouldDeploy/acceptedDeployRequest (poll 1 answered not yet)", d.Why)
	assert.Contains(t, d.Tree, "[x] first (do)")
	assert.Contains(t, d.Tree, "[~] shouldDeploy (case): took then")
	assert.Contains(t, d.Tree, "[x] createDeployRequest (do)")
	assert.Contains(t, d.Tree, "[~] acceptedDeployRequest (wait): poll 1 answered not yet; until 2026-01-02T03:04:15Z")
	assert.Contains(t, d.Tree, "[ ] last (do)")
	require.Len(t, d.Active, 2)
	assert.True(t, d.Active[1].Leaf)

	mm, err := f.DescribeMermaid(st)
	require.NoError(t, err)
	assert.Contains(t, mm, "class n0 done")
	assert.Contains(t, mm, "class n3 waiting")
	assert.NotContains(t, mm, "class n4")

	// Drive to the failure of the last step.
	st = stepflow.State[deploy]{Version: st.Version, Status: stepflow.Running,
		Root: stepflow.Frame{Children: []stepflow.Frame{{Name: "last"}}}}
	st, err = f.Apply(ctx, st)
	require.Error(t, err)
	d, err = f.Describe(st)
	require.NoError(t, err)
	assert.Equal(t, "failed at last (error): validation failed", d.Why)
	assert.Contains(t, d.Tree, "[!] last (do): error: validation failed")
	mm, _ = f.DescribeMermaid(st)
	assert.Contains(t, mm, "class n4 failed")

	_, err = f.Describe(stepflow.State[deploy]{Version: "intro/v1", Root: stepflow.Frame{Children: []stepflow.Frame{{Name: "ghost"}}}})
	assert.ErrorIs(t, err, stepflow.ErrInvalidState)
}

func TestMermaidListsEveryNode(t *testing.T) {
	f := introspectFlow(time.Second)
	m := f.Mermaid()
	assert.True(t, strings.HasPrefix(m, "flowchart TD\n"))
	for _, n := range f.Nodes() {
		assert.Contains(t, m, n.Name)
	}
	assert.Contains(t, m, "subgraph n1")
	assert.Contains(t, m, "n0 --> n1")
	assert.NotContains(t, m, "classDef", "no highlighting without a state")
}

func TestDescribeShowsSkippedBranches(t *testing.T) {
	f := stepflow.Must(stepflow.New("skip/v1",
		combinators.Case("shouldDeploy", func(context.Context, *deploy) (bool, error) { return false, nil },
			combinators.Do("createDeployRequest", ok),
			combinators.Do("merge", ok),
		).Else(combinators.Do("report", ok), combinators.Do("notify", ok))))
	st, err := f.Apply(context.Background(), f.Start(deploy{}))
	require.NoError(t, err)
	st, err = f.Apply(context.Background(), st)
	require.NoError(t, err)
	d, err := f.Describe(st)
	require.NoError(t, err)
	assert.Contains(t, d.Tree, "[-] createDeployRequest (do)")
	assert.Contains(t, d.Tree, "[-] merge (do)")
	assert.Contains(t, d.Tree, "[x] report (do)")
	assert.Contains(t, d.Tree, "[>] notify (do)")
	mm, err := f.DescribeMermaid(st)
	require.NoError(t, err)
	assert.Contains(t, mm, "class n1 skipped")
}
