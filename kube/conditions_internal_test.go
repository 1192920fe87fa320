package kube

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

	"github.com/stepflow-io/go-stepflow/stepflow"
)

func TestReason(t *testing.T) {
	tests := []struct{ path, want string }{
		{"wait-available", "WaitAvailable"},
		{"rollout/steps/available", "RolloutStepsAvailable"},
		{"rollout/steps/apply/deployment", "RolloutStepsApplyDeployment"},
		{"retry_2/do.it", "Retry2DoIt"},
		{"3rd-step", "Step3rdStep"},
		{"", "Step"},
		{"---", "Step"},
		{"déploiement", "DPloiement"},
		{"each/[3]/step", "Each3Step"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Reason(tt.path), "path %q", tt.path)
	}
}

// The API server rejects conditions whose reason or type do not match
// these (the schema of metav1.Condition).
var (
	reasonPattern = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)
	typePattern   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$`)
)

func TestReasonIsAlwaysValid(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := Reason(rapid.String().Draw(t, "path"))
		require.Regexp(t, reasonPattern, r)
		require.LessOrEqual(t, len(r), maxReason)
	})
}

// Every step path gives a condition type the API server accepts, and two
// long paths that differ only at their end give two types.
func TestStepConditionTypeIsAlwaysValid(t *testing.T) {
	o := StepConditions{}.withDefaults()
	rapid.Check(t, func(t *rapid.T) {
		path := rapid.String().Draw(t, "path")
		typ, ok := stepConditionType(&stepflow.NodeInfo{Info: stepflow.Info{Leaf: true}, Path: path}, &o)
		require.True(t, ok)
		require.Regexp(t, typePattern, typ)
		require.NoError(t, checkConditionType(typ))
	})
	long := strings.Repeat("segment/", 20)
	assert.NotEqual(t, stepConditionName(long+"a"), stepConditionName(long+"b"))
	assert.Len(t, stepConditionName(long+"a"), maxTypeName)
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
func TestSetProcessConditions(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	waiting := stepflow.Description{Status: stepflow.Waiting, Positions: []string{"deploy/wait"}, Why: "waiting"}
	failed := stepflow.Description{Status: stepflow.Failed, Why: "failed",
		Err: &stepflow.Failure{Path: "deploy/apply", Kind: stepflow.KindError, Message: "quota exceeded"}}
	done := stepflow.Description{Status: stepflow.Done, Why: "the flow completed"}
	canceled := stepflow.Description{Status: stepflow.Canceled, Why: "canceled"}
	stuck := stepflow.Description{Status: stepflow.NeedsAttention, Why: "needs a person"}

	type want struct{ progressing, ready, failed, reason string }
	tests := []struct {
		d    stepflow.Description
		want want
	}{
		{waiting, want{"True", "False", "False", "DeployWait"}},
		{done, want{"False", "True", "False", ReasonComplete}},
		{failed, want{"False", "False", "True", "DeployApply"}},
		{canceled, want{"False", "False", "False", ReasonCanceled}},
		{stuck, want{"False", "False", "False", ReasonNeedsAttention}},
	}
	for _, tt := range tests {
		var ps ProcessStatus
		setProcessConditions(conditions{ps: &ps, gen: 7, now: metav1.NewTime(t0)}, &tt.d, "process", "")
		got := want{
			string(meta.FindStatusCondition(ps.Conditions, ConditionProgressing).Status),
			string(meta.FindStatusCondition(ps.Conditions, ConditionReady).Status),
			string(meta.FindStatusCondition(ps.Conditions, ConditionFailed).Status),
			meta.FindStatusCondition(ps.Conditions, ConditionReady).Reason,
		}
		assert.Equal(t, tt.want, got, "%s", tt.d.Status)
		for _, c := range ps.Conditions {
			assert.Regexp(t, reasonPattern, c.Reason)
			assert.Equal(t, int64(7), c.ObservedGeneration)
		}
	}

	var ps ProcessStatus
	setProcessConditions(conditions{ps: &ps, gen: 1, now: metav1.NewTime(t0)}, &waiting, "process", "")
	setProcessConditions(conditions{ps: &ps, gen: 1, now: metav1.NewTime(t0.Add(time.Minute))}, &waiting, "process", "")
	c := meta.FindStatusCondition(ps.Conditions, ConditionProgressing)
	assert.Equal(t, metav1.NewTime(t0), c.LastTransitionTime, "same status, same transition time")
	setProcessConditions(conditions{ps: &ps, gen: 1, now: metav1.NewTime(t0.Add(2 * time.Minute))}, &failed, "process", "")
	c = meta.FindStatusCondition(ps.Conditions, ConditionFailed)
	assert.Equal(t, metav1.NewTime(t0.Add(2*time.Minute)), c.LastTransitionTime)
	assert.Equal(t, "quota exceeded", c.Message)
}

// With more steps than the bound, the current and failed steps stay, then
// the latest done, then the others.
func TestStepConditionsBound(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := func(path string, s stepflow.NodeStatus, end time.Duration) stepflow.NodeState {
		return stepflow.NodeState{NodeInfo: stepflow.NodeInfo{Info: stepflow.Info{Leaf: true}, Path: path}, Status: s, LastEnd: t0.Add(end)}
	}
	d := stepflow.Description{Nodes: []stepflow.NodeState{
		leaf("a", stepflow.NodeDone, 1),
		leaf("b", stepflow.NodeDone, 2),
		{NodeInfo: stepflow.NodeInfo{Path: "group"}, Status: stepflow.NodeActive}, // not a step
		leaf("c", stepflow.NodeWaiting, 0),
		leaf("d", stepflow.NodePending, 0),
		leaf("e", stepflow.NodeSkipped, 0),
	}}
	o := StepConditions{Max: 3}.withDefaults()
	var ps ProcessStatus
	setStepConditions(conditions{ps: &ps, gen: 1, now: metav1.NewTime(t0)}, &d, &o, nil)
	var types []string
	for _, c := range ps.Conditions {
		types = append(types, strings.TrimPrefix(c.Type, o.Prefix))
	}
	assert.Equal(t, []string{"A", "B", "C"}, types, "flow order, c first kept, then b and a")

	o.Max = 2
	setStepConditions(conditions{ps: &ps, gen: 1, now: metav1.NewTime(t0)}, &d, &o, nil)
	types = nil
	for _, c := range ps.Conditions {
		types = append(types, strings.TrimPrefix(c.Type, o.Prefix))
	}
	assert.Equal(t, []string{"B", "C"}, types, "the earliest done step gave way")
}
