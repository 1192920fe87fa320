package stepflow

import (
	"context"
	"time"
)

// Clock tells the time. The engine never reads the wall clock except through
// Now, so a test or a replay can supply its own.
type Clock interface {
	Now() time.Time
}

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now calls f.
func (f ClockFunc) Now() time.Time { return f() }

type clockKey struct{}

// WithClock returns a context whose Now is read from c.
func WithClock(ctx context.Context, c Clock) context.Context {
	return context.WithValue(ctx, clockKey{}, c)
}

// Now returns the time of the clock carried by ctx, in UTC and without a
// monotonic reading, so that it encodes identically everywhere. Only when
// ctx carries no clock does it read the real clock; this is the one place
// in the core packages that does.
func Now(ctx context.Context) time.Time {
	return readClock(clockOf(ctx))
}

// clockOf returns the clock carried by ctx, nil for the real one.
func clockOf(ctx context.Context) Clock {
	c, _ := ctx.Value(clockKey{}).(Clock)
	return c
}

// readClock reads c, or the real clock when c is nil, as Now does.
func readClock(c Clock) time.Time {
	if c != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}
