package controller

import (
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

func TestReasonFor(t *testing.T) {
	tests := []struct{ path, want string }{
		{"wait-available", "WaitAvailable"},
		{PathAvailable, "RolloutStepsAvailable"},
		{PathDeployment, "RolloutStepsApplyDeployment"},
		{"deploy/wait-available", "DeployWaitAvailable"},
		{"rollout/steps/apply-deployment", "RolloutStepsApplyDeployment"},
		{"retry_2/do.it", "Retry2DoIt"},
		{"3rd-step", "Step3rdStep"},
		{"", "Step"},
		{"---", "Step"},
		{"déploiement", "DPloiement"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, reasonFor(tt.path), "path %q", tt.path)
	}
}

// The API server rejects conditions whose reason does not match this.
var reasonPattern = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)

func TestReasonForIsAlwaysValid(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := reasonFor(rapid.String().Draw(t, "path"))
		require.Regexp(t, reasonPattern, r)
		require.LessOrEqual(t, len(r), 1024)
	})
}

func TestTruncate(t *testing.T) {
	assert.Equal(t, "short", truncate("short", 10))
	assert.Equal(t, "ab…", truncate("abcdefgh", 5))
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.String().Draw(t, "s")
		n := rapid.IntRange(4, 64).Draw(t, "n")
		got := truncate(s, n)
		require.LessOrEqual(t, len(got), n)
		require.True(t, utf8.ValidString(got) || !utf8.ValidString(s))
		if len(s) <= n {
			require.Equal(t, s, got)
		} else {
			require.True(t, strings.HasSuffix(got, "…"))
		}
	})
}

// Each process status maps to one set of conditions, and a condition's
// transition time moves only when its status does.
func TestSetProcessStatus(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	running := stepflow.State[Plan]{Version: FlowVersion, Status: stepflow.Waiting, WakeAt: t0.Add(time.Minute),
		Root: stepflow.Frame{Children: []stepflow.Frame{{Name: PathAvailable}}}}
	failed := stepflow.State[Plan]{Version: FlowVersion, Status: stepflow.Failed,
		Err: &stepflow.Failure{Path: PathDeployment, Kind: stepflow.KindError, Message: "quota exceeded"}}
	done := stepflow.State[Plan]{Version: FlowVersion, Status: stepflow.Done}
	canceled := stepflow.State[Plan]{Version: FlowVersion, Status: stepflow.Canceled}

	type want struct{ progressing, ready, failed, reason string }
	tests := []struct {
		st   stepflow.State[Plan]
		want want
	}{
		{running, want{"True", "False", "False", "RolloutStepsAvailable"}},
		{done, want{"False", "True", "False", ReasonComplete}},
		{failed, want{"False", "False", "True", "RolloutStepsApplyDeployment"}},
		{canceled, want{"False", "False", "False", ReasonCanceled}},
	}
	for _, tt := range tests {
		var s v1alpha1.RolloutStatus
		setProcessStatus(&s, 7, tt.st, "why", t0)
		assert.Equal(t, int64(7), s.ObservedGeneration)
		assert.Equal(t, tt.st.Status.String(), s.Phase)
		got := want{
			string(meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionProgressing).Status),
			string(meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionReady).Status),
			string(meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionFailed).Status),
			meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionReady).Reason,
		}
		assert.Equal(t, tt.want, got, "%s", tt.st.Status)
		for _, c := range s.Conditions {
			assert.Regexp(t, reasonPattern, c.Reason)
			assert.Equal(t, int64(7), c.ObservedGeneration)
		}
	}

	var s v1alpha1.RolloutStatus
	setProcessStatus(&s, 1, running, "why", t0)
	setProcessStatus(&s, 1, running, "why later", t0.Add(time.Minute))
	c := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionProgressing)
	assert.Equal(t, metav1.NewTime(t0), c.LastTransitionTime, "same status, same transition time")
	setProcessStatus(&s, 1, failed, "why", t0.Add(2*time.Minute))
	c = meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionFailed)
	assert.Equal(t, metav1.NewTime(t0.Add(2*time.Minute)), c.LastTransitionTime)
	assert.Equal(t, "quota exceeded", c.Message)
}
