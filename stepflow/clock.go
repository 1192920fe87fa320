package stepflow

import (
	"context"
	"time"
)

// Clock tells the time. The engine never reads the wall clock except through
// Now, so a test or a replay can supply its own. Every node of one Apply
// decides at the same time, read once; the record reads it again around
// each call, to time it, and so does a step that calls Now.
type Clock interface {
	Now() time.Time
}

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now calls f.
func (f ClockFunc) Now() time.Time { return f() }

// env is what a context carries for the engine: its clock and
// interceptors, under one key so that Apply looks them up once.
type env struct {
	clock        Clock // nil: the real clock
	interceptors []Interceptor
}

// envKey is the context key of env. It is a pointer: contexts compare a
// pointer key with one comparison, an empty struct key through the
// runtime's general equality.
var envKey = &ctxKey{"stepflow.env"}

type ctxKey struct{ name string }

// envOf returns the env carried by ctx, shared: copy it to change it.
func envOf(ctx context.Context) *env {
	if e, ok := ctx.Value(envKey).(*env); ok {
		return e
	}
	return &noEnv
}

var noEnv env

// WithClock returns a context whose Now is read from c.
func WithClock(ctx context.Context, c Clock) context.Context {
	e := *envOf(ctx)
	e.clock = c
	return context.WithValue(ctx, envKey, &e)
}

// Now returns the time of the clock carried by ctx, in UTC and without a
// monotonic reading, so that it encodes identically everywhere. Only when
// ctx carries no clock does it read the real clock; this is the one place
// in the core packages that does.
func Now(ctx context.Context) time.Time {
	return readClock(envOf(ctx).clock)
}

// readClock reads c, or the real clock when c is nil, as Now does.
func readClock(c Clock) time.Time {
	if c != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}
