package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// maxApplies bounds a deployment: every wait has a timeout and every retry
// a limit, so whatever fails, a process ends within this many applies.
const maxApplies = 400

// appRunning returns an app of the world that already runs target (want
// true) or does not (want false). The number is not at the end of the
// name, so that the world's rolls for different apps differ widely.
func appRunning(t *rapid.T, w *World, target string, want bool) string {
	for i := range 1000 {
		app := fmt.Sprintf("app-%03d.svc", i)
		if (w.InitialVersion(app, target) == target) == want {
			return app
		}
	}
	t.Fatalf("no app with initial version %s = %v", target, want)
	return ""
}

// For every outcome script, the deploy flow ends done or failed within
// maxApplies applies, and never creates a pull request when shouldDeploy
// decides that the app already runs the target version.
func TestDeployProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := NewWorld(rapid.Uint64().Draw(t, "seed"))
		w.Latency = 0 // the clock is fake; real sleeps would only slow the test
		flow, err := DeployFlow(w)
		require.NoError(t, err)
		target := "v2"
		upToDate := rapid.Bool().Draw(t, "upToDate")
		app := appRunning(t, w, target, upToDate)
		script := stepflowtest.OutcomeScript(stepflowtest.Leaves(flow)).Draw(t, "script")

		tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(Deploy{App: app, Target: target}),
			&stepflowtest.RunOptions[Deploy]{Script: script, MaxSteps: 2 * maxApplies})
		require.NoError(t, err)
		stepflowtest.EndsWith(t, tr, stepflow.Done, stepflow.Failed)
		require.LessOrEqual(t, len(tr.Transitions), maxApplies, "applies\n%s", tr)

		if decided, deploy := shouldDeploy(tr); !decided || !deploy {
			stepflowtest.NeverVisited(t, tr, "shouldDeploy/createDeployRequest")
			created, _ := w.Stats()
			require.Zero(t, created, "pull requests created for an app that runs %s already\n%s", target, tr)
		}
	})
}

// shouldDeploy tells whether the run decided at shouldDeploy, and what:
// the case's predicate ran normally, on the data of the state it was
// given, in an apply whose state was kept.
func shouldDeploy(tr *stepflowtest.Trace[Deploy]) (decided, deploy bool) {
	for _, x := range tr.Transitions {
		for _, c := range x.Calls {
			if c.Path == "shouldDeploy" && c.Outcome == stepflowtest.Normal && c.Err == "" && !x.Crashed {
				decided, deploy = true, x.Given.Data.Before != x.Given.Data.Target
			}
		}
	}
	return decided, deploy
}

// The deploy flow keeps stepflowtest's invariants, with and without
// injected failures: in particular a crash after any step, the pull request
// included, ends as an uninterrupted run does.
func TestDeployInvariants(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := NewWorld(rapid.Uint64().Draw(t, "seed"))
		w.Latency = 0
		flow, err := DeployFlow(w)
		require.NoError(t, err)
		app := appRunning(t, w, "v2", rapid.Bool().Draw(t, "upToDate"))
		script := stepflowtest.OutcomeScript(stepflowtest.Leaves(flow)).Draw(t, "script")
		stepflowtest.CheckInvariants(t, flow, flow.Start(Deploy{App: app, Target: "v2"}), &stepflowtest.InvariantOptions[Deploy]{
			Script:       script,
			AllowFailure: true, // a few apps never become healthy
			MaxSteps:     maxApplies,
		})
	})
}
