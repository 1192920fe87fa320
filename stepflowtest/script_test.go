package stepflowtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

func TestPlan(t *testing.T) {
	p := stepflowtest.Calls(stepflowtest.Fail, stepflowtest.Crash)
	assert.Equal(t, []stepflowtest.Outcome{stepflowtest.Fail, stepflowtest.Crash, stepflowtest.Normal, stepflowtest.Normal},
		[]stepflowtest.Outcome{p.At(0), p.At(1), p.At(2), p.At(3)})
	assert.Equal(t, "fail,crash", p.String())

	p = stepflowtest.Times(stepflowtest.False, 3)
	assert.Equal(t, stepflowtest.False, p.At(2))
	assert.Equal(t, stepflowtest.Normal, p.At(3))
	assert.Empty(t, stepflowtest.Times(stepflowtest.Fail, -1).Outcomes)

	p = stepflowtest.Always(stepflowtest.Panic)
	assert.Equal(t, stepflowtest.Panic, p.At(1000))
	assert.Equal(t, "panic...", p.String())

	s := stepflowtest.Script{"b": stepflowtest.Calls(stepflowtest.Fail), "a": stepflowtest.Always(stepflowtest.False)}
	assert.Equal(t, "{a: false...; b: fail}", s.String())
	assert.Equal(t, "outcome(99)", stepflowtest.Outcome(99).String())
}

func run(t *testing.T, item string, s stepflowtest.Script) *stepflowtest.Trace[Order] {
	t.Helper()
	flow := orderFlow()
	tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(Order{Item: item}), &stepflowtest.RunOptions[Order]{Script: s})
	require.NoError(t, err)
	return tr
}

func TestOutcomes(t *testing.T) {
	t.Run("normal", func(t *testing.T) {
		tr := run(t, "book", nil)
		assert.Equal(t, stepflow.Done, tr.Final.Status)
		assert.Equal(t, []string{"reserve", "paid", "physical", "physical/ship", "mail"}, tr.Visited())
		assert.Equal(t, tr.Visited(), tr.Ran())
		assert.True(t, tr.Final.Data.Shipped)
		assert.NoError(t, tr.Err)
	})
	t.Run("fail does not run the step", func(t *testing.T) {
		tr := run(t, "book", stepflowtest.Script{"physical/ship": stepflowtest.Calls(stepflowtest.Fail)})
		assert.Equal(t, stepflow.Failed, tr.Final.Status)
		assert.ErrorIs(t, tr.Err, stepflowtest.ErrInjected)
		assert.ErrorIs(t, tr.Err, stepflow.ErrStep)
		assert.False(t, tr.Final.Data.Shipped)
		assert.NotContains(t, tr.Ran(), "physical/ship")
		assert.Equal(t, "physical/ship", tr.Final.Err.Path)
	})
	t.Run("fail after runs the step", func(t *testing.T) {
		tr := run(t, "book", stepflowtest.Script{"physical/ship": stepflowtest.Calls(stepflowtest.FailAfter)})
		assert.Equal(t, stepflow.Failed, tr.Final.Status)
		assert.ErrorIs(t, tr.Err, stepflowtest.ErrInjected)
		assert.True(t, tr.Final.Data.Shipped)
		assert.Contains(t, tr.Ran(), "physical/ship")
	})
	t.Run("fail permanent", func(t *testing.T) {
		tr := run(t, "book", stepflowtest.Script{"reserve": stepflowtest.Calls(stepflowtest.FailPermanent)})
		assert.Equal(t, stepflow.Failed, tr.Final.Status)
		assert.True(t, stepflow.IsPermanent(tr.Err))
		assert.Equal(t, stepflow.KindPermanent, tr.Final.Err.Kind)
	})
	t.Run("false skips a step", func(t *testing.T) {
		tr := run(t, "book", stepflowtest.Script{"physical/ship": stepflowtest.Calls(stepflowtest.False)})
		assert.Equal(t, stepflow.Done, tr.Final.Status)
		assert.False(t, tr.Final.Data.Shipped, "the step did not run")
		assert.Equal(t, []string{"reserve", "paid", "physical", "mail"}, tr.Ran())
	})
	t.Run("false keeps a wait waiting", func(t *testing.T) {
		tr := run(t, "book", stepflowtest.Script{"paid": stepflowtest.Times(stepflowtest.False, 3)})
		assert.Equal(t, stepflow.Done, tr.Final.Status)
		assert.Len(t, tr.Attempts("paid"), 4)
		assert.Equal(t, 7*time.Minute, tr.Elapsed(), "backoff of 1, 2 and 4 minutes")
	})
	t.Run("false forever times out", func(t *testing.T) {
		tr := run(t, "book", stepflowtest.Script{"paid": stepflowtest.Always(stepflowtest.False)})
		assert.Equal(t, stepflow.Failed, tr.Final.Status)
		assert.ErrorIs(t, tr.Err, stepflow.ErrTimeout)
	})
	t.Run("panic", func(t *testing.T) {
		tr := run(t, "book", stepflowtest.Script{"mail": stepflowtest.Calls(stepflowtest.Panic)})
		assert.Equal(t, stepflow.Failed, tr.Final.Status)
		assert.ErrorIs(t, tr.Err, stepflow.ErrPanic)
		var pe *stepflow.PanicError
		require.ErrorAs(t, tr.Err, &pe)
		assert.IsType(t, &stepflowtest.InjectedPanic{}, pe.Value)
		assert.Zero(t, tr.Final.Data.Mailed)
		calls := tr.Calls()
		assert.Contains(t, calls[len(calls)-1].Err, "injected panic at mail")
	})
	t.Run("crash runs the step again from the saved state", func(t *testing.T) {
		tr := run(t, "book", stepflowtest.Script{"physical/ship": stepflowtest.Calls(stepflowtest.Crash)})
		assert.Equal(t, stepflow.Done, tr.Final.Status)
		assert.Equal(t, []string{"reserve", "paid", "physical", "physical/ship", "physical/ship", "mail"}, tr.Ran())
		assert.Equal(t, []uint32{1, 1}, tr.Attempts("physical/ship"), "the re-run is the same attempt")
		crashed := 0
		for _, x := range tr.Transitions {
			if x.Crashed {
				crashed++
				assert.Equal(t, []string{"physical/ship"}, x.Before)
			}
		}
		assert.Equal(t, 1, crashed)
		assert.Len(t, tr.States(), len(tr.Transitions), "the crashed state is not kept")
		assert.Equal(t, run(t, "book", nil).Final, tr.Final, "ends as the uninterrupted run")
	})
}

// A step that panics by itself is noted in the trace and recovered by the
// engine as in production.
func TestRealPanic(t *testing.T) {
	flow := stepflow.Must(stepflow.New("panic/v1",
		combinators.Plain.Do("boom", func(ctx context.Context) error { panic("boom") }),
	))
	tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(stepflow.None{}), nil)
	require.NoError(t, err)
	assert.ErrorIs(t, tr.Err, stepflow.ErrPanic)
	assert.Equal(t, "panic: boom", tr.Calls()[0].Err)
}

func TestCallInfo(t *testing.T) {
	var keys []string
	flow := stepflow.Must(stepflow.New("key/v1",
		combinators.Plain.Do("pay", func(ctx context.Context) error {
			c, _ := stepflow.CallFrom(ctx)
			keys = append(keys, c.IdempotencyKey())
			return nil
		}),
	))
	st := flow.Start(stepflow.None{})
	st.ID = "p-1"
	tr, err := stepflowtest.Run(context.Background(), flow, st, &stepflowtest.RunOptions[stepflow.None]{
		Script: stepflowtest.Script{"pay": stepflowtest.Times(stepflowtest.Crash, 2)},
	})
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, tr.Final.Status)
	require.Len(t, keys, 3)
	assert.Equal(t, keys[0], keys[1], "a re-run after a crash has the same idempotency key")
	assert.Equal(t, keys[0], keys[2])
	assert.Equal(t, "key/v1|p-1|pay#1", keys[0])
}
