package versions_test

import (
	"context"
	"slices"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stretchr/testify/require"
)

// D is the data of the test flows: Ran lists the ids of completed steps, so
// that a test sees what ran on which version even across renames.
type D struct {
	Ran   []string
	Flag  bool
	Env   string
	Polls int
	Seed  uint64
	N     int
}

func (d D) Clone() D { d.Ran = slices.Clone(d.Ran); return d }

// step is a Do node recording id when it runs.
func step(name, id string) stepflow.Node[D] {
	return combinators.Do(name, func(_ context.Context, d *D) error {
		d.Ran = append(d.Ran, id)
		return nil
	})
}

// wait is a WaitFor node that is true on its n-th poll.
func wait(name string, n uint32) stepflow.Node[D] {
	return combinators.WaitFor(name, func(ctx context.Context, d *D) (bool, error) {
		d.Polls++
		return d.Polls%int(n) == 0, nil
	}, combinators.Every(time.Minute))
}

func flag(_ context.Context, d *D) (bool, error) { return d.Flag, nil }

// clock is a settable fake clock.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newCtx() (context.Context, *clock) {
	c := &clock{t: epoch}
	return stepflow.WithClock(context.Background(), c), c
}

// tt is what the helpers need of *testing.T and *rapid.T.
type tt interface {
	require.TestingT
	Helper()
	Fatalf(format string, args ...any)
}

// applier is what advances a state: a flow or a registry.
type applier interface {
	Apply(context.Context, stepflow.State[D]) (stepflow.State[D], error)
}

// advance applies n times (stopping early at a terminal state), moving the
// clock to the wake time when the state waits.
func advance(t tt, ctx context.Context, c *clock, a applier, st stepflow.State[D], n int) stepflow.State[D] {
	t.Helper()
	for i := 0; i < n && !st.Terminal(); i++ {
		if st.Status == stepflow.Waiting && c.t.Before(st.WakeAt) {
			c.t = st.WakeAt
		}
		next, err := a.Apply(ctx, st)
		require.NoError(t, err)
		st = next
	}
	return st
}

// finish applies until the state is terminal.
func finish(t tt, ctx context.Context, c *clock, a applier, st stepflow.State[D]) stepflow.State[D] {
	t.Helper()
	st = advance(t, ctx, c, a, st, 1000)
	require.True(t, st.Terminal(), "not finished after 1000 applies: %v", st.Positions())
	return st
}

// until applies until the process is at position pos.
func until(t tt, ctx context.Context, c *clock, a applier, st stepflow.State[D], pos string) stepflow.State[D] {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if slices.Contains(st.Positions(), pos) {
			return st
		}
		require.False(t, st.Terminal(), "finished without reaching %s", pos)
		st = advance(t, ctx, c, a, st, 1)
	}
	t.Fatalf("never reached %s", pos)
	return st
}

func must[S any](f *stepflow.Flow[S], err error) *stepflow.Flow[S] {
	if err != nil {
		panic(err)
	}
	return f
}

type contextT = context.Context

func contextWithCancel(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}
