package stepflowtest_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

type labels struct{ Labels map[string]string }

type clonedLabels struct{ Labels map[string]string }

func (l clonedLabels) Clone() clonedLabels { l.Labels = maps.Clone(l.Labels); return l }

// A step that changes a map of the data in place changes the state Apply
// was given, unless the data type has a Clone method.
func TestRunDataAliasing(t *testing.T) {
	set := func(m map[string]string, k string) {
		m[k] = "yes"
	}
	shared := stepflow.Must(stepflow.New("labels/v1",
		combinators.Do("a", func(ctx context.Context, d *labels) error { d.Labels = map[string]string{}; return nil }),
		combinators.Do("b", func(ctx context.Context, d *labels) error { set(d.Labels, "b"); return nil }),
	))
	_, err := stepflowtest.Run(context.Background(), shared, shared.Start(labels{}), nil)
	assert.ErrorIs(t, err, stepflowtest.ErrMutatedInput)
	assert.ErrorContains(t, err, "Clone()")

	cloned := stepflow.Must(stepflow.New("labels/v1",
		combinators.Do("a", func(ctx context.Context, d *clonedLabels) error { d.Labels = map[string]string{}; return nil }),
		combinators.Do("b", func(ctx context.Context, d *clonedLabels) error { set(d.Labels, "b"); return nil }),
	))
	tr, err := stepflowtest.Run(context.Background(), cloned, cloned.Start(clonedLabels{}), nil)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"b": "yes"}, tr.Final.Data.Labels)
}

type approval struct {
	By      string
	Charged int
}

func approvalFlow(policy combinators.OnUnknown) *stepflow.Flow[approval] {
	return stepflow.Must(stepflow.New("approval/v1",
		combinators.WaitSignal("approve", "approve", func(d *approval, p []byte) error { d.By = string(p); return nil },
			combinators.Timeout(time.Hour)),
		combinators.Do("charge", func(ctx context.Context, d *approval) error { d.Charged++; return nil },
			combinators.AtMostOnce(policy)),
		combinators.Do("notify", func(ctx context.Context, d *approval) error { return nil }),
	))
}

func TestRunSignals(t *testing.T) {
	flow := approvalFlow(combinators.AskPerson)
	t.Run("delivered while waiting", func(t *testing.T) {
		tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(approval{}), &stepflowtest.RunOptions[approval]{
			Events: []stepflowtest.Event{{After: 10 * time.Minute, Signal: "approve", Payload: []byte("ops")}},
		})
		require.NoError(t, err)
		assert.Equal(t, stepflow.Done, tr.Final.Status)
		assert.Equal(t, "ops", tr.Final.Data.By)
		assert.Equal(t, 1, tr.Final.Data.Charged)
		assert.Equal(t, 10*time.Minute, tr.Elapsed(), "the clock stopped at the signal, not at the timeout")
		assert.Contains(t, tr.String(), "signal approve \"ops\" after 10m0s")
		assert.Contains(t, tr.String(), "intent=charge", "the trace shows the recorded intent")
	})
	t.Run("never sent", func(t *testing.T) {
		tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(approval{}), nil)
		require.NoError(t, err)
		assert.Equal(t, stepflow.Failed, tr.Final.Status)
		assert.ErrorIs(t, tr.Err, stepflow.ErrTimeout)
	})
	t.Run("no timeout and no signal", func(t *testing.T) {
		forever := stepflow.Must(stepflow.New("forever/v1", combinators.WaitSignal[stepflow.None]("go", "go", nil)))
		tr, err := stepflowtest.Run(context.Background(), forever, forever.Start(stepflow.None{}), nil)
		assert.ErrorIs(t, err, stepflowtest.ErrIdle)
		assert.Equal(t, stepflow.Waiting, tr.Final.Status)
	})
}

func TestAtMostOnceCrash(t *testing.T) {
	events := []stepflowtest.Event{{Signal: "approve", Payload: []byte("ops")}}
	script := stepflowtest.Script{"charge": stepflowtest.Calls(stepflowtest.Crash)}
	t.Run("ask a person", func(t *testing.T) {
		flow := approvalFlow(combinators.AskPerson)
		tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(approval{}), &stepflowtest.RunOptions[approval]{Script: script, Events: events})
		require.NoError(t, err)
		assert.Equal(t, stepflow.NeedsAttention, tr.Final.Status, "after a crash the outcome is unknown")
		assert.Equal(t, "charge", tr.Final.Intent)
		assert.Equal(t, []string{"approve", "charge"}, tr.Ran(), "the step is not run again")
		var r recorder
		assert.True(t, stepflowtest.CheckInvariants(&r, flow, flow.Start(approval{}), &stepflowtest.InvariantOptions[approval]{Events: events}), "%v", r.errs)
	})
	t.Run("run again", func(t *testing.T) {
		flow := approvalFlow(combinators.RunAgain)
		tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(approval{}), &stepflowtest.RunOptions[approval]{Script: script, Events: events})
		require.NoError(t, err)
		assert.Equal(t, stepflow.Done, tr.Final.Status)
		assert.Equal(t, []string{"approve", "charge", "charge", "notify"}, tr.Ran())
		var r recorder
		assert.True(t, stepflowtest.CheckInvariants(&r, flow, flow.Start(approval{}), &stepflowtest.InvariantOptions[approval]{Events: events}), "%v", r.errs)
	})
}
