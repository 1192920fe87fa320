package stepflow_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

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
