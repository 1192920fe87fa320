package runner_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// occupancy watches the body of Limited nodes: who is inside, the most
// inside at once, and the order they came in.
type occupancy struct {
	mu     sync.Mutex
	inside map[string]bool
	most   int
	order  []string
}

func (o *occupancy) enter(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inside[id] = true
	o.most = max(o.most, len(o.inside))
	o.order = append(o.order, id)
}

func (o *occupancy) leave(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.inside, id)
}

func (o *occupancy) snapshot() (inside, most int, order []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.inside), o.most, append([]string(nil), o.order...)
}

type job struct{ Cluster string }

// limitedFlow holds a slot of "cluster/<Cluster>" across three Applies:
// enter, a wait that lasts hold (one poll), leave.
func limitedFlow(o *occupancy, hold time.Duration) *stepflow.Flow[job] {
	return stepflow.Must(stepflow.New("limited/v1",
		runner.Limited("deploy", "cluster", func(j *job) (string, error) { return j.Cluster, nil },
			combinators.Do("enter", func(ctx context.Context, _ *job) error {
				call, _ := stepflow.CallFrom(ctx)
				o.enter(call.ID)
				return nil
			}),
			combinators.Sleep[job]("work", hold),
			combinators.Do("leave", func(ctx context.Context, _ *job) error {
				call, _ := stepflow.CallFrom(ctx)
				o.leave(call.ID)
				return nil
			}),
		),
	))
}

func TestLimitedCapacityFirstComeFirstServed(t *testing.T) {
	clock := newClock()
	o := &occupancy{inside: map[string]bool{}}
	r, jobs, err := newRunner(limitedFlow(o, time.Minute), store.NewMemory(),
		&runner.Options{Clock: clock, Limits: map[string]runner.Limit{"cluster": {Capacity: 2}}})
	require.NoError(t, err)
	ctx := t.Context()
	for i := range 6 {
		require.NoError(t, jobs.Start(ctx, fmt.Sprintf("j%d", i), job{Cluster: "eu"}))
		clock.Advance(time.Millisecond) // one at a time: the queue's order
	}
	require.NoError(t, jobs.Start(ctx, "other", job{Cluster: "us"}))
	drain(t, r)
	inside, _, order := o.snapshot()
	assert.Equal(t, 3, inside, "two of eu, and the one of us, which is another resource")
	assert.Equal(t, []string{"j0", "j1", "other"}, order)
	d, err := jobs.Describe(ctx, "j2")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Waiting, d.Status)
	assert.Contains(t, d.Tree, "waiting for a slot of cluster")

	for range 5 {
		clock.Advance(time.Minute)
		drain(t, r)
	}
	_, most, order := o.snapshot()
	assert.Equal(t, 3, most, "never more than the capacity per resource")
	assert.Equal(t, []string{"j0", "j1", "other", "j2", "j3", "j4", "j5"}, order, "first come, first served")
	n, err := r.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 7, n.ByStatus[stepflow.Done])
}

func TestLimitedRate(t *testing.T) {
	clock := newClock()
	o := &occupancy{inside: map[string]bool{}}
	r, jobs, err := newRunner(limitedFlow(o, time.Second), store.NewMemory(),
		&runner.Options{Clock: clock, Limits: map[string]runner.Limit{"cluster": {Rate: 2, Per: time.Minute}}})
	require.NoError(t, err)
	for i := range 5 {
		require.NoError(t, jobs.Start(t.Context(), fmt.Sprintf("j%d", i), job{}))
	}
	drain(t, r)
	clock.Advance(30 * time.Second)
	drain(t, r)
	_, _, order := o.snapshot()
	assert.Len(t, order, 2, "two a minute")
	clock.Advance(31 * time.Second)
	drain(t, r)
	_, _, order = o.snapshot()
	assert.Len(t, order, 4, "two more in the next minute")
}

func TestLimitedSlotsComeBackOnCancelAndDelete(t *testing.T) {
	clock := newClock()
	o := &occupancy{inside: map[string]bool{}}
	r, jobs, err := newRunner(limitedFlow(o, time.Hour), store.NewMemory(),
		&runner.Options{Clock: clock, Limits: map[string]runner.Limit{"cluster": {Capacity: 1}}})
	require.NoError(t, err)
	ctx := t.Context()
	for i := range 3 {
		require.NoError(t, jobs.Start(ctx, fmt.Sprintf("j%d", i), job{}))
		clock.Advance(time.Millisecond)
	}
	drain(t, r)
	_, _, order := o.snapshot()
	require.Equal(t, []string{"j0"}, order)

	require.NoError(t, jobs.Cancel(ctx, "j0", "no longer needed"))
	drain(t, r)
	clock.Advance(2 * runner.LimitPoll)
	drain(t, r)
	_, _, order = o.snapshot()
	assert.Equal(t, []string{"j0", "j1"}, order, "the canceled holder gave its slot back")

	_, err = r.Delete(ctx, "j1")
	require.NoError(t, err)
	clock.Advance(2 * runner.LimitPoll)
	drain(t, r)
	_, _, order = o.snapshot()
	assert.Equal(t, []string{"j0", "j1", "j2"}, order, "the deleted holder's slot came back")
}

func TestLimitedUnknownClassFails(t *testing.T) {
	o := &occupancy{inside: map[string]bool{}}
	r, jobs, err := newRunner(limitedFlow(o, time.Second), store.NewMemory(), nil)
	require.NoError(t, err)
	require.NoError(t, jobs.Start(t.Context(), "j", job{}))
	drain(t, r)
	st, err := jobs.State(t.Context(), "j")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Contains(t, st.Err.Message, `no such limit: "cluster"`)
}

func TestLimitsOptionsAreChecked(t *testing.T) {
	for _, l := range []runner.Limit{{}, {Capacity: -1}, {Rate: 3}} {
		_, err := runner.New(store.NewMemory(), &runner.Options{Limits: map[string]runner.Limit{"x": l}})
		assert.ErrorIs(t, err, runner.ErrInvalidOptions, "%+v", l)
	}
}

// TestLimitedAcrossRunnersOnPostgres runs three runners on one database,
// each with two workers, over processes that all need one of three slots:
// the capacity is never exceeded, and every process ends.
func TestLimitedAcrossRunnersOnPostgres(t *testing.T) {
	s := newPG(t, newSchema(t))
	poll := runner.LimitPoll
	runner.LimitPoll = 50 * time.Millisecond
	defer func() { runner.LimitPoll = poll }()
	var inside, most atomic.Int64
	f := stepflow.Must(stepflow.New("limited/v1",
		runner.Limited("deploy", "cluster", nil,
			combinators.Do("work", func(context.Context, *job) error {
				n := inside.Add(1)
				defer inside.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(5 * time.Millisecond)
				return nil
			}),
		),
	))
	opts := func(i int) *runner.Options {
		return &runner.Options{Owner: fmt.Sprintf("runner-%d", i), Workers: 2, Batch: 4, MaxIdle: 50 * time.Millisecond,
			Limits: map[string]runner.Limit{"cluster": {Capacity: 3}}}
	}
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	var first *runner.Processes[job]
	for i := range 3 {
		r, jobs, err := newRunner(f, s, opts(i))
		require.NoError(t, err)
		if i == 0 {
			first = jobs
		}
		wg.Go(func() { _ = r.Run(ctx) })
	}
	const n = 30
	for i := range n {
		require.NoError(t, first.Start(ctx, fmt.Sprintf("j%02d", i), job{}))
	}
	require.Eventually(t, func() bool {
		c, err := s.Count(ctx)
		return err == nil && c.ByStatus[stepflow.Done] == n
	}, 60*time.Second, 20*time.Millisecond)
	stop()
	wg.Wait()
	assert.LessOrEqual(t, most.Load(), int64(3), "never more holders than the capacity")
	assert.Positive(t, most.Load())
	hs, err := s.SlotHolders(t.Context(), "", "", 10)
	require.NoError(t, err)
	assert.Empty(t, hs, "every slot given back")
}
