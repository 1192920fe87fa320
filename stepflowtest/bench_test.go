package stepflowtest_test

import (
	"context"
	"testing"

	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// BenchmarkRun drives the order flow to its end: five applies, each with a
// codec round trip and the input check.
func BenchmarkRun(b *testing.B) {
	flow := orderFlow()
	start := flow.Start(Order{Item: "book"})
	opts := &stepflowtest.RunOptions[Order]{Script: stepflowtest.Script{"paid": stepflowtest.Times(stepflowtest.False, 2)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := stepflowtest.Run(context.Background(), flow, start, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckInvariants checks every invariant of the order flow: about
// eight runs.
func BenchmarkCheckInvariants(b *testing.B) {
	flow := orderFlow()
	start := flow.Start(Order{Item: "book"})
	b.ReportAllocs()
	for b.Loop() {
		if !stepflowtest.CheckInvariants(b, flow, start, nil) {
			b.Fatal("invariants broken")
		}
	}
}
