package stepflow_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Data is the process data of generated flows. Every step outcome is a pure
// function of Data, so a flow's run is determined by its state alone: the
// property tests can save, reload and replay freely.
type Data struct {
	// Calls counts the calls made to each path.
	Calls map[string]int
	// Script holds the outcomes to produce per path, one per call; when a
	// script runs out the step succeeds (a predicate answers true).
	Script map[string][]string
	// Log lists completed step paths in order.
	Log []string
}

// Clone makes Data safe to copy: Apply clones it before steps run.
func (d *Data) Clone() Data {
	out := Data{Calls: maps.Clone(d.Calls), Script: d.Script, Log: append([]string(nil), d.Log...)}
	return out
}

// next records a call of path and returns its scripted outcome.
func (d *Data) next(path string) string {
	if d.Calls == nil {
		d.Calls = map[string]int{}
	}
	n := d.Calls[path]
	d.Calls[path] = n + 1
	if s := d.Script[path]; n < len(s) {
		return s[n]
	}
	return "ok"
}

var errScripted = errors.New("scripted failure")

func scriptedStep(ctx context.Context, d *Data) error {
	call, _ := stepflow.CallFrom(ctx)
	switch d.next(call.Path) {
	case "err":
		return fmt.Errorf("%s: %w", call.Path, errScripted)
	case "panic":
		panic("scripted panic at " + call.Path)
	}
	d.Log = append(d.Log, call.Path)
	return nil
}

func scriptedPred(ctx context.Context, d *Data) (bool, error) {
	call, _ := stepflow.CallFrom(ctx)
	switch d.next(call.Path) {
	case "err":
		return false, fmt.Errorf("%s: %w", call.Path, errScripted)
	case "false":
		return false, nil
	case "panic":
		panic("scripted panic at " + call.Path)
	}
	return true, nil
}

// genNodes draws a random list of nodes (at least one), depth-limited.
func genNodes(t *rapid.T, label string, depth int) []stepflow.Node[Data] {
	nodes, _ := genBounded(t, label, depth)
	return nodes
}

// genBounded draws nodes and an upper bound on the Apply calls they can
// take before ending, derived from their structure and policies.
func genBounded(t *rapid.T, label string, depth int) ([]stepflow.Node[Data], int) {
	n := rapid.IntRange(1, 3).Draw(t, label+"/len")
	out := make([]stepflow.Node[Data], n)
	total := 0
	for i := range out {
		name := fmt.Sprintf("%s%d", label, i)
		kinds := []string{"do", "wait"}
		if depth < 3 {
			kinds = []string{"do", "do", "wait", "case", "seq", "retry", "parallel", "timelimit", "catch", "finally",
				"optional", "loop", "while", "foreach", "sleep", "graph"}
		}
		kind := rapid.SampledFrom(kinds).Draw(t, name+"/kind")
		var b int // this node's bound
		sub := func(tag string) []stepflow.Node[Data] {
			nodes, k := genBounded(t, name+tag, depth+1)
			b += k
			return nodes
		}
		switch kind {
		case "do":
			out[i], b = combinators.Do(name, scriptedStep), 1
		case "wait":
			every := rapid.IntRange(1, 60).Draw(t, name+"/every")
			timeout := rapid.IntRange(0, 300).Draw(t, name+"/timeout")
			out[i] = combinators.WaitFor(name, scriptedPred,
				combinators.Every(time.Duration(every)*time.Second), combinators.Timeout(time.Duration(timeout)*time.Second))
			// Scripts hold at most 3 outcomes, after which the predicate is
			// true; a timeout ends it sooner.
			b = 5
		case "case":
			c := combinators.Case(name, scriptedPred, sub("t")...)
			if rapid.Bool().Draw(t, name+"/else") {
				c = c.Else(sub("e")...)
			}
			out[i] = c
			b++
		case "seq":
			out[i] = combinators.Sequence(name, sub("s")...)
		case "retry":
			max := rapid.IntRange(1, 4).Draw(t, name+"/max")
			out[i] = combinators.Retry(name, combinators.RetryPolicy{
				MaxAttempts:     max,
				InitialInterval: time.Duration(rapid.IntRange(1, 30).Draw(t, name+"/interval")) * time.Second,
				Jitter:          rapid.SampledFrom([]float64{0, 0.3}).Draw(t, name+"/jitter"),
			}, sub("r")...)
			b = max * (b + 1)
		case "parallel":
			branches := make([]stepflow.Node[Data], rapid.IntRange(1, 3).Draw(t, name+"/branches"))
			for j := range branches {
				branches[j] = combinators.Sequence(fmt.Sprintf("%sb%d", name, j), sub(fmt.Sprintf("b%d_", j))...)
			}
			p := combinators.Parallel(name, branches...)
			if rapid.Bool().Draw(t, name+"/waitall") {
				p = p.WaitAll()
			}
			out[i] = p
			b += 2
		case "timelimit":
			out[i] = combinators.TimeLimit(name, time.Duration(rapid.IntRange(1, 120).Draw(t, name+"/limit"))*time.Second, sub("l")...)
			b += 2
		case "catch":
			out[i] = combinators.Catch(name, combinators.Sequence(name+"body", sub("b")...), sub("h")...)
			b++
		case "finally":
			out[i] = combinators.Finally(name, combinators.Sequence(name+"body", sub("b")...), combinators.Do(name+cleanupMark, cleanupStep))
			b += 2
		case "optional":
			out[i] = combinators.Optional(name, sub("o")...)
		case "loop", "while":
			body := sub("u")
			if kind == "loop" {
				out[i] = combinators.LoopUntil(name, scriptedPred, body, combinators.MaxIterations(3))
			} else {
				out[i] = combinators.While(name, scriptedPred, body, combinators.MaxIterations(3))
			}
			b = 4 * (b + 2)
		case "foreach":
			items := rapid.IntRange(0, 3).Draw(t, name+"/items")
			out[i] = combinators.ForEach(name, func(context.Context, *Data) ([]int, error) { return make([]int, items), nil }, sub("f")...).
				Concurrency(rapid.IntRange(1, 3).Draw(t, name+"/conc"))
			b = 2 + items*(b+1)
		case "sleep":
			out[i] = combinators.Sleep[Data](name, time.Duration(rapid.IntRange(0, 90).Draw(t, name+"/sleep"))*time.Second)
			b = 2
		case "graph":
			// Tasks need only tasks before them: no cycle.
			tasks := make([]combinators.Task[Data], rapid.IntRange(1, 3).Draw(t, name+"/tasks"))
			for j := range tasks {
				task := fmt.Sprintf("%st%d", name, j)
				var needs []string
				for k := range j {
					if rapid.Bool().Draw(t, fmt.Sprintf("%s needs %st%d", task, name, k)) {
						needs = append(needs, fmt.Sprintf("%st%d", name, k))
					}
				}
				tasks[j] = combinators.After(combinators.Sequence(task, sub(fmt.Sprintf("t%d_", j))...), needs...)
				if rapid.Bool().Draw(t, task+"/always") {
					tasks[j] = tasks[j].Always()
				}
			}
			g := combinators.Graph(name, tasks...)
			if rapid.Bool().Draw(t, name+"/waitall") {
				g = g.WaitAll()
			}
			out[i] = g
			b += 2 * (len(tasks) + 1)
		}
		total += b + 1
	}
	return out, total
}

// cleanupMark names the single cleanup step of generated Finally nodes;
// it always succeeds, so the properties can count cleanups.
const cleanupMark = "_cleanup"

func cleanupStep(ctx context.Context, d *Data) error {
	call, _ := stepflow.CallFrom(ctx)
	d.Log = append(d.Log, call.Path)
	return nil
}

// genScript draws outcomes for every node path of f.
func genScript(t *rapid.T, f *stepflow.Flow[Data]) map[string][]string {
	script := map[string][]string{}
	for _, n := range f.Nodes() {
		var choices []string
		switch n.Kind {
		case "do":
			if strings.HasSuffix(n.Path, cleanupMark) {
				continue
			}
			choices = []string{"ok", "ok", "ok", "err", "panic"}
		case "wait", "case", "loop-until", "while":
			choices = []string{"ok", "false", "false", "err"}
		default:
			continue
		}
		script[n.Path] = rapid.SliceOfN(rapid.SampledFrom(choices), 0, 3).Draw(t, "script:"+n.Path)
	}
	return script
}

// genFlow draws a random flow and a script of step outcomes for it.
func genFlow(t *rapid.T) (*stepflow.Flow[Data], Data) {
	f, data, _ := genFlowBound(t)
	return f, data
}

// genFlowBound also returns the bound on Apply calls to a terminal state.
func genFlowBound(t *rapid.T) (*stepflow.Flow[Data], Data, int) {
	opts := &stepflow.Options{Record: rapid.SampledFrom([]int{0, 3, 32}).Draw(t, "record")}
	nodes, bound := genBounded(t, "n", 0)
	f, err := stepflow.NewWithOptions("gen/v1", opts, nodes...)
	if err != nil {
		t.Fatalf("generated flow invalid: %v", err)
	}
	return f, Data{Script: genScript(t, f)}, bound
}

// run drives st to a terminal state (bounded), advancing clk to each WakeAt,
// and calls each(prev, next, err) after every Apply.
func run(f *stepflow.Flow[Data], st stepflow.State[Data], clk *testClock, limit int, each func(prev, next stepflow.State[Data], err error)) (stepflow.State[Data], int) {
	ctx := stepflow.WithClock(context.Background(), clk)
	n := 0
	for ; n < limit && !st.Terminal(); n++ {
		if st.Status == stepflow.Waiting {
			clk.Set(st.WakeAt)
		}
		next, err := f.Apply(ctx, st)
		if each != nil {
			each(st, next, err)
		}
		st = next
	}
	return st, n
}
