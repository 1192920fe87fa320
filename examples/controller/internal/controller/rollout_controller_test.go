package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

// A Rollout goes from nothing to Ready through reconciles that honour
// RequeueAfter, while the fake Deployment controller takes its time.
func TestReconcileRollsOutToReady(t *testing.T) {
	e := newEnv(t, nil, newRollout())
	start := e.clock.Now()

	// The first reconcile sets the finalizer, writes the ConfigMap and the
	// Deployment, polls the Deployment once and waits for the next poll.
	res := e.mustReconcile()
	assert.Equal(t, DefaultPollInitial, res.RequeueAfter)

	ro := e.rollout()
	assert.True(t, controllerutil.ContainsFinalizer(ro, Finalizer))
	assert.Equal(t, "waiting", ro.Status.Phase)
	assert.Equal(t, PathAvailable, ro.Status.Step)
	assert.Equal(t, FlowVersion, ro.Status.FlowVersion)
	assert.Equal(t, int64(1), ro.Status.ObservedGeneration)
	require.NotNil(t, ro.Status.WakeAt)
	assert.True(t, ro.Status.WakeAt.Time.Equal(start.Add(DefaultPollInitial)))
	c := requireCondition(t, ro, v1alpha1.ConditionProgressing, metav1.ConditionTrue, "RolloutStepsAvailable")
	assert.Contains(t, c.Message, "waiting until")
	assert.True(t, c.LastTransitionTime.Time.Equal(start), "transition time from the injected clock")
	requireCondition(t, ro, v1alpha1.ConditionReady, metav1.ConditionFalse, "RolloutStepsAvailable")
	requireCondition(t, ro, v1alpha1.ConditionFailed, metav1.ConditionFalse, kube.ReasonNoFailure)

	// The state is plain JSON in the object, readable with kubectl.
	var doc struct {
		Format int `json:"stepflow"`
		State  struct {
			Version string `json:"version"`
			Status  string `json:"status"`
			Data    Plan   `json:"data"`
		} `json:"state"`
	}
	require.NoError(t, json.Unmarshal(ro.Status.State.Raw, &doc))
	assert.Equal(t, 1, doc.Format)
	assert.Equal(t, "waiting", doc.State.Status)
	assert.Equal(t, "registry.example/web:1.0", doc.State.Data.Image)
	assert.Equal(t, "uid-web/1", e.state().ID)

	// Side effects, each owned by the Rollout.
	var cm corev1.ConfigMap
	require.NoError(t, e.base.Get(e.ctx, types.NamespacedName{Namespace: "shop", Name: "web-config"}, &cm))
	assert.Equal(t, "staging", cm.Data["APP_ENVIRONMENT"])
	requireControlledByRollout(t, &cm)
	d := e.deployment()
	requireControlledByRollout(t, d)
	assert.Equal(t, int32(3), *d.Spec.Replicas)
	require.Len(t, d.Spec.Template.Spec.Containers, 1)
	assert.Equal(t, "registry.example/web:1.0", d.Spec.Template.Spec.Containers[0].Image)
	assert.Equal(t, e.state().Data.ConfigHash, d.Spec.Template.Annotations[annotConfigHash])
	assert.NotEmpty(t, d.Spec.Template.Annotations[annotConfigHash])

	// A reconcile before the wake time (a watch event, a resync) changes
	// nothing and asks again for the time that is left.
	rv := e.rollout().ResourceVersion
	e.clock.Advance(time.Second)
	res = e.mustReconcile()
	assert.Equal(t, DefaultPollInitial-time.Second, res.RequeueAfter)
	assert.Equal(t, rv, e.rollout().ResourceVersion, "no write when nothing happened")
	e.clock.Advance(res.RequeueAfter)

	// The Deployment becomes available on the third poll; the polls back off.
	var waits []time.Duration
	e.drive(20, func(i int) {
		if i == 2 {
			e.makeAvailable()
		}
		if ro := e.rollout(); ro.Status.WakeAt != nil {
			waits = append(waits, ro.Status.WakeAt.Sub(e.clock.Now()))
		}
	})
	assert.Equal(t, []time.Duration{0, 0, 0}, waits, "each reconcile ran when its poll was due")

	ro = e.rollout()
	assert.Equal(t, "done", ro.Status.Phase)
	assert.Empty(t, ro.Status.Step)
	assert.Nil(t, ro.Status.WakeAt)
	requireCondition(t, ro, v1alpha1.ConditionReady, metav1.ConditionTrue, kube.ReasonComplete)
	requireCondition(t, ro, v1alpha1.ConditionProgressing, metav1.ConditionFalse, kube.ReasonComplete)
	requireCondition(t, ro, v1alpha1.ConditionFailed, metav1.ConditionFalse, kube.ReasonNoFailure)
	st := e.state()
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, 2*time.Second+4*time.Second+8*time.Second, e.clock.Now().Sub(start), "backoff 2s, 4s, 8s")

	// Done is final: more reconciles write nothing.
	rv = e.rollout().ResourceVersion
	assert.Equal(t, ctrl.Result{}, e.mustReconcile())
	assert.Equal(t, rv, e.rollout().ResourceVersion)
}

func requireControlledByRollout(t *testing.T, obj metav1.Object) {
	t.Helper()
	ref := metav1.GetControllerOf(obj)
	require.NotNil(t, ref, "%s has no controller", obj.GetName())
	assert.Equal(t, "Rollout", ref.Kind)
	assert.Equal(t, v1alpha1.GroupVersion.String(), ref.APIVersion)
	assert.Equal(t, types.UID("uid-web"), ref.UID)
}

// Failures end in Failed=True with the step as reason and the error as
// message, and no requeue: nothing more can happen until the spec changes.
func TestReconcileFailures(t *testing.T) {
	invalid := apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "web",
		field.ErrorList{field.Invalid(field.NewPath("spec", "template", "spec", "containers").Index(0).Child("image"), "", "image is rejected by policy")})
	foreign := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{
		Namespace: "shop", Name: "web",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "other", UID: "uid-other", Controller: ptr(true)}},
	}}
	unavailable := &interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if _, ok := obj.(*appsv1.Deployment); ok {
			return apierrors.NewServiceUnavailable("etcd is busy")
		}
		return c.Create(ctx, obj, opts...)
	}}
	const unchecked = -1
	tests := []struct {
		name    string
		funcs   *interceptor.Funcs
		objs    []client.Object
		reason  string
		message []string
		elapsed time.Duration
	}{{
		name:    "retries run out",
		funcs:   unavailable,
		reason:  "RolloutStepsApplyDeployment",
		message: []string{"deployment shop/web", "etcd is busy"},
		elapsed: unchecked, // four jittered retry delays
	}, {
		name: "deployment rejected",
		funcs: &interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*appsv1.Deployment); ok {
				return invalid
			}
			return c.Create(ctx, obj, opts...)
		}},
		reason:  "RolloutStepsApplyDeployment",
		message: []string{"deployment shop/web", "image is rejected by policy"},
	}, {
		name:    "deployment owned by someone else",
		objs:    []client.Object{foreign},
		reason:  "RolloutStepsApplyDeployment",
		message: []string{"deployment shop/web", "already owned by another ReplicaSet controller other"},
	}, {
		name:    "deployment never available",
		reason:  "RolloutStepsAvailable",
		message: []string{"timed out after 10m0s"},
		elapsed: DefaultReadyTimeout,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.funcs, append(tt.objs, newRollout())...)
			start := e.clock.Now()
			res := e.drive(50, nil)
			assert.Equal(t, ctrl.Result{}, res)
			if tt.elapsed != unchecked {
				assert.Equal(t, tt.elapsed, e.clock.Now().Sub(start))
			}

			ro := e.rollout()
			assert.Equal(t, "failed", ro.Status.Phase)
			c := requireCondition(t, ro, v1alpha1.ConditionFailed, metav1.ConditionTrue, tt.reason)
			for _, m := range tt.message {
				assert.Contains(t, c.Message, m)
			}
			requireCondition(t, ro, v1alpha1.ConditionReady, metav1.ConditionFalse, tt.reason)
			requireCondition(t, ro, v1alpha1.ConditionProgressing, metav1.ConditionFalse, tt.reason)
			st := e.state()
			require.NotNil(t, st.Err)
			assert.Equal(t, stepflow.Failed, st.Status)

			// Failed is final for this generation: no retry loop.
			rv := ro.ResourceVersion
			assert.Equal(t, ctrl.Result{}, e.mustReconcile())
			assert.Equal(t, rv, e.rollout().ResourceVersion)
		})
	}
}

func ptr[T any](v T) *T { return &v }

// A transient API error is retried by the flow: the reconcile succeeds,
// the state records the failed attempt and the time of the next one, and
// the reconciler comes back then.
func TestReconcileTransientErrorRetries(t *testing.T) {
	deploymentCreates := 0
	e := newEnv(t, &interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if _, ok := obj.(*appsv1.Deployment); ok {
			deploymentCreates++
			if deploymentCreates == 1 {
				return apierrors.NewServiceUnavailable("etcd is busy")
			}
		}
		return c.Create(ctx, obj, opts...)
	}}, newRollout())

	res := e.mustReconcile()
	ro := e.rollout()
	assert.Equal(t, "waiting", ro.Status.Phase)
	assert.Equal(t, "rollout/steps/apply", ro.Status.Step, "backing off before the next attempt")
	require.NotNil(t, ro.Status.WakeAt)
	assert.WithinDuration(t, e.clock.Now().Add(res.RequeueAfter), ro.Status.WakeAt.Time, time.Second, "metav1.Time keeps seconds")
	assert.Equal(t, e.state().WakeAt, e.clock.Now().Add(res.RequeueAfter), "the state keeps the exact time")
	assert.InDelta(t, float64(DefaultRetry.InitialInterval), float64(res.RequeueAfter), DefaultRetry.Jitter*float64(DefaultRetry.InitialInterval))
	requireCondition(t, ro, v1alpha1.ConditionFailed, metav1.ConditionFalse, kube.ReasonNoFailure)
	st := e.state()
	require.NotNil(t, st.Err, "the failed attempt is on record")
	assert.Contains(t, st.Err.Message, "etcd is busy")

	e.clock.Advance(res.RequeueAfter)
	res = e.mustReconcile()
	assert.Equal(t, DefaultPollInitial, res.RequeueAfter)
	assert.Equal(t, 2, deploymentCreates)
	assert.Equal(t, PathAvailable, e.rollout().Status.Step)
}

// Deleting a Rollout mid-flight cancels its process, tears down what it
// created, Deployment first, and then releases the object.
func TestReconcileDeletionTearsDown(t *testing.T) {
	var deleted, phases []string
	e := newEnv(t, &interceptor.Funcs{
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			// The fake client checks no UID precondition; the API server does.
			do := (&client.DeleteOptions{}).ApplyOptions(opts)
			if p := do.Preconditions; p != nil && p.UID != nil {
				current := obj.DeepCopyObject().(client.Object)
				if err := c.Get(ctx, client.ObjectKeyFromObject(obj), current); err != nil {
					return err
				}
				if current.GetUID() != *p.UID {
					return apierrors.NewConflict(schema.GroupResource{}, obj.GetName(), fmt.Errorf("UID precondition %s, object has %s", *p.UID, current.GetUID()))
				}
			}
			deleted = append(deleted, fmt.Sprintf("%T %s", obj, obj.GetName()))
			return c.Delete(ctx, obj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			phases = append(phases, obj.(*v1alpha1.Rollout).Status.Phase)
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
	}, newRollout())
	// An object of the same kind that the Rollout does not control.
	bystander := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-settings"}}
	require.NoError(t, e.base.Create(e.ctx, bystander))

	res := e.mustReconcile()
	require.Equal(t, DefaultPollInitial, res.RequeueAfter, "mid-flight: waiting for the Deployment")

	require.NoError(t, e.base.Delete(e.ctx, e.rollout()))
	require.False(t, e.rollout().DeletionTimestamp.IsZero(), "the finalizer holds the object")
	// The API server bumps metadata.generation when it marks an object for
	// deletion; the fake client does not, so the test does.
	ro := e.rollout()
	ro.Generation++
	require.NoError(t, e.base.Update(e.ctx, ro))

	assert.Equal(t, ctrl.Result{}, e.mustReconcile())

	assert.Equal(t, []string{"waiting", "canceled"}, phases, "the canceled process was recorded before the object went")
	var gone v1alpha1.Rollout
	assert.True(t, apierrors.IsNotFound(e.base.Get(e.ctx, e.key, &gone)), "finalizer removed, object gone")
	assert.True(t, apierrors.IsNotFound(e.base.Get(e.ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, &appsv1.Deployment{})))
	assert.True(t, apierrors.IsNotFound(e.base.Get(e.ctx, types.NamespacedName{Namespace: "shop", Name: "web-config"}, &corev1.ConfigMap{})))
	assert.NoError(t, e.base.Get(e.ctx, client.ObjectKeyFromObject(bystander), &corev1.ConfigMap{}), "objects the Rollout does not control stay")
	assert.Equal(t, []string{"*v1.Deployment web", "*v1.ConfigMap web-config"}, deleted)

	// A reconcile for the vanished object is a no-op.
	assert.Equal(t, ctrl.Result{}, e.mustReconcile())
}

// Deleting a Rollout whose process has ended, or whose state is unreadable,
// has nothing to cancel: the finalizer goes at once.
func TestReconcileDeletionWithoutProcess(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *env)
	}{
		{"done", func(e *env) {
			e.mustReconcile()
			e.makeAvailable()
			e.drive(10, nil)
			require.Equal(t, "done", e.rollout().Status.Phase)
		}},
		{"unreadable", func(e *env) {
			e.mustReconcile()
			ro := e.rollout()
			ro.Status.State = &runtime.RawExtension{Raw: []byte(`{"stepflow":1,"state":{"status":"exploded"}}`)}
			require.NoError(t, e.base.Status().Update(e.ctx, ro))
			e.mustReconcile()
			require.Equal(t, kube.PhaseUnreadable, e.rollout().Status.Phase)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, newRollout())
			tt.setup(e)
			rv := e.rollout().ResourceVersion
			require.NoError(t, e.base.Delete(e.ctx, e.rollout()))
			require.NotEqual(t, rv, e.rollout().ResourceVersion)

			assert.Equal(t, ctrl.Result{}, e.mustReconcile())
			assert.True(t, apierrors.IsNotFound(e.base.Get(e.ctx, e.key, &v1alpha1.Rollout{})))
			// No cleanup ran: the Deployment is left to the garbage
			// collector, which the owner reference points at the Rollout.
			requireControlledByRollout(t, e.deployment())
		})
	}
}

// When another writer (a second replica during a leader hand-over, or a
// reconcile that read a fresher cache) stores a newer state between our
// read and our write, our write loses and the newer state stays.
func TestReconcileConflictKeepsNewerState(t *testing.T) {
	var e *env
	var other *RolloutReconciler
	conflicts := 0
	funcs := &interceptor.Funcs{SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
		if conflicts == 0 {
			// The other writer sees the Deployment available and completes
			// the rollout, writing first.
			e.makeAvailable()
			res, err := other.Reconcile(ctx, ctrl.Request{NamespacedName: e.key})
			require.NoError(t, err)
			require.Equal(t, ctrl.Result{}, res)
			require.Equal(t, "done", e.rollout().Status.Phase)
		}
		err := c.SubResource(sub).Update(ctx, obj, opts...)
		if apierrors.IsConflict(err) {
			conflicts++
		}
		return err
	}}
	e = newEnv(t, funcs, newRollout())
	other = e.reconciler(e.base)

	res, err := e.reconcile()
	require.NoError(t, err, "a conflict is not an error")
	assert.Equal(t, kube.RequeueConflict, res.RequeueAfter)
	assert.Equal(t, 1, conflicts, "the fake API server refused the stale write")

	ro := e.rollout()
	assert.Equal(t, "done", ro.Status.Phase, "the newer state was not overwritten")
	requireCondition(t, ro, v1alpha1.ConditionReady, metav1.ConditionTrue, kube.ReasonComplete)
	assert.Equal(t, stepflow.Done, e.state().Status)

	// The requeued reconcile continues from the newer state.
	e.clock.Advance(res.RequeueAfter)
	assert.Equal(t, ctrl.Result{}, e.mustReconcile())
	assert.Equal(t, "done", e.rollout().Status.Phase)
}

// A stored state that cannot be read gets Failed=True with a clear
// message, once, instead of an error that would be retried forever.
func TestReconcileUnreadableState(t *testing.T) {
	valid := func(st stepflow.State[Plan]) string {
		b, err := json.Marshal(map[string]any{"stepflow": 1, "state": st})
		require.NoError(t, err)
		return string(b)
	}
	tests := []struct {
		name, raw, want string
	}{
		{"not a state", `{"hello":"world"}`, "not a stepflow state"},
		{"unknown status", `{"stepflow":1,"state":{"version":"rollout/v1","status":"exploded","steps":1,"root":{},"data":{}}}`, "unknown status"},
		{"newer format", `{"stepflow":99,"state":{}}`, "unsupported format version"},
		{"wrong type", `{"stepflow":1,"state":{"version":"rollout/v1","status":"running","steps":"many","root":{},"data":{}}}`, "corrupt state"},
		{"unknown step", valid(stepflow.State[Plan]{Version: FlowVersion, Status: stepflow.Running, Steps: 2,
			Root: stepflow.Frame{Children: []stepflow.Frame{{Name: "launch-rockets"}}}}), `"launch-rockets": no such node`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ro := newRollout()
			ro.Finalizers = []string{Finalizer}
			ro.Status = v1alpha1.RolloutStatus{ProcessStatus: kube.ProcessStatus{ObservedGeneration: 1, Phase: "running", State: &runtime.RawExtension{Raw: []byte(tt.raw)}}}
			e := newEnv(t, nil, ro)

			res, err := e.reconcile()
			require.NoError(t, err)
			assert.Equal(t, ctrl.Result{}, res, "no requeue: retrying cannot help")

			got := e.rollout()
			c := requireCondition(t, got, v1alpha1.ConditionFailed, metav1.ConditionTrue, kube.ReasonStateUnreadable)
			assert.Contains(t, c.Message, tt.want)
			assert.Contains(t, c.Message, "change the spec")
			requireCondition(t, got, v1alpha1.ConditionReady, metav1.ConditionFalse, kube.ReasonStateUnreadable)
			assert.Equal(t, kube.PhaseUnreadable, got.Status.Phase)
			assert.JSONEq(t, tt.raw, string(got.Status.State.Raw), "the state is kept for inspection")
			err = e.base.Get(e.ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, &appsv1.Deployment{})
			assert.True(t, apierrors.IsNotFound(err), "no step ran")

			// Reconciling again neither writes nor fails.
			rv := got.ResourceVersion
			assert.Equal(t, ctrl.Result{}, e.mustReconcile())
			assert.Equal(t, rv, e.rollout().ResourceVersion)

			// A new spec starts a new rollout.
			got.Spec.Image = "registry.example/web:1.1"
			got.Generation = 2
			require.NoError(t, e.base.Update(e.ctx, got))
			e.mustReconcile()
			got = e.rollout()
			assert.Equal(t, "waiting", got.Status.Phase)
			requireCondition(t, got, v1alpha1.ConditionFailed, metav1.ConditionFalse, kube.ReasonNoFailure)
		})
	}
}

// A spec change mid-flight abandons the running process and starts one for
// the new spec.
func TestReconcileSpecChangeRestarts(t *testing.T) {
	e := newEnv(t, nil, newRollout())
	e.mustReconcile()
	first := e.state()
	require.Equal(t, stepflow.Waiting, first.Status)

	ro := e.rollout()
	ro.Spec.Image = "registry.example/web:2.0"
	ro.Spec.Replicas = ptr(int32(5))
	ro.Generation = 2
	require.NoError(t, e.base.Update(e.ctx, ro))
	e.clock.Advance(time.Second) // before the old process's wake time

	res := e.mustReconcile()
	assert.Equal(t, DefaultPollInitial, res.RequeueAfter, "the new process polls on its own schedule")
	st := e.state()
	assert.Equal(t, "uid-web/2", st.ID)
	assert.Equal(t, int64(2), st.Data.Generation)
	assert.Equal(t, int32(5), st.Data.Replicas)
	d := e.deployment()
	assert.Equal(t, "registry.example/web:2.0", d.Spec.Template.Spec.Containers[0].Image)
	assert.Equal(t, int32(5), *d.Spec.Replicas)
	ro = e.rollout()
	assert.Equal(t, int64(2), ro.Status.ObservedGeneration)
	requireCondition(t, ro, v1alpha1.ConditionProgressing, metav1.ConditionTrue, "RolloutStepsAvailable")

	e.clock.Advance(res.RequeueAfter)
	e.drive(10, func(i int) {
		if i == 0 {
			e.makeAvailable()
		}
	})
	requireCondition(t, e.rollout(), v1alpha1.ConditionReady, metav1.ConditionTrue, kube.ReasonComplete)
}

// A state written by a flow version the controller does not know is
// restarted on this one.
func TestReconcileOtherFlowVersionRestarts(t *testing.T) {
	old := stepflow.State[Plan]{Version: "rollout/v0", Status: stepflow.Running, Steps: 1,
		Root: stepflow.Frame{Children: []stepflow.Frame{{Name: "render"}}}}
	raw, err := json.Marshal(map[string]any{"stepflow": 1, "state": old})
	require.NoError(t, err)
	ro := newRollout()
	ro.Finalizers = []string{Finalizer}
	ro.Status = v1alpha1.RolloutStatus{ProcessStatus: kube.ProcessStatus{ObservedGeneration: 1, FlowVersion: "rollout/v0", State: &runtime.RawExtension{Raw: raw}}}
	e := newEnv(t, nil, ro)

	e.mustReconcile()
	got := e.rollout()
	assert.Equal(t, FlowVersion, got.Status.FlowVersion)
	assert.Equal(t, "waiting", got.Status.Phase)
	assert.Equal(t, FlowVersion, e.state().Version)
}

// MaxSteps bounds the work of one reconcile; a runnable process is
// requeued at once.
func TestReconcileMaxSteps(t *testing.T) {
	e := newEnv(t, nil, newRollout())
	r, err := NewRolloutReconciler(e.client, e.scheme, &Options{Clock: e.clock, MaxSteps: 1})
	require.NoError(t, err)
	e.r = r

	var steps []string
	for range 3 {
		res := e.mustReconcile()
		steps = append(steps, e.rollout().Status.Step)
		if e.rollout().Status.Phase == "running" {
			assert.Equal(t, kube.DefaultRequeueRunnable, res.RequeueAfter)
		}
	}
	assert.Equal(t, []string{PathDeployment, PathAvailable, PathAvailable}, steps)
	assert.Equal(t, uint64(3), e.state().Steps)
}

// A lost status write is a requeue, a vanished object the end.
func TestWriteResult(t *testing.T) {
	ctx := context.Background()
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "examples.stepflow.io", Resource: "rollouts"}, "web", errors.New("stale"))
	res, err := kube.WriteResult(ctx, conflict)
	assert.NoError(t, err)
	assert.Equal(t, kube.RequeueConflict, res.RequeueAfter)

	res, err = kube.WriteResult(ctx, apierrors.NewNotFound(schema.GroupResource{Resource: "rollouts"}, "web"))
	assert.NoError(t, err)
	assert.Equal(t, ctrl.Result{}, res)

	boom := errors.New("boom")
	_, err = kube.WriteResult(ctx, boom)
	assert.ErrorIs(t, err, boom)
}

// olderFlow is rollout/v0, the release before FlowVersion as far as these
// tests are concerned: the wait for the Deployment was called "ready", and
// the cleanup had no retry around its step.
func olderFlow(t *testing.T, s *steps, o Options) *stepflow.Flow[Plan] {
	f, err := stepflow.NewWithOptions("rollout/v0", &stepflow.Options{Record: o.Record},
		combinators.Finally(PathRollout,
			combinators.Sequence("steps",
				combinators.Retry("apply", *o.Retry,
					combinators.Do("config", s.writeConfig),
					combinators.Do("deployment", s.applyDeployment)),
				combinators.WaitFor("ready", s.deploymentAvailable,
					combinators.Backoff(o.PollInitial, o.PollMax),
					combinators.Timeout(o.ReadyTimeout))),
			combinators.Do("teardown", s.cleanup)),
	)
	require.NoError(t, err)
	return f
}

// A controller that knows the older version and the migration continues
// an in-flight rollout of that version on the current one, instead of
// restarting it: the wait keeps its first poll and schedule, the steps
// already done are not done again, and the rollout completes.
func TestReconcileMigratesOlderFlowVersion(t *testing.T) {
	e := newEnv(t, nil, newRollout())
	o := Options{Clock: e.clock}.withDefaults()
	old := olderFlow(t, newSteps(e.client, e.scheme, nil), o)

	// A rollout/v0 process in flight: applied by hand up to the wait.
	ro := e.rollout()
	ro.Finalizers = []string{Finalizer}
	require.NoError(t, e.base.Update(e.ctx, ro))
	st := old.Start(newPlan(ro))
	st.ID = kube.ProcessID(ro)
	ctx := stepflow.WithClock(e.ctx, e.clock)
	var err error
	for st.Status != stepflow.Waiting {
		st, err = old.Apply(ctx, st)
		require.NoError(t, err)
	}
	require.Equal(t, []string{"rollout/steps/ready"}, st.Positions())
	raw, err := codec.JSON[Plan](nil).Encode(st)
	require.NoError(t, err)
	ro = e.rollout()
	ro.Status = v1alpha1.RolloutStatus{ProcessStatus: kube.ProcessStatus{ObservedGeneration: ro.Generation, FlowVersion: "rollout/v0", State: &runtime.RawExtension{Raw: raw}}}
	require.NoError(t, e.base.Status().Update(e.ctx, ro))
	deployment := e.deployment()

	e.r, err = NewRolloutReconciler(e.client, e.scheme, &Options{Clock: e.clock,
		Older: []*stepflow.Flow[Plan]{old},
		Migrations: []*versions.Migration[Plan]{versions.NewMigration[Plan]("rollout/v0", FlowVersion).
			Rename("rollout/steps/ready", "rollout/steps/available").
			Rename("rollout/teardown", "rollout/cleanup/teardown")}})
	require.NoError(t, err)
	e.clock.Advance(st.WakeAt.Sub(e.clock.Now()))
	e.mustReconcile()
	got := e.state()
	assert.Equal(t, FlowVersion, got.Version, "migrated")
	assert.Equal(t, st.ID, got.ID, "the same process, not a new one")
	assert.Greater(t, got.Steps, st.Steps, "it went on from where it was")
	assert.Equal(t, []string{"rollout/steps/available"}, got.Positions())
	assert.Equal(t, leaf(&st.Root).Since, leaf(&got.Root).Since, "the wait keeps its first poll: it was not started again")
	assert.Equal(t, st.Record, got.Record[:len(st.Record)], "the history of rollout/v0 is kept")
	assert.Equal(t, FlowVersion, e.rollout().Status.FlowVersion)
	assert.Equal(t, deployment.Generation, e.deployment().Generation, "the Deployment was not written again")

	e.drive(10, func(i int) {
		if i == 0 {
			e.makeAvailable()
		}
	})
	requireCondition(t, e.rollout(), v1alpha1.ConditionReady, metav1.ConditionTrue, kube.ReasonComplete)
}

// leaf returns the innermost frame of the first position.
func leaf(f *stepflow.Frame) *stepflow.Frame {
	for len(f.Children) > 0 {
		f = &f.Children[0]
	}
	return f
}
