package stepflowtest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// For every outcome script, the order flow ends done or failed within 20
// applies, and a gift card is never shipped: the kind of property the
// package is for.
func TestOrderProperty(t *testing.T) {
	flow := orderFlow()
	rapid.Check(t, func(t *rapid.T) {
		script := stepflowtest.OutcomeScript(stepflowtest.Leaves(flow)).Draw(t, "script")
		item := rapid.SampledFrom([]string{"book", "gift card"}).Draw(t, "item")
		tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(Order{Item: item}), &stepflowtest.RunOptions[Order]{Script: script})
		require.NoError(t, err)
		stepflowtest.EndsWith(t, tr, stepflow.Done, stepflow.Failed)
		require.LessOrEqual(t, len(tr.Transitions), 20, "applies")
		if item == "gift card" {
			stepflowtest.NeverVisited(t, tr, "physical/ship")
			require.False(t, tr.Final.Data.Shipped)
		}
	})
}
