package stepflow_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// describeRun drives a flow with a settable clock, jumping to each wake
// time, until stop says so or the process ends.
type describeRun[S any] struct {
	t   *testing.T
	f   *stepflow.Flow[S]
	clk *testClock
	ctx context.Context
	st  stepflow.State[S]
}

func newDescribeRun[S any](t *testing.T, f *stepflow.Flow[S], data S) *describeRun[S] {
	clk := newClock()
	return &describeRun[S]{t: t, f: f, clk: clk, ctx: stepflow.WithClock(context.Background(), clk), st: f.Start(data)}
}

func (r *describeRun[S]) until(stop func(*stepflow.State[S]) bool) {
	r.t.Helper()
	for i := 0; !r.st.Terminal() && !stop(&r.st); i++ {
		require.Less(r.t, i, 1000)
		if r.st.Status == stepflow.Waiting && r.st.WakeAt.After(r.clk.Now()) {
			r.clk.Set(r.st.WakeAt)
		}
		r.st, _ = r.f.Apply(r.ctx, r.st)
	}
}

func (r *describeRun[S]) describe() (stepflow.Description, map[string]stepflow.NodeState) {
	r.t.Helper()
	d, err := r.f.Describe(r.st)
	require.NoError(r.t, err)
	by := map[string]stepflow.NodeState{}
	for _, n := range d.Nodes {
		by[n.Path] = n
	}
	require.Len(r.t, d.Nodes, len(r.f.Nodes()), "every node is described")
	return d, by
}

func statuses(by map[string]stepflow.NodeState, paths ...string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, p+"="+by[p].Status.String())
	}
	return out
}

func never(context.Context, *int) (bool, error) { return false, nil }
func nop(context.Context, *int) error           { return nil }

// A process that failed inside a Finally (a signal wait timed out) shows
// the steps that ran as done, the wait and the nodes above it as failed,
// and the cleanup as done; with or without the record.
func TestDescribeFailedInsideFinally(t *testing.T) {
	for _, record := range []int{0, 32} {
		f := stepflow.Must(stepflow.NewWithOptions("approval/v1", &stepflow.Options{Record: record},
			combinators.Finally("approval",
				combinators.Sequence("body",
					combinators.Do("createRequest", nop),
					combinators.WaitSignal[int]("approved", "approved", nil, combinators.Timeout(time.Hour)),
					combinators.Do("apply", nop)),
				combinators.Do("notify", nop)),
			combinators.Do("after", nop)))
		r := newDescribeRun(t, f, 0)
		r.until(func(*stepflow.State[int]) bool { return false })
		require.Equal(t, stepflow.Failed, r.st.Status)
		d, by := r.describe()
		assert.Equal(t, []string{
			"approval=failed", "approval/body=failed", "approval/body/createRequest=done", "approval/body/approved=failed",
			"approval/body/apply=pending", "approval/notify=done", "after=pending",
		}, statuses(by, "approval", "approval/body", "approval/body/createRequest", "approval/body/approved",
			"approval/body/apply", "approval/notify", "after"), "record %d", record)
		require.NotNil(t, d.Err)
		assert.Equal(t, stepflow.KindTimeout, d.Err.Kind)
		assert.Equal(t, d.Err.Message, by["approval/body/approved"].LastError.Message)
		assert.Contains(t, d.Tree, "[!] approved (signal)")
		assert.Contains(t, d.Tree, "[x] createRequest (do)")
		assert.NotContains(t, d.Tree, "[>]", "nothing is active in a failed process")
		if record > 0 {
			n := by["approval/body/approved"]
			assert.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), n.FirstStart, "the wait started at its first round")
			assert.Equal(t, n.FirstStart.Add(time.Hour), n.LastEnd, "and ended when it timed out")
		}
	}
}

// A canceled process: the nodes on its path are canceled, the ones it
// never reached are skipped.
func TestDescribeCanceled(t *testing.T) {
	f := stepflow.Must(stepflow.New("cancel/v1",
		combinators.Do("a", nop),
		combinators.WaitSignal[int]("approved", "approved", nil),
		combinators.Do("b", nop)))
	r := newDescribeRun(t, f, 0)
	r.until(func(st *stepflow.State[int]) bool { return st.Status == stepflow.Waiting })
	d, by := r.describe()
	assert.Equal(t, "waiting for approved (signal \"approved\")", d.Why)
	var err error
	r.st, err = f.Cancel(r.st, "no longer needed")
	require.NoError(t, err)
	r.until(func(*stepflow.State[int]) bool { return false })
	require.Equal(t, stepflow.Canceled, r.st.Status)
	_, by = r.describe()
	assert.Equal(t, []string{"a=done", "approved=canceled", "b=skipped"}, statuses(by, "a", "approved", "b"))
}

// A finished Case shows the branch it did not take as skipped when the
// record says which it took; without a record it cannot know, and shows
// the case's children as done.
func TestDescribeCaseNotTaken(t *testing.T) {
	build := func(record int) *stepflow.Flow[int] {
		return stepflow.Must(stepflow.NewWithOptions("case/v1", &stepflow.Options{Record: record},
			combinators.Case("deploy", func(context.Context, *int) (bool, error) { return false, nil },
				combinators.Do("rollout", nop)).Else(combinators.Do("report", nop)),
			combinators.WaitSignal[int]("approved", "approved", nil)))
	}
	r := newDescribeRun(t, build(16), 0)
	r.until(func(st *stepflow.State[int]) bool { return st.Status == stepflow.Waiting })
	_, by := r.describe()
	assert.Equal(t, []string{"deploy=done", "deploy/rollout=skipped", "deploy/report=done"}, statuses(by, "deploy", "deploy/rollout", "deploy/report"))
	assert.Equal(t, "else", by["deploy"].Chosen)

	r.st, _ = r.f.Signal(r.st, "approved", nil)
	r.until(func(*stepflow.State[int]) bool { return false })
	require.Equal(t, stepflow.Done, r.st.Status)
	_, by = r.describe()
	assert.Equal(t, []string{"deploy=done", "deploy/rollout=skipped", "deploy/report=done", "approved=done"}, statuses(by, "deploy", "deploy/rollout", "deploy/report", "approved"))

	r = newDescribeRun(t, build(0), 0)
	r.until(func(st *stepflow.State[int]) bool { return st.Status == stepflow.Waiting })
	_, by = r.describe()
	assert.Equal(t, []string{"deploy=done", "deploy/rollout=done", "deploy/report=done"}, statuses(by, "deploy", "deploy/rollout", "deploy/report"))
}

// During a backoff after two failed attempts, the Retry says so, its body
// is pending, and the error that matters is the retried one; once the
// process has recovered and finished, it has no error, and the node keeps
// its last one.
func TestDescribeRetryBackoff(t *testing.T) {
	fails := 2
	errFlaky := errors.New("flaky")
	f := stepflow.Must(stepflow.NewWithOptions("retry/v1", &stepflow.Options{Record: 16},
		combinators.Retry("call", combinators.RetryPolicy{MaxAttempts: 4},
			combinators.Do("post", func(context.Context, *int) error {
				if fails > 0 {
					fails--
					return errFlaky
				}
				return nil
			}))))
	r := newDescribeRun(t, f, 0)
	r.st, _ = f.Apply(r.ctx, r.st)
	r.clk.Set(r.st.WakeAt)
	r.st, _ = f.Apply(r.ctx, r.st)
	require.Equal(t, stepflow.Waiting, r.st.Status)
	d, by := r.describe()
	call := by["call"]
	assert.Equal(t, stepflow.NodeWaiting, call.Status)
	assert.Equal(t, uint32(2), call.Attempts)
	assert.Equal(t, "attempt 2 of 4 failed; attempt 3 next", call.Waiting)
	assert.Equal(t, r.st.WakeAt, call.WakeAt)
	assert.Equal(t, stepflow.NodePending, by["call/post"].Status, "the body runs again")
	assert.Equal(t, 2, by["call/post"].Calls)
	require.NotNil(t, d.Err)
	assert.Equal(t, "flaky", d.Err.Message)
	assert.Contains(t, d.Why, "call (attempt 2 of 4 failed; attempt 3 next)")
	assert.NotContains(t, d.Why, "so far")

	r.until(func(*stepflow.State[int]) bool { return false })
	require.Equal(t, stepflow.Done, r.st.Status)
	d, by = r.describe()
	assert.Nil(t, d.Err, "a process that recovered shows no error")
	require.NotNil(t, by["call/post"].LastError)
	assert.Equal(t, "flaky", by["call/post"].LastError.Message)
	assert.Equal(t, 3, by["call/post"].Calls)
}

// Parallel branches and ForEach items are described one by one.
func TestDescribeParallelAndForEach(t *testing.T) {
	items := func(context.Context, *int) ([]int, error) { return []int{0, 1, 2, 3}, nil }
	f := stepflow.Must(stepflow.New("par/v1",
		combinators.Parallel[int]("both",
			combinators.Do("quick", nop),
			combinators.WaitFor("slow", never, combinators.Every(time.Minute))),
		combinators.ForEach("each", items, combinators.WaitFor("item", func(ctx context.Context, _ *int) (bool, error) {
			i, err := combinators.Item[int](ctx)
			return i != 1, err
		}, combinators.Every(time.Minute))).Concurrency(2)))
	r := newDescribeRun(t, f, 0)
	r.until(func(st *stepflow.State[int]) bool { return st.Status == stepflow.Waiting })
	_, by := r.describe()
	assert.Equal(t, []string{"both=waiting", "both/quick=done", "both/slow=waiting", "each=pending", "each/item=pending"},
		statuses(by, "both", "both/quick", "both/slow", "each", "each/item"))

	// Past the parallel: item 0 done, item 1 polling, the others waiting
	// their turn or started.
	r.st.Root.Children = []stepflow.Frame{{Name: "each"}}
	r.until(func(st *stepflow.State[int]) bool {
		return st.Status == stepflow.Waiting && len(st.Positions()) == 1 && st.Steps > 4
	})
	_, by = r.describe()
	each := by["each"]
	require.Len(t, each.Items, 4)
	assert.Equal(t, stepflow.NodeDone, each.Items[0].Status)
	assert.Equal(t, stepflow.NodeWaiting, each.Items[1].Status)
	assert.Contains(t, each.Waiting, "of 4 items ended")
	assert.Equal(t, stepflow.NodeDone, by["both"].Status)
	assert.Equal(t, "1 waiting, 3 done", each.ItemSummary(), "in the order of the statuses")
	assert.Empty(t, by["both"].ItemSummary(), "no items")
}
