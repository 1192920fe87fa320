package combinators_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	c "github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

func TestRetryBacksOffAndCountsAttempts(t *testing.T) {
	h := newHarness(t)
	h.fail["r/a"] = 2
	f := stepflow.Must(stepflow.New("r/v1",
		c.Retry("r", c.RetryPolicy{MaxAttempts: 4, InitialInterval: time.Second, BackoffFactor: 3},
			c.Do("a", step), c.Do("b", step))))
	st, err := h.apply(f, f.Start(D{}))
	require.NoError(t, err)
	assert.Equal(t, stepflow.Waiting, st.Status)
	assert.Equal(t, t0.Add(time.Second), st.WakeAt)
	r := st.Root.Children[0]
	assert.Equal(t, uint32(2), r.Count)
	assert.Equal(t, "backoff", r.Branch)
	require.NotNil(t, r.Err)
	assert.Equal(t, "r/a", r.Err.Path)
	assert.Equal(t, "r/a", st.Err.Path, "the retried error is the last error")

	// Early Applies do nothing; at WakeAt the second attempt runs.
	h.clk.Set(t0.Add(500 * time.Millisecond))
	same, err := h.apply(f, st)
	require.NoError(t, err)
	assert.Equal(t, st.WakeAt, same.WakeAt)

	st = h.run(f, st)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, []string{"r/a#1", "r/a#2", "r/a#3", "r/b#3"}, h.calls)
	assert.Equal(t, t0.Add(time.Second+3*time.Second), h.clk.Now(), "second wait is 3x the first")
}

func TestRetryGivesUpWithTheLastErrorAndAttempt(t *testing.T) {
	h := newHarness(t)
	h.fail["r/a"] = 10
	f := stepflow.Must(stepflow.New("r/v1", c.Retry("r", c.RetryPolicy{MaxAttempts: 3}, c.Do("a", step))))
	st := h.run(f, f.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, uint32(3), st.Err.Attempt)
	assert.Equal(t, "r/a", st.Err.Path)
	assert.Len(t, h.calls, 3)
}

func TestRetryRespectsPermanentAndRetryIf(t *testing.T) {
	h := newHarness(t)
	perm := stepflow.Must(stepflow.New("r/v1", c.Retry("r", c.RetryPolicy{MaxAttempts: 5},
		c.Do("a", func(context.Context, *D) error { return stepflow.Permanent(errBoom) }))))
	st := h.run(perm, perm.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "permanent", st.Err.Kind)
	assert.Len(t, h.calls, 1)

	h = newHarness(t)
	filtered := stepflow.Must(stepflow.New("r/v1", c.Retry("r", c.RetryPolicy{MaxAttempts: 5, RetryIf: func(err error) bool { return !errors.Is(err, errBoom) }},
		c.Do("a", failing))))
	st = h.run(filtered, filtered.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Len(t, h.calls, 1)
}

func TestRetryPolicyDelayIsPureAndJittered(t *testing.T) {
	p := c.RetryPolicy{InitialInterval: time.Second, MaxInterval: 10 * time.Second, Jitter: 0.5}
	seen := map[time.Duration]bool{}
	for _, key := range []string{"p1", "p2", "p3", "p4"} {
		d := p.Delay(1, key)
		assert.Equal(t, d, p.Delay(1, key), "same inputs, same delay")
		assert.GreaterOrEqual(t, d, 500*time.Millisecond)
		assert.LessOrEqual(t, d, 1500*time.Millisecond)
		seen[d] = true
	}
	assert.Greater(t, len(seen), 1, "jitter spreads processes")
	q := c.RetryPolicy{InitialInterval: time.Second, MaxInterval: 5 * time.Second}
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second},
		[]time.Duration{q.Delay(1, ""), q.Delay(2, ""), q.Delay(3, ""), q.Delay(4, ""), q.Delay(5, "")})
	_, err := stepflow.New("x", c.Retry("r", c.RetryPolicy{MaxAttempts: -1, BackoffFactor: 0.5, Jitter: 1}, c.Do("a", step)))
	require.Error(t, err)
	for _, want := range []string{"MaxAttempts -1", "BackoffFactor 0.5", "Jitter 1"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestTimeLimitAbandonsBodyAndRunsCleanupOnce(t *testing.T) {
	h := newHarness(t)
	never := func(context.Context, *D) (bool, error) { return false, nil }
	f := stepflow.Must(stepflow.New("t/v1",
		c.Catch("guard",
			c.TimeLimit("limit", 30*time.Second,
				c.Do("a", step),
				c.Finally("f", c.WaitFor("w", never, c.Every(10*time.Second)), c.Do("cleanup", step)),
				c.Do("never", step)),
			c.Do("handle", func(ctx context.Context, d *D) error {
				call, _ := stepflow.CallFrom(ctx)
				d.Log = append(d.Log, "caught "+call.Caught.Kind+" at "+call.Caught.Path)
				return nil
			})),
		c.Do("after", step)))
	st := h.run(f, f.Start(D{}))
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, []string{"guard/limit/a", "guard/limit/f/cleanup", "caught timeout at guard/limit", "after"}, st.Data.Log)
	// Polls at 0s, 10s, 20s; at 30s the deadline wins: no further poll.
	assert.Equal(t, []string{"guard/limit/a#1", "guard/limit/f/w#1", "guard/limit/f/w#1", "guard/limit/f/w#1",
		"guard/limit/f/cleanup#1", "guard/handle#1", "after#1"}, h.calls)
	assert.Equal(t, "timeout", st.Err.Kind)
}

func TestFinallyRunsCleanupAndReraises(t *testing.T) {
	h := newHarness(t)
	f := stepflow.Must(stepflow.New("f/v1",
		c.Finally("f", c.Do("body", failing), c.Do("cleanup", func(ctx context.Context, d *D) error {
			call, _ := stepflow.CallFrom(ctx)
			d.Log = append(d.Log, "cleanup after "+call.Caught.Message)
			return nil
		}))))
	st := h.run(f, f.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "f/body", st.Err.Path)
	assert.Equal(t, "boom", st.Err.Message)
	assert.Equal(t, []string{"cleanup after boom"}, st.Data.Log)

	// Success path: cleanup runs once and sees no error.
	h = newHarness(t)
	ok := stepflow.Must(stepflow.New("f/v1", c.Finally("f", c.Do("body", step), c.Do("cleanup", step))))
	st = h.run(ok, ok.Start(D{}))
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, []string{"f/body", "f/cleanup"}, st.Data.Log)

	// A failing cleanup fails the process with its own error.
	h = newHarness(t)
	bad := stepflow.Must(stepflow.New("f/v1", c.Finally("f", c.Do("body", step), c.Do("cleanup", failing))))
	st = h.run(bad, bad.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "f/cleanup", st.Err.Path)
}

func TestCatchHandlerErrorsPropagate(t *testing.T) {
	h := newHarness(t)
	f := stepflow.Must(stepflow.New("c/v1", c.Catch("c", c.Do("body", failing), c.Do("handler", failing))))
	st := h.run(f, f.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "c/handler", st.Err.Path)
}

func TestSagaCompensatesInReverse(t *testing.T) {
	h := newHarness(t)
	undo := func(name string) stepflow.Node[D] {
		return c.When("undo"+name, func(ctx context.Context, _ *D) (bool, error) {
			call, _ := stepflow.CallFrom(ctx)
			return call.Caught != nil, nil
		}, c.Do("compensate", step))
	}
	f := stepflow.Must(stepflow.New("saga/v1",
		c.Finally("reserve", c.Sequence("s1", c.Do("do", step),
			c.Finally("charge", c.Sequence("s2", c.Do("do", step),
				c.Do("ship", failing)), undo("Charge"))),
			undo("Reserve"))))
	st := h.run(f, f.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, []string{"reserve/s1/do", "reserve/s1/charge/s2/do",
		"reserve/s1/charge/undoCharge/compensate", "reserve/undoReserve/compensate"}, st.Data.Log)
}

func TestParallelFailFastAndWaitAll(t *testing.T) {
	h := newHarness(t)
	mk := func() []stepflow.Node[D] {
		return []stepflow.Node[D]{
			c.Sequence("a", c.Do("1", step), c.Do("2", failing)),
			c.Finally("b", c.Sequence("s", c.Do("1", step), c.Do("2", step), c.Do("3", step)), c.Do("cleanup", step)),
			c.Sequence("c", c.Do("1", failing)),
		}
	}
	ff := stepflow.Must(stepflow.New("p/v1", c.Parallel("p", mk()...)))
	st, err := h.apply(ff, ff.Start(D{}))
	require.NoError(t, err)
	// One step per branch per Apply.
	assert.Equal(t, []string{"p/a/1#1", "p/b/s/1#1", "p/c/1#1"}, h.calls)
	assert.Equal(t, stepflow.Running, st.Status, "b's cleanup still has to run")
	st = h.run(ff, st)
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "p/c/1", st.Err.Path)
	assert.Equal(t, []string{"p/a/1", "p/b/s/1", "p/b/cleanup"}, st.Data.Log, "a and b stop; b cleans up")

	h = newHarness(t)
	wa := stepflow.Must(stepflow.New("p/v1", c.Parallel("p", mk()...).WaitAll()))
	st = h.run(wa, wa.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, []string{"p/a/1", "p/b/s/1", "p/b/s/2", "p/b/s/3", "p/b/cleanup"}, st.Data.Log)
	assert.Contains(t, st.Err.Message, "p/a/2")
	assert.Contains(t, st.Err.Message, "p/c/1")
	assert.Equal(t, "p", st.Err.Path)
}

func TestParallelWaitsForEarliestBranch(t *testing.T) {
	h := newHarness(t)
	f := stepflow.Must(stepflow.New("p/v1", c.Parallel("p", c.Sleep[D]("long", time.Hour), c.Sleep[D]("short", time.Minute)), c.Do("after", step)))
	st, err := h.apply(f, f.Start(D{}))
	require.NoError(t, err)
	assert.Equal(t, t0.Add(time.Minute), st.WakeAt)
	st = h.run(f, st)
	assert.Equal(t, t0.Add(time.Hour), h.clk.Now())
	assert.Equal(t, []string{"after"}, st.Data.Log)
	_, err = stepflow.New[D]("p/v1", c.Parallel[D]("p"))
	assert.ErrorContains(t, err, "parallel without branches")
}

func TestLoopsCountAndGuard(t *testing.T) {
	h := newHarness(t)
	f := stepflow.Must(stepflow.New("l/v1",
		c.LoopUntil("until", func(_ context.Context, d *D) (bool, error) { return d.N >= 3, nil },
			[]stepflow.Node[D]{c.Do("inc", func(ctx context.Context, d *D) error {
				call, _ := stepflow.CallFrom(ctx)
				require.Equal(t, []uint32{uint32(d.N + 1)}, call.Iterations)
				d.N++
				return nil
			})}),
		c.While("while", func(_ context.Context, d *D) (bool, error) { return d.N < 3, nil },
			[]stepflow.Node[D]{c.Do("never", step)})))
	st := h.run(f, f.Start(D{}))
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, 3, st.Data.N)
	assert.Empty(t, st.Data.Log, "while with a false condition runs zero times")

	h = newHarness(t)
	forever := stepflow.Must(stepflow.New("l/v1", c.While("w", func(context.Context, *D) (bool, error) { return true, nil },
		[]stepflow.Node[D]{c.Do("x", step)}, c.MaxIterations(5))))
	st = h.run(forever, forever.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "guard", st.Err.Kind)
	assert.Len(t, st.Data.Log, 5)
}

func TestForEachSequentialAndConcurrent(t *testing.T) {
	items := func(context.Context, *D) ([]string, error) { return []string{"x", "y", "z"}, nil }
	use := c.Do("use", func(ctx context.Context, d *D) error {
		it, err := c.Item[string](ctx)
		if err != nil {
			return err
		}
		call, _ := stepflow.CallFrom(ctx)
		d.Log = append(d.Log, call.Path+"="+it)
		return nil
	})
	h := newHarness(t)
	seq := stepflow.Must(stepflow.New("fe/v1", c.ForEach("each", items, use)))
	st, err := h.apply(seq, seq.Start(D{}))
	require.NoError(t, err)
	st, err = h.apply(seq, st)
	require.NoError(t, err)
	assert.Equal(t, []string{"each/[1]/use"}, st.Positions())
	fr := st.Root.Children[0]
	assert.Equal(t, uint32(2), fr.Index, "items started")
	assert.Equal(t, uint32(1), fr.Count, "items completed")
	st = h.run(seq, st)
	assert.Equal(t, []string{"each/use=x", "each/use=y", "each/use=z"}, st.Data.Log)

	h = newHarness(t)
	conc := stepflow.Must(stepflow.New("fe/v1", c.ForEach("each", items, c.Do("a", step), use).Concurrency(2)))
	st, _ = h.apply(conc, conc.Start(D{}))
	st, _ = h.apply(conc, st)
	assert.Equal(t, []string{"each/[0]/use", "each/[1]/use"}, st.Positions())
	st = h.run(conc, st)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Len(t, st.Data.Log, 6)

	h = newHarness(t)
	empty := stepflow.Must(stepflow.New("fe/v1", c.ForEach("each", func(context.Context, *D) ([]int, error) { return nil, nil }, use), c.Do("after", step)))
	st = h.run(empty, empty.Start(D{}))
	assert.Equal(t, []string{"after"}, st.Data.Log)
}

func TestForEachFailureAbandonsOthers(t *testing.T) {
	h := newHarness(t)
	h.fail["each/f/b"] = 1
	f := stepflow.Must(stepflow.New("fe/v1", c.ForEach("each", func(context.Context, *D) ([]int, error) { return []int{1, 2, 3, 4}, nil },
		c.Finally("f", c.Do("b", step), c.Do("cleanup", step))).Concurrency(2)))
	st := h.run(f, f.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "each/[0]/f/b", st.Err.Path)
	// Item 0's b failed (injected) and item 1's ran; both clean up; items 2
	// and 3 never start.
	assert.Equal(t, []string{"each#1", "each/f/b#1", "each/f/b#1", "each/f/cleanup#1", "each/f/cleanup#1"}, h.calls)
	assert.Equal(t, []string{"each/f/b", "each/f/cleanup", "each/f/cleanup"}, st.Data.Log)
}

func TestSleepAndSleepUntilAreDurable(t *testing.T) {
	h := newHarness(t)
	f := stepflow.Must(stepflow.New("s/v1", c.Sleep[D]("nap", time.Hour),
		c.SleepUntil("until", func(context.Context, *D) (time.Time, error) { return t0.Add(3 * time.Hour), nil }),
		c.SleepUntil("past", func(context.Context, *D) (time.Time, error) { return t0, nil })))
	st, _ := h.apply(f, f.Start(D{}))
	assert.Equal(t, t0.Add(time.Hour), st.WakeAt)
	st = h.run(f, st)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, t0.Add(3*time.Hour), h.clk.Now())
}

func TestOptionalAndWhen(t *testing.T) {
	h := newHarness(t)
	f := stepflow.Must(stepflow.New("o/v1", c.Optional("opt", c.Do("bad", failing)),
		c.When("skip", func(context.Context, *D) (bool, error) { return false, nil }, c.Do("no", step)),
		c.Do("after", step)))
	st := h.run(f, f.Start(D{}))
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, []string{"after"}, st.Data.Log)
	require.NotNil(t, st.Err)
	assert.Equal(t, "opt/bad", st.Err.Path, "the ignored error is recorded")
}

func TestSignalsAreBufferedAndConsumed(t *testing.T) {
	h := newHarness(t)
	into := func(d *D, p []byte) error { d.Log = append(d.Log, "approved by "+string(p)); return nil }
	f := stepflow.Must(stepflow.NewWithOptions("sig/v1", &stepflow.Options{MaxSignals: 2},
		c.Do("a", step), c.WaitSignal("approval", "approve", into), c.WaitSignal[D]("second", "approve", nil, c.Timeout(time.Minute))))
	st := f.Start(D{})
	// A signal before the wait is reached is kept.
	st, err := f.Signal(st, "approve", []byte("alice"))
	require.NoError(t, err)
	st, err = f.Signal(st, "other", nil)
	require.NoError(t, err)
	_, err = f.Signal(st, "approve", nil)
	require.ErrorIs(t, err, stepflow.ErrSignalOverflow)
	st, _ = h.apply(f, st)
	st, _ = h.apply(f, st)
	assert.Equal(t, []string{"a", "approved by alice"}, st.Data.Log)
	assert.Equal(t, []string{"other"}, []string{st.Signals[0].Name})
	st, _ = h.apply(f, st)
	assert.Equal(t, stepflow.Waiting, st.Status)
	assert.Equal(t, t0.Add(time.Minute), st.WakeAt)
	st, err = f.Signal(st, "approve", nil)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Running, st.Status, "a signal wakes a waiting process")
	st, _ = h.apply(f, st)
	assert.Equal(t, stepflow.Done, st.Status)

	// Without a signal, the timeout fires.
	h = newHarness(t)
	st = h.run(f, func() stepflow.State[D] {
		s, _ := f.Signal(f.Start(D{}), "approve", []byte("bob"))
		return s
	}())
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "timeout", st.Err.Kind)

	done := st
	_, err = f.Signal(done, "approve", nil)
	assert.ErrorIs(t, err, stepflow.ErrEnded)
}

func TestWaitSignalWithoutTimeoutWaitsForever(t *testing.T) {
	h := newHarness(t)
	f := stepflow.Must(stepflow.New("sig/v1", c.WaitSignal[D]("w", "go", nil)))
	st, _ := h.apply(f, f.Start(D{}))
	assert.Equal(t, stepflow.Waiting, st.Status)
	assert.True(t, st.WakeAt.IsZero())
}

func TestSucceedAndFailEndEarly(t *testing.T) {
	h := newHarness(t)
	f := stepflow.Must(stepflow.New("e/v1",
		c.Finally("f", c.Sequence("s", c.Do("a", step), c.Succeed[D]("stop"), c.Do("never", step)), c.Do("cleanup", step)),
		c.Do("never2", step)))
	st := h.run(f, f.Start(D{}))
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, []string{"f/s/a", "f/cleanup"}, st.Data.Log)

	h = newHarness(t)
	g := stepflow.Must(stepflow.New("e/v1", c.Retry("r", c.RetryPolicy{MaxAttempts: 5}, c.Fail[D]("no", "not allowed"))))
	st = h.run(g, g.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "fail", st.Err.Kind)
	assert.Contains(t, st.Err.Message, "not allowed")
}

func TestCancelRunsCleanupsThenEnds(t *testing.T) {
	h := newHarness(t)
	f := stepflow.Must(stepflow.New("x/v1",
		c.Finally("f", c.Sequence("s", c.Do("a", step), c.Sleep[D]("nap", time.Hour)), c.Do("cleanup", step), c.Do("cleanup2", step))))
	st, _ := h.apply(f, f.Start(D{}))
	st, _ = h.apply(f, st)
	require.Equal(t, stepflow.Waiting, st.Status)
	st, err := f.Cancel(st, "user asked")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Running, st.Status)
	assert.True(t, st.Canceling())
	assert.Equal(t, []string{"f/cleanup"}, st.Positions())
	st = h.run(f, st)
	assert.Equal(t, stepflow.Canceled, st.Status)
	assert.Equal(t, []string{"f/s/a", "f/cleanup", "f/cleanup2"}, st.Data.Log)

	// Without cleanups, cancellation is immediate and records the reason.
	g := stepflow.Must(stepflow.New("x/v1", c.Sleep[D]("nap", time.Hour)))
	st, err = g.Cancel(g.Start(D{}), "bye")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Canceled, st.Status)
	assert.Equal(t, "bye", st.Err.Message)
	_, err = g.Cancel(st, "again")
	assert.ErrorIs(t, err, stepflow.ErrEnded)
}

func TestRedriveResumesAtTheFailedStep(t *testing.T) {
	h := newHarness(t)
	h.fail["r/b"] = 3
	f := stepflow.Must(stepflow.New("rd/v1", c.Do("a", step), c.Retry("r", c.RetryPolicy{MaxAttempts: 2}, c.Do("b", step)), c.Do("c", step)))
	st := h.run(f, f.Start(D{}))
	require.Equal(t, stepflow.Failed, st.Status)
	steps := st.Steps
	st, err := f.Redrive(st)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Running, st.Status)
	assert.Equal(t, []string{"r/b"}, st.Positions())
	assert.Equal(t, steps, st.Steps, "history is kept")
	st = h.run(f, st)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, []string{"a", "r/b", "c"}, st.Data.Log, "a is not run again")

	_, err = f.Redrive(st)
	assert.ErrorIs(t, err, stepflow.ErrNotFailed)
}

func TestAtMostOnceRecordsIntentFirst(t *testing.T) {
	runs := 0
	pay := func(context.Context, *D) error { runs++; return nil }
	for _, policy := range []c.OnUnknown{c.AskPerson, c.RunAgain} {
		runs = 0
		h := newHarness(t)
		f := stepflow.Must(stepflow.New("amo/v1", c.Do("pay", pay, c.AtMostOnce(policy)), c.Do("after", step)))
		st, err := h.apply(f, f.Start(D{}))
		require.NoError(t, err)
		assert.Equal(t, "pay", st.Intent)
		assert.Equal(t, 0, runs, "the intent is recorded before the step runs")

		// The normal path: save, then apply with authorization.
		ok, err := f.Apply(stepflow.WithIntentSaved(h.ctx, st), st)
		require.NoError(t, err)
		assert.Equal(t, 1, runs)
		assert.Empty(t, ok.Intent)
		assert.Equal(t, []string{"after"}, ok.Positions())

		// A crash after the step ran: the intent state is loaded again
		// without authorization.
		again, err := f.Apply(h.ctx, st)
		require.NoError(t, err)
		if policy == c.AskPerson {
			assert.Equal(t, 1, runs, "not run twice")
			assert.Equal(t, stepflow.NeedsAttention, again.Status)
			assert.Equal(t, "unknown-outcome", again.Err.Kind)
			// NeedsAttention is left alone by Apply.
			same, err := f.Apply(h.ctx, again)
			require.NoError(t, err)
			assert.Equal(t, again, same)
			resolved, err := f.Resolve(again, stepflow.ResolveSucceeded)
			require.NoError(t, err)
			resolved = h.run(f, resolved)
			assert.Equal(t, stepflow.Done, resolved.Status)
			assert.Equal(t, 1, runs)
			retry, err := f.Resolve(again, stepflow.ResolveRetry)
			require.NoError(t, err)
			retry, _ = h.apply(f, retry)
			assert.Equal(t, "pay", retry.Intent)
			failed, err := f.Resolve(again, stepflow.ResolveFailed)
			require.NoError(t, err)
			failed = h.run(f, failed)
			assert.Equal(t, stepflow.Failed, failed.Status)
		} else {
			assert.Equal(t, 2, runs, "run again by policy")
			assert.Equal(t, stepflow.Running, again.Status)
		}
	}
}

func TestNestedRetryInParallelInTimeLimit(t *testing.T) {
	h := newHarness(t)
	h.fail["tl/p/r/x"] = 1
	f := stepflow.Must(stepflow.New("n/v1", c.TimeLimit("tl", time.Minute,
		c.Parallel("p",
			c.Retry("r", c.RetryPolicy{InitialInterval: 10 * time.Second}, c.Do("x", step)),
			c.Sleep[D]("s", 5*time.Minute)))))
	st := h.run(f, f.Start(D{}))
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "timeout", st.Err.Kind)
	assert.Equal(t, []string{"tl/p/r/x"}, st.Data.Log, "the retry succeeded before the deadline")
	assert.Equal(t, t0.Add(time.Minute), h.clk.Now())
}

func TestRedriveForEachResumesAtTheFailedItem(t *testing.T) {
	h := newHarness(t)
	f := stepflow.Must(stepflow.New("fe/v1", c.ForEach("each", func(context.Context, *D) ([]int, error) { return []int{0, 1, 2}, nil },
		c.Do("use", func(ctx context.Context, d *D) error {
			it, _ := c.Item[int](ctx)
			if it == 1 && d.N == 0 {
				return errBoom
			}
			d.Log = append(d.Log, fmt.Sprint(it))
			return nil
		}))))
	st := h.run(f, f.Start(D{}))
	require.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "each/[1]/use", st.Err.Path)
	require.NoError(t, f.Validate(st))
	d, err := f.Describe(st)
	require.NoError(t, err)
	assert.Contains(t, d.Why, "each/[1]/use")
	st, err = f.Redrive(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"each/[1]"}, st.Positions(), "item 1 starts again")
	st.Data.N = 1 // the fix
	st = h.run(f, st)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, []string{"0", "1", "2"}, st.Data.Log, "item 0 is not run again")
}
