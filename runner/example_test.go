package runner_test

import (
	"context"
	"fmt"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

type greeting struct {
	Name  string
	Lines []string
}

// Example starts three processes and advances them with Step until nothing
// is due; a service would call Run instead.
func Example() {
	flow := stepflow.Must(stepflow.New("greet/v1",
		combinators.Do("hello", func(ctx context.Context, g *greeting) error {
			call, _ := stepflow.CallFrom(ctx)
			g.Lines = append(g.Lines, "hello "+g.Name+" (key "+call.IdempotencyKey()+")")
			return nil
		}),
		combinators.Do("bye", func(_ context.Context, g *greeting) error {
			g.Lines = append(g.Lines, "bye "+g.Name)
			return nil
		}),
	))
	r, err := runner.New(flow, store.NewMemory(), nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for _, name := range []string{"ada", "grace", "linus"} {
		if _, err := r.Start(ctx, "greet-"+name, greeting{Name: name}); err != nil {
			panic(err)
		}
	}
	for {
		n, err := r.Step(ctx)
		if err != nil {
			panic(err)
		}
		if n == 0 {
			break
		}
	}
	st, err := r.State(ctx, "greet-grace")
	if err != nil {
		panic(err)
	}
	fmt.Println(st.Status)
	for _, l := range st.Data.Lines {
		fmt.Println(l)
	}
	c, _ := r.Counts(ctx)
	fmt.Println("done:", c.ByStatus[stepflow.Done])
	// Output:
	// done
	// hello grace (key greet/v1|greet-grace|hello#1)
	// bye grace
	// done: 3
}
