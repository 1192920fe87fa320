package stepflow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func TestSmoke(t *testing.T) {
	type D struct{ N int }
	polls := 0
	f, err := stepflow.NewWithOptions("t/v1", &stepflow.Options{Record: 4},
		combinators.Do("a", func(ctx context.Context, d *D) error { d.N++; return nil }),
		combinators.WaitFor("w", func(ctx context.Context, d *D) (bool, error) { polls++; return polls > 2, nil }, combinators.Every(time.Second)),
		combinators.Case("c", func(ctx context.Context, d *D) (bool, error) { return d.N == 1, nil },
			combinators.Do("b", func(ctx context.Context, d *D) error { d.N += 10; return nil })),
	)
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Unix(1000, 0)}
	ctx := stepflow.WithClock(context.Background(), clk)
	st := f.Start(D{})
	for i := 0; i < 20 && !st.Terminal(); i++ {
		st, err = f.Apply(ctx, st)
		t.Logf("%d %v %v %v %+v", i, st.Status, st.Positions(), st.WakeAt, st.Data)
		if st.Status == stepflow.Waiting {
			clk.t = st.WakeAt
		}
	}
	t.Logf("%+v", st.Record)
}
