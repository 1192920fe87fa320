package steptrace_test

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/observe/steptrace"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// Example traces a runner's processes. A program would give New its
// OpenTelemetry provider (or nil for the global one) with an exporter;
// here a recorder collects the spans to print them.
func Example() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))

	flow := stepflow.Must(stepflow.New("greet/v1",
		combinators.Do("hello", func(context.Context, *struct{}) error { return nil }),
		combinators.Do("bye", func(context.Context, *struct{}) error { return nil }),
	))
	r, _ := runner.New(store.NewMemory(), &runner.Options{Tracer: steptrace.New(tp)})
	greetings, _ := runner.Register(r, flow)
	ctx := context.Background()
	_ = greetings.Start(ctx, "g-1", struct{}{})
	for n := 1; n > 0; {
		n, _ = r.Step(ctx)
	}
	for _, s := range spans.Ended() {
		fmt.Println(s.Name(), s.Attributes())
	}
	// Output:
	// hello [{"stepflow.version":"greet/v1"} {"stepflow.process":"g-1"} {"stepflow.path":"hello"} {"stepflow.kind":"do"} {"stepflow.attempt":1}]
	// stepflow.apply [{"stepflow.version":"greet/v1"} {"stepflow.process":"g-1"} {"stepflow.from":"running"} {"stepflow.status":"running"}]
	// bye [{"stepflow.version":"greet/v1"} {"stepflow.process":"g-1"} {"stepflow.path":"bye"} {"stepflow.kind":"do"} {"stepflow.attempt":1}]
	// stepflow.apply [{"stepflow.version":"greet/v1"} {"stepflow.process":"g-1"} {"stepflow.from":"running"} {"stepflow.status":"done"}]
}
