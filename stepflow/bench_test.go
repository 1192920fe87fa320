package stepflow_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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
	benchApply(b, seqFlow(b, n, opts), stepflow.WithClock(context.Background(), fixedClock))
}

// benchApply times one Apply per iteration, starting the process again
// whenever it ends, so the figure is the cost of a step.
func benchApply[S any](b *testing.B, f *stepflow.Flow[S], ctx context.Context) {
	var zero S
	start := f.Start(zero)
	st := start
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		st, err = f.Apply(ctx, st)
		if err != nil {
			b.Fatal(err)
		}
		if st.Terminal() {
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

// cloned is process data with a Clone method that allocates nothing.
type cloned struct {
	N    int
	Name string
}

func (c *cloned) Clone() cloned { return *c }

// BenchmarkApplyCloner is the 10-step sequence over data with a Clone
// method: Apply clones the data once per step, and the clone must cost no
// more than the method itself.
func BenchmarkApplyCloner(b *testing.B) {
	nodes := make([]stepflow.Node[cloned], 10)
	for i := range nodes {
		nodes[i] = combinators.Do(fmt.Sprintf("s%d", i), func(_ context.Context, d *cloned) error { d.N++; return nil })
	}
	f := stepflow.Must(stepflow.New("bench/cloner", nodes...))
	benchApply(b, f, stepflow.WithClock(context.Background(), fixedClock))
}

// BenchmarkApplyIntercepted is the 10-step sequence with one interceptor
// that only passes the call on, the least that logging or tracing adds.
func BenchmarkApplyIntercepted(b *testing.B) {
	pass := func(ctx context.Context, _ stepflow.Call, next func(context.Context) error) error { return next(ctx) }
	ctx := stepflow.WithInterceptor(stepflow.WithClock(context.Background(), fixedClock), pass)
	benchApply(b, seqFlow(b, 10, nil), ctx)
}

// BenchmarkApplyDeep resumes a process whose position is 8 levels deep in
// nested sequences, in the middle of a 1000-step flow.
func BenchmarkApplyDeep(b *testing.B) {
	var inner stepflow.Node[stepflow.None] = combinators.Sequence("l7",
		combinators.Plain.Do("a", noop), combinators.Plain.Do("b", noop))
	for i := 6; i >= 0; i-- {
		inner = combinators.Sequence(fmt.Sprintf("l%d", i), inner)
	}
	nodes := []stepflow.Node[stepflow.None]{}
	for i := range 500 {
		nodes = append(nodes, combinators.Plain.Do(fmt.Sprintf("pre%d", i), noop))
	}
	nodes = append(nodes, inner)
	for i := range 500 {
		nodes = append(nodes, combinators.Plain.Do(fmt.Sprintf("post%d", i), noop))
	}
	f := stepflow.Must(stepflow.New("deep/v1", nodes...))
	ctx := context.Background()
	st := f.Start(stepflow.None{})
	for len(st.Positions()) == 0 || st.Positions()[0] != "l0/l1/l2/l3/l4/l5/l6/l7/a" {
		st, _ = f.Apply(ctx, st)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Apply(ctx, st); err != nil {
			b.Fatal(err)
		}
	}
}

var errFlaky = fmt.Errorf("flaky")

// BenchmarkApplyRetry fails a step inside a Retry forever: each iteration
// is one Apply, alternating a failing attempt and the end of a backoff.
func BenchmarkApplyRetry(b *testing.B) {
	f := stepflow.Must(stepflow.New("retry/v1", combinators.Retry("r",
		combinators.RetryPolicy{MaxAttempts: 1 << 30, InitialInterval: time.Second, MaxInterval: time.Minute, Jitter: 0.2},
		combinators.Plain.Do("flaky", func(context.Context) error { return errFlaky }))))
	clk := newClock()
	ctx := stepflow.WithClock(context.Background(), clk)
	st := f.Start(stepflow.None{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st.Status == stepflow.Waiting {
			clk.Set(st.WakeAt)
		}
		st, _ = f.Apply(ctx, st)
	}
}

// BenchmarkApplyParallel advances a Parallel of n branches of 1000 steps:
// each Apply runs one step in every branch. The figure is per Apply.
func BenchmarkApplyParallel(b *testing.B) {
	for _, n := range []int{8, 64} {
		b.Run(fmt.Sprintf("branches=%d", n), func(b *testing.B) {
			branches := make([]stepflow.Node[stepflow.None], n)
			for i := range branches {
				steps := make([]stepflow.Node[stepflow.None], 1000)
				for j := range steps {
					steps[j] = combinators.Plain.Do(fmt.Sprintf("s%d", j), noop)
				}
				branches[i] = combinators.Sequence(fmt.Sprintf("b%d", i), steps...)
			}
			f := stepflow.Must(stepflow.New("par/v1", combinators.Parallel("p", branches...)))
			benchApply(b, f, context.Background())
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/branch-step")
		})
	}
}

// BenchmarkApplyForEach runs a ForEach over 1000 items with a 2-step body;
// the cost per Apply must not grow with the items already done.
func BenchmarkApplyForEach(b *testing.B) {
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("items=1000/concurrency=%d", conc), func(b *testing.B) {
			f := stepflow.Must(stepflow.New("each/v1",
				combinators.ForEach("each", func(context.Context, *stepflow.None) ([]int, error) { return make([]int, 1000), nil },
					combinators.Plain.Do("a", noop), combinators.Plain.Do("b", noop)).Concurrency(conc)))
			benchApply(b, f, context.Background())
		})
	}
}

// BenchmarkApplyPoll is a poll of a WaitFor whose predicate answers "not
// yet", the operation a waiting process performs most: a step before it
// and a step after it, the clock at the wake time of each poll, the state
// kept in memory. depth=3 puts the wait two sequences deep.
func BenchmarkApplyPoll(b *testing.B) {
	never := func(context.Context) (bool, error) { return false, nil }
	for _, depth := range []int{1, 3} {
		for _, rec := range []int{0, 32} {
			var wait stepflow.Node[stepflow.None] = combinators.Plain.WaitFor("wait", never, combinators.Every(time.Second))
			for d := 1; d < depth; d++ {
				wait = combinators.Sequence(fmt.Sprintf("level%d", d), wait)
			}
			f := stepflow.Must(stepflow.NewWithOptions("poll/v1", &stepflow.Options{Record: rec},
				combinators.Plain.Do("before", noop), wait, combinators.Plain.Do("after", noop)))
			b.Run(fmt.Sprintf("depth=%d/record=%d", depth, rec), func(b *testing.B) {
				now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
				ctx := stepflow.WithClock(context.Background(), stepflow.ClockFunc(func() time.Time { return now }))
				st := f.Start(stepflow.None{})
				for st.Status != stepflow.Waiting { // the step, then the first poll
					var err error
					if st, err = f.Apply(ctx, st); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				for b.Loop() {
					now = st.WakeAt
					var err error
					if st, err = f.Apply(ctx, st); err != nil || st.Status != stepflow.Waiting {
						b.Fatal(st.Status, err)
					}
				}
			})
		}
	}
}
