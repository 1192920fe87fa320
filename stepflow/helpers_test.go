package stepflow_test

import (
	"sync"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// testClock is a settable clock for tests.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock { return &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *testClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

var (
	fixedTime                 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fixedClock stepflow.Clock = stepflow.ClockFunc(func() time.Time { return fixedTime })
)
