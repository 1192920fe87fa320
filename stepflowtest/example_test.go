package stepflowtest_test

import (
	"context"
	"fmt"
	"strings"
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

// printer reports assertion failures on standard output, standing in for
// a *testing.T in these examples.
type printer struct{}

func (printer) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if i := strings.Index(msg, "invariant \""); i >= 0 {
		msg = msg[i:]
	}
	fmt.Println(strings.SplitN(msg, "\n", 2)[0])
}

// CheckInvariants runs the flow normally, again for determinism, and once
// more with a crash after each step, and reports each broken invariant.
// Here a step takes a fresh ticket number from a fake on every call, so a
// crash after it and the re-run that follows leave another number in the
// data than an uninterrupted run.
func ExampleCheckInvariants() {
	type Ticket struct{ Number int }
	next := 0
	flow := stepflow.Must(stepflow.New("ticket/v1",
		combinators.Do("open", func(ctx context.Context, d *Ticket) error { next++; d.Number = next; return nil }),
		combinators.Do("close", func(ctx context.Context, d *Ticket) error { return nil }),
	))
	ok := stepflowtest.CheckInvariants(printer{}, flow, flow.Start(Ticket{}), &stepflowtest.InvariantOptions[Ticket]{
		Reset: func() { next = 0 },
	})
	fmt.Println("all hold:", ok)
	// Output:
	// invariant "crash and resume" broken for flow ticket/v1: a crash after apply 1 ends in a different state: done steps=2 data={"Number":2}, want done steps=2 data={"Number":1}
	// all hold: false
}

// Trace.String renders a run for failure messages and golden files.
func ExampleTrace_String() {
	flow := stepflow.Must(stepflow.New("greet/v1",
		combinators.Plain.Do("hello", func(context.Context) error { return nil }),
		combinators.Plain.WaitFor("answer", func(context.Context) (bool, error) { return true, nil }, combinators.Every(time.Hour)),
	))
	tr, _ := stepflowtest.Run(context.Background(), flow, flow.Start(stepflow.None{}), &stepflowtest.RunOptions[stepflow.None]{
		Script: stepflowtest.Script{"answer": stepflowtest.Calls(stepflowtest.False)},
	})
	fmt.Print(tr)
	// Output:
	// flow greet/v1
	// start running steps=0 at [hello] data={}
	// #1 2025-01-01T00:00:00Z at [hello]
	//   call hello attempt=1 normal
	//   => running steps=1 at [answer] data={}
	// #2 2025-01-01T00:00:00Z at [answer]
	//   call answer attempt=1 false
	//   => waiting steps=2 at [answer] until 2025-01-01T01:00:00Z data={}
	// #3 2025-01-01T01:00:00Z at [answer]
	//   call answer attempt=1 normal
	//   => done steps=3 data={}
	// end done after 3 applies
}

// Events deliver signals (and cancellations) while the flow runs.
func ExampleRun_events() {
	type Release struct{ ApprovedBy string }
	flow := stepflow.Must(stepflow.New("release/v1",
		combinators.WaitSignal("approval", "approve", func(d *Release, p []byte) error { d.ApprovedBy = string(p); return nil },
			combinators.Timeout(24*time.Hour)),
		combinators.Do("ship", func(ctx context.Context, d *Release) error { return nil }),
	))
	tr, err := stepflowtest.Run(context.Background(), flow, flow.Start(Release{}), &stepflowtest.RunOptions[Release]{
		Events: []stepflowtest.Event{{After: 3 * time.Hour, Signal: "approve", Payload: []byte("ana")}},
	})
	fmt.Println(err, tr.Final.Status, tr.Final.Data.ApprovedBy, tr.Elapsed())
	// Output:
	// <nil> done ana 3h0m0s
}
