// Package steptrace traces stepflow processes with OpenTelemetry. Set a
// Tracer as runner.Options.Tracer and every Apply the runner makes gets a
// span, and every call of user code it makes (a step, a predicate) a
// child span of it. The step receives the child span's context, so the
// spans of what the step calls in turn (an HTTP client, a database
// driver instrumented with OpenTelemetry) nest under it.
//
// Spans carry the attributes of package observe: the flow version and the
// process id on both, the node path, kind and attempt on calls, and the
// status before and after on Applies. A call that returns an error, and an
// Apply that fails its process, end with an error status and the error
// recorded as an event.
//
// Importing it compiles OpenTelemetry's API (go.opentelemetry.io/otel and
// its trace package), not its SDK; the core packages import neither it nor
// OpenTelemetry.
package steptrace

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/stepflow-io/go-stepflow/observe"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/stepflow-io/go-stepflow/observe/steptrace"

// Span names: an Apply's span is ApplySpan; a call's span is named by the
// node's path (low cardinality: a flow has a fixed set of paths).
const ApplySpan = "stepflow.apply"

// Tracer makes the spans. It implements runner.ApplyTracer.
type Tracer struct {
	tracer      trace.Tracer
	interceptor stepflow.Interceptor
}

var _ runner.ApplyTracer = (*Tracer)(nil)

// New returns a Tracer whose spans come from tp; nil means the global
// provider (otel.GetTracerProvider).
func New(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	t := &Tracer{tracer: tp.Tracer(ScopeName)}
	t.interceptor = t.call
	return t
}

// ApplyStart starts the span of an Apply, and returns its context with
// the Tracer's interceptor in it, so that the Apply's calls get spans too.
func (t *Tracer) ApplyStart(ctx context.Context, id, version string, from stepflow.Status) context.Context {
	ctx, _ = t.tracer.Start(ctx, ApplySpan, trace.WithAttributes(
		attribute.String(observe.KeyVersion, version),
		attribute.String(observe.KeyProcess, id),
		attribute.String(observe.KeyFrom, from.String()),
	))
	return stepflow.WithInterceptor(ctx, t.interceptor)
}

// ApplyEnd ends the span ApplyStart started, with the new status.
func (t *Tracer) ApplyEnd(ctx context.Context, to stepflow.Status, err error) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.String(observe.KeyStatus, to.String()))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Interceptor returns the interceptor that gives every call of user code
// a span, for programs that call Flow.Apply themselves (add it with
// stepflow.WithInterceptor or stepflow.Options.Interceptors). Runners
// with the Tracer as Options.Tracer need not add it.
func (t *Tracer) Interceptor() stepflow.Interceptor { return t.interceptor }

func (t *Tracer) call(ctx context.Context, call stepflow.Call, next func(context.Context) error) error {
	ctx, span := t.tracer.Start(ctx, call.Path, trace.WithAttributes(
		attribute.String(observe.KeyVersion, call.Version),
		attribute.String(observe.KeyProcess, call.ID),
		attribute.String(observe.KeyPath, call.Path),
		attribute.String(observe.KeyKind, call.Kind),
		attribute.Int64(observe.KeyAttempt, int64(call.Attempt)),
	))
	defer span.End()
	err := next(ctx)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}
