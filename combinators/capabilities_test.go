package combinators_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// An error made with RetryAfter sets the wait before the next attempt,
// capped by the policy's MaxInterval; other errors keep the backoff.
func TestRetryWaitsWhatTheErrorAsks(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		max  time.Duration
		want time.Duration
	}{
		{"backoff", errBoom, 0, time.Second},
		{"asked 5m", stepflow.RetryAfter(errBoom, 5*time.Minute), time.Hour, 5 * time.Minute},
		{"asked 5m, wrapped", fmt.Errorf("call api: %w", stepflow.RetryAfter(errBoom, 5*time.Minute)), time.Hour, 5 * time.Minute},
		{"capped by MaxInterval", stepflow.RetryAfter(errBoom, 5*time.Minute), 2 * time.Minute, 2 * time.Minute},
		{"asked nothing", stepflow.RetryAfter(errBoom, -time.Second), time.Hour, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			first := true
			f, err := stepflow.New("ra/v1", combinators.Retry("r", combinators.RetryPolicy{MaxAttempts: 2, MaxInterval: tc.max},
				combinators.Do("call", func(context.Context, *D) error {
					if first {
						first = false
						return tc.err
					}
					return nil
				})))
			require.NoError(t, err)
			st, err := h.apply(f, f.Start(D{}))
			require.NoError(t, err)
			require.Equal(t, stepflow.Waiting, st.Status)
			assert.Equal(t, t0.Add(tc.want), st.WakeAt)
			st = h.run(f, st)
			assert.Equal(t, stepflow.Done, st.Status)
		})
	}
	assert.Nil(t, stepflow.RetryAfter(nil, time.Second))
	d, ok := stepflow.RetryDelay(errBoom)
	assert.False(t, ok)
	assert.Zero(t, d)
}

// A step with a CallTimeout sees a deadline; running past it fails with a
// *CallTimeoutError that matches ErrTimeout and the step's own error, and
// that Retry retries.
func TestCallTimeoutInterruptsASlowStep(t *testing.T) {
	calls := 0
	slow := func(ctx context.Context, _ *D) error {
		calls++
		_, ok := ctx.Deadline()
		require.True(t, ok, "the step's context has a deadline")
		if calls == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	f, err := stepflow.New("ct/v1", combinators.Retry("r", combinators.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond},
		combinators.Do("slow", slow, combinators.CallTimeout(20*time.Millisecond))))
	require.NoError(t, err)
	h := newHarness(t)
	start := time.Now()
	st, err := h.apply(f, f.Start(D{}))
	require.NoError(t, err)
	require.Less(t, time.Since(start), 5*time.Second, "the step was interrupted")
	require.Equal(t, stepflow.Waiting, st.Status, "retried after the timeout")
	st = h.run(f, st)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, 2, calls)

	// Without a retry the process fails with the typed error.
	f, err = stepflow.New("ct/v1", combinators.Do("slow", func(ctx context.Context, _ *D) error {
		<-ctx.Done()
		return fmt.Errorf("read: %w", ctx.Err())
	}, combinators.CallTimeout(time.Millisecond)))
	require.NoError(t, err)
	st, err = f.Apply(context.Background(), f.Start(D{}))
	require.Equal(t, stepflow.Failed, st.Status)
	var cte *combinators.CallTimeoutError
	require.ErrorAs(t, err, &cte)
	assert.Equal(t, time.Millisecond, cte.Limit)
	assert.ErrorIs(t, err, stepflow.ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, stepflow.KindTimeout, st.Err.Kind)

	// A step that returns in time is untouched, and so is an error that
	// is not the deadline's.
	f, err = stepflow.New("ct/v1", combinators.Do("quick", failing, combinators.CallTimeout(time.Hour)))
	require.NoError(t, err)
	_, err = f.Apply(context.Background(), f.Start(D{}))
	assert.ErrorIs(t, err, errBoom)
	assert.False(t, errors.As(err, &cte))

	_, err = stepflow.New("ct/v1", combinators.Do("neg", step, combinators.CallTimeout(-time.Second)))
	assert.ErrorIs(t, err, stepflow.ErrInvalidFlow)
}

// ForEach.WaitAll runs every item to its end, then fails with every
// failure; without failures it completes. (Failures kept in a saved state
// come back as their text and kind: errors.Is reaches a step's own error
// only for a failure in the Apply that ends the node.)
func TestForEachWaitAllReportsEveryFailure(t *testing.T) {
	errOdd := errors.New("odd item")
	items := func(context.Context, *D) ([]int, error) { return []int{0, 1, 2, 3, 4}, nil }
	body := combinators.Do("it", func(ctx context.Context, d *D) error {
		i, err := combinators.Item[int](ctx)
		if err != nil {
			return err
		}
		d.Log = append(d.Log, fmt.Sprint(i))
		if i%2 == 1 {
			return fmt.Errorf("item %d: %w", i, errOdd)
		}
		return nil
	})
	for _, conc := range []int{1, 2, 5} {
		t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
			f, err := stepflow.New("fe/v1", combinators.ForEach("each", items, body).Concurrency(conc).WaitAll())
			require.NoError(t, err)
			h := newHarness(t)
			st := f.Start(D{})
			var last error
			for i := 0; !st.Terminal(); i++ {
				require.Less(t, i, 100)
				st, last = f.Apply(h.ctx, st)
				// every Apply goes through the codec, as a runner's would
				st, err = h.apply(f, st)
				if st.Terminal() {
					last = err
				}
			}
			require.Equal(t, stepflow.Failed, st.Status)
			assert.ElementsMatch(t, []string{"0", "1", "2", "3", "4"}, st.Data.Log, "every item ran")
			require.Error(t, last)
			assert.ErrorIs(t, last, stepflow.ErrStep)
			assert.Contains(t, last.Error(), "each/[1]/it")
			assert.Contains(t, last.Error(), "each/[3]/it")
			assert.Equal(t, "each", st.Err.Path)
		})
	}

	f, err := stepflow.New("fe/v1", combinators.ForEach("each", items, combinators.Do("it", step)).WaitAll())
	require.NoError(t, err)
	st := newHarness(t).run(f, f.Start(D{}))
	assert.Equal(t, stepflow.Done, st.Status)
}

// Property: with WaitAll, every item runs exactly once whatever fails,
// and the process fails exactly when some item failed.
func TestForEachWaitAllProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(0, 8).Draw(rt, "items")
		fails := rapid.SliceOfN(rapid.Bool(), n, n).Draw(rt, "fails")
		conc := rapid.IntRange(1, 4).Draw(rt, "concurrency")
		list := make([]int, n)
		for i := range list {
			list[i] = i
		}
		f, err := stepflow.New("fe/v1", combinators.ForEach("each", func(context.Context, *D) ([]int, error) { return list, nil },
			combinators.Do("it", func(ctx context.Context, d *D) error {
				i, _ := combinators.Item[int](ctx)
				d.N++
				if fails[i] {
					return errBoom
				}
				return nil
			})).Concurrency(conc).WaitAll())
		require.NoError(rt, err)
		h := newHarness(t)
		st := h.run(f, f.Start(D{}))
		assert.Equal(rt, n, st.Data.N, "every item ran once")
		anyFailed := false
		for _, b := range fails {
			anyFailed = anyFailed || b
		}
		if anyFailed {
			assert.Equal(rt, stepflow.Failed, st.Status)
		} else {
			assert.Equal(rt, stepflow.Done, st.Status)
		}
	})
}
