package stepflow_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

func noop(context.Context) error { return nil }

// seqFlow is a flow of n no-op steps with no data.
func seqFlow(b testing.TB, n int, opts *stepflow.Options) *stepflow.Flow[stepflow.None] {
	nodes := make([]stepflow.Node[stepflow.None], n)
	for i := range nodes {
		nodes[i] = combinators.Plain.Do(fmt.Sprintf("s%d", i), noop)
	}
	f, err := stepflow.NewWithOptions(fmt.Sprintf("bench/%d", n), opts, nodes...)
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// benchSeq measures one Apply per iteration, restarting the process when
// it completes, so the figure is the cost per step.
func benchSeq(b *testing.B, n int, opts *stepflow.Options) {
	f := seqFlow(b, n, opts)
	ctx := stepflow.WithClock(context.Background(), fixedClock)
	start := f.Start(stepflow.None{})
	st := start
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		st, err = f.Apply(ctx, st)
		if err != nil {
			b.Fatal(err)
		}
		if st.Status == stepflow.Done {
			st = start
		}
	}
}

func BenchmarkApplySequence(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("steps=%d/record=off", n), func(b *testing.B) { benchSeq(b, n, nil) })
	}
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("steps=%d/record=32", n), func(b *testing.B) { benchSeq(b, n, &stepflow.Options{Record: 32}) })
	}
}
