package stepflowtest_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

func TestLeaves(t *testing.T) {
	assert.Equal(t, []string{"reserve", "paid", "physical", "physical/ship", "physical/refund", "mail"}, stepflowtest.Leaves(orderFlow()))
}

func TestOutcomeScript(t *testing.T) {
	paths := []string{"b", "a", "b"}
	rapid.Check(t, func(t *rapid.T) {
		s := stepflowtest.OutcomeScript(paths).Draw(t, "script")
		for p, plan := range s {
			assert.Contains(t, []string{"a", "b"}, p)
			assert.NotEmpty(t, plan.Outcomes, "paths without scripted calls are left out")
			assert.LessOrEqual(t, len(plan.Outcomes), stepflowtest.DefaultMaxCalls)
			assert.Equal(t, stepflowtest.Normal, plan.Then, "calls after the scripted ones run normally")
		}
	})
	only := []stepflowtest.Outcome{stepflowtest.Crash, stepflowtest.False}
	rapid.Check(t, func(t *rapid.T) {
		s := stepflowtest.OutcomeScriptWithOptions(paths, &stepflowtest.ScriptOptions{Outcomes: only, MaxCalls: 2}).Draw(t, "script")
		for _, plan := range s {
			assert.LessOrEqual(t, len(plan.Outcomes), 2)
			for _, o := range plan.Outcomes {
				assert.True(t, slices.Contains(only, o), "%v", o)
			}
		}
	})
}

// Every outcome is drawn sometimes.
func TestOutcomeScriptCoverage(t *testing.T) {
	seen := map[stepflowtest.Outcome]bool{}
	rapid.Check(t, func(t *rapid.T) {
		for _, plan := range stepflowtest.OutcomeScript([]string{"a", "b", "c"}).Draw(t, "script") {
			for _, o := range plan.Outcomes {
				seen[o] = true
			}
		}
	})
	assert.Len(t, seen, 7)
}

func TestOutcomeScriptWithoutPaths(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		assert.Empty(t, stepflowtest.OutcomeScript(nil).Draw(t, "script"))
	})
}
