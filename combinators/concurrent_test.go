package combinators_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

type fanout struct {
	A, B, C string
	Notes   map[string]int
	Log     []string
}

// barrier lets n calls through only once all n have arrived: calls made
// one after the other never get through it.
type barrier struct {
	mu      sync.Mutex
	n, seen int
	all     chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, all: make(chan struct{})} }

func (b *barrier) wait() error {
	b.mu.Lock()
	b.seen++
	if b.seen == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("the other branches never came: calls ran one after the other")
	}
}

func TestParallelGoroutinesRunCallsAtOnce(t *testing.T) {
	b := newBarrier(3)
	set := func(field string) stepflow.Node[fanout] {
		return combinators.Do(field, func(_ context.Context, d *fanout) error {
			if err := b.wait(); err != nil {
				return err
			}
			switch field {
			case "a":
				d.A = "from a"
			case "b":
				d.B = "from b"
			case "c":
				d.C = "from c"
			}
			if d.Notes == nil {
				d.Notes = map[string]int{}
			}
			d.Notes[field]++ // each branch has its own copy of the map
			return nil
		})
	}
	f := stepflow.Must(stepflow.New("fan/v1",
		combinators.Parallel("all", set("a"), set("b"), set("c")).Goroutines(3, nil),
	))
	st, err := f.Apply(context.Background(), f.Start(fanout{C: "kept", Notes: map[string]int{"x": 1}}))
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, st.Status, "one Apply ran the three calls")
	assert.Equal(t, "from a", st.Data.A)
	assert.Equal(t, "from b", st.Data.B)
	assert.Equal(t, "from c", st.Data.C)
	assert.Equal(t, map[string]int{"x": 1, "c": 1}, st.Data.Notes, "a field changed by several branches: the last branch wins")
}

func TestParallelGoroutinesMergeFunc(t *testing.T) {
	add := func(name string) stepflow.Node[fanout] {
		return combinators.Do(name, func(_ context.Context, d *fanout) error {
			d.Log = append(d.Log, name)
			return nil
		})
	}
	f := stepflow.Must(stepflow.New("fan/v1",
		combinators.Parallel("all", add("a"), add("b"), add("c")).Goroutines(2, func(dst, src *fanout) {
			dst.Log = append(dst.Log, src.Log[len(src.Log)-1])
		}),
	))
	st, err := f.Apply(context.Background(), f.Start(fanout{Log: []string{"start"}}))
	require.NoError(t, err)
	assert.Equal(t, []string{"start", "a", "b", "c"}, st.Data.Log, "merged in branch order")
	n, ok := f.Node("all")
	require.True(t, ok)
	assert.Contains(t, n.Detail, "2 goroutines merged by func", "in the fingerprint")
}

func TestParallelGoroutinesFailures(t *testing.T) {
	var mu sync.Mutex
	ran := map[string]bool{}
	step := func(name string, err error) stepflow.Node[fanout] {
		return combinators.Sequence(name,
			combinators.Do("first", func(context.Context, *fanout) error {
				mu.Lock()
				ran[name] = true
				mu.Unlock()
				return err
			}),
			combinators.Do("second", func(context.Context, *fanout) error { return nil }),
		)
	}
	f := stepflow.Must(stepflow.New("fan/v1",
		combinators.Parallel("all", step("a", nil), step("b", errors.New("boom")), step("c", nil)).Goroutines(3, nil),
	))
	st, err := f.Apply(context.Background(), f.Start(fanout{}))
	require.Error(t, err)
	assert.Equal(t, stepflow.Failed, st.Status)
	assert.Equal(t, "all/b/first", st.Err.Path)
	assert.True(t, ran["a"] && ran["b"] && ran["c"], "the calls of the Apply all ran")
}

// TestParallelGoroutinesSameBytesWhateverTheOrder: the branches finish in
// a random order; the next state's bytes are always the same.
func TestParallelGoroutinesSameBytesWhateverTheOrder(t *testing.T) {
	mp := codec.Msgpack[fanout](nil)
	var want []byte
	rapid.Check(t, func(rt *rapid.T) {
		order := rapid.Permutation([]int{0, 1, 2, 3}).Draw(rt, "finishing order")
		turn := make([]chan struct{}, 4)
		for i := range turn {
			turn[i] = make(chan struct{})
		}
		var branches []stepflow.Node[fanout]
		for i := range 4 {
			branches = append(branches, combinators.Do(fmt.Sprintf("b%d", i), func(_ context.Context, d *fanout) error {
				<-turn[i]
				d.Log = append(d.Log, fmt.Sprint(i))
				d.A = fmt.Sprint("last writer ", i)
				if d.Notes == nil {
					d.Notes = map[string]int{}
				}
				d.Notes[fmt.Sprint(i)] = i
				return nil
			}))
		}
		f := stepflow.Must(stepflow.NewWithOptions("fan/v1", &stepflow.Options{Record: 8},
			combinators.Parallel("all", branches...).Goroutines(4, nil)))
		go func() {
			for _, i := range order {
				turn[i] <- struct{}{}
				time.Sleep(time.Millisecond)
			}
		}()
		clock := stepflow.ClockFunc(func() time.Time { return t0 })
		st, err := f.Apply(stepflow.WithClock(context.Background(), clock), f.Start(fanout{}))
		if err != nil {
			rt.Fatal(err)
		}
		b, err := mp.Encode(st)
		if err != nil {
			rt.Fatal(err)
		}
		if want == nil {
			want = b
			if st.Data.A != "last writer 3" {
				rt.Fatalf("A = %q, want the last branch's", st.Data.A)
			}
			return
		}
		if string(b) != string(want) {
			rt.Fatalf("finishing order %v gave other bytes", order)
		}
	})
}

func TestForEachGoroutines(t *testing.T) {
	b := newBarrier(3)
	f := stepflow.Must(stepflow.New("each/v1",
		combinators.ForEach("items", func(context.Context, *fanout) ([]string, error) { return []string{"x", "y", "z"}, nil },
			combinators.Do("visit", func(ctx context.Context, d *fanout) error {
				it, err := combinators.Item[string](ctx)
				if err != nil {
					return err
				}
				if err := b.wait(); err != nil {
					return err
				}
				d.Log = append(d.Log, it)
				return nil
			}),
		).Concurrency(3).Goroutines(3, func(dst, src *fanout) { dst.Log = append(dst.Log, src.Log[len(src.Log)-1]) }),
	))
	st := runToEnd(f, f.Start(fanout{}))
	require.Equal(t, stepflow.Done, st.Status, "%v", st.Err)
	assert.Equal(t, []string{"x", "y", "z"}, st.Data.Log, "merged in item order")
}

// BenchmarkParallelSlowCalls is one Apply of a Parallel of three steps
// that each wait 40 ms (a slow API call), one after the other and with
// Goroutines: about 120 ms against 40.
func BenchmarkParallelSlowCalls(b *testing.B) {
	slow := func(name string) stepflow.Node[fanout] {
		return combinators.Do(name, func(context.Context, *fanout) error { time.Sleep(40 * time.Millisecond); return nil })
	}
	for _, limit := range []int{1, 3} {
		p := combinators.Parallel("calls", slow("a"), slow("b"), slow("c"))
		if limit > 1 {
			p = p.Goroutines(limit, nil)
		}
		f := stepflow.Must(stepflow.New("slow/v1", p))
		b.Run(fmt.Sprintf("goroutines=%d", limit), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.Apply(context.Background(), f.Start(fanout{})); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
