package stepflowtest_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

func TestCheckInvariantsHold(t *testing.T) {
	flow := orderFlow()
	for _, item := range []string{"book", "gift card"} {
		t.Run(item, func(t *testing.T) {
			var r recorder
			assert.True(t, stepflowtest.CheckInvariants(&r, flow, flow.Start(Order{Item: item}), nil))
			assert.Empty(t, r.errs)
		})
	}
	t.Run("with a script that fails the flow", func(t *testing.T) {
		var r recorder
		ok := stepflowtest.CheckInvariants(&r, flow, flow.Start(Order{Item: "book"}), &stepflowtest.InvariantOptions[Order]{
			Script: stepflowtest.Script{
				"paid":          stepflowtest.Times(stepflowtest.False, 2),
				"physical/ship": stepflowtest.Calls(stepflowtest.Crash, stepflowtest.FailAfter),
			},
		})
		assert.True(t, ok)
		assert.Empty(t, r.errs)
	})
}

// ticketData is filled by a step that asks a fake for a new ticket number:
// running the step twice gives another number.
type ticketData struct{ Ticket int64 }

func ticketFlow(counter *atomic.Int64) *stepflow.Flow[ticketData] {
	return stepflow.Must(stepflow.New("ticket/v1",
		combinators.Do("open", func(ctx context.Context, d *ticketData) error { d.Ticket = counter.Add(1); return nil }),
		combinators.Do("close", func(ctx context.Context, d *ticketData) error { return nil }),
	))
}

func TestCheckInvariantsBroken(t *testing.T) {
	var counter atomic.Int64
	tickets := ticketFlow(&counter)
	reset := func() { counter.Store(0) }
	failing := stepflow.Must(stepflow.New("failing/v1",
		combinators.Plain.Do("nope", func(context.Context) error { return errors.New("nope") }),
	))
	forever := stepflow.Must(stepflow.New("forever/v1",
		combinators.Plain.WaitFor("never", func(context.Context) (bool, error) { return false, nil }, combinators.Every(time.Hour)),
	))
	mutating := stepflow.Must(stepflow.New("mutate/v1", stepflow.Node[stepflow.None](mutator{})))

	tests := []struct {
		name   string
		check  func(stepflowtest.TestingT) bool
		broken []string
	}{
		{"a step that is not idempotent", func(t stepflowtest.TestingT) bool {
			return stepflowtest.CheckInvariants(t, tickets, tickets.Start(ticketData{}), &stepflowtest.InvariantOptions[ticketData]{Reset: reset})
		}, []string{stepflowtest.InvariantCrashResume}},
		{"a step that is not idempotent, data ignored", func(t stepflowtest.TestingT) bool {
			return stepflowtest.CheckInvariants(t, tickets, tickets.Start(ticketData{}), &stepflowtest.InvariantOptions[ticketData]{Reset: reset, IgnoreData: true})
		}, nil},
		{"fakes not reset", func(t stepflowtest.TestingT) bool {
			return stepflowtest.CheckInvariants(t, tickets, tickets.Start(ticketData{}), &stepflowtest.InvariantOptions[ticketData]{IgnoreData: true})
		}, []string{stepflowtest.InvariantDeterministic}},
		{"a flow that fails", func(t stepflowtest.TestingT) bool {
			return stepflowtest.CheckInvariants(t, failing, failing.Start(stepflow.None{}), nil)
		}, []string{stepflowtest.InvariantCompletes}},
		{"a flow that is expected to fail", func(t stepflowtest.TestingT) bool {
			return stepflowtest.CheckInvariants(t, failing, failing.Start(stepflow.None{}), &stepflowtest.InvariantOptions[stepflow.None]{AllowFailure: true})
		}, nil},
		{"a flow that never ends", func(t stepflowtest.TestingT) bool {
			return stepflowtest.CheckInvariants(t, forever, forever.Start(stepflow.None{}), &stepflowtest.InvariantOptions[stepflow.None]{MaxSteps: 20})
		}, []string{stepflowtest.InvariantRuns}},
		{"a node that modifies its input", func(t stepflowtest.TestingT) bool {
			return stepflowtest.CheckInvariants(t, mutating, mutating.Start(stepflow.None{}), nil)
		}, []string{stepflowtest.InvariantRuns}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r recorder
			assert.Equal(t, len(tt.broken) == 0, tt.check(&r))
			var got []string
			for _, e := range r.errs {
				i := strings.Index(e, "invariant \"")
				if assert.GreaterOrEqual(t, i, 0, e) {
					name := e[i+len("invariant \""):]
					got = append(got, name[:strings.IndexByte(name, '"')])
				}
			}
			assert.Equal(t, tt.broken, got, "%v", r.errs)
		})
	}
}

func TestCheckInvariantsMaxCrashes(t *testing.T) {
	var counter atomic.Int64
	flow := ticketFlow(&counter)
	for _, tt := range []struct{ max, runs int }{{0, 4}, {1, 3}, {5, 4}} {
		runs := 0
		assert.True(t, stepflowtest.CheckInvariants(t, flow, flow.Start(ticketData{}), &stepflowtest.InvariantOptions[ticketData]{
			Reset: func() { counter.Store(0); runs++ }, IgnoreData: true, MaxCrashes: tt.max,
		}))
		assert.Equal(t, tt.runs, runs, "base run, determinism run and a crash run per step, at most %d", tt.max)
	}
}

// Whatever the outcomes of its calls, the order flow keeps its invariants.
func TestCheckInvariantsUnderFaults(t *testing.T) {
	flow := orderFlow()
	rapid.Check(t, func(t *rapid.T) {
		script := stepflowtest.OutcomeScript(stepflowtest.Leaves(flow)).Draw(t, "script")
		item := rapid.SampledFrom([]string{"book", "gift card"}).Draw(t, "item")
		stepflowtest.CheckInvariants(t, flow, flow.Start(Order{Item: item}), &stepflowtest.InvariantOptions[Order]{Script: script})
	})
}
