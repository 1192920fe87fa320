package versions_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

// Deploy is the data of the example deploy flow.
type Deploy struct {
	App     string
	Healthy bool
	Smoke   string
}

func nop(context.Context, *Deploy) error { return nil }

func healthy(_ context.Context, d *Deploy) (bool, error) { return d.Healthy, nil }

func always(context.Context, *Deploy) (bool, error) { return true, nil }

// deployV1 is the released version 1.
func deployV1() *stepflow.Flow[Deploy] {
	return stepflow.Must(stepflow.New("deploy/v1",
		combinators.Do("postPreActualState", nop),
		combinators.Case("shouldDeploy", always,
			combinators.Do("createDeployRequest", nop),
			combinators.WaitFor("monitorDeploymentProgress", healthy, combinators.Every(time.Minute), combinators.Timeout(time.Hour)),
		),
		combinators.Do("postActualState", nop),
	))
}

// deployV2 renames monitorDeploymentProgress and adds runSmokeTests.
func deployV2() *stepflow.Flow[Deploy] {
	return stepflow.Must(stepflow.New("deploy/v2",
		combinators.Do("postPreActualState", nop),
		combinators.Case("shouldDeploy", always,
			combinators.Do("createDeployRequest", nop),
			combinators.WaitFor("monitorRollout", healthy, combinators.Every(time.Minute), combinators.Timeout(time.Hour)),
			combinators.Do("runSmokeTests", func(_ context.Context, d *Deploy) error { d.Smoke = "passed"; return nil }),
		),
		combinators.Do("postActualState", nop),
	))
}

// A process of deploy/v1 is waiting for its rollout when deploy/v2 ships.
// The registry moves it to v2 on its next Apply: the wait keeps its poll
// count and start time under its new name, and the process runs the new
// smoke tests.
func Example() {
	v1, v2 := deployV1(), deployV2()
	reg, err := versions.New([]*stepflow.Flow[Deploy]{v1, v2}, nil,
		versions.NewMigration[Deploy]("deploy/v1", "deploy/v2").
			Rename("shouldDeploy/monitorDeploymentProgress", "shouldDeploy/monitorRollout"))
	if err != nil {
		fmt.Println(err)
		return
	}

	clk := &clock{t: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)}
	ctx := stepflow.WithClock(context.Background(), clk)
	st := v1.Start(Deploy{App: "shop"})
	for range 5 { // a step, a decision, a step, then two polls of the rollout
		clk.t = clk.t.Add(time.Minute)
		st, _ = v1.Apply(ctx, st)
	}
	fmt.Println(st.Version, st.Positions(), st.Root.Child("shouldDeploy").Child("monitorDeploymentProgress").Count)

	st.Data.Healthy = true // the rollout finishes meanwhile
	clk.t = st.WakeAt
	st, _ = reg.Apply(ctx, st)
	fmt.Println(st.Version, st.Positions())
	for !st.Terminal() {
		st, _ = reg.Apply(ctx, st)
	}
	fmt.Println(st.Status, st.Data.Smoke)
	// Output:
	// deploy/v1 [shouldDeploy/monitorDeploymentProgress] 2
	// deploy/v2 [shouldDeploy/runSmokeTests]
	// done passed
}

// The start-up check lists every position of the old version that has no
// target, all at once.
func ExampleCheck() {
	v1, v2 := deployV1(), deployV2()
	err := versions.Check(versions.NewMigration[Deploy]("deploy/v1", "deploy/v2"), versions.Structure(v1), versions.Structure(v2))
	fmt.Println(err)
	fmt.Println(errors.Is(err, versions.ErrNoTarget))
	// Output:
	// stepflow: deploy/v1 -> deploy/v2: position "shouldDeploy/monitorDeploymentProgress" has no target (no node "shouldDeploy/monitorDeploymentProgress" in deploy/v2); add a Rename, Continue, Restart or Custom rule for it
	// true
}

// Once v1's structure is recorded, its code can go: the registry migrates
// v1 states with v2's definition and the rules alone.
func ExampleMigration_Source() {
	v1 := deployV1()
	recorded := versions.Structure(v1) // in a real program: loaded from testdata

	reg, err := versions.New([]*stepflow.Flow[Deploy]{deployV2()}, nil,
		versions.NewMigration[Deploy]("deploy/v1", "deploy/v2").
			Source(recorded).
			Rename("shouldDeploy/monitorDeploymentProgress", "shouldDeploy/monitorRollout"))
	if err != nil {
		fmt.Println(err)
		return
	}
	st, _ := v1.Apply(context.Background(), v1.Start(Deploy{}))
	moved, err := reg.Migrate(st)
	fmt.Println(moved.Version, moved.Positions(), err)
	fmt.Println(reg.Versions())
	// Output:
	// deploy/v2 [shouldDeploy] <nil>
	// [deploy/v1 deploy/v2]
}

// A Custom rule decides per process. Here v2 splits postActualState in two
// steps; processes that already recorded an error skip the first.
func ExampleMigration_Custom() {
	v1 := deployV1()
	v2 := stepflow.Must(stepflow.New("deploy/v2",
		combinators.Do("postPreActualState", nop),
		combinators.Case("shouldDeploy", always,
			combinators.Do("createDeployRequest", nop),
			combinators.WaitFor("monitorDeploymentProgress", healthy),
		),
		combinators.Do("postActualStateToGit", nop),
		combinators.Do("postActualStateToDashboard", nop),
	))
	reg, _ := versions.New([]*stepflow.Flow[Deploy]{v1, v2}, nil,
		versions.NewMigration[Deploy]("deploy/v1", "deploy/v2").
			Custom("postActualState", func(d *versions.Decision[Deploy]) error {
				if d.Data.App == "legacy" {
					d.ContinueAt("postActualStateToDashboard")
				} else {
					d.MoveTo("postActualStateToGit")
				}
				return nil
			}))

	for _, app := range []string{"shop", "legacy"} {
		st := stepflow.State[Deploy]{Version: "deploy/v1", Status: stepflow.Running, Data: Deploy{App: app},
			Root: stepflow.Frame{Children: []stepflow.Frame{{Name: "postActualState"}}}}
		moved, err := reg.Migrate(st)
		fmt.Println(app, moved.Positions(), err)
	}
	// Output:
	// shop [postActualStateToGit] <nil>
	// legacy [postActualStateToDashboard] <nil>
}

// Policies choose what happens to older states.
func ExampleOptions() {
	v1, v2 := deployV1(), deployV2()
	m := versions.NewMigration[Deploy]("deploy/v1", "deploy/v2").
		Rename("shouldDeploy/monitorDeploymentProgress", "shouldDeploy/monitorRollout")
	st := v1.Start(Deploy{})
	for _, p := range []versions.Policy{versions.PolicyLazy, versions.PolicyPinned, versions.PolicyRefuse} {
		reg, _ := versions.New([]*stepflow.Flow[Deploy]{v1, v2}, &versions.Options{Policy: p}, m)
		next, err := reg.Apply(context.Background(), st)
		fmt.Println(p, next.Version, err)
	}
	// Output:
	// lazy deploy/v2 <nil>
	// pinned deploy/v1 <nil>
	// refuse deploy/v1 stepflow: state has version "deploy/v1", the registry runs "deploy/v2" and refuses older states
}
