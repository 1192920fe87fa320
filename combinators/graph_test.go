package combinators_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// trace records the order in which tasks ran.
type trace struct {
	Ran []string
}

func note(name string) stepflow.Node[trace] {
	return combinators.Do(name, func(_ context.Context, t *trace) error {
		t.Ran = append(t.Ran, name)
		return nil
	})
}

func TestGraphStartsTasksAsTheirNeedsAreDone(t *testing.T) {
	// c needs a; d needs a and b; b is slow (it waits a minute).
	slowB := combinators.Sequence("b", combinators.Sleep[trace]("pause", time.Minute), note("b-done"))
	f := stepflow.Must(stepflow.New("graph/v1",
		combinators.Graph("g",
			combinators.After(note("a")),
			combinators.After(slowB),
			combinators.After(note("c"), "a"),
			combinators.After(note("d"), "a", "b"),
		),
	))
	ctx := stepflow.WithClock(context.Background(), stepflow.ClockFunc(func() time.Time { return t0 }))
	st := f.Start(trace{})
	for range 4 {
		var err error
		st, err = f.Apply(ctx, st)
		require.NoError(t, err)
	}
	assert.Equal(t, stepflow.Waiting, st.Status, "b sleeps")
	assert.Equal(t, []string{"a", "c"}, st.Data.Ran, "c ran without waiting for b")
	d, err := f.Describe(st)
	require.NoError(t, err)
	status := map[string]stepflow.NodeStatus{}
	for _, n := range d.Nodes {
		status[n.Path] = n.Status
	}
	assert.Equal(t, stepflow.NodeDone, status["g/a"])
	assert.Equal(t, stepflow.NodeDone, status["g/c"])
	assert.Equal(t, stepflow.NodeWaiting, status["g/b"])
	assert.Equal(t, stepflow.NodePending, status["g/d"], "d waits for b")
	assert.Contains(t, d.Tree, "d (do) after a, b")

	st = runToEnd(f, st)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, []string{"a", "c", "b-done", "d"}, st.Data.Ran)
}

func TestGraphIsCheckedAtNew(t *testing.T) {
	for _, tc := range []struct {
		tasks []combinators.Task[trace]
		want  string
	}{
		{[]combinators.Task[trace]{combinators.After(note("a"), "x")}, `task "a" needs "x", which is not a task of the graph`},
		{[]combinators.Task[trace]{combinators.After(note("a"), "a")}, `task "a" needs itself`},
		{[]combinators.Task[trace]{combinators.After(note("a")), combinators.After(note("b"), "a", "a")}, `task "b" needs "a" twice`},
		{[]combinators.Task[trace]{combinators.After(note("a"), "c"), combinators.After(note("b"), "a"), combinators.After(note("c"), "b")},
			"tasks depend on each other in a cycle: a -> c -> b -> a"},
		{nil, "graph without tasks"},
	} {
		_, err := stepflow.New("graph/v1", combinators.Graph("g", tc.tasks...))
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestGraphFailures(t *testing.T) {
	boom := combinators.Do("b", func(context.Context, *trace) error { return errors.New("boom") })
	tasks := []combinators.Task[trace]{
		combinators.After(note("a")),
		combinators.After(boom),
		combinators.After(note("c"), "b"),
		combinators.After(note("d"), "a"),
		combinators.After(note("report"), "c", "d").Always(),
	}
	t.Run("fail fast", func(t *testing.T) {
		f := stepflow.Must(stepflow.New("graph/v1", combinators.Graph("g", tasks...)))
		st := runToEnd(f, f.Start(trace{}))
		assert.Equal(t, stepflow.Failed, st.Status)
		assert.Equal(t, "g/b", st.Err.Path)
		assert.Equal(t, []string{"a"}, st.Data.Ran, "nothing starts after the failure")
	})
	t.Run("wait all", func(t *testing.T) {
		f := stepflow.Must(stepflow.New("graph/v1", combinators.Graph("g", tasks...).WaitAll()))
		st := runToEnd(f, f.Start(trace{}))
		assert.Equal(t, stepflow.Failed, st.Status)
		assert.Equal(t, []string{"a", "d", "report"}, st.Data.Ran, "c is skipped; report runs anyway")
		assert.Contains(t, st.Err.Message, "1 failed: ")
		assert.Contains(t, st.Err.Message, "boom")
		d, err := f.Describe(st)
		require.NoError(t, err)
		status := map[string]stepflow.NodeStatus{}
		for _, n := range d.Nodes {
			status[n.Path] = n.Status
		}
		assert.Equal(t, stepflow.NodeFailed, status["g"])
	})
}

func TestGraphMermaidDrawsTheEdges(t *testing.T) {
	f := stepflow.Must(stepflow.New("graph/v1",
		combinators.Graph("g", combinators.After(note("a")), combinators.After(note("b")), combinators.After(note("c"), "a", "b")),
	))
	m := f.Mermaid()
	assert.Contains(t, m, "n1 --> n3")
	assert.Contains(t, m, "n2 --> n3")
	assert.NotContains(t, m, "n1 --> n2", "a and b do not depend on each other")
	info, ok := f.Node("g/c")
	require.True(t, ok)
	assert.Equal(t, []string{"a", "b"}, info.Needs)
	g, _ := f.Node("g")
	assert.Contains(t, g.Detail, "c after a,b", "edges enter the fingerprint")
}

// TestGraphNeverRunsATaskBeforeItsNeeds: on random acyclic graphs whose
// tasks take random numbers of Applies, every task runs after each task
// it needs, and every task runs once.
func TestGraphNeverRunsATaskBeforeItsNeeds(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 8).Draw(rt, "tasks")
		var tasks []combinators.Task[trace]
		needs := map[string][]string{}
		for i := range n {
			name := fmt.Sprintf("t%d", i)
			var deps []string
			for j := range i { // only earlier tasks: no cycle
				if rapid.Bool().Draw(rt, fmt.Sprintf("%s needs t%d", name, j)) {
					deps = append(deps, fmt.Sprintf("t%d", j))
				}
			}
			needs[name] = deps
			var node stepflow.Node[trace] = note(name)
			if waits := rapid.IntRange(0, 2).Draw(rt, name+" waits"); waits > 0 {
				node = combinators.Sequence(name, combinators.Sleep[trace]("pause", time.Duration(waits)*time.Minute), note(name))
			}
			tasks = append(tasks, combinators.After(node, deps...))
		}
		// Shuffle the declaration order: it must not matter.
		perm := rapid.Permutation(tasks).Draw(rt, "order")
		f, err := stepflow.New("graph/v1", combinators.Graph("g", perm...))
		if err != nil {
			rt.Fatal(err)
		}
		st := runToEnd(f, f.Start(trace{}))
		if st.Status != stepflow.Done {
			rt.Fatalf("status %s: %v", st.Status, st.Err)
		}
		if len(st.Data.Ran) != n {
			rt.Fatalf("ran %v, want each of %d once", st.Data.Ran, n)
		}
		for i, name := range st.Data.Ran {
			for _, d := range needs[name] {
				if !slices.Contains(st.Data.Ran[:i], d) {
					rt.Fatalf("%s ran before %s, which it needs: %v", name, d, st.Data.Ran)
				}
			}
		}
	})
}
