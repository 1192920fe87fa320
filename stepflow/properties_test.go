package stepflow_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// frameIndex maps the full path (instance segments included) of every
// frame of st to the frame.
func frameIndex(st stepflow.State[Data]) map[string]stepflow.Frame {
	out := map[string]stepflow.Frame{}
	st.Root.Walk(func(p string, f *stepflow.Frame) { out[p] = *f })
	return out
}

// compiledPath drops ForEach instance segments ("[2]") from a path.
func compiledPath(p string) string {
	var keep []string
	for _, s := range strings.Split(p, "/") {
		if !strings.HasPrefix(s, "[") {
			keep = append(keep, s)
		}
	}
	return strings.Join(keep, "/")
}

// maxOf reads the "max N" that retry and loop nodes put in Info.Detail.
func maxOf(detail string) int {
	var n int
	if _, err := fmt.Sscanf(detail, "max %d", &n); err != nil {
		return -1
	}
	return n
}

// TestGeneratedFlowsKeepTheirPromises drives random combinator trees with
// random step outcomes, canceling some of them at a random point, and
// checks after every Apply what each combinator promises.
func TestGeneratedFlowsKeepTheirPromises(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		f, data, bound := genFlowBound(t)
		cancelAt := rapid.IntRange(-1, 40).Draw(t, "cancelAt")
		kinds := map[string]stepflow.NodeInfo{}
		for _, n := range f.Nodes() {
			kinds[n.Path] = n
		}
		clk := newClock()
		type call struct {
			path    string
			attempt uint32
		}
		var calls []call
		ctx := stepflow.WithInterceptor(stepflow.WithClock(context.Background(), clk),
			func(ctx context.Context, c stepflow.Call, next func(context.Context) error) error {
				calls = append(calls, call{c.Path, c.Attempt})
				return next(ctx)
			})
		entries := map[string]int{}
		st := f.Start(data)
		for n := 0; !st.Terminal(); n++ {
			if n > bound {
				t.Fatalf("not terminal after %d applies (bound %d) at %v", n, bound, st.Positions())
			}
			if n == cancelAt {
				next, err := f.Cancel(st, "canceled by the property")
				if err != nil {
					t.Fatalf("cancel: %v", err)
				}
				st = next
				continue
			}
			if st.Status == stepflow.Waiting {
				if st.WakeAt.IsZero() {
					t.Fatalf("waiting without a wake time at %v", st.Positions())
				}
				clk.Set(st.WakeAt)
			}
			before := frameIndex(st)
			calls = calls[:0]
			next, err := f.Apply(ctx, st)
			if err != nil && !errors.Is(err, stepflow.ErrStep) {
				t.Fatalf("Apply: untyped or unexpected error %v", err)
			}
			after := frameIndex(next)
			for _, c := range calls {
				if strings.HasSuffix(c.path, cleanupMark) {
					continue // cleanups run after deadlines by design
				}
				for p, fr := range before {
					info := kinds[compiledPath(p)]
					under := strings.HasPrefix(c.path, compiledPath(p)+"/")
					// A time limit never lets its body start a step after
					// its deadline.
					if info.Kind == "timelimit" && under && !strings.Contains(p, "[") && !fr.Until.IsZero() && !clk.Now().Before(fr.Until) {
						t.Fatalf("%s ran at %s, after the deadline %s of %s", c.path, clk.Now(), fr.Until, p)
					}
				}
				// A retry body runs at most MaxAttempts times.
				for p := c.path; p != ""; p = parent(p) {
					if info := kinds[p]; info.Kind == "retry" && p != c.path {
						if c.attempt > uint32(maxOf(info.Detail)) {
							t.Fatalf("%s ran attempt %d of retry %s (%s)", c.path, c.attempt, p, info.Detail)
						}
						break
					}
				}
			}
			for p, fr := range after {
				info := kinds[compiledPath(p)]
				// Loops never exceed their guard.
				if (info.Kind == "loop-until" || info.Kind == "while") && int(fr.Count) > maxOf(info.Detail) {
					t.Fatalf("loop %s at iteration %d, guard %s", p, fr.Count, info.Detail)
				}
				if _, was := before[p]; !was && info.Kind == "finally" {
					entries[compiledPath(p)]++
				}
			}
			st = next
		}
		switch st.Status {
		case stepflow.Done, stepflow.Failed, stepflow.Canceled:
		default:
			t.Fatalf("ended %v", st.Status)
		}
		// A Finally cleanup that was entered ran exactly once per entry.
		for p, e := range entries {
			name := p[strings.LastIndex(p, "/")+1:]
			cleanup := p + "/" + name + cleanupMark
			ran := 0
			for _, l := range st.Data.Log {
				if l == cleanup {
					ran++
				}
			}
			if ran != e {
				t.Fatalf("finally %s entered %d times, cleanup ran %d times", p, e, ran)
			}
		}
	})
}

func parent(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i]
	}
	return ""
}

// tickClock moves one millisecond forward every time it is read, so two
// runs that read it in a different order or a different number of times
// record different times.
type tickClock struct{ testClock }

func newTickClock() *tickClock { return &tickClock{*newClock()} }

func (c *tickClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

// TestStraightStepsMatchTheTreeWalk checks that a step run without walking
// the tree (a Do below sequences only, see stepflow.StepNode) gives what
// the general path gives: for random flows and step outcomes, each Apply
// of one process by both must return equal states and errors, with equal
// calls made and seen by interceptors, and must read a ticking clock the
// same number of times.
func TestStraightStepsMatchTheTreeWalk(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		opts := &stepflow.Options{Record: rapid.SampledFrom([]int{0, 3, 32}).Draw(t, "record")}
		// Interceptors see every call, and one of them fails some calls
		// without running them, as a fault-injecting test would.
		var calls [2][]string
		intercept := func(run int) stepflow.Interceptor {
			return func(ctx context.Context, c stepflow.Call, next func(context.Context) error) error {
				calls[run] = append(calls[run], fmt.Sprintf("%s#%d@%d", c.Path, c.Attempt, c.Seq))
				if c.Seq%7 == 3 {
					return errScripted
				}
				return next(ctx)
			}
		}
		where := rapid.SampledFrom([]string{"none", "options", "context"}).Draw(t, "interceptor")
		opts2 := *opts
		if where == "options" {
			opts.Interceptors = []stepflow.Interceptor{intercept(0)}
			opts2.Interceptors = []stepflow.Interceptor{intercept(1)}
		}
		nodes, bound := genBounded(t, "n", 0)
		straight := stepflow.Must(stepflow.NewWithOptions("gen/v1", opts, nodes...))
		walked := stepflow.Must(stepflow.NewWithOptions("gen/v1", &opts2, nodes...))
		stepflow.WalkEveryStep(walked)
		clk1, clk2 := newTickClock(), newTickClock()
		ctx1 := stepflow.WithClock(context.Background(), clk1)
		ctx2 := stepflow.WithClock(context.Background(), clk2)
		if where == "context" {
			ctx1 = stepflow.WithInterceptor(ctx1, intercept(0))
			ctx2 = stepflow.WithInterceptor(ctx2, intercept(1))
		}
		st := straight.Start(Data{Script: genScript(t, straight)})
		for n := 0; !st.Terminal(); n++ {
			if n > bound {
				t.Fatalf("not terminal after %d applies (bound %d)", n, bound)
			}
			if st.Status == stepflow.Waiting {
				clk1.Set(st.WakeAt)
				clk2.Set(st.WakeAt)
			}
			got, gotErr := straight.Apply(ctx1, st)
			want, wantErr := walked.Apply(ctx2, st)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || errors.Is(gotErr, stepflow.ErrPanic) != errors.Is(wantErr, stepflow.ErrPanic) ||
				errors.Is(gotErr, errScripted) != errors.Is(wantErr, errScripted) {
				t.Fatalf("apply %d at %v: error %v, the tree walk gives %v", n, st.Positions(), gotErr, wantErr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("apply %d at %v:\n got  %+v\n want %+v", n, st.Positions(), got, want)
			}
			if clk1.Now() != clk2.Now() {
				t.Fatalf("apply %d at %v read the clock a different number of times", n, st.Positions())
			}
			if !slices.Equal(calls[0], calls[1]) {
				t.Fatalf("apply %d at %v: interceptors saw %v, with the tree walk %v", n, st.Positions(), calls[0], calls[1])
			}
			st = got
		}
	})
}
