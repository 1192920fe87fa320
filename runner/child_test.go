package runner_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

type purchase struct {
	Item     string
	Tracking string
	Outcome  string
}

type shipment struct {
	Item     string
	Tracking string
}

// shipWorld is a runner hosting an purchase flow whose "ship" node starts a
// shipment as a child process, and the shipment flow, which waits for an
// "arrived" signal carrying the tracking number.
func shipWorld(t *testing.T, into func(*purchase, runner.ChildResult[shipment]) error) (*runner.Runner, *runner.Processes[purchase], *runner.Processes[shipment], *fakeClock) {
	t.Helper()
	clock := newClock()
	r, err := runner.New(store.NewMemory(), &runner.Options{Clock: clock})
	require.NoError(t, err)
	ships, err := runner.Register(r, stepflow.Must(stepflow.New("ship/v1",
		combinators.WaitSignal("arrive", "arrived", func(s *shipment, p []byte) error {
			if string(p) == "lost" {
				return errors.New("parcel lost")
			}
			s.Tracking = string(p)
			return nil
		}),
	)))
	require.NoError(t, err)
	orders, err := runner.Register(r, stepflow.Must(stepflow.New("order/v1",
		runner.Child("ship", ships, func(o *purchase) (shipment, error) { return shipment{Item: o.Item}, nil }, into),
		combinators.Do("close", func(_ context.Context, o *purchase) error { o.Outcome = "closed"; return nil }),
	)))
	require.NoError(t, err)
	return r, orders, ships, clock
}

func TestChildFlowRunsAndReportsToItsParent(t *testing.T) {
	r, orders, ships, clock := shipWorld(t, func(o *purchase, res runner.ChildResult[shipment]) error {
		if res.Status != stepflow.Done {
			return errors.New("not shipped")
		}
		o.Tracking = res.Data.Tracking
		return nil
	})
	ctx := t.Context()
	require.NoError(t, orders.Start(ctx, "o-1", purchase{Item: "book"}))
	drain(t, r)

	child, err := ships.State(ctx, "o-1/ship")
	require.NoError(t, err, "the child's id is the parent's and the node's path")
	assert.Equal(t, stepflow.Waiting, child.Status)
	assert.Equal(t, "book", child.Data.Item, "the child's data comes from the parent's")
	parent, err := orders.State(ctx, "o-1")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Waiting, parent.Status, "the parent waits for its child")

	require.NoError(t, ships.Signal(ctx, "o-1/ship", "arrived", []byte("TRK-9")))
	drain(t, r)
	clock.Advance(time.Minute)
	drain(t, r)
	parent, err = orders.State(ctx, "o-1")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, parent.Status)
	assert.Equal(t, "TRK-9", parent.Data.Tracking, "the parent sees the child's data")
	assert.Equal(t, "closed", parent.Data.Outcome)

	n, err := r.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n.ByStatus[stepflow.Done], "one parent, one child: nothing started twice")
}

func TestChildStartedBeforeIsNotStartedAgain(t *testing.T) {
	// A parent that crashed after starting its child runs the start step
	// again: it finds the child and waits for that one.
	r, orders, ships, clock := shipWorld(t, nil)
	ctx := t.Context()
	require.NoError(t, ships.Start(ctx, "o-2/ship", shipment{Item: "started earlier"}))
	require.NoError(t, orders.Start(ctx, "o-2", purchase{Item: "lamp"}))
	drain(t, r)
	child, err := ships.State(ctx, "o-2/ship")
	require.NoError(t, err)
	assert.Equal(t, "started earlier", child.Data.Item)
	require.NoError(t, ships.Signal(ctx, "o-2/ship", "arrived", []byte("x")))
	drain(t, r)
	clock.Advance(time.Minute)
	drain(t, r)
	parent, err := orders.State(ctx, "o-2")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, parent.Status)
}

func TestChildFailureFailsTheParent(t *testing.T) {
	r, orders, ships, clock := shipWorld(t, nil)
	ctx := t.Context()
	require.NoError(t, orders.Start(ctx, "o-3", purchase{Item: "vase"}))
	drain(t, r)
	require.NoError(t, ships.Signal(ctx, "o-3/ship", "arrived", []byte("lost")))
	drain(t, r)
	clock.Advance(time.Minute)
	drain(t, r)
	parent, err := orders.State(ctx, "o-3")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Failed, parent.Status)
	require.NotNil(t, parent.Err)
	assert.Equal(t, "ship/wait", parent.Err.Path)
	assert.Contains(t, parent.Err.Message, `child "o-3/ship" failed: parcel lost`)
}

func TestCancelingTheParentCancelsItsChildren(t *testing.T) {
	r, orders, ships, _ := shipWorld(t, nil)
	ctx := t.Context()
	require.NoError(t, orders.Start(ctx, "o-4", purchase{Item: "chair"}))
	require.NoError(t, orders.Start(ctx, "o-40", purchase{Item: "other"}))
	drain(t, r)
	require.NoError(t, orders.Cancel(ctx, "o-4", "customer changed their mind"))
	drain(t, r)
	child, err := ships.State(ctx, "o-4/ship")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Canceled, child.Status)
	require.NotNil(t, child.Err)
	assert.Contains(t, child.Err.Message, "parent o-4 canceled: customer changed their mind")
	other, err := ships.State(ctx, "o-40/ship")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Waiting, other.Status, "another parent's child (o-40 starts with o-4) is left alone")
}
