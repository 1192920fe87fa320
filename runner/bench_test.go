package runner_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

// noopFlow has ten steps that do nothing: the benchmarks measure the
// runner and the store, not user code.
func noopFlow(b testing.TB) *stepflow.Flow[counter] {
	var nodes []stepflow.Node[counter]
	for i := range 10 {
		nodes = append(nodes, combinators.Do(fmt.Sprintf("s%d", i), func(context.Context, *counter) error { return nil }))
	}
	f, err := stepflow.New("noop/v1", nodes...)
	require.NoError(b, err)
	return f
}

// benchFixture holds a store filled with processes and the bytes to reset
// them to their start.
type benchFixture struct {
	flow  *stepflow.Flow[counter]
	store store.Store
	start map[string][]byte
}

func startBlobs(b testing.TB, f *stepflow.Flow[counter], n int) map[string][]byte {
	enc := codec.Msgpack[counter](nil)
	out := make(map[string][]byte, n)
	for i := range n {
		st := f.Start(counter{})
		st.ID = fmt.Sprintf("p%07d", i)
		bs, err := enc.Encode(st)
		require.NoError(b, err)
		out[st.ID] = bs
	}
	return out
}

func fill(b testing.TB, s store.Store, blobs map[string][]byte) {
	ids := make([]string, 0, len(blobs))
	for id := range blobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for lo := 0; lo < len(ids); lo += 5000 {
		recs := make([]store.Record, 0, 5000)
		for _, id := range ids[lo:min(lo+5000, len(ids))] {
			recs = append(recs, store.Record{ID: id, Status: stepflow.Running, Blob: blobs[id]})
		}
		errs, err := s.CreateMany(context.Background(), recs)
		require.NoError(b, err)
		require.Nil(b, errs)
	}
}

// reset puts every process back at its start, through the store's
// interface (outside writes), without timing it.
func (fx *benchFixture) reset(b testing.TB) {
	ctx := context.Background()
	after := ""
	for {
		recs, err := fx.store.List(ctx, store.Filter{After: after, Limit: 2000})
		require.NoError(b, err)
		if len(recs) == 0 {
			return
		}
		ws := make([]store.Write, len(recs))
		for i, r := range recs {
			ws[i] = store.Write{ID: r.ID, Revision: r.Revision, Status: stepflow.Running, Blob: fx.start[r.ID]}
		}
		errs, err := fx.store.Commit(ctx, "", ws)
		require.NoError(b, err)
		require.Nil(b, errs)
		after = recs[len(recs)-1].ID
	}
}

// runBench advances processes with the given number of runners (each one
// goroutine, as separate runner processes would be) until b.N process-steps
// are done, resetting the processes whenever all have finished.
func runBench(b *testing.B, fx *benchFixture, runners int, opts runner.Options) {
	ctx := context.Background()
	rs := make([]*runner.Runner, runners)
	for i := range rs {
		o := opts
		o.Owner = fmt.Sprintf("bench-%d", i)
		r, _, err := newRunner(fx.flow, fx.store, &o)
		require.NoError(b, err)
		rs[i] = r
	}
	b.ReportAllocs()
	b.ResetTimer()
	var done atomic.Int64
	for done.Load() < int64(b.N) {
		var wg sync.WaitGroup
		var round atomic.Int64
		for _, r := range rs {
			wg.Go(func() {
				for done.Load() < int64(b.N) {
					n, err := r.Step(ctx)
					if err != nil {
						b.Error(err)
						return
					}
					if n == 0 {
						return
					}
					done.Add(int64(n))
					round.Add(int64(n))
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			return
		}
		if done.Load() < int64(b.N) && round.Load() == 0 {
			b.StopTimer()
			fx.reset(b)
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(done.Load())/b.Elapsed().Seconds(), "steps/s")
}

var benchSizes = []int{1_000, 10_000, 100_000}

// BenchmarkRunner measures process-steps per second: one goroutine (one
// runner) advancing 10-step no-op flows, with 1k, 10k and 100k processes in
// the store, batches of 256 committed together (group commit).
func BenchmarkRunner(b *testing.B) {
	for _, kind := range []string{"memory", "bolt"} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("store=%s/procs=%d", kind, n), func(b *testing.B) {
				f := noopFlow(b)
				var s store.Store
				if kind == "memory" {
					s = store.NewMemory()
				} else {
					s = newBolt(b, "")
				}
				fx := &benchFixture{flow: f, store: s, start: startBlobs(b, f, n)}
				fill(b, s, fx.start)
				runBench(b, fx, 1, runner.Options{})
			})
		}
	}
}

// pgFill inserts the processes in bulk, CreateMany in batches of 5,000.
func pgFill(b testing.TB, s store.Store, schema string, blobs map[string][]byte) {
	fill(b, s, blobs)
	_, err := testPool(b).Exec(context.Background(), `ANALYZE `+pgx.Identifier{schema, "stepflow_processes"}.Sanitize())
	require.NoError(b, err)
}

// BenchmarkRunnerPostgres is BenchmarkRunner on PostgreSQL, with 1, 2 and
// 3 runners (each one goroutine with its own owner, as separate runner
// processes would be) sharing the table.
func BenchmarkRunnerPostgres(b *testing.B) {
	storetest.PostgresDSN(b)
	for _, runners := range []int{1, 2, 3} {
		for _, n := range benchSizes {
			if runners > 1 && n != 10_000 {
				continue
			}
			b.Run(fmt.Sprintf("runners=%d/procs=%d", runners, n), func(b *testing.B) {
				f := noopFlow(b)
				schema := newSchema(b)
				s := newPG(b, schema)
				fx := &benchFixture{flow: f, store: s, start: startBlobs(b, f, n)}
				pgFill(b, s, schema, fx.start)
				runBench(b, fx, runners, runner.Options{})
			})
		}
	}
}

// BenchmarkStepParts measures, on the states BenchmarkRunner steps through
// (a 10-step no-op flow at each of its positions), the parts of a step that
// are not the runner's: one Apply, one msgpack encode of its result, and
// one decode (which a step pays only when the runner's cache does not
// hold the process). What BenchmarkRunner costs per step beyond Apply and
// encode is the runner's and the store's own share.
func BenchmarkStepParts(b *testing.B) {
	f := noopFlow(b)
	enc := codec.Msgpack[counter](nil)
	ctx := context.Background()
	var states []stepflow.State[counter]
	st := f.Start(counter{})
	st.ID = "p0000000"
	for st.Status == stepflow.Running {
		states = append(states, st)
		next, err := f.Apply(ctx, st)
		require.NoError(b, err)
		st = next
	}
	require.Len(b, states, 10)
	nexts := make([]stepflow.State[counter], len(states))
	blobs := make([][]byte, len(states))
	for i, s := range states {
		next, err := f.Apply(ctx, s)
		require.NoError(b, err)
		nexts[i] = next
		blobs[i], err = enc.Encode(s)
		require.NoError(b, err)
	}
	b.Run("part=apply", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := f.Apply(ctx, states[i%len(states)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("part=encode", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := enc.Encode(nexts[i%len(nexts)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("part=decode", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := codec.Decode[counter](blobs[i%len(blobs)], nil); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkStartMany measures starting processes in batches of 1,000
// (Processes.StartMany: one transaction and one wake-up per batch), in
// starts per second.
func BenchmarkStartMany(b *testing.B) {
	for _, kind := range []string{"memory", "bolt", "postgres"} {
		b.Run("store="+kind, func(b *testing.B) {
			s := benchStore(b, kind)
			r, err := runner.New(s, nil)
			require.NoError(b, err)
			ps, err := runner.Register(r, noopFlow(b))
			require.NoError(b, err)
			batch := make([]runner.NewProcess[counter], 1000)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				for i := range batch {
					batch[i].ID = fmt.Sprintf("p%09d", n)
					n++
				}
				errs, err := ps.StartMany(context.Background(), batch)
				if err != nil || errs != nil {
					b.Fatal(err, errs)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "starts/s")
		})
	}
}

// BenchmarkEndToEnd measures a whole workload on one runner (one
// goroutine): 1,000 processes of a 10-step no-op flow started with
// StartMany, then run until all are done; steps/s counts the 10,000 steps
// over the whole time, the starts included. Each round uses a new store.
// driver=run runs them as a service does (Run, one worker, which keeps
// the leases of running processes on PostgreSQL); driver=step calls Step
// until nothing is due, which claims every step.
func BenchmarkEndToEnd(b *testing.B) {
	const procs = 1000
	for _, kind := range []string{"memory", "bolt", "postgres"} {
		for _, driver := range []string{"run", "step"} {
			b.Run("store="+kind+"/driver="+driver, func(b *testing.B) {
				f := noopFlow(b)
				var steps atomic.Int64
				var elapsed time.Duration
				for b.Loop() {
					b.StopTimer()
					s := benchStore(b, kind)
					ended := make(chan struct{})
					var done atomic.Int64
					o := &runner.Options{Workers: 1, Metrics: &runner.Metrics{Applied: func(t runner.Transition) {
						steps.Add(1)
						if t.To.Terminal() && done.Add(1) == procs {
							close(ended)
						}
					}}}
					r, ps, err := newRunner(f, s, o)
					require.NoError(b, err)
					batch := make([]runner.NewProcess[counter], procs)
					for i := range batch {
						batch[i].ID = fmt.Sprintf("p%05d", i)
					}
					ctx, stop := context.WithCancel(context.Background())
					running := make(chan error, 1)
					if driver == "run" {
						go func() { running <- r.Run(ctx) }()
					}
					b.StartTimer()
					start := time.Now()
					errs, err := ps.StartMany(ctx, batch)
					if err != nil || errs != nil {
						b.Fatal(err, errs)
					}
					if driver == "run" {
						select {
						case <-ended:
						case <-time.After(5 * time.Minute):
							b.Fatalf("%d of %d processes ended", done.Load(), procs)
						}
					} else {
						for {
							n, err := r.Step(ctx)
							if err != nil {
								b.Fatal(err)
							}
							if n == 0 {
								break
							}
						}
					}
					elapsed += time.Since(start)
					b.StopTimer()
					stop()
					if driver == "run" {
						require.NoError(b, <-running)
					}
					require.EqualValues(b, procs, done.Load())
					b.StartTimer()
				}
				if n := steps.Load(); n != int64(b.N)*procs*10 {
					b.Fatalf("%d steps, want %d", n, b.N*procs*10)
				}
				b.ReportMetric(float64(steps.Load())/elapsed.Seconds(), "steps/s")
			})
		}
	}
}

// benchStore returns an empty store of the given kind.
func benchStore(b *testing.B, kind string) store.Store {
	switch kind {
	case "memory":
		return store.NewMemory()
	case "bolt":
		return newBolt(b, "")
	}
	storetest.PostgresDSN(b)
	return newPG(b, newSchema(b))
}

// BenchmarkOneProcess is the latency of one process woken alone: an idle
// runner (Run, one worker) and a 10-step no-op process started and waited
// for (Processes.Wait), one at a time. It reports the median and the 95th
// percentile of the runs besides the mean (ns/op).
func BenchmarkOneProcess(b *testing.B) {
	stores := map[string]func(b *testing.B) store.Store{
		"memory": func(*testing.B) store.Store { return store.NewMemory() },
		"bbolt":  func(b *testing.B) store.Store { return newBolt(b, "") },
	}
	if os.Getenv(storetest.PostgresEnv) != "" {
		stores["postgres"] = func(b *testing.B) store.Store { return newPG(b, newSchema(b)) }
	}
	for _, name := range []string{"memory", "bbolt", "postgres"} {
		open, ok := stores[name]
		if !ok {
			continue
		}
		b.Run("store="+name, func(b *testing.B) {
			s := open(b)
			r, ps, err := newRunner(noopFlow(b), s, &runner.Options{MaxIdle: time.Minute})
			require.NoError(b, err)
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() { stop(); <-done }()
			var took []time.Duration
			i := 0
			for b.Loop() {
				start := time.Now()
				id := fmt.Sprintf("one-%d", i)
				i++
				if err := ps.Start(ctx, id, counter{}); err != nil {
					b.Fatal(err)
				}
				st, err := ps.Wait(ctx, id)
				if err != nil || st.Status != stepflow.Done {
					b.Fatal(st.Status, err)
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "ns-median")
			b.ReportMetric(float64(took[len(took)*95/100].Nanoseconds()), "ns-p95")
		})
	}
}
