package stepflowtest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// Run drives a flow to its end. Here the payment check answers false twice,
// so the clock jumps to each next poll, and shipping fails after doing its
// work, as when the carrier's reply is lost.
func ExampleRun() {
	flow := orderFlow()
	tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(Order{Item: "book"}), &stepflowtest.RunOptions[Order]{
		Script: stepflowtest.Script{
			"paid":          stepflowtest.Times(stepflowtest.False, 2),
			"physical/ship": stepflowtest.Calls(stepflowtest.FailAfter),
		},
	})
	fmt.Println("run error:", err)
	fmt.Println("visited:", tr.Visited())
	fmt.Println("status:", tr.Final.Status, "after", tr.Elapsed())
	fmt.Println("shipped:", tr.Final.Data.Shipped)
	fmt.Println("error:", tr.Err)
	// Output:
	// run error: <nil>
	// visited: [reserve paid paid paid physical physical/ship]
	// status: failed after 3m0s
	// shipped: true
	// error: stepflow: step "physical/ship" failed: stepflowtest: injected failure
}

// A crash after a step ran and before its state was saved makes the driver
// apply the previous state again: the step runs twice, and the trace shows
// the discarded state.
func ExampleRun_crash() {
	flow := orderFlow()
	tr, _ := stepflowtest.Run(context.Background(), flow, flow.Start(Order{Item: "book"}), &stepflowtest.RunOptions[Order]{
		Script: stepflowtest.Script{"mail": stepflowtest.Calls(stepflowtest.Crash)},
	})
	fmt.Println(tr.Ran())
	fmt.Println(tr.Final.Status, "mails in the state:", tr.Final.Data.Mailed)
	// Output:
	// [reserve paid physical physical/ship mail mail]
	// done mails in the state: 1
}

// The fake clock moves only when told to; FastForward jumps to the time a
// waiting state can go on.
func ExampleFastForward() {
	clock := stepflowtest.NewClock(time.Time{})
	ctx := clock.Context(context.Background())
	deadline := clock.Now().Add(5 * time.Minute)
	flow := stepflow.Must(stepflow.New("timer/v1",
		combinators.Plain.WaitFor("five minutes", func(ctx context.Context) (bool, error) {
			return !stepflow.Now(ctx).Before(deadline), nil
		}, combinators.Every(2*time.Minute)),
	))
	st := flow.Start(stepflow.None{})
	for !st.Terminal() {
		st, _ = flow.Apply(ctx, st)
		fmt.Println(clock.Now().Format("15:04"), st.Status)
		stepflowtest.FastForward(clock, st)
	}
	// Output:
	// 00:00 waiting
	// 00:02 waiting
	// 00:04 waiting
	// 00:06 done
}
