package stepflow_test

import (
	"context"
	"fmt"
	"time"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Deploy is the per-process data of the deployment pipeline: it is
// persisted in the state and handed to every step.
type Deploy struct {
	App, Env string
	PR       int
	Live     bool
}

func getActualState(ctx context.Context, d *Deploy) error           { return nil }
func actualStateReady(ctx context.Context, d *Deploy) (bool, error) { return true, nil }
func shouldDeploy(ctx context.Context, d *Deploy) (bool, error)     { return d.Env == "prod", nil }
func createPR(ctx context.Context, d *Deploy) error                 { d.PR = 42; return nil }
func prMerged(ctx context.Context, d *Deploy) (bool, error)         { return true, nil }
func rolledOut(ctx context.Context, d *Deploy) (bool, error)        { d.Live = true; return true, nil }

// deployFlow is the README's quick start.
func deployFlow() (*stepflow.Flow[Deploy], error) {
	return stepflow.New("deploy/v1",
		combinators.Do("getPreActualState", getActualState),
		combinators.WaitFor("preActualState", actualStateReady,
			combinators.Every(10*time.Second), combinators.Timeout(30*time.Minute)),
		combinators.Case("shouldDeploy", shouldDeploy,
			combinators.Retry("createDeployRequest", combinators.RetryPolicy{MaxAttempts: 5},
				combinators.Do("openPullRequest", createPR)),
			combinators.WaitFor("acceptedDeployRequest", prMerged, combinators.Backoff(time.Second, time.Minute)),
			combinators.WaitFor("monitorDeploymentProgress", rolledOut, combinators.Timeout(time.Hour)),
		),
	)
}

// The quick start: build the flow once, then advance a process step by
// step, saving its state after each step.
func Example() {
	flow, err := deployFlow()
	if err != nil {
		panic(err)
	}
	mp := codec.Msgpack[Deploy](nil)
	saved, _ := mp.Encode(flow.Start(Deploy{App: "web", Env: "prod"}))

	ctx := context.Background()
	for {
		st, _ := mp.Decode(saved) // load
		if st.Terminal() {
			fmt.Printf("%s: PR #%d, live=%v\n", st.Status, st.Data.PR, st.Data.Live)
			break
		}
		st, err = flow.Apply(ctx, st) // one step
		if err != nil {
			fmt.Println("step failed:", err)
		}
		saved, _ = mp.Encode(st) // save; wait until st.WakeAt if it is waiting
		fmt.Println(st.Steps, st.Status, st.Positions())
	}
	// Output:
	// 1 running [preActualState]
	// 2 running [shouldDeploy]
	// 3 running [shouldDeploy/createDeployRequest/openPullRequest]
	// 4 running [shouldDeploy/acceptedDeployRequest]
	// 5 running [shouldDeploy/monitorDeploymentProgress]
	// 6 done []
	// done: PR #42, live=true
}

func ExampleFlow_Describe() {
	flow, _ := deployFlow()
	ctx := stepflow.WithClock(context.Background(), stepflow.ClockFunc(func() time.Time {
		return time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	}))
	st := flow.Start(Deploy{App: "web", Env: "prod"})
	for range 3 {
		st, _ = flow.Apply(ctx, st)
	}
	d, _ := flow.Describe(st)
	fmt.Println(d.Why)
	fmt.Print(d.Tree)
	// Output:
	// runnable now at shouldDeploy/createDeployRequest/openPullRequest
	// deploy/v1 [running] steps=3
	//   [x] getPreActualState (do)
	//   [x] preActualState (wait)
	//   [>] shouldDeploy (case): took then
	//     [>] createDeployRequest (retry): attempt 1 of 5
	//       [>] openPullRequest (do)
	//     [ ] acceptedDeployRequest (wait)
	//     [ ] monitorDeploymentProgress (wait)
}

func ExampleFlow_Mermaid() {
	f := stepflow.Must(stepflow.New("tiny/v1",
		combinators.Plain.Do("a", func(context.Context) error { return nil }),
		combinators.Sequence("grp", combinators.Plain.Do("b", func(context.Context) error { return nil }))))
	fmt.Print(f.Mermaid())
	// Output:
	// flowchart TD
	//   n0["a<br/><small>do</small>"]
	//   subgraph n1 ["grp<br/><small>sequence</small>"]
	//     n2["b<br/><small>do</small>"]
	//   end
	//   n0 --> n1
}

func ExampleFlow_Cancel() {
	f := stepflow.Must(stepflow.New("cancel/v1",
		combinators.Finally("work",
			combinators.Sleep[stepflow.None]("long", time.Hour),
			combinators.Plain.Do("cleanup", func(context.Context) error { fmt.Println("cleaning up"); return nil }))))
	ctx := context.Background()
	st, _ := f.Apply(ctx, f.Start(stepflow.None{}))
	st, _ = f.Cancel(st, "operator request")
	fmt.Println(st.Status, st.Positions())
	st, _ = f.Apply(ctx, st)
	fmt.Println(st.Status, st.Err.Message)
	// Output:
	// running [work/cleanup]
	// cleaning up
	// canceled operator request
}

func ExampleFlow_Redrive() {
	broken := true
	f := stepflow.Must(stepflow.New("redrive/v1",
		combinators.Plain.Do("a", func(context.Context) error { fmt.Println("a"); return nil }),
		combinators.Plain.Do("b", func(context.Context) error {
			if broken {
				return fmt.Errorf("bug")
			}
			fmt.Println("b")
			return nil
		})))
	ctx := context.Background()
	st, _ := f.Apply(ctx, f.Start(stepflow.None{}))
	st, _ = f.Apply(ctx, st)
	fmt.Println(st.Status, st.Err.Path)
	broken = false // the bug is fixed and deployed
	st, _ = f.Redrive(st)
	st, _ = f.Apply(ctx, st)
	fmt.Println(st.Status)
	// Output:
	// a
	// failed b
	// b
	// done
}

// The seed pipeline with the plain step signatures of the original
// go-stepflow, for flows that keep no data of their own.
func ExampleNew_plain() {
	step := func(name string) func(context.Context) error {
		return func(context.Context) error { fmt.Println(name); return nil }
	}
	yes := func(context.Context) (bool, error) { return true, nil }
	flow, err := stepflow.New("deploy/v1",
		combinators.Plain.Do("getPreActualState", step("collect pre-deploy state")),
		combinators.Plain.WaitFor("waitForPreActualState", yes),
		combinators.Plain.Case("deploy", yes,
			combinators.Plain.Do("createDeployRequest", step("open GitOps pull request")),
			combinators.Plain.WaitFor("waitForAcceptedDeployRequest", yes),
			combinators.Plain.WaitFor("monitorDeploymentProgress", yes),
			combinators.Plain.Do("getPostActualState", step("collect post-deploy state")),
			combinators.Plain.WaitFor("waitForPostActualState", yes),
			combinators.Plain.Do("validatePostDeployActualState", step("validate")),
		),
	)
	if err != nil {
		panic(err)
	}
	st := flow.Start(stepflow.None{})
	for !st.Terminal() {
		st, _ = flow.Apply(context.Background(), st)
	}
	fmt.Println(st.Status, st.Steps, "steps")
	// Output:
	// collect pre-deploy state
	// open GitOps pull request
	// collect post-deploy state
	// validate
	// done 9 steps
}
