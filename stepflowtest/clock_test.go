package stepflowtest_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

func TestClock(t *testing.T) {
	c := stepflowtest.NewClock(time.Time{})
	assert.Equal(t, stepflowtest.Epoch, c.Now(), "the zero time means Epoch")
	assert.Equal(t, stepflowtest.Epoch.Add(time.Hour), c.Advance(time.Hour))
	assert.Equal(t, stepflowtest.Epoch.Add(time.Hour), c.Now())

	at := time.Date(2030, 5, 6, 7, 8, 9, 0, time.FixedZone("x", 3600))
	c.Set(at)
	assert.Equal(t, at.UTC(), c.Now())
	assert.Equal(t, time.UTC, c.Now().Location(), "the clock hands out UTC times")

	ctx := c.Context(context.Background())
	assert.Equal(t, at.UTC(), stepflow.Now(ctx), "the engine reads the fake clock")

	var zero stepflowtest.Clock
	assert.Equal(t, stepflowtest.Epoch, zero.Now(), "a zero Clock starts at Epoch")
	var nilClock *stepflowtest.Clock
	assert.Equal(t, stepflowtest.Epoch, nilClock.Now())
}

func TestClockConcurrent(t *testing.T) {
	c := stepflowtest.NewClock(time.Time{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Second)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, stepflowtest.Epoch.Add(800*time.Second), c.Now())
}

func TestFastForward(t *testing.T) {
	c := stepflowtest.NewClock(time.Time{})
	later := stepflowtest.Epoch.Add(time.Minute)
	tests := []struct {
		name  string
		st    stepflow.State[stepflow.None]
		moved bool
		now   time.Time
	}{
		{"running", stepflow.State[stepflow.None]{Status: stepflow.Running, WakeAt: later}, false, stepflowtest.Epoch},
		{"waiting without wake time", stepflow.State[stepflow.None]{Status: stepflow.Waiting}, false, stepflowtest.Epoch},
		{"waiting in the past", stepflow.State[stepflow.None]{Status: stepflow.Waiting, WakeAt: stepflowtest.Epoch.Add(-time.Hour)}, false, stepflowtest.Epoch},
		{"waiting now", stepflow.State[stepflow.None]{Status: stepflow.Waiting, WakeAt: stepflowtest.Epoch}, false, stepflowtest.Epoch},
		{"waiting later", stepflow.State[stepflow.None]{Status: stepflow.Waiting, WakeAt: later}, true, later},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.Set(stepflowtest.Epoch)
			assert.Equal(t, tt.moved, stepflowtest.FastForward(c, tt.st))
			assert.Equal(t, tt.now, c.Now())
		})
	}
}
