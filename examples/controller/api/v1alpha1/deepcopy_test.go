package v1alpha1

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"pgregory.net/rapid"
)

// genRollout draws Rollouts with every pointer, slice and map either nil or
// filled, so the copy functions meet every shape.
func genRollout() *rapid.Generator[*Rollout] {
	return rapid.Custom(func(t *rapid.T) *Rollout {
		ro := &Rollout{}
		ro.Name = rapid.StringMatching(`[a-z]{1,8}`).Draw(t, "name")
		ro.Labels = rapid.MapOfN(rapid.StringMatching(`[a-z]{1,4}`), rapid.String(), 0, 3).Draw(t, "labels")
		ro.Finalizers = rapid.SliceOfN(rapid.String(), 0, 2).Draw(t, "finalizers")
		ro.Spec.App = rapid.String().Draw(t, "app")
		ro.Spec.Image = rapid.String().Draw(t, "image")
		if rapid.Bool().Draw(t, "hasReplicas") {
			n := rapid.Int32().Draw(t, "replicas")
			ro.Spec.Replicas = &n
		}
		ro.Status.ObservedGeneration = rapid.Int64().Draw(t, "observed")
		ro.Status.LastError = rapid.String().Draw(t, "lastError")
		if rapid.Bool().Draw(t, "hasWake") {
			w := metav1.NewTime(time.Unix(rapid.Int64Range(0, 1<<32).Draw(t, "wake"), 0))
			ro.Status.WakeAt = &w
		}
		for i := range rapid.IntRange(0, 3).Draw(t, "conditions") {
			ro.Status.Conditions = append(ro.Status.Conditions, metav1.Condition{
				Type: []string{ConditionProgressing, ConditionReady, ConditionFailed}[i], Status: metav1.ConditionTrue,
				Reason: rapid.StringMatching(`[A-Z][a-z]{0,6}`).Draw(t, "reason"),
			})
		}
		if rapid.Bool().Draw(t, "hasState") {
			word := rapid.StringMatching(`[a-y]{1,8}`).Draw(t, "state")
			ro.Status.State = &runtime.RawExtension{Raw: []byte(`{"w":"` + word + `"}`)}
		}
		return ro
	})
}

// A deep copy equals its source and shares no memory with it: scribbling
// over every reachable part of the copy leaves the source as it was.
func TestDeepCopy(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src := genRollout().Draw(t, "rollout")
		// The snapshot must not come from DeepCopy, which is under test.
		before, err := json.Marshal(src)
		require.NoError(t, err)
		cp := src.DeepCopy()
		require.True(t, equality.Semantic.DeepEqual(src, cp))

		cp.Labels["scribble"] = "x"
		for i := range cp.Finalizers {
			cp.Finalizers[i] += "x"
		}
		if cp.Spec.Replicas != nil {
			*cp.Spec.Replicas++
		}
		if cp.Status.WakeAt != nil {
			cp.Status.WakeAt.Time = cp.Status.WakeAt.Add(time.Hour)
		}
		for i := range cp.Status.Conditions {
			cp.Status.Conditions[i].Reason += "X"
		}
		if cp.Status.State != nil {
			cp.Status.State.Raw[len(`{"w":"`)]++ // still valid JSON
		}
		after, err := json.Marshal(src)
		require.NoError(t, err)
		require.JSONEq(t, string(before), string(after), "the source changed through its copy")
	})
}

func TestDeepCopyList(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l := &RolloutList{Items: []Rollout{*genRollout().Draw(t, "a"), *genRollout().Draw(t, "b")}}
		obj := l.DeepCopyObject()
		cp, ok := obj.(*RolloutList)
		require.True(t, ok)
		require.True(t, equality.Semantic.DeepEqual(l, cp))
		cp.Items[0].Name += "x"
		assert.NotEqual(t, l.Items[0].Name, cp.Items[0].Name)
	})
	var nilList *RolloutList
	assert.Nil(t, nilList.DeepCopy())
	var nilRollout *Rollout
	assert.Nil(t, nilRollout.DeepCopy())
}

func TestDesiredReplicas(t *testing.T) {
	var s RolloutSpec
	assert.Equal(t, int32(1), s.DesiredReplicas())
	n := int32(0)
	s.Replicas = &n
	assert.Equal(t, int32(0), s.DesiredReplicas())
}
