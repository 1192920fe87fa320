package runner_test

import (
	"context"
	"errors"
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
	"github.com/stepflow-io/go-stepflow/versions"
)

type counter struct {
	N int `msgpack:"n" json:"n"`
}

// fakeClock is a settable clock for tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

// countingFlow has n steps that each increment Data.N and record their
// idempotency keys.
func countingFlow(t testing.TB, n int, keys *sync.Map) *stepflow.Flow[counter] {
	var nodes []stepflow.Node[counter]
	for i := range n {
		nodes = append(nodes, combinators.Do(fmt.Sprintf("s%d", i), func(ctx context.Context, d *counter) error {
			if keys != nil {
				call, ok := stepflow.CallFrom(ctx)
				if !ok {
					return errors.New("no call in context")
				}
				keys.Store(call.IdempotencyKey(), call.ID)
			}
			d.N++
			return nil
		}))
	}
	f, err := stepflow.New("count/v1", nodes...)
	require.NoError(t, err)
	return f
}

func drain(t testing.TB, r *runner.Runner) int {
	t.Helper()
	total := 0
	for {
		n, err := r.Step(context.Background())
		require.NoError(t, err)
		if n == 0 {
			return total
		}
		total += n
	}
}

func TestStartStepComplete(t *testing.T) {
	ctx := t.Context()
	var keys sync.Map
	s := store.NewMemory()
	r, ps, err := newRunner(countingFlow(t, 3, &keys), s, &runner.Options{Batch: 4, Clock: newClock()})
	require.NoError(t, err)
	for i := range 10 {
		err := ps.Start(ctx, fmt.Sprintf("p%d", i), counter{})
		require.NoError(t, err)
	}
	err = ps.Start(ctx, "p0", counter{})
	require.ErrorIs(t, err, store.ErrExists)

	assert.Equal(t, 30, drain(t, r), "ten processes of three steps, one Apply per claim")
	for i := range 10 {
		st, err := ps.State(ctx, fmt.Sprintf("p%d", i))
		require.NoError(t, err)
		assert.Equal(t, stepflow.Done, st.Status)
		assert.Equal(t, 3, st.Data.N)
		assert.Equal(t, fmt.Sprintf("p%d", i), st.ID)
	}
	c, err := r.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 10, c.ByStatus[stepflow.Done])
	n := 0
	keys.Range(func(k, v any) bool {
		n++
		assert.Contains(t, k.(string), "|"+v.(string)+"|", "the key names the process")
		return true
	})
	assert.Equal(t, 30, n, "every call has its own idempotency key")
}

func TestWaitingProcessSleepsUntilWakeAt(t *testing.T) {
	clock := newClock()
	var ready atomic.Bool
	f, err := stepflow.New("wait/v1",
		combinators.WaitFor("ready", func(context.Context, *counter) (bool, error) { return ready.Load(), nil }, combinators.Every(time.Minute)),
		combinators.Do("after", func(_ context.Context, d *counter) error { d.N = 7; return nil }),
	)
	require.NoError(t, err)
	s := store.NewMemory()
	r, ps, err := newRunner(f, s, &runner.Options{Clock: clock})
	require.NoError(t, err)
	err = ps.Start(t.Context(), "w", counter{})
	require.NoError(t, err)

	assert.Equal(t, 1, drain(t, r), "polls once, then waits")
	st, err := ps.State(t.Context(), "w")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Waiting, st.Status)
	due, ok, err := s.NextDue(t.Context(), nil)
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, st.WakeAt.Equal(due), "the store's due time is the state's WakeAt")

	clock.Advance(30 * time.Second)
	assert.Equal(t, 0, drain(t, r), "nothing is due before WakeAt")
	ready.Store(true)
	clock.Advance(30 * time.Second)
	assert.Equal(t, 2, drain(t, r))
	st, err = ps.State(t.Context(), "w")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, 7, st.Data.N)
}

func TestRunCompletesAndShutsDown(t *testing.T) {
	for _, workers := range []int{1, 3} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			s := store.NewMemory()
			var applied atomic.Int64
			var steps atomic.Int64
			var commits atomic.Int64
			m := &runner.Metrics{
				Step:      func(stepflow.Call, time.Duration, error) { steps.Add(1) },
				Applied:   func(runner.Transition) { applied.Add(1) },
				Committed: func(n, refused int, _ time.Duration, err error) { commits.Add(1); assert.NoError(t, err) },
			}
			r, ps, err := newRunner(countingFlow(t, 5, nil), s, &runner.Options{Workers: workers, Batch: 16, GroupCommit: 4, Metrics: m})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			// Processes started while Run sleeps wake it through Watch.
			time.Sleep(20 * time.Millisecond)
			for i := range 200 {
				err := ps.Start(ctx, fmt.Sprintf("p%03d", i), counter{})
				require.NoError(t, err)
			}
			require.Eventually(t, func() bool {
				c, err := r.Counts(ctx)
				return err == nil && c.ByStatus[stepflow.Done] == 200
			}, 20*time.Second, 5*time.Millisecond)
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
			assert.Equal(t, int64(1000), steps.Load())
			assert.Equal(t, int64(1000), applied.Load())
			assert.GreaterOrEqual(t, commits.Load(), int64(1000/4))
			st, err := ps.State(t.Context(), "p042")
			require.NoError(t, err)
			assert.Equal(t, 5, st.Data.N)
		})
	}
}

func TestRunTwiceIsRefused(t *testing.T) {
	r, _, err := newRunner(countingFlow(t, 1, nil), store.NewMemory(), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		for {
			// The probe below may hold the runner for an instant.
			if err := r.Run(ctx); !errors.Is(err, runner.ErrRunning) {
				done <- err
				return
			}
		}
	}()
	// A second Run with a canceled context returns at once if it wins the
	// race to start, and ErrRunning once the first one is running.
	stopped, stop := context.WithCancel(t.Context())
	stop()
	require.Eventually(t, func() bool { return errors.Is(r.Run(stopped), runner.ErrRunning) }, 5*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

// TestGracefulShutdownSavesInFlightStep cancels Run while a step is
// running: the step finishes, its result is saved, and the other claimed
// processes are released.
func TestGracefulShutdownSavesInFlightStep(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	f, err := stepflow.New("slow/v1",
		combinators.Do("slow", func(ctx context.Context, d *counter) error {
			once.Do(func() { close(started) })
			<-release
			d.N++
			return nil
		}),
		combinators.Do("next", func(_ context.Context, d *counter) error { d.N += 10; return nil }),
	)
	require.NoError(t, err)
	s := store.NewMemory()
	r, ps, err := newRunner(f, s, &runner.Options{Batch: 8})
	require.NoError(t, err)
	for i := range 3 {
		err := ps.Start(t.Context(), fmt.Sprintf("p%d", i), counter{})
		require.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-started
	cancel()
	close(release)
	require.NoError(t, <-done)

	st, err := ps.State(t.Context(), "p0")
	require.NoError(t, err)
	assert.Equal(t, 1, st.Data.N, "the in-flight step's result is saved")
	assert.Equal(t, []string{"next"}, st.Positions())
	for _, id := range []string{"p0", "p1", "p2"} {
		rec, err := s.Load(t.Context(), id)
		require.NoError(t, err)
		assert.Empty(t, rec.Owner, "%s: no lease survives shutdown", id)
	}
	st, err = ps.State(t.Context(), "p1")
	require.NoError(t, err)
	assert.Equal(t, 0, st.Data.N, "claimed but not started: untouched")
}

func TestQuarantine(t *testing.T) {
	ctx := t.Context()
	s := store.NewMemory()
	var quarantined []string
	r, ps, err := newRunner(countingFlow(t, 2, nil), s, &runner.Options{Metrics: &runner.Metrics{
		Quarantined: func(id, _ string, err error) { quarantined = append(quarantined, id) },
	}})
	require.NoError(t, err)
	err = ps.Start(ctx, "good", counter{})
	require.NoError(t, err)

	garbage := []byte{0xF5, 'm', 1, 0xc1, 0xc1}
	require.NoError(t, s.Create(ctx, store.Record{ID: "garbage", Version: "count/v1", Status: stepflow.Running, Blob: garbage}))
	// A process of another flow version is not this runner's: it is
	// never claimed, so never quarantined; it waits for its own runner.
	f2, err := stepflow.New("count/v0", combinators.Do("x", func(context.Context, *counter) error { return nil }))
	require.NoError(t, err)
	_, ps2, err := newRunner(f2, s, nil)
	require.NoError(t, err)
	require.NoError(t, ps2.Start(ctx, "oldversion", counter{}))

	drain(t, r)
	assert.ElementsMatch(t, []string{"garbage"}, quarantined)
	c, err := r.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, c.ByVersion["count/v0"].ByStatus[stepflow.Running], "waits untouched")
	st, err := ps.State(ctx, "good")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, st.Status, "other processes carry on")

	rec, err := s.Load(ctx, "garbage")
	require.NoError(t, err)
	assert.Equal(t, garbage, rec.Blob, "the bad bytes are kept")
	assert.Contains(t, rec.Quarantine, "decode")
	_, err = ps.State(ctx, "garbage")
	var qe *runner.QuarantineError
	require.ErrorAs(t, err, &qe)
	assert.ErrorIs(t, err, runner.ErrQuarantined)
	old, err := ps.State(ctx, "oldversion")
	require.NoError(t, err, "a process of another version of the same flow can be read")
	assert.Equal(t, "count/v0", old.Version)
	assert.Equal(t, stepflow.Running, old.Status)
	c, err = r.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, c.Quarantined)

	// Quarantine is reversible: once the bytes are fixed (here, by a
	// repair that writes good bytes in place), Retry puts the process back.
	require.ErrorIs(t, r.Retry(ctx, "good"), runner.ErrNotQuarantined)
	err = r.Retry(ctx, "garbage")
	require.ErrorAs(t, err, &qe, "still unreadable: stays quarantined")
	recs, err := r.Quarantined(ctx, "", 0)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, "garbage", recs[0].ID)
	// A quarantined process of a version or a flow this runner does not
	// have is refused, with an error saying which, and left as it is.
	require.NoError(t, s.Create(ctx, store.Record{ID: "future", Version: "count/v9", Status: stepflow.Running, Quarantine: "set aside", Blob: garbage}))
	require.NoError(t, s.Create(ctx, store.Record{ID: "other", Version: "other/v1", Status: stepflow.Running, Quarantine: "set aside", Blob: garbage}))
	assert.ErrorIs(t, r.Retry(ctx, "future"), versions.ErrUnknownVersion)
	assert.ErrorIs(t, r.Retry(ctx, "other"), runner.ErrUnknownFlow)
	for _, id := range []string{"future", "other"} {
		rec, err := s.Load(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, "set aside", rec.Quarantine, id)
		_, err = r.Delete(ctx, id)
		require.NoError(t, err)
	}

	n, err := r.Delete(ctx, "garbage")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = s.Load(ctx, "garbage")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func TestCancel(t *testing.T) {
	ctx := t.Context()
	s := store.NewMemory()
	r, ps, err := newRunner(countingFlow(t, 3, nil), s, nil)
	require.NoError(t, err)
	err = ps.Start(ctx, "p", counter{})
	require.NoError(t, err)
	_, err = r.Step(ctx)
	require.NoError(t, err)
	require.NoError(t, ps.Cancel(ctx, "p", "operator said so"))
	st, err := ps.State(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Canceled, st.Status)
	assert.Equal(t, 1, st.Data.N)
	require.NotNil(t, st.Err)
	assert.Contains(t, st.Err.Message, "operator said so")
	assert.Equal(t, 0, drain(t, r), "a canceled process is never claimed")
	require.NoError(t, ps.Cancel(ctx, "p", "again"), "canceling an ended process does nothing")
	assert.ErrorIs(t, ps.Cancel(ctx, "ghost", "x"), store.ErrNotFound)
}

// TestCancelWhileClaimed: the runner's write is refused after a cancel,
// and the process stays canceled.
func TestCancelWhileClaimed(t *testing.T) {
	ctx := t.Context()
	s := store.NewMemory()
	var r *runner.Runner
	var ps *runner.Processes[counter]
	f, err := stepflow.New("c/v1", combinators.Do("s", func(ctx context.Context, d *counter) error {
		// An operator cancels while the step runs.
		return ps.Cancel(context.WithoutCancel(ctx), "p", "midway")
	}))
	require.NoError(t, err)
	var refused atomic.Int64
	r, ps, err = newRunner(f, s, &runner.Options{Metrics: &runner.Metrics{
		Committed: func(n, ref int, _ time.Duration, _ error) { refused.Add(int64(ref)) },
	}})
	require.NoError(t, err)
	err = ps.Start(ctx, "p", counter{})
	require.NoError(t, err)
	drain(t, r)
	assert.Equal(t, int64(1), refused.Load())
	st, err := ps.State(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Canceled, st.Status)
}

func TestStepFailureIsSaved(t *testing.T) {
	ctx := t.Context()
	f, err := stepflow.New("fail/v1",
		combinators.Do("boom", func(context.Context, *counter) error { panic("kaboom") }))
	require.NoError(t, err)
	r, ps, err := newRunner(f, store.NewMemory(), &runner.Options{Encoding: "json"})
	require.NoError(t, err)
	err = ps.Start(ctx, "p", counter{})
	require.NoError(t, err)
	drain(t, r)
	st, err := ps.State(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Failed, st.Status)
	require.NotNil(t, st.Err)
	assert.Equal(t, "panic", st.Err.Kind)
}

func TestOptions(t *testing.T) {
	_, err := runner.New(store.NewMemory(), &runner.Options{Encoding: "xml"})
	require.ErrorIs(t, err, runner.ErrInvalidOptions)
	_, err = runner.New(nil, nil)
	require.ErrorIs(t, err, runner.ErrInvalidOptions)
	a, err := runner.New(store.NewMemory(), nil)
	require.NoError(t, err)
	_, err = runner.Register[counter](a, nil)
	require.ErrorIs(t, err, runner.ErrInvalidOptions)
	_, err = runner.RegisterVersions[counter](a, nil)
	require.ErrorIs(t, err, runner.ErrInvalidOptions)
	assert.ErrorIs(t, a.Run(t.Context()), runner.ErrNoFlows)
	b, err := runner.New(store.NewMemory(), nil)
	require.NoError(t, err)
	assert.NotEqual(t, a.Owner(), b.Owner(), "default owners are unique")
}

func TestSignalWakesWaitingProcess(t *testing.T) {
	ctx := t.Context()
	clock := newClock()
	f, err := stepflow.New("sig/v1",
		combinators.WaitSignal("approval", "approve", func(d *counter, b []byte) error { d.N = len(b); return nil }),
		combinators.Do("after", func(_ context.Context, d *counter) error { d.N *= 10; return nil }),
	)
	require.NoError(t, err)
	r, ps, err := newRunner(f, store.NewMemory(), &runner.Options{Clock: clock})
	require.NoError(t, err)
	err = ps.Start(ctx, "p", counter{})
	require.NoError(t, err)
	drain(t, r)
	st, err := ps.State(ctx, "p")
	require.NoError(t, err)
	require.Equal(t, stepflow.Waiting, st.Status)

	require.NoError(t, ps.Signal(ctx, "p", "approve", []byte("abc")))
	drain(t, r)
	st, err = ps.State(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, 30, st.Data.N)
	assert.Error(t, ps.Signal(ctx, "p", "approve", nil), "an ended process takes no signal")
}

func TestRunStopsWhenStoreCloses(t *testing.T) {
	s := store.NewMemory()
	r, ps, err := newRunner(countingFlow(t, 1, nil), s, &runner.Options{Workers: 2})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(t.Context()) }()
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, s.Close())
	err = ps.Start(t.Context(), "late", counter{})
	require.ErrorIs(t, err, store.ErrClosed)
	select {
	case err := <-done:
		require.ErrorIs(t, err, store.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept going on a closed store")
	}
}

// An at-most-once step runs once when the runner that saved its intent
// applies it; a runner that finds the intent after a crash asks a person.
func TestAtMostOnceSteps(t *testing.T) {
	ctx := t.Context()
	var runs atomic.Int32
	f := stepflow.Must(stepflow.New("amo/v1",
		combinators.Do("charge", func(context.Context, *counter) error { runs.Add(1); return nil },
			combinators.AtMostOnce(combinators.AskPerson)),
		combinators.Do("after", func(_ context.Context, c *counter) error { c.N++; return nil })))
	s := store.NewMemory()
	r, ps, err := newRunner(f, s, &runner.Options{Clock: newClock()})
	require.NoError(t, err)
	err = ps.Start(ctx, "a", counter{})
	require.NoError(t, err)
	drain(t, r)
	st, err := ps.State(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, int32(1), runs.Load())

	// A process whose intent was saved by a runner that then died: a new
	// runner does not run the step, it stops for a person.
	err = ps.Start(ctx, "b", counter{})
	require.NoError(t, err)
	_, err = r.Step(ctx) // records the intent and saves it
	require.NoError(t, err)
	st, err = ps.State(ctx, "b")
	require.NoError(t, err)
	require.Equal(t, "charge", st.Intent)
	fresh, freshPs, err := newRunner(f, s, &runner.Options{Clock: newClock()})
	require.NoError(t, err)
	drain(t, fresh)
	st, err = freshPs.State(ctx, "b")
	require.NoError(t, err)
	assert.Equal(t, stepflow.NeedsAttention, st.Status)
	assert.Equal(t, int32(1), runs.Load(), "not run a second time")
}
