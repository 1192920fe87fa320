package controller

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// testScheme knows every type the controller touches.
func testScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	require.NoError(t, corev1.AddToScheme(s))
	require.NoError(t, appsv1.AddToScheme(s))
	require.NoError(t, v1alpha1.AddToScheme(s))
	return s
}

// newRollout returns the Rollout most tests use: 3 replicas of web:1.0 in
// staging. The fake client does not maintain metadata.generation, so tests
// set it themselves.
func newRollout() *v1alpha1.Rollout {
	replicas := int32(3)
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "uid-web", Generation: 1},
		Spec: v1alpha1.RolloutSpec{
			App: "web", Image: "registry.example/web:1.0", Environment: "staging", Replicas: &replicas,
		},
	}
}

// env is a reconciler wired to a fake API server and a fake clock.
type env struct {
	t      *testing.T
	ctx    context.Context
	clock  *stepflowtest.Clock
	scheme *runtime.Scheme
	// base is the fake API server; client is what the reconciler uses
	// (base itself, or base behind interceptors).
	base   client.WithWatch
	client client.Client
	r      *RolloutReconciler
	key    types.NamespacedName
}

// newEnv builds an env holding objs. funcs, if not nil, intercept the
// reconciler's client calls.
func newEnv(t *testing.T, funcs *interceptor.Funcs, objs ...client.Object) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), clock: stepflowtest.NewClock(time.Time{}), scheme: testScheme(t)}
	e.base = fake.NewClientBuilder().
		WithScheme(e.scheme).
		WithObjects(objs...).
		WithStatusSubresource(&v1alpha1.Rollout{}, &appsv1.Deployment{}).
		Build()
	e.client = e.base
	if funcs != nil {
		e.client = interceptor.NewClient(e.base, *funcs)
	}
	e.r = e.reconciler(e.client)
	e.key = types.NamespacedName{Namespace: "shop", Name: "web"}
	return e
}

// reconciler returns a reconciler on c sharing the env's clock.
func (e *env) reconciler(c client.Client) *RolloutReconciler {
	r, err := NewRolloutReconciler(c, e.scheme, &Options{Clock: e.clock})
	require.NoError(e.t, err)
	return r
}

func (e *env) reconcile() (ctrl.Result, error) {
	return e.r.Reconcile(e.ctx, ctrl.Request{NamespacedName: e.key})
}

// mustReconcile reconciles and requires no error.
func (e *env) mustReconcile() ctrl.Result {
	e.t.Helper()
	res, err := e.reconcile()
	require.NoError(e.t, err)
	return res
}

// rollout reads the Rollout from the fake API server.
func (e *env) rollout() *v1alpha1.Rollout {
	e.t.Helper()
	var ro v1alpha1.Rollout
	require.NoError(e.t, e.base.Get(e.ctx, e.key, &ro))
	return &ro
}

// state decodes the Rollout's stored process.
func (e *env) state() stepflow.State[Plan] {
	e.t.Helper()
	ro := e.rollout()
	require.NotNil(e.t, ro.Status.State, "status.state is empty")
	st, err := codec.JSON[Plan](nil).Decode(ro.Status.State.Raw)
	require.NoError(e.t, err)
	return st
}

func (e *env) deployment() *appsv1.Deployment {
	e.t.Helper()
	var d appsv1.Deployment
	require.NoError(e.t, e.base.Get(e.ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, &d))
	return &d
}

// makeAvailable plays the Deployment controller: every replica of the
// current template is up.
func (e *env) makeAvailable() {
	e.t.Helper()
	d := e.deployment()
	n := *d.Spec.Replicas
	d.Status = appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
	}
	require.NoError(e.t, e.base.Status().Update(e.ctx, d))
}

// drive reconciles as controller-runtime would, moving the clock by each
// RequeueAfter, until the Rollout asks for no requeue or limit reconciles
// have run. before is called before every reconcile with its number.
func (e *env) drive(limit int, before func(i int)) ctrl.Result {
	e.t.Helper()
	var res ctrl.Result
	for i := range limit {
		if before != nil {
			before(i)
		}
		res = e.mustReconcile()
		if res.RequeueAfter == 0 {
			return res
		}
		e.clock.Advance(res.RequeueAfter)
	}
	e.t.Fatalf("the rollout still asks for a requeue after %d reconciles: %+v", limit, res)
	return res
}

// condition returns the Rollout's condition of a type, failing if absent.
func condition(t *testing.T, ro *v1alpha1.Rollout, typ string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(ro.Status.Conditions, typ)
	require.NotNil(t, c, "condition %s missing in %+v", typ, ro.Status.Conditions)
	return *c
}

// requireCondition checks a condition's status and reason.
func requireCondition(t *testing.T, ro *v1alpha1.Rollout, typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	c := condition(t, ro, typ)
	require.Equal(t, status, c.Status, "%s: %+v", typ, c)
	require.Equal(t, reason, c.Reason, "%s: %+v", typ, c)
	require.Equal(t, ro.Generation, c.ObservedGeneration, "%s: %+v", typ, c)
	return c
}
