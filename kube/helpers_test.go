package kube_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
	"github.com/stepflow-io/go-stepflow/versions"
)

const testFinalizer = "test.stepflow.io/cleanup"

// newTask returns the Task most tests use. The fake client does not
// maintain metadata.generation, so tests set it themselves.
func newTask() *Task {
	return &Task{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "hello", UID: "uid-hello", Generation: 1},
		Spec:       TaskSpec{Message: "hi"},
	}
}

// env is a reconciler of Tasks wired to a fake API server and a fake
// clock.
type env struct {
	t      *testing.T
	ctx    context.Context
	clock  *stepflowtest.Clock
	scheme *runtime.Scheme
	// base is the fake API server; client is what the reconciler uses
	// (base itself, or base behind interceptors).
	base    client.WithWatch
	client  client.Client
	steps   *taskSteps
	reg     *versions.Registry[Job]
	metrics *kube.Metrics
	r       *kube.Reconciler[Job, *Task]
	key     types.NamespacedName
}

// testOptions are the reconciler's options in the tests: a finalizer,
// step conditions, and the Status hook.
func testOptions(e *env) *kube.Options[Job, *Task] {
	return &kube.Options[Job, *Task]{
		ProcessOptions: kube.ProcessOptions{Noun: "task", StepConditions: &kube.StepConditions{}},
		Clock:          e.clock,
		Finalizer:      testFinalizer,
		Reader:         e.steps.read,
		Metrics:        e.metrics,
		Status: func(t *Task, st stepflow.State[Job]) {
			if st.Status == stepflow.Done {
				t.Status.Output = st.Data.Name + "-out"
			}
		},
	}
}

// newEnv builds an env holding objs. funcs, if not nil, intercept the
// reconciler's client calls; edit, if not nil, changes the options.
func newEnv(t *testing.T, funcs *interceptor.Funcs, edit func(*kube.Options[Job, *Task]), objs ...client.Object) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), clock: stepflowtest.NewClock(time.Time{}), scheme: newScheme(), metrics: kube.NewMetrics("")}
	e.base = fake.NewClientBuilder().WithScheme(e.scheme).WithObjects(objs...).
		WithStatusSubresource(&Task{}).Build()
	e.client = e.base
	if funcs != nil {
		e.client = interceptor.NewClient(e.base, *funcs)
	}
	e.steps = &taskSteps{client: e.client, read: &kube.Reader{Cache: e.client}, scheme: e.scheme}
	e.reg = newTaskRegistry(e.steps, 2*time.Second)
	o := testOptions(e)
	if edit != nil {
		edit(o)
	}
	e.r = e.reconciler(e.client, e.reg, o)
	e.key = types.NamespacedName{Namespace: "shop", Name: "hello"}
	return e
}

func (e *env) reconciler(c client.Client, reg *versions.Registry[Job], o *kube.Options[Job, *Task]) *kube.Reconciler[Job, *Task] {
	e.t.Helper()
	r, err := kube.NewReconciler(c, reg, newJob, o)
	require.NoError(e.t, err)
	return r
}

func (e *env) reconcile() (ctrl.Result, error) {
	return e.r.Reconcile(e.ctx, ctrl.Request{NamespacedName: e.key})
}

func (e *env) mustReconcile() ctrl.Result {
	e.t.Helper()
	res, err := e.reconcile()
	require.NoError(e.t, err)
	return res
}

// task reads the Task from the fake API server.
func (e *env) task() *Task {
	e.t.Helper()
	var t Task
	require.NoError(e.t, e.base.Get(e.ctx, e.key, &t))
	return &t
}

// state decodes the Task's stored process.
func (e *env) state() stepflow.State[Job] {
	e.t.Helper()
	return decodeState(e.t, e.task())
}

func decodeState(t testing.TB, task *Task) stepflow.State[Job] {
	t.Helper()
	require.NotNil(t, task.Status.State, "status.state is empty")
	st, err := codec.JSON[Job](nil).Decode(task.Status.State.Raw)
	require.NoError(t, err)
	return st
}

// markReady plays whoever makes the Task's ConfigMap ready.
func (e *env) markReady() {
	e.t.Helper()
	var cm corev1.ConfigMap
	require.NoError(e.t, e.base.Get(e.ctx, types.NamespacedName{Namespace: "shop", Name: "hello-out"}, &cm))
	cm.Annotations = map[string]string{readyAnnotation: "true"}
	require.NoError(e.t, e.base.Update(e.ctx, &cm))
}

// drive reconciles as controller-runtime would, moving the clock by each
// RequeueAfter, until no requeue is asked for or limit reconciles ran.
// before runs before every reconcile with its number.
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
	e.t.Fatalf("still asking for a requeue after %d reconciles: %+v", limit, res)
	return res
}

// requireCondition checks a condition's status and reason, and returns it.
func requireCondition(t testing.TB, task *Task, typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(task.Status.Conditions, typ)
	require.NotNil(t, c, "condition %s missing in %+v", typ, task.Status.Conditions)
	require.Equal(t, status, c.Status, "%s: %+v", typ, c)
	require.Equal(t, reason, c.Reason, "%s: %+v", typ, c)
	return *c
}

// storeState writes st into the Task's status as an older release would
// have left it.
func (e *env) storeState(st stepflow.State[Job]) {
	e.t.Helper()
	raw, err := codec.JSON[Job](nil).Encode(st)
	require.NoError(e.t, err)
	task := e.task()
	task.Finalizers = []string{testFinalizer}
	require.NoError(e.t, e.base.Update(e.ctx, task))
	task.Status = TaskStatus{ProcessStatus: kube.ProcessStatus{
		ObservedGeneration: task.Generation, FlowVersion: st.Version, Phase: st.Status.String(),
		State: &runtime.RawExtension{Raw: raw},
	}}
	require.NoError(e.t, e.base.Status().Update(e.ctx, task))
}
