package stepflowtest_test

import (
	"context"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Order is the data of the order flow used by the tests and examples.
type Order struct {
	Item     string
	Reserved bool
	Paid     bool
	Shipped  bool
	Refunded bool
	Mailed   int
}

// orderFlow reserves an item, waits for the payment, then ships it, or
// refunds when the item is a gift card (which is never shipped).
func orderFlow() *stepflow.Flow[Order] {
	return stepflow.Must(stepflow.NewWithOptions("order/v1", &stepflow.Options{Record: 4},
		combinators.Do("reserve", func(ctx context.Context, o *Order) error { o.Reserved = true; return nil }),
		combinators.WaitFor("paid", func(ctx context.Context, o *Order) (bool, error) {
			o.Paid = true
			return true, nil
		}, combinators.Backoff(time.Minute, 10*time.Minute), combinators.Timeout(time.Hour)),
		combinators.Case("physical", func(ctx context.Context, o *Order) (bool, error) { return o.Item != "gift card", nil },
			combinators.Do("ship", func(ctx context.Context, o *Order) error { o.Shipped = true; return nil }),
		).Else(
			combinators.Do("refund", func(ctx context.Context, o *Order) error { o.Refunded = true; return nil }),
		),
		combinators.Do("mail", func(ctx context.Context, o *Order) error { o.Mailed++; return nil }),
	))
}
