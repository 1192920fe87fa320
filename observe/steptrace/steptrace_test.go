package steptrace_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/observe"
	"github.com/stepflow-io/go-stepflow/observe/steptrace"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestSpansOfARunner(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	var seen []trace.SpanContext // what each step found in its context
	step := func(err error) func(context.Context, *struct{}) error {
		return func(ctx context.Context, _ *struct{}) error {
			seen = append(seen, trace.SpanContextFromContext(ctx))
			return err
		}
	}
	f := stepflow.Must(stepflow.New("ship/v1",
		combinators.Do("pack", step(nil)),
		combinators.Do("send", step(errors.New("carrier down"))),
	))
	r, err := runner.New(store.NewMemory(), &runner.Options{Tracer: steptrace.New(tp)})
	require.NoError(t, err)
	ships, err := runner.Register(r, f)
	require.NoError(t, err)
	require.NoError(t, ships.Start(t.Context(), "s-1", struct{}{}))
	for n := 1; n > 0; {
		n, err = r.Step(t.Context())
		require.NoError(t, err)
	}

	spans := rec.Ended()
	var applies, calls []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == steptrace.ApplySpan {
			applies = append(applies, s)
		} else {
			calls = append(calls, s)
		}
	}
	require.Len(t, calls, 2)
	require.NotEmpty(t, applies)
	assert.Equal(t, "pack", calls[0].Name())
	assert.Equal(t, "send", calls[1].Name())
	for i, c := range calls {
		a := attrs(c)
		assert.Equal(t, "ship/v1", a[observe.KeyVersion])
		assert.Equal(t, "s-1", a[observe.KeyProcess])
		assert.Equal(t, c.Name(), a[observe.KeyPath])
		assert.Equal(t, "do", a[observe.KeyKind])
		assert.Equal(t, "1", a[observe.KeyAttempt])
		assert.Equal(t, c.SpanContext(), seen[i], "the step runs in its own span's context")
		var parent sdktrace.ReadOnlySpan
		for _, ap := range applies {
			if ap.SpanContext().SpanID() == c.Parent().SpanID() {
				parent = ap
			}
		}
		require.NotNil(t, parent, "a call's span is a child of an Apply's span")
		assert.Equal(t, "s-1", attrs(parent)[observe.KeyProcess])
	}
	assert.Equal(t, codes.Unset, calls[0].Status().Code)
	assert.Equal(t, codes.Error, calls[1].Status().Code)
	assert.Equal(t, "carrier down", calls[1].Status().Description)

	last := applies[len(applies)-1]
	assert.Equal(t, "running", attrs(last)[observe.KeyFrom])
	assert.Equal(t, "failed", attrs(last)[observe.KeyStatus])
	assert.Equal(t, codes.Error, last.Status().Code, "the Apply that failed the process")
	assert.Contains(t, last.Status().Description, "carrier down")
}

func TestInterceptorWithoutRunner(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := steptrace.New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	f := stepflow.Must(stepflow.NewWithOptions("solo/v1", &stepflow.Options{Interceptors: []stepflow.Interceptor{tr.Interceptor()}},
		combinators.Do("only", func(context.Context, *struct{}) error { return nil })))
	st := f.Start(struct{}{})
	st.ID = "x"
	_, err := f.Apply(t.Context(), st)
	require.NoError(t, err)
	require.Len(t, rec.Ended(), 1)
	s := rec.Ended()[0]
	assert.Equal(t, "only", s.Name())
	assert.Contains(t, s.Attributes(), attribute.String(observe.KeyProcess, "x"))
	assert.False(t, s.Parent().IsValid(), "no Apply span without a runner")
}
