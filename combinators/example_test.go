package combinators_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// exampleClock is a fake clock the examples move by hand.
type exampleClock struct{ t time.Time }

func (c *exampleClock) Now() time.Time { return c.t }

// runToEnd applies a flow until its process ends, jumping the clock to each
// wake time, and prints every position change.
func runToEnd[S any](f *stepflow.Flow[S], st stepflow.State[S]) stepflow.State[S] {
	clk := &exampleClock{t: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)}
	ctx := stepflow.WithClock(context.Background(), clk)
	for !st.Terminal() {
		if st.Status == stepflow.Waiting {
			clk.t = st.WakeAt
		}
		st, _ = f.Apply(ctx, st)
	}
	return st
}

type Order struct {
	Items    int
	Charged  bool
	Shipped  bool
	Refunded bool
	Approver string
	Polls    int
}

func ExampleDo() {
	f := stepflow.Must(stepflow.New("order/v1",
		combinators.Do("charge", func(_ context.Context, o *Order) error { o.Charged = true; return nil }),
		combinators.Do("ship", func(_ context.Context, o *Order) error { o.Shipped = true; return nil }),
	))
	st := f.Start(Order{Items: 2})
	st, _ = f.Apply(context.Background(), st)
	fmt.Println(st.Status, st.Positions(), st.Data.Charged)
	st, _ = f.Apply(context.Background(), st)
	fmt.Println(st.Status, st.Data.Shipped)
	// Output:
	// running [ship] true
	// done true
}

func ExamplePlain() {
	f := stepflow.Must(stepflow.New("plain/v1",
		combinators.Plain.Do("hello", func(context.Context) error { fmt.Println("hello"); return nil }),
		combinators.Plain.WaitFor("ready", func(context.Context) (bool, error) { return true, nil }),
	))
	st := runToEnd(f, f.Start(stepflow.None{}))
	fmt.Println(st.Status)
	// Output:
	// hello
	// done
}

func ExampleCase() {
	big := func(_ context.Context, o *Order) (bool, error) { return o.Items > 10, nil }
	f := stepflow.Must(stepflow.New("order/v1",
		combinators.Case("size", big,
			combinators.Do("freight", func(context.Context, *Order) error { fmt.Println("freight"); return nil }),
		).Else(
			combinators.Do("parcel", func(context.Context, *Order) error { fmt.Println("parcel"); return nil }),
		),
	))
	st, _ := f.Apply(context.Background(), f.Start(Order{Items: 3}))
	fmt.Println("decided:", st.Root.Children[0].Branch, st.Positions())
	runToEnd(f, st)
	// Output:
	// decided: else [size/parcel]
	// parcel
}

func ExampleSwitch() {
	f := stepflow.Must(stepflow.New("route/v1",
		combinators.Switch("region", func(context.Context, *Order) (string, error) { return "eu", nil },
			combinators.On("us", combinators.Do("usWarehouse", func(context.Context, *Order) error { return nil })),
			combinators.On("eu", combinators.Do("euWarehouse", func(context.Context, *Order) error { fmt.Println("eu"); return nil })),
		)))
	runToEnd(f, f.Start(Order{}))
	// Output: eu
}

func ExampleWaitFor() {
	f := stepflow.Must(stepflow.New("poll/v1",
		combinators.WaitFor("stock", func(_ context.Context, o *Order) (bool, error) { o.Polls++; return o.Polls == 3, nil },
			combinators.Every(time.Minute), combinators.Timeout(time.Hour)),
	))
	st, _ := f.Apply(context.Background(), f.Start(Order{}))
	fmt.Println(st.Status, "until", st.WakeAt.Sub(st.Root.Children[0].Since))
	st = runToEnd(f, st)
	fmt.Println(st.Status, "after", st.Data.Polls, "polls")
	// Output:
	// waiting until 1m0s
	// done after 3 polls
}

func ExampleRetry() {
	tries := 0
	f := stepflow.Must(stepflow.New("retry/v1",
		combinators.Retry("charge", combinators.RetryPolicy{MaxAttempts: 5, InitialInterval: time.Second},
			combinators.Do("call", func(ctx context.Context, _ *Order) error {
				call, _ := stepflow.CallFrom(ctx)
				tries++
				fmt.Println("attempt", call.Attempt)
				if tries < 3 {
					return errors.New("gateway busy")
				}
				return nil
			})),
	))
	st := runToEnd(f, f.Start(Order{}))
	fmt.Println(st.Status)
	// Output:
	// attempt 1
	// attempt 2
	// attempt 3
	// done
}

func ExampleTimeLimit() {
	never := func(context.Context, *Order) (bool, error) { return false, nil }
	f := stepflow.Must(stepflow.New("limit/v1",
		combinators.TimeLimit("approval", 10*time.Minute,
			combinators.WaitFor("approved", never, combinators.Every(time.Minute))),
	))
	st := runToEnd(f, f.Start(Order{}))
	fmt.Println(st.Status, st.Err.Kind, st.Err.Path)
	// Output: failed timeout approval
}

// A saga: every step that has an effect is wrapped in a Finally whose
// cleanup compensates when the rest failed (Caught is set).
func ExampleFinally() {
	undo := func(what string) stepflow.Node[Order] {
		return combinators.When("undo"+what, func(ctx context.Context, _ *Order) (bool, error) {
			call, _ := stepflow.CallFrom(ctx)
			return call.Caught != nil, nil
		}, combinators.Do("compensate", func(context.Context, *Order) error { fmt.Println("undo", what); return nil }))
	}
	f := stepflow.Must(stepflow.New("saga/v1",
		combinators.Finally("charged",
			combinators.Sequence("afterCharge",
				combinators.Do("charge", func(_ context.Context, o *Order) error { o.Charged = true; return nil }),
				combinators.Finally("reserved",
					combinators.Sequence("afterReserve",
						combinators.Do("reserve", func(context.Context, *Order) error { return nil }),
						combinators.Do("ship", func(context.Context, *Order) error { return errors.New("no courier") })),
					undo("reserve"))),
			undo("charge")),
	))
	st := runToEnd(f, f.Start(Order{}))
	fmt.Println(st.Status, st.Err.Path)
	// Output:
	// undo reserve
	// undo charge
	// failed charged/afterCharge/reserved/afterReserve/ship
}

func ExampleCatch() {
	f := stepflow.Must(stepflow.New("catch/v1",
		combinators.Catch("try", combinators.Do("risky", func(context.Context, *Order) error { return errors.New("out of stock") }),
			combinators.Do("notify", func(ctx context.Context, _ *Order) error {
				call, _ := stepflow.CallFrom(ctx)
				fmt.Println("handled:", call.Caught.Message)
				return nil
			})),
		combinators.Do("continue", func(context.Context, *Order) error { fmt.Println("continued"); return nil }),
	))
	st := runToEnd(f, f.Start(Order{}))
	fmt.Println(st.Status)
	// Output:
	// handled: out of stock
	// continued
	// done
}

func ExampleParallel() {
	say := func(s string) func(context.Context, *Order) error {
		return func(context.Context, *Order) error { fmt.Println(s); return nil }
	}
	f := stepflow.Must(stepflow.New("par/v1",
		combinators.Parallel("both",
			combinators.Sequence("a", combinators.Do("a1", say("a1")), combinators.Do("a2", say("a2"))),
			combinators.Sequence("b", combinators.Do("b1", say("b1")), combinators.Do("b2", say("b2"))),
		)))
	st, _ := f.Apply(context.Background(), f.Start(Order{}))
	fmt.Println(st.Positions())
	runToEnd(f, st)
	// Output:
	// a1
	// b1
	// [both/a/a2 both/b/b2]
	// a2
	// b2
}

func ExampleForEach() {
	f := stepflow.Must(stepflow.New("each/v1",
		combinators.ForEach("regions", func(context.Context, *Order) ([]string, error) { return []string{"eu", "us"}, nil },
			combinators.Do("deploy", func(ctx context.Context, _ *Order) error {
				region, err := combinators.Item[string](ctx)
				fmt.Println("deploy to", region)
				return err
			}))))
	runToEnd(f, f.Start(Order{}))
	// Output:
	// deploy to eu
	// deploy to us
}

func ExampleLoopUntil() {
	f := stepflow.Must(stepflow.New("loop/v1",
		combinators.LoopUntil("drain", func(_ context.Context, o *Order) (bool, error) { return o.Items == 0, nil },
			[]stepflow.Node[Order]{combinators.Do("take", func(_ context.Context, o *Order) error { o.Items--; return nil })},
			combinators.MaxIterations(10))))
	st := runToEnd(f, f.Start(Order{Items: 3}))
	fmt.Println(st.Status, st.Data.Items)
	// Output: done 0
}

func ExampleWaitSignal() {
	f := stepflow.Must(stepflow.New("approve/v1",
		combinators.WaitSignal("approval", "approve", func(o *Order, who []byte) error { o.Approver = string(who); return nil },
			combinators.Timeout(24*time.Hour)),
		combinators.Do("ship", func(context.Context, *Order) error { return nil })))
	st, _ := f.Apply(context.Background(), f.Start(Order{}))
	fmt.Println(st.Status)
	st, _ = f.Signal(st, "approve", []byte("alice"))
	st = runToEnd(f, st)
	fmt.Println(st.Status, st.Data.Approver)
	// Output:
	// waiting
	// done alice
}

func ExampleSleep() {
	f := stepflow.Must(stepflow.New("sleep/v1", combinators.Sleep[Order]("coolDown", 15*time.Minute)))
	st, _ := f.Apply(context.Background(), f.Start(Order{}))
	fmt.Println(st.Status, st.WakeAt.Sub(st.Root.Children[0].Since))
	// Output: waiting 15m0s
}

func ExampleAtMostOnce() {
	f := stepflow.Must(stepflow.New("pay/v1",
		combinators.Do("pay", func(context.Context, *Order) error { fmt.Println("paid"); return nil },
			combinators.AtMostOnce(combinators.AskPerson))))
	ctx := context.Background()
	st, _ := f.Apply(ctx, f.Start(Order{}))
	fmt.Println("intent:", st.Intent)
	// ... save st durably, then authorize exactly this state:
	st, _ = f.Apply(stepflow.WithIntentSaved(ctx, st), st)
	fmt.Println(st.Status)
	// Output:
	// intent: pay
	// paid
	// done
}

func ExampleSucceed() {
	f := stepflow.Must(stepflow.New("exit/v1",
		combinators.When("nothingToDo", func(_ context.Context, o *Order) (bool, error) { return o.Items == 0, nil },
			combinators.Succeed[Order]("done")),
		combinators.Do("work", func(context.Context, *Order) error { fmt.Println("working"); return nil })))
	st := runToEnd(f, f.Start(Order{}))
	fmt.Println(st.Status)
	// Output: done
}

// ExampleGraph runs tasks by their dependencies, as a µTask template's
// steps do: "report" needs "c" and "d"; "c" needs "a"; "d" needs "a" and
// "b". "c" runs as soon as "a" is done, without waiting for the slow "b".
func ExampleGraph() {
	type release struct{ Log []string }
	task := func(name string) stepflow.Node[release] {
		return combinators.Do(name, func(_ context.Context, r *release) error {
			r.Log = append(r.Log, name)
			return nil
		})
	}
	slow := combinators.Sequence("b", combinators.Sleep[release]("wait", time.Hour), task("b-done"))
	f := stepflow.Must(stepflow.New("release/v1",
		combinators.Graph("steps",
			combinators.After(task("a")),
			combinators.After(slow),
			combinators.After(task("c"), "a"),
			combinators.After(task("d"), "a", "b"),
			combinators.After(task("report"), "c", "d"),
		),
	))
	st := runToEnd(f, f.Start(release{}))
	fmt.Println(st.Status, st.Data.Log)
	// Output:
	// done [a c b-done d report]
}

// ExampleParallelNode_Goroutines checks three regions at the same time,
// as users of engines with asynchronous or parallel steps expect for slow
// API calls: each branch fills its own field of its own copy of the data,
// and the copies are merged back in branch order.
func ExampleParallelNode_Goroutines() {
	type health struct{ US, EU, AP string }
	probe := func(name string, set func(*health)) stepflow.Node[health] {
		return combinators.Do(name, func(_ context.Context, h *health) error {
			time.Sleep(10 * time.Millisecond) // a slow API call
			set(h)
			return nil
		})
	}
	f := stepflow.Must(stepflow.New("health/v1",
		combinators.Parallel("regions",
			probe("us", func(h *health) { h.US = "ok" }),
			probe("eu", func(h *health) { h.EU = "ok" }),
			probe("ap", func(h *health) { h.AP = "degraded" }),
		).Goroutines(3, nil),
	))
	st, _ := f.Apply(context.Background(), f.Start(health{}))
	fmt.Println(st.Status, st.Data)
	// Output:
	// done {ok ok degraded}
}
