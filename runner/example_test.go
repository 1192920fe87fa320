package runner_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/versions"
)

type greeting struct {
	Name  string
	Lines []string
}

// Example hosts a flow in a runner, starts three processes and advances
// them with Step until nothing is due; a service would call Run instead.
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
	r, err := runner.New(store.NewMemory(), nil)
	if err != nil {
		panic(err)
	}
	greetings, err := runner.Register(r, flow) // typed: *runner.Processes[greeting]
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for _, name := range []string{"ada", "grace", "linus"} {
		if err := greetings.Start(ctx, "greet-"+name, greeting{Name: name}); err != nil {
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
	st, err := greetings.State(ctx, "greet-grace")
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
	r, err := runner.New(store.NewMemory(), &runner.Options{Owner: "runner-a"})
	if err != nil {
		panic(err)
	}
	orders, err := runner.Register(r, flow)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := orders.Start(ctx, "order-7", greeting{}); err != nil {
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

// ExampleRegisterVersions upgrades a flow under processes in flight: a
// runner built with deploy/v1 starts two deployments and stops while they
// wait for approval; the next release hosts deploy/v1 and deploy/v2
// through a versions.Registry, and the processes continue on deploy/v2 at
// their next step, migrated by the declared rule. Another flow shares the
// store and the runner.
func ExampleRegisterVersions() {
	type deploy struct{ Log []string }
	step := func(name string) stepflow.Node[deploy] {
		return combinators.Do(name, func(_ context.Context, d *deploy) error {
			d.Log = append(d.Log, name)
			return nil
		})
	}
	v1 := stepflow.Must(stepflow.New("deploy/v1", step("build"), combinators.WaitSignal[deploy]("approval", "approved", nil), step("rollout")))
	v2 := stepflow.Must(stepflow.New("deploy/v2", step("build"), combinators.WaitSignal[deploy]("approval", "approved", nil),
		step("canary"), step("rolloutAll")))
	st := store.NewMemory()
	ctx := context.Background()
	drain := func(r *runner.Runner) {
		for n := 1; n > 0; {
			var err error
			if n, err = r.Step(ctx); err != nil {
				panic(err)
			}
		}
	}

	// The first release knows deploy/v1 only.
	old, _ := runner.New(st, nil)
	deploysV1, _ := runner.Register(old, v1)
	_, _ = deploysV1.StartMany(ctx, []runner.NewProcess[deploy]{{ID: "web"}, {ID: "api"}})
	drain(old)

	// The next release: deploy/v1 and deploy/v2, "rollout" renamed, and a
	// second flow in the same store.
	reg, err := versions.New([]*stepflow.Flow[deploy]{v1, v2}, nil,
		versions.NewMigration[deploy]("deploy/v1", "deploy/v2").Rename("rollout", "rolloutAll"))
	if err != nil {
		panic(err)
	}
	migrations := 0
	r, _ := runner.New(st, &runner.Options{Metrics: &runner.Metrics{
		Migrated: func(id, from, to string) { migrations++ },
	}})
	deploys, _ := runner.RegisterVersions(r, reg)
	cleanups, _ := runner.Register(r, stepflow.Must(stepflow.New("cleanup/v1", step("prune"))))
	_ = cleanups.Start(ctx, "nightly", deploy{})
	for _, id := range []string{"web", "api"} {
		if err := deploys.Signal(ctx, id, "approved", nil); err != nil {
			panic(err)
		}
	}
	drain(r)
	web, _ := deploys.State(ctx, "web")
	fmt.Println(web.Version, web.Status, web.Data.Log)
	fmt.Println("migrated:", migrations)
	c, _ := r.Counts(ctx)
	fmt.Println("cleanup/v1 done:", c.ByVersion["cleanup/v1"].ByStatus[stepflow.Done])
	// Output:
	// deploy/v2 done [build canary rolloutAll]
	// migrated: 2
	// cleanup/v1 done: 1
}

// ExampleChild starts a process of another flow from a step and waits for
// its end: an order ships through a shipment process of its own, whose id
// is derived from the order's.
func ExampleChild() {
	type shipment struct{ Item, Tracking string }
	type order struct{ Item, Tracking string }
	r, _ := runner.New(store.NewMemory(), nil)
	shipments, _ := runner.Register(r, stepflow.Must(stepflow.New("shipment/v1",
		combinators.Do("book", func(_ context.Context, s *shipment) error { s.Tracking = "TRK-" + s.Item; return nil }),
	)))
	orders, _ := runner.Register(r, stepflow.Must(stepflow.New("order/v1",
		runner.Child("ship", shipments,
			func(o *order) (shipment, error) { return shipment{Item: o.Item}, nil },
			func(o *order, res runner.ChildResult[shipment]) error {
				o.Tracking = res.Data.Tracking
				return nil
			},
			combinators.Every(10*time.Millisecond), // look at the child often (for the example)
		),
	)))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = r.Run(ctx) }()
	_ = orders.Start(ctx, "order-7", order{Item: "lamp"})
	o, _ := orders.Wait(ctx, "order-7")
	s, _ := shipments.State(ctx, "order-7/ship")
	fmt.Println(o.Status, o.Data.Tracking)
	fmt.Println(s.ID, s.Status)
	// Output:
	// done TRK-lamp
	// order-7/ship done
}

// ExampleLimited lets at most two deployments touch a cluster at once,
// whichever runner process runs them: the third waits for a slot, first
// come, first served.
func ExampleLimited() {
	type deploy struct{ Cluster string }
	var mu sync.Mutex
	var log []string
	note := func(what string) func(context.Context, *deploy) error {
		return func(ctx context.Context, _ *deploy) error {
			call, _ := stepflow.CallFrom(ctx)
			mu.Lock()
			log = append(log, call.ID+" "+what)
			mu.Unlock()
			return nil
		}
	}
	flow := stepflow.Must(stepflow.New("deploy/v1",
		runner.Limited("rollout", "cluster", func(d *deploy) (string, error) { return d.Cluster, nil },
			combinators.Do("apply", note("applies")),
			combinators.Do("verify", note("verified")),
		),
	))
	r, _ := runner.New(store.NewMemory(), &runner.Options{Limits: map[string]runner.Limit{
		"cluster": {Capacity: 2}, // at most 2 holders per cluster
	}})
	deploys, _ := runner.Register(r, flow)
	ctx := context.Background()
	for _, id := range []string{"d1", "d2", "d3"} {
		_ = deploys.Start(ctx, id, deploy{Cluster: "eu-1"})
	}
	_, _ = r.Step(ctx) // d1 and d2 take the two slots; d3 waits
	d3, _ := deploys.Describe(ctx, "d3")
	fmt.Println("d3:", d3.Status, d3.Positions)
	for n := 1; n > 0; { // until nothing is due: d3 asks again after LimitPoll
		n, _ = r.Step(ctx)
	}
	fmt.Println(log)
	// Output:
	// d3: waiting [rollout/use/acquire]
	// [d1 applies d2 applies d1 verified d2 verified]
}
