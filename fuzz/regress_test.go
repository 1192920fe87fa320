package fuzz

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// Regression tests for what the fuzz targets and the stored corpus found.

// A ForEach keeps one instance frame ("[0]", "[1]", ...) per running item,
// holding the frames of its body; every state Apply produces inside it
// must pass Validate, or a runner that validates what it loads rejects it.
func TestValidateForEachInstances(t *testing.T) {
	flow := richFlow()
	tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(Data{}), &stepflowtest.RunOptions[Data]{Events: approval})
	require.NoError(t, err)
	seen := false
	for _, st := range tr.States() {
		for _, p := range st.Positions() {
			seen = seen || p == "regions/[0]/rollout"
		}
		require.NoError(t, flow.Validate(st), "state at %v", st.Positions())
	}
	require.True(t, seen, "the run went through the ForEach")
}
