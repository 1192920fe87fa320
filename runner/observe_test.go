package runner_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// lagTracer records the runner's tracing calls and claim lags.
type lagTracer struct {
	mu     sync.Mutex
	starts []string
	ends   []stepflow.Status
	seen   []bool // whether each step saw the context ApplyStart returned
	lags   []time.Duration
}

type tracedKey struct{}

func (l *lagTracer) ApplyStart(ctx context.Context, id, version string, from stepflow.Status) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.starts = append(l.starts, id+" "+version+" "+from.String())
	return context.WithValue(ctx, tracedKey{}, id)
}

func (l *lagTracer) ApplyEnd(ctx context.Context, to stepflow.Status, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ctx.Value(tracedKey{}) == nil {
		panic("ApplyEnd without ApplyStart's context")
	}
	l.ends = append(l.ends, to)
}

func TestClaimLagAndApplyTracer(t *testing.T) {
	clock := newClock()
	tr := &lagTracer{}
	f, err := stepflow.New("lag/v1",
		combinators.Sleep[counter]("pause", time.Minute),
		combinators.Do("after", func(ctx context.Context, _ *counter) error {
			tr.mu.Lock()
			tr.seen = append(tr.seen, ctx.Value(tracedKey{}) == "p")
			tr.mu.Unlock()
			return nil
		}),
	)
	require.NoError(t, err)
	m := &runner.Metrics{Claimed: func(version string, lag time.Duration) {
		assert.Equal(t, "lag/v1", version)
		tr.mu.Lock()
		tr.lags = append(tr.lags, lag)
		tr.mu.Unlock()
	}}
	r, ps, err := newRunner(f, store.NewMemory(), &runner.Options{Clock: clock, Metrics: m, Tracer: tr})
	require.NoError(t, err)
	require.NoError(t, ps.Start(t.Context(), "p", counter{}))

	clock.Advance(2 * time.Second)
	assert.Equal(t, 1, drain(t, r), "the sleep starts")
	// Due a minute after the sleep started; picked up five minutes late.
	clock.Advance(time.Minute + 5*time.Minute)
	assert.Equal(t, 1, drain(t, r), "the sleep ends and the step runs")

	tr.mu.Lock()
	defer tr.mu.Unlock()
	assert.Equal(t, []time.Duration{2 * time.Second, 5 * time.Minute}, tr.lags,
		"late by the time since creation, then since the wake time")
	assert.Equal(t, []string{"p lag/v1 running", "p lag/v1 waiting"}, tr.starts)
	assert.Equal(t, []stepflow.Status{stepflow.Waiting, stepflow.Done}, tr.ends)
	assert.Equal(t, []bool{true}, tr.seen, "the step's context derives from ApplyStart's")
}
