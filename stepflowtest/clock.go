package stepflowtest

import (
	"context"
	"sync"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Epoch is the time a Clock made by NewClock starts at when given the zero
// time: a fixed instant, so that traces and golden files do not depend on
// when the test ran.
var Epoch = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

// Clock is a stepflow.Clock that only moves when a test moves it. It is safe
// for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

var _ stepflow.Clock = (*Clock)(nil)

// NewClock returns a clock set to t, or to Epoch when t is the zero time.
func NewClock(t time.Time) *Clock {
	if t.IsZero() {
		t = Epoch
	}
	return &Clock{t: t.UTC()}
}

// Now returns the clock's time. A nil or zero Clock reads Epoch.
func (c *Clock) Now() time.Time {
	if c == nil {
		return Epoch
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		c.t = Epoch
	}
	return c.t
}

// Advance moves the clock forward by d and returns the new time. A negative
// d moves it back, which a test may want to check that a flow copes with.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		c.t = Epoch
	}
	c.t = c.t.Add(d)
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t.UTC()
}

// Context returns ctx carrying the clock, so that Apply and the steps it
// calls read their time from it.
func (c *Clock) Context(ctx context.Context) context.Context {
	return stepflow.WithClock(ctx, c)
}

// FastForward moves the clock to st.WakeAt when the state is waiting for a
// later time, so that the next Apply can make progress, and reports whether
// it moved. It never moves the clock back.
func FastForward[S any](c *Clock, st stepflow.State[S]) bool {
	if st.Status != stepflow.Waiting || st.WakeAt.IsZero() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		c.t = Epoch
	}
	if !st.WakeAt.After(c.t) {
		return false
	}
	c.t = st.WakeAt.UTC()
	return true
}
