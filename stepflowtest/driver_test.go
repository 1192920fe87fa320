package stepflowtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

func TestRunErrors(t *testing.T) {
	waitForever := stepflow.Must(stepflow.New("wait/v1",
		combinators.Plain.WaitFor("w", func(context.Context) (bool, error) { return false, nil }, combinators.Every(time.Minute)),
	))
	t.Run("step limit", func(t *testing.T) {
		tr, err := stepflowtest.Run(context.Background(), waitForever, waitForever.Start(stepflow.None{}),
			&stepflowtest.RunOptions[stepflow.None]{MaxSteps: 5})
		assert.ErrorIs(t, err, stepflowtest.ErrMaxSteps)
		assert.Len(t, tr.Transitions, 5)
		assert.Equal(t, stepflow.Waiting, tr.Final.Status)
		assert.Equal(t, 4*time.Minute, tr.Elapsed())
	})
	t.Run("invalid state", func(t *testing.T) {
		st := waitForever.Start(stepflow.None{})
		st.Root.Children[0].Name = "gone"
		tr, err := stepflowtest.Run(context.Background(), waitForever, st, nil)
		assert.ErrorIs(t, err, stepflow.ErrInvalidState)
		assert.Len(t, tr.Transitions, 1)
		assert.Equal(t, []string{"gone"}, tr.Transitions[0].Before)
	})
	t.Run("version mismatch", func(t *testing.T) {
		st := waitForever.Start(stepflow.None{})
		st.Version = "wait/v0"
		_, err := stepflowtest.Run(context.Background(), waitForever, st, nil)
		assert.ErrorIs(t, err, stepflow.ErrVersionMismatch)
	})
	t.Run("canceled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := stepflowtest.Run(ctx, waitForever, waitForever.Start(stepflow.None{}), nil)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("state too large for the codec", func(t *testing.T) {
		flow := orderFlow()
		_, err := stepflowtest.Run(context.Background(), flow, flow.Start(Order{Item: string(make([]byte, 200))}),
			&stepflowtest.RunOptions[Order]{Codec: codec.Msgpack[Order](&codec.Options{MaxSize: 100})})
		assert.ErrorIs(t, err, codec.ErrTooLarge)
	})
	t.Run("Apply modifying its input", func(t *testing.T) {
		flow := stepflow.Must(stepflow.New("mutate/v1", stepflow.Node[stepflow.None](mutator{})))
		tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(stepflow.None{}), nil)
		assert.ErrorIs(t, err, stepflowtest.ErrMutatedInput)
		assert.Len(t, tr.Transitions, 1, "the first Apply only sets the payload")
	})
}

// mutator is a faulty node: it changes its payload in place, and so the
// state Apply was given.
type mutator struct{}

func (mutator) Info() stepflow.Info                      { return stepflow.Info{Name: "mutate", Kind: "mutate"} }
func (mutator) Children() []stepflow.Node[stepflow.None] { return nil }
func (mutator) Check() []string                          { return nil }
func (mutator) Advance(c *stepflow.Cursor[stepflow.None]) stepflow.Result {
	f := c.Frame()
	if len(f.Payload) == 0 {
		f.Payload = []byte{1}
		return stepflow.Continue()
	}
	f.Payload[0]++
	return stepflow.Continue()
}

func TestRunOptions(t *testing.T) {
	flow := orderFlow()
	clock := stepflowtest.NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(Order{Item: "book"}), &stepflowtest.RunOptions[Order]{
		Codec: codec.JSON[Order](nil),
		Clock: clock,
		Tick:  time.Second,
	})
	require.NoError(t, err)
	require.Len(t, tr.Transitions, 5)
	for i, x := range tr.Transitions {
		assert.Equal(t, byte('{'), x.Encoded[0], "states are stored with the codec given")
		assert.Equal(t, time.Date(2030, 1, 1, 12, 0, i, 0, time.UTC), x.At, "the clock ticks once per Apply")
	}
	assert.Equal(t, time.Date(2030, 1, 1, 12, 0, 5, 0, time.UTC), clock.Now())
	last := tr.Final.Record[len(tr.Final.Record)-1]
	assert.Equal(t, "mail", last.Path)
	assert.Equal(t, time.Date(2030, 1, 1, 12, 0, 4, 0, time.UTC), last.Start, "steps see the test clock")
}

func TestTraceString(t *testing.T) {
	tr := run(t, "gift card", stepflowtest.Script{"physical/refund": stepflowtest.Calls(stepflowtest.Crash)})
	s := tr.String()
	assert.Contains(t, s, "flow order/v1\n")
	assert.Contains(t, s, "  call physical/refund attempt=1 crash\n  => crash, state discarded: ")
	assert.Contains(t, s, "end done after 6 applies\n")
	assert.Equal(t, s, run(t, "gift card", stepflowtest.Script{"physical/refund": stepflowtest.Calls(stepflowtest.Crash)}).String(),
		"the rendering is deterministic")
}

func TestRunCancelEvent(t *testing.T) {
	flow := orderFlow()
	tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(Order{Item: "book"}), &stepflowtest.RunOptions[Order]{
		Script: stepflowtest.Script{"paid": stepflowtest.Always(stepflowtest.False)},
		Events: []stepflowtest.Event{{After: 2 * time.Minute, Cancel: true, Reason: "customer left"}},
	})
	require.NoError(t, err)
	assert.Equal(t, stepflow.Canceled, tr.Final.Status)
	assert.Equal(t, "customer left", tr.Final.Err.Message)
	last := tr.Transitions[len(tr.Transitions)-1]
	assert.Equal(t, stepflowtest.Epoch.Add(2*time.Minute), last.At, "the clock stops at the event, before the next poll")
	assert.Len(t, last.Events, 1)
	assert.Empty(t, last.Calls)
	assert.Contains(t, tr.String(), "#4 2025-01-01T00:02:00Z cancel \"customer left\" after 2m0s\n")
	assert.Equal(t, []string{"reserve", "paid", "paid"}, tr.Visited(), "polls at 0 and 1m, canceled at 2m before the 3m poll")

	var r recorder
	assert.True(t, stepflowtest.CheckInvariants(&r, flow, flow.Start(Order{Item: "book"}), &stepflowtest.InvariantOptions[Order]{
		Script: stepflowtest.Script{"paid": stepflowtest.Always(stepflowtest.False)},
		Events: []stepflowtest.Event{{After: 2 * time.Minute, Cancel: true, Reason: "customer left"}},
	}), "%v", r.errs)
}
