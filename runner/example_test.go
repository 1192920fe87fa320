package runner_test

import (
	"context"
	"errors"
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

// ExampleLeaseFrom hands an external system a fencing token: the revision
// of the process the step was loaded at. The system keeps the highest
// token it has seen per process and refuses lower ones, so a runner that
// stalled past its lease cannot overwrite what a newer step wrote.
func ExampleLeaseFrom() {
	ledger := map[string]uint64{} // process id -> highest token seen
	write := func(id string, token uint64, what string) error {
		if token < ledger[id] {
			return fmt.Errorf("stale token %d < %d", token, ledger[id])
		}
		ledger[id] = token
		fmt.Printf("%s: %s with token %d\n", id, what, token)
		return nil
	}
	step := func(name string) stepflow.Node[greeting] {
		return combinators.Do(name, func(ctx context.Context, g *greeting) error {
			lease, ok := runner.LeaseFrom(ctx)
			if !ok {
				return errors.New("not run by a runner")
			}
			call, _ := stepflow.CallFrom(ctx)
			return write(call.ID, lease.Revision, name+" by "+lease.Owner)
		})
	}
	flow := stepflow.Must(stepflow.New("fenced/v1", step("reserve"), step("confirm")))
	r, err := runner.New(flow, store.NewMemory(), &runner.Options{Owner: "runner-a"})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if _, err := r.Start(ctx, "order-7", greeting{}); err != nil {
		panic(err)
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
	// A runner that stalled while working on revision 1 comes back late.
	fmt.Println(write("order-7", 1, "reserve by a stalled runner"))
	// Output:
	// order-7: reserve by runner-a with token 1
	// order-7: confirm by runner-a with token 2
	// stale token 1 < 2
}
