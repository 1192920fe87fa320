package stepslog_test

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/observe/stepslog"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// Example logs the steps of a runner's processes and what becomes of
// them. (The handler drops the time and the duration to keep the output
// stable.)
func Example() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == stepslog.KeyDuration {
				return slog.Attr{}
			}
			return a
		},
	}))
	flow := stepflow.Must(stepflow.NewWithOptions("greet/v1",
		&stepflow.Options{Interceptors: []stepflow.Interceptor{stepslog.Interceptor(logger)}},
		combinators.Do("hello", func(context.Context, *struct{}) error { return nil }),
		combinators.Do("charge", func(context.Context, *struct{}) error { return errors.New("card declined") }),
	))
	r, _ := runner.New(store.NewMemory(), &runner.Options{Metrics: stepslog.Metrics(logger)})
	greetings, _ := runner.Register(r, flow)
	ctx := context.Background()
	_ = greetings.Start(ctx, "g-1", struct{}{})
	for n := 1; n > 0; {
		n, _ = r.Step(ctx)
	}
	// Output:
	// level=DEBUG msg=step stepflow.version=greet/v1 stepflow.process=g-1 stepflow.path=hello stepflow.kind=do stepflow.attempt=1
	// level=WARN msg="step failed" stepflow.version=greet/v1 stepflow.process=g-1 stepflow.path=charge stepflow.kind=do stepflow.attempt=1 error="card declined"
	// level=WARN msg="process failed" stepflow.version=greet/v1 stepflow.process=g-1 stepflow.from=running stepflow.status=failed
}
