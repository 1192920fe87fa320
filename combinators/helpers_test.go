package combinators_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var t0 = time.Date(2026, 5, 6, 7, 0, 0, 0, time.UTC)

// D is the data of test flows: a log of completed calls.
type D struct {
	Log []string
	N   int
}

func (d *D) Clone() D { return D{Log: append([]string(nil), d.Log...), N: d.N} }

// harness drives flows with a fake clock, encoding the state between
// Applies as a runner would, and logs every call with its attempt.
type harness struct {
	t     *testing.T
	clk   *clock
	calls []string
	fail  map[string]int // path -> remaining failures to inject
	ctx   context.Context
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, clk: &clock{t: t0}, fail: map[string]int{}}
	h.ctx = stepflow.WithInterceptor(stepflow.WithClock(context.Background(), h.clk),
		func(ctx context.Context, c stepflow.Call, next func(context.Context) error) error {
			h.calls = append(h.calls, fmt.Sprintf("%s#%d", c.Path, c.Attempt))
			if h.fail[c.Path] > 0 {
				h.fail[c.Path]--
				return fmt.Errorf("injected at %s", c.Path)
			}
			return next(ctx)
		})
	return h
}

var errBoom = errors.New("boom")

// step logs its path into the data.
func step(ctx context.Context, d *D) error {
	c, _ := stepflow.CallFrom(ctx)
	d.Log = append(d.Log, c.Path)
	return nil
}

func failing(context.Context, *D) error { return errBoom }

// apply runs one Apply through a msgpack save and load.
func (h *harness) apply(f *stepflow.Flow[D], st stepflow.State[D]) (stepflow.State[D], error) {
	h.t.Helper()
	mp := codec.Msgpack[D](nil)
	b, err := mp.Encode(st)
	require.NoError(h.t, err)
	st, err = mp.Decode(b)
	require.NoError(h.t, err)
	return f.Apply(h.ctx, st)
}

// run drives st to a terminal state, jumping the clock to each WakeAt.
func (h *harness) run(f *stepflow.Flow[D], st stepflow.State[D]) stepflow.State[D] {
	h.t.Helper()
	for i := 0; !st.Terminal(); i++ {
		require.Less(h.t, i, 10000, "flow does not terminate")
		if st.Status == stepflow.Waiting {
			require.False(h.t, st.WakeAt.IsZero(), "waiting forever at %v", st.Positions())
			h.clk.Set(st.WakeAt)
		}
		var err error
		st, err = h.apply(f, st)
		if err != nil && !errors.Is(err, stepflow.ErrStep) {
			require.NoError(h.t, err)
		}
	}
	return st
}
