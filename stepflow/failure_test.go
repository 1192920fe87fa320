package stepflow_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

func TestFailureDetailSaysThePathOnce(t *testing.T) {
	for _, tc := range []struct {
		f    stepflow.Failure
		want string
	}{
		{stepflow.Failure{Path: "deploy/rollout", Kind: "timeout", Message: `stepflow: step "deploy/rollout" timed out after 6s (started 2030-01-01T00:00:00Z)`},
			"timed out after 6s (started 2030-01-01T00:00:00Z)"},
		{stepflow.Failure{Path: "a", Kind: "panic", Message: `stepflow: step "a" panicked: boom`}, "panicked: boom"},
		{stepflow.Failure{Path: "a", Kind: "error", Message: "connection refused"}, "connection refused"},
		{stepflow.Failure{Path: "a", Kind: "timeout", Message: `stepflow: step "b" timed out after 1s`}, `step "b" timed out after 1s`},
		{stepflow.Failure{Path: "a", Kind: "guard", Message: "stepflow: guard refused"}, "guard refused"},
	} {
		assert.Equal(t, tc.want, tc.f.Detail(), tc.f.Message)
	}
	f := stepflow.Failure{Path: "deploy/rollout", Kind: "timeout", Message: `stepflow: step "deploy/rollout" timed out after 6s`}
	assert.Equal(t, "timeout at deploy/rollout: timed out after 6s", f.String())
}
