package stepflowtest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

func TestGolden(t *testing.T) {
	tr := run(t, "book", stepflowtest.Script{
		"paid":          stepflowtest.Times(stepflowtest.False, 2),
		"physical/ship": stepflowtest.Calls(stepflowtest.Crash),
	})
	stepflowtest.Golden(t, tr, "order-book")
	stepflowtest.Golden(t, run(t, "gift card", stepflowtest.Script{"mail": stepflowtest.Calls(stepflowtest.Panic)}), "order-gift-card-panic")

	if stepflowtest.Update() {
		return
	}
	var r recorder
	assert.False(t, stepflowtest.GoldenText(&r, "flow order/v2\n", "order-book"))
	if assert.Len(t, r.errs, 1) {
		assert.Contains(t, r.errs[0], "differs at line 1:")
		assert.Contains(t, r.errs[0], "- flow order/v1")
		assert.Contains(t, r.errs[0], "+ flow order/v2")
		assert.Contains(t, r.errs[0], "-update")
	}
	r = recorder{}
	assert.False(t, stepflowtest.GoldenText(&r, "x", "missing"))
	if assert.Len(t, r.errs, 1) {
		assert.Contains(t, r.errs[0], "run the test with -update to create it")
	}
}
