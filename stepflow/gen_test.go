package stepflow_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	n := rapid.IntRange(1, 4).Draw(t, label+"/len")
	out := make([]stepflow.Node[Data], n)
	for i := range out {
		name := fmt.Sprintf("%s%d", label, i)
		kind := "do"
		if depth < 3 {
			kind = rapid.SampledFrom([]string{"do", "do", "wait", "case", "seq"}).Draw(t, name+"/kind")
		} else {
			kind = rapid.SampledFrom([]string{"do", "wait"}).Draw(t, name+"/kind")
		}
		switch kind {
		case "do":
			out[i] = combinators.Do(name, scriptedStep)
		case "wait":
			out[i] = combinators.WaitFor(name, scriptedPred,
				combinators.Every(time.Duration(rapid.IntRange(1, 60).Draw(t, name+"/every"))*time.Second),
				combinators.Timeout(time.Duration(rapid.IntRange(0, 300).Draw(t, name+"/timeout"))*time.Second))
		case "case":
			c := combinators.Case(name, scriptedPred, genNodes(t, name+"t", depth+1)...)
			if rapid.Bool().Draw(t, name+"/else") {
				c = c.Else(genNodes(t, name+"e", depth+1)...)
			}
			out[i] = c
		case "seq":
			out[i] = combinators.Sequence(name, genNodes(t, name+"s", depth+1)...)
		}
	}
	return out
}

// genScript draws outcomes for every node path of f.
func genScript(t *rapid.T, f *stepflow.Flow[Data]) map[string][]string {
	script := map[string][]string{}
	for _, n := range f.Nodes() {
		var choices []string
		switch n.Kind {
		case "do":
			choices = []string{"ok", "ok", "ok", "err", "panic"}
		case "wait", "case":
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
	opts := &stepflow.Options{Record: rapid.SampledFrom([]int{0, 3, 32}).Draw(t, "record")}
	f, err := stepflow.NewWithOptions("gen/v1", opts, genNodes(t, "n", 0)...)
	if err != nil {
		t.Fatalf("generated flow invalid: %v", err)
	}
	return f, Data{Script: genScript(t, f)}
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
