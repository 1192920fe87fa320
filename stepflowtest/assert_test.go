package stepflowtest_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// recorder is a TestingT that keeps what it is told.
type recorder struct{ errs []string }

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestAssertions(t *testing.T) {
	book := run(t, "book", nil)
	failed := run(t, "book", stepflowtest.Script{"physical/ship": stepflowtest.Calls(stepflowtest.Fail)})
	tests := []struct {
		name    string
		check   func(stepflowtest.TestingT) bool
		ok      bool
		message string
	}{
		{"visited in order", func(t stepflowtest.TestingT) bool {
			return stepflowtest.VisitedInOrder(t, book, "reserve", "physical/ship", "mail")
		}, true, ""},
		{"visited a parent", func(t stepflowtest.TestingT) bool {
			return stepflowtest.VisitedInOrder(t, book, "paid", "physical")
		}, true, ""},
		{"visited out of order", func(t stepflowtest.TestingT) bool {
			return stepflowtest.VisitedInOrder(t, book, "mail", "reserve")
		}, false, `"reserve" was not visited after [mail]`},
		{"visited a missing node", func(t stepflowtest.TestingT) bool {
			return stepflowtest.VisitedInOrder(t, book, "physical/refund")
		}, false, `"physical/refund" was not visited`},
		{"never visited", func(t stepflowtest.TestingT) bool {
			return stepflowtest.NeverVisited(t, book, "physical/refund", "phys")
		}, true, ""},
		{"visited after all", func(t stepflowtest.TestingT) bool {
			return stepflowtest.NeverVisited(t, book, "physical")
		}, false, `flow visited "physical" (call at physical attempt 1)`},
		{"completes within", func(t stepflowtest.TestingT) bool {
			return stepflowtest.CompletesWithin(t, book, 5)
		}, true, ""},
		{"completes too late", func(t stepflowtest.TestingT) bool {
			return stepflowtest.CompletesWithin(t, book, 4)
		}, false, "flow completed after 5 applies, want at most 4"},
		{"does not complete", func(t stepflowtest.TestingT) bool {
			return stepflowtest.CompletesWithin(t, failed, 100)
		}, false, "flow ended failed, want done"},
		{"ends with", func(t stepflowtest.TestingT) bool {
			return stepflowtest.EndsWith(t, failed, stepflow.Done, stepflow.Failed)
		}, true, ""},
		{"ends otherwise", func(t stepflowtest.TestingT) bool {
			return stepflowtest.EndsWith(t, failed, stepflow.Done)
		}, false, "flow ended failed, want one of [done]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r recorder
			assert.Equal(t, tt.ok, tt.check(&r))
			if tt.ok {
				assert.Empty(t, r.errs)
				return
			}
			if assert.Len(t, r.errs, 1) {
				assert.Contains(t, r.errs[0], tt.message)
				assert.Contains(t, r.errs[0], "flow order/v1\n", "the failure shows the trace")
			}
		})
	}
}
