package fuzz

import (
	"context"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// flowGen builds random flows of every kind of node, nested, whose steps
// depend only on the data, so that stepflowtest's invariants apply.
type flowGen struct {
	t       *rapid.T
	n       int
	foreach bool
}

func (g *flowGen) name(kind string) string {
	g.n++
	return fmt.Sprintf("%s%d", kind, g.n)
}

func (g *flowGen) nodes(depth, lo, hi int) []stepflow.Node[Data] {
	k := rapid.IntRange(lo, hi).Draw(g.t, "children")
	out := make([]stepflow.Node[Data], k)
	for i := range out {
		out[i] = g.node(depth)
	}
	return out
}

func (g *flowGen) node(depth int) stepflow.Node[Data] {
	kinds := []string{"do", "do", "wait", "sleep"}
	if depth < 3 {
		kinds = append(kinds, "seq", "case", "retry", "parallel", "loop", "timelimit", "catch", "finally", "optional")
		if g.foreach {
			kinds = append(kinds, "foreach")
		}
	}
	kind := rapid.SampledFrom(kinds).Draw(g.t, "kind")
	name := g.name(kind)
	mod := rapid.IntRange(1, 3).Draw(g.t, "mod")
	switch kind {
	case "do":
		return combinators.Do(name, func(ctx context.Context, d *Data) error { d.Count++; return nil })
	case "wait":
		return combinators.WaitFor(name, func(ctx context.Context, d *Data) (bool, error) {
			d.Count++
			return d.Count%mod == 0, nil
		}, combinators.Every(time.Minute), combinators.Timeout(10*time.Minute))
	case "sleep":
		return combinators.Sleep[Data](name, time.Duration(mod)*time.Minute)
	case "seq":
		return combinators.Sequence(name, g.nodes(depth+1, 1, 3)...)
	case "case":
		return combinators.Case(name, func(ctx context.Context, d *Data) (bool, error) { return d.Count%2 == 0, nil },
			g.nodes(depth+1, 1, 2)...).Else(g.nodes(depth+1, 0, 2)...)
	case "retry":
		return combinators.Retry(name, combinators.RetryPolicy{MaxAttempts: mod + 1, InitialInterval: time.Minute}, g.nodes(depth+1, 1, 2)...)
	case "parallel":
		p := combinators.Parallel(name, g.nodes(depth+1, 2, 3)...)
		if mod == 2 {
			p = p.WaitAll()
		}
		return p
	case "loop":
		return combinators.LoopUntil(name, func(ctx context.Context, d *Data) (bool, error) { return d.Count%(mod+1) == 0, nil },
			g.nodes(depth+1, 1, 2), combinators.MaxIterations(4))
	case "timelimit":
		return combinators.TimeLimit(name, time.Duration(mod)*5*time.Minute, g.nodes(depth+1, 1, 2)...)
	case "catch":
		return combinators.Catch(name, g.node(depth+1), g.nodes(depth+1, 0, 2)...)
	case "finally":
		return combinators.Finally(name, g.node(depth+1), g.nodes(depth+1, 1, 2)...)
	case "optional":
		return combinators.Optional(name, g.nodes(depth+1, 1, 2)...)
	case "foreach":
		return combinators.ForEach(name, func(ctx context.Context, d *Data) ([]int, error) { return make([]int, mod), nil },
			g.nodes(depth+1, 1, 2)...).Concurrency(rapid.IntRange(1, 2).Draw(g.t, "concurrency"))
	}
	panic("unreachable")
}

// randomFlows checks stepflowtest's invariants on random flows under random
// outcome scripts: a crash anywhere resumes to the same end, every state
// validates and round-trips, progress is never lost.
func randomFlows(t *testing.T, foreach bool) {
	rapid.Check(t, func(t *rapid.T) {
		g := &flowGen{t: t, foreach: foreach}
		flow, err := stepflow.NewWithOptions("random/v1", &stepflow.Options{Record: 4}, g.nodes(0, 1, 4)...)
		if err != nil {
			t.Fatalf("generated an invalid flow: %v", err)
		}
		script := stepflowtest.OutcomeScriptWithOptions(stepflowtest.Leaves(flow), &stepflowtest.ScriptOptions{MaxCalls: 2}).Draw(t, "script")
		stepflowtest.CheckInvariants(t, flow, flow.Start(Data{}), &stepflowtest.InvariantOptions[Data]{
			Script: script, AllowFailure: true, MaxSteps: 2000, MaxCrashes: 12,
		})
	})
}

func TestRandomFlowsKeepInvariants(t *testing.T) { randomFlows(t, false) }

func TestRandomFlowsWithForEachKeepInvariants(t *testing.T) { randomFlows(t, true) }
