package kube_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

const (
	typeReady   = kube.DefaultStepConditionPrefix + "TaskStepsReady"
	typeCleanup = kube.DefaultStepConditionPrefix + "TaskCleanupDelete"
)

// A Task goes from nothing to Ready through reconciles that honour
// RequeueAfter: the finalizer first, the process, its conditions and its
// mirrors in the status, no write when nothing happened.
func TestReconcilerToReady(t *testing.T) {
	e := newEnv(t, nil, nil, newTask())
	start := e.clock.Now()

	// The first reconcile sets the finalizer, writes the ConfigMap, polls
	// it once and waits for the next poll.
	res := e.mustReconcile()
	assert.Equal(t, 2*time.Second, res.RequeueAfter)
	task := e.task()
	assert.True(t, controllerutil.ContainsFinalizer(task, testFinalizer))
	ps := task.Status.ProcessStatus
	assert.Equal(t, "waiting", ps.Phase)
	assert.Equal(t, pathReady, ps.Step)
	assert.Equal(t, "task/v1", ps.FlowVersion)
	assert.Equal(t, int64(1), ps.ObservedGeneration)
	require.NotNil(t, ps.WakeAt)
	assert.True(t, ps.WakeAt.Time.Equal(start.Add(2*time.Second)))
	assert.Empty(t, ps.LastError)
	c := requireCondition(t, task, kube.ConditionProgressing, metav1.ConditionTrue, "TaskStepsReady")
	assert.Contains(t, c.Message, "waiting until")
	assert.True(t, c.LastTransitionTime.Time.Equal(start), "transition time from the injected clock")
	assert.Equal(t, int64(1), c.ObservedGeneration)
	c = requireCondition(t, task, kube.ConditionReady, metav1.ConditionFalse, "TaskStepsReady")
	assert.Equal(t, "the task is in progress at task/steps/ready", c.Message)
	requireCondition(t, task, kube.ConditionFailed, metav1.ConditionFalse, kube.ReasonNoFailure)
	assert.Equal(t, "uid-hello/1", e.state().ID)

	// The state is plain JSON in the object, readable with kubectl.
	var doc struct {
		Format int `json:"stepflow"`
		State  struct {
			Status string `json:"status"`
			Data   Job    `json:"data"`
		} `json:"state"`
	}
	require.NoError(t, json.Unmarshal(ps.State.Raw, &doc))
	assert.Equal(t, 1, doc.Format)
	assert.Equal(t, "waiting", doc.State.Status)
	assert.Equal(t, "hi", doc.State.Data.Message)

	// A reconcile before the wake time writes nothing and asks again for
	// the time that is left.
	rv := e.task().ResourceVersion
	e.clock.Advance(500 * time.Millisecond)
	res = e.mustReconcile()
	assert.Equal(t, 1500*time.Millisecond, res.RequeueAfter)
	assert.Equal(t, rv, e.task().ResourceVersion, "no write when nothing happened")
	e.clock.Advance(res.RequeueAfter)

	// Ready on the second poll.
	e.drive(10, func(i int) {
		if i == 1 {
			e.markReady()
		}
	})
	task = e.task()
	ps = task.Status.ProcessStatus
	assert.Equal(t, "done", ps.Phase)
	assert.Empty(t, ps.Step)
	assert.Nil(t, ps.WakeAt)
	requireCondition(t, task, kube.ConditionReady, metav1.ConditionTrue, kube.ReasonComplete)
	requireCondition(t, task, kube.ConditionProgressing, metav1.ConditionFalse, kube.ReasonComplete)
	requireCondition(t, task, kube.ConditionFailed, metav1.ConditionFalse, kube.ReasonNoFailure)
	assert.Equal(t, "hello-out", task.Status.Output, "Options.Status set the field of the Task's own")
	assert.Equal(t, 2*time.Second+4*time.Second, e.clock.Now().Sub(start), "polls at 2s and 6s")

	// Done is final: more reconciles write nothing.
	rv = task.ResourceVersion
	assert.Equal(t, ctrl.Result{}, e.mustReconcile())
	assert.Equal(t, rv, e.task().ResourceVersion)
}

// One condition per step: True once done, Unknown while waiting or
// pending, with the type a tag names or one derived from the path; at
// most StepConditions.Max of them, the ones that say the most.
func TestReconcilerStepConditions(t *testing.T) {
	task := newTask()
	task.Status.Conditions = []metav1.Condition{
		{Type: kube.DefaultStepConditionPrefix + "TaskStepsOld", Status: metav1.ConditionTrue, Reason: "Done"},
		{Type: "Custom", Status: metav1.ConditionTrue, Reason: "Mine"},
	}
	e := newEnv(t, nil, nil, task)
	e.mustReconcile()
	task = e.task()
	c := requireCondition(t, task, "OutputWritten", metav1.ConditionTrue, kube.StepReasonDone)
	assert.Equal(t, "write the ConfigMap", c.Message, "the step's description")
	c = requireCondition(t, task, typeReady, metav1.ConditionUnknown, kube.StepReasonWaiting)
	assert.Contains(t, c.Message, "poll 1")
	requireCondition(t, task, typeCleanup, metav1.ConditionUnknown, kube.StepReasonPending)
	assert.Nil(t, meta.FindStatusCondition(task.Status.Conditions, kube.DefaultStepConditionPrefix+"TaskStepsOld"), "a step no flow version has")
	requireCondition(t, task, "Custom", metav1.ConditionTrue, "Mine")
	assert.Len(t, task.Status.Conditions, 3+3+1)

	e.clock.Advance(2 * time.Second)
	e.markReady()
	e.drive(5, nil)
	task = e.task()
	for _, typ := range []string{"OutputWritten", typeReady, typeCleanup} {
		requireCondition(t, task, typ, metav1.ConditionTrue, kube.StepReasonDone)
	}

	// With room for two, the pending cleanup gives way.
	e = newEnv(t, nil, func(o *kube.Options[Job, *Task]) { o.StepConditions.Max = 2 }, newTask())
	e.mustReconcile()
	task = e.task()
	requireCondition(t, task, "OutputWritten", metav1.ConditionTrue, kube.StepReasonDone)
	requireCondition(t, task, typeReady, metav1.ConditionUnknown, kube.StepReasonWaiting)
	assert.Nil(t, meta.FindStatusCondition(task.Status.Conditions, typeCleanup))

	// TaggedOnly: the tagged step alone.
	e = newEnv(t, nil, func(o *kube.Options[Job, *Task]) { o.StepConditions.TaggedOnly = true }, newTask())
	e.mustReconcile()
	task = e.task()
	requireCondition(t, task, "OutputWritten", metav1.ConditionTrue, kube.StepReasonDone)
	assert.Len(t, task.Status.Conditions, 4)
}

// A step that fails for good fails the process: Failed=True naming the
// step, the step's condition False with the error, LastError, no requeue.
func TestReconcilerStepFails(t *testing.T) {
	invalid := apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "hello-out",
		field.ErrorList{field.Invalid(field.NewPath("data"), "", "rejected by policy")})
	e := newEnv(t, &interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if _, ok := obj.(*corev1.ConfigMap); ok {
			return invalid
		}
		return c.Create(ctx, obj, opts...)
	}}, nil, newTask())
	assert.Equal(t, ctrl.Result{}, e.mustReconcile())
	task := e.task()
	assert.Equal(t, "failed", task.Status.Phase)
	c := requireCondition(t, task, kube.ConditionFailed, metav1.ConditionTrue, "TaskStepsCreate")
	assert.Contains(t, c.Message, "rejected by policy")
	requireCondition(t, task, kube.ConditionReady, metav1.ConditionFalse, "TaskStepsCreate")
	c = requireCondition(t, task, "OutputWritten", metav1.ConditionFalse, kube.StepReasonFailed)
	assert.Contains(t, c.Message, "rejected by policy")
	requireCondition(t, task, typeReady, metav1.ConditionUnknown, kube.StepReasonPending)
	assert.Contains(t, task.Status.LastError, "rejected by policy")
	assert.True(t, strings.HasPrefix(task.Status.LastError, "error at task/steps/create: "), task.Status.LastError)

	rv := task.ResourceVersion
	assert.Equal(t, ctrl.Result{}, e.mustReconcile())
	assert.Equal(t, rv, e.task().ResourceVersion, "failed is final for this generation")
}

// deleteTask deletes the Task, which the finalizer holds, and bumps its
// generation as the API server does (the fake client does not).
func (e *env) deleteTask() {
	e.t.Helper()
	require.NoError(e.t, e.base.Delete(e.ctx, e.task()))
	task := e.task()
	require.False(e.t, task.DeletionTimestamp.IsZero(), "the finalizer holds the object")
	task.Generation++
	require.NoError(e.t, e.base.Update(e.ctx, task))
}

// statusWrites records the phase and observed generation of every status
// write that reached the fake API server.
func statusWrites(writes *[]string) *interceptor.Funcs {
	return &interceptor.Funcs{SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
		err := c.SubResource(sub).Update(ctx, obj, opts...)
		if err == nil {
			ps := obj.(*Task).Status.ProcessStatus
			*writes = append(*writes, ps.Phase+"@"+string(rune('0'+ps.ObservedGeneration)))
		}
		return err
	}}
}

// Deleting a Task mid-flight cancels its process, whose cleanup deletes
// the ConfigMap, records the canceled process under the generation it was
// started for, and only then releases the object. The deletion's
// generation bump is not read as a spec change.
func TestReconcilerDeletionCancels(t *testing.T) {
	var writes []string
	e := newEnv(t, statusWrites(&writes), nil, newTask())
	require.Equal(t, 2*time.Second, e.mustReconcile().RequeueAfter)
	e.deleteTask()

	assert.Equal(t, ctrl.Result{}, e.mustReconcile())
	assert.Equal(t, []string{"waiting@1", "canceled@1"}, writes)
	assert.True(t, apierrors.IsNotFound(e.base.Get(e.ctx, e.key, &Task{})), "finalizer removed, object gone")
	err := e.base.Get(e.ctx, types.NamespacedName{Namespace: "shop", Name: "hello-out"}, &corev1.ConfigMap{})
	assert.True(t, apierrors.IsNotFound(err), "the cleanup deleted the ConfigMap: %v", err)
	assert.Equal(t, ctrl.Result{}, e.mustReconcile(), "a reconcile of the vanished object is a no-op")
}

// A cleanup that has to retry keeps the object until it is through: the
// finalizer stays across reconciles, each asking to come back.
func TestReconcilerDeletionWaitsForCleanups(t *testing.T) {
	deletes := 0
	var writes []string
	funcs := statusWrites(&writes)
	funcs.Delete = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
		if _, ok := obj.(*corev1.ConfigMap); ok {
			if deletes++; deletes == 1 {
				return apierrors.NewServiceUnavailable("etcd is busy")
			}
		}
		return c.Delete(ctx, obj, opts...)
	}
	e := newEnv(t, funcs, nil, newTask())
	e.mustReconcile()
	e.deleteTask()

	res := e.mustReconcile()
	assert.Equal(t, 2*time.Second, res.RequeueAfter, "the cleanup's retry")
	task := e.task()
	assert.True(t, controllerutil.ContainsFinalizer(task, testFinalizer), "held while the cleanup runs")
	assert.Equal(t, "waiting", task.Status.Phase)
	assert.Equal(t, "task/cleanup", task.Status.Step)
	assert.Contains(t, task.Status.LastError, "etcd is busy")

	e.clock.Advance(res.RequeueAfter)
	assert.Equal(t, ctrl.Result{}, e.mustReconcile())
	assert.Equal(t, 2, deletes)
	assert.Equal(t, []string{"waiting@1", "waiting@1", "canceled@1"}, writes)
	assert.True(t, apierrors.IsNotFound(e.base.Get(e.ctx, e.key, &Task{})))
}

// A deleted Task whose process has ended, cannot be read or is of an
// unknown version has no cleanup to run: the finalizer goes at once.
func TestReconcilerDeletionWithoutProcess(t *testing.T) {
	tests := map[string]func(e *env){
		"done": func(e *env) {
			e.mustReconcile()
			e.markReady()
			e.drive(10, nil)
		},
		"unreadable": func(e *env) {
			e.mustReconcile()
			task := e.task()
			task.Status.State = &runtime.RawExtension{Raw: []byte(`{"stepflow":1,"state":{"status":"exploded"}}`)}
			require.NoError(t, e.base.Status().Update(e.ctx, task))
		},
		"unknown version": func(e *env) {
			e.storeState(stepflow.State[Job]{Version: "task/v9", Status: stepflow.Running, Steps: 1})
		},
		"never started": func(e *env) {
			task := e.task()
			task.Finalizers = []string{testFinalizer}
			require.NoError(t, e.base.Update(e.ctx, task))
		},
	}
	for name, setup := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil, nil, newTask())
			setup(e)
			e.deleteTask()
			assert.Equal(t, ctrl.Result{}, e.mustReconcile())
			assert.True(t, apierrors.IsNotFound(e.base.Get(e.ctx, e.key, &Task{})))
		})
	}
}

// Without a finalizer, a deleted object is simply gone.
func TestReconcilerWithoutFinalizer(t *testing.T) {
	e := newEnv(t, nil, func(o *kube.Options[Job, *Task]) { o.Finalizer = "" }, newTask())
	e.mustReconcile()
	assert.Empty(t, e.task().Finalizers)
	require.NoError(t, e.base.Delete(e.ctx, e.task()))
	assert.Equal(t, ctrl.Result{}, e.mustReconcile())
}

// A state of a flow version the controller does not know (a newer
// release wrote it) is reported once and left untouched; with
// RestartUnknown, or after a spec change, a new process starts.
func TestReconcilerUnknownVersion(t *testing.T) {
	newer := stepflow.State[Job]{Version: "task/v9", ID: "uid-hello/1", Status: stepflow.Running, Steps: 3,
		Root: stepflow.Frame{Children: []stepflow.Frame{{Name: "launch"}}}}

	e := newEnv(t, nil, nil, newTask())
	e.storeState(newer)
	raw := string(e.task().Status.State.Raw)
	assert.Equal(t, ctrl.Result{}, e.mustReconcile(), "no requeue: only another release can continue it")
	task := e.task()
	assert.Equal(t, kube.PhaseUnknownVersion, task.Status.Phase)
	c := requireCondition(t, task, kube.ConditionFailed, metav1.ConditionTrue, kube.ReasonUnknownFlowVersion)
	assert.Contains(t, c.Message, `"task/v9"`)
	assert.Contains(t, c.Message, "task/v1")
	assert.Equal(t, c.Message, task.Status.LastError)
	requireCondition(t, task, kube.ConditionReady, metav1.ConditionFalse, kube.ReasonUnknownFlowVersion)
	assert.JSONEq(t, raw, string(task.Status.State.Raw), "the state is left as it was")
	assert.Equal(t, "task/v9", task.Status.FlowVersion)
	err := e.base.Get(e.ctx, types.NamespacedName{Namespace: "shop", Name: "hello-out"}, &corev1.ConfigMap{})
	assert.True(t, apierrors.IsNotFound(err), "no step ran")

	rv := task.ResourceVersion
	e.clock.Advance(time.Minute)
	assert.Equal(t, ctrl.Result{}, e.mustReconcile())
	assert.Equal(t, rv, e.task().ResourceVersion, "reported once")

	// A new spec starts a new process all the same.
	task.Spec.Message = "hello again"
	task.Generation = 2
	require.NoError(t, e.base.Update(e.ctx, task))
	e.mustReconcile()
	assert.Equal(t, "waiting", e.task().Status.Phase)
	assert.Equal(t, "uid-hello/2", e.state().ID)

	// RestartUnknown starts over at once.
	e = newEnv(t, nil, func(o *kube.Options[Job, *Task]) { o.RestartUnknown = true }, newTask())
	e.storeState(newer)
	e.mustReconcile()
	assert.Equal(t, "waiting", e.task().Status.Phase)
	assert.Equal(t, "task/v1", e.state().Version)
	requireCondition(t, e.task(), kube.ConditionFailed, metav1.ConditionFalse, kube.ReasonNoFailure)
}

// A stored state that cannot be read is reported once per generation,
// left for inspection, and a new spec starts over.
func TestReconcilerUnreadableState(t *testing.T) {
	tests := []struct{ name, raw, want string }{
		{"not a state", `{"hello":"world"}`, "not a stepflow state"},
		{"unknown status", `{"stepflow":1,"state":{"version":"task/v1","status":"exploded","steps":1,"root":{},"data":{}}}`, "unknown status"},
		{"newer format", `{"stepflow":99,"state":{}}`, "unsupported format version"},
		{"unknown step", `{"stepflow":1,"state":{"version":"task/v1","status":"running","steps":1,"root":{"children":[{"name":"launch"}]},"data":{}}}`, `"launch": no such node`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := newTask()
			task.Finalizers = []string{testFinalizer}
			task.Status.ObservedGeneration = 1
			task.Status.State = &runtime.RawExtension{Raw: []byte(tt.raw)}
			e := newEnv(t, nil, nil, task)

			assert.Equal(t, ctrl.Result{}, e.mustReconcile())
			got := e.task()
			assert.Equal(t, kube.PhaseUnreadable, got.Status.Phase)
			c := requireCondition(t, got, kube.ConditionFailed, metav1.ConditionTrue, kube.ReasonStateUnreadable)
			assert.Contains(t, c.Message, tt.want)
			assert.Contains(t, c.Message, "change the spec to start a new task")
			assert.NotContains(t, c.Message, "stepflow/kube:", "the message names the cause once")
			assert.JSONEq(t, tt.raw, string(got.Status.State.Raw))

			rv := got.ResourceVersion
			assert.Equal(t, ctrl.Result{}, e.mustReconcile())
			assert.Equal(t, rv, e.task().ResourceVersion, "reported once per generation")

			got.Spec.Message = "again"
			got.Generation = 2
			require.NoError(t, e.base.Update(e.ctx, got))
			e.mustReconcile()
			got = e.task()
			assert.Equal(t, "waiting", got.Status.Phase)
			requireCondition(t, got, kube.ConditionFailed, metav1.ConditionFalse, kube.ReasonNoFailure)
		})
	}
}

// A spec change mid-flight abandons the process and starts one for the
// new generation.
func TestReconcilerSpecChangeRestarts(t *testing.T) {
	e := newEnv(t, nil, nil, newTask())
	e.mustReconcile()
	task := e.task()
	task.Spec.Message = "bye"
	task.Generation = 2
	require.NoError(t, e.base.Update(e.ctx, task))
	e.clock.Advance(time.Second) // before the old process's wake time

	assert.Equal(t, 2*time.Second, e.mustReconcile().RequeueAfter, "the new process polls on its own schedule")
	st := e.state()
	assert.Equal(t, "uid-hello/2", st.ID)
	assert.Equal(t, "bye", st.Data.Message)
	assert.Equal(t, int64(2), e.task().Status.ObservedGeneration)
	var cm corev1.ConfigMap
	require.NoError(t, e.base.Get(e.ctx, types.NamespacedName{Namespace: "shop", Name: "hello-out"}, &cm))
	assert.Equal(t, "bye", cm.Data["message"])
}

// A process of an older version that the registry knows continues where
// it stood, migrated to the current version.
func TestReconcilerMigratesOlderVersion(t *testing.T) {
	e := newEnv(t, nil, nil, newTask())
	old := newTaskFlow(e.steps, "task/v0", "settled", 2*time.Second)
	st := old.Start(newJob(e.task()))
	st.ID = "uid-hello/1"
	ctx := e.clock.Context(e.ctx)
	for st.Status != stepflow.Waiting {
		var err error
		st, err = old.Apply(ctx, st)
		require.NoError(t, err)
	}
	require.Equal(t, []string{"task/steps/settled"}, st.Positions())
	e.storeState(st)

	reg, err := versions.New([]*stepflow.Flow[Job]{old, e.reg.Latest()}, nil,
		versions.NewMigration[Job]("task/v0", "task/v1").Rename("task/steps/settled", pathReady))
	require.NoError(t, err)
	e.r = e.reconciler(e.client, reg, testOptions(e))
	e.clock.Advance(2 * time.Second)
	e.mustReconcile()

	got := e.state()
	assert.Equal(t, "task/v1", got.Version, "migrated")
	assert.Equal(t, st.ID, got.ID, "the same process")
	assert.Greater(t, got.Steps, st.Steps, "it went on")
	assert.Equal(t, []string{pathReady}, got.Positions())
	assert.Equal(t, "task/v1", e.task().Status.FlowVersion)
}

// A status write that loses to a newer version of the object is dropped
// and requeued; the next reconcile goes on from the newer object.
func TestReconcilerConflict(t *testing.T) {
	var e *env
	first := true
	e = newEnv(t, &interceptor.Funcs{SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
		if first {
			first = false
			// Someone else writes the object first.
			task := e.task()
			task.Labels = map[string]string{"team": "payments"}
			require.NoError(t, e.base.Update(ctx, task))
		}
		return c.SubResource(sub).Update(ctx, obj, opts...)
	}}, nil, newTask())

	res, err := e.reconcile()
	require.NoError(t, err, "a conflict is not an error")
	assert.Equal(t, kube.RequeueConflict, res.RequeueAfter)
	assert.Empty(t, e.task().Status.Phase, "our stale write was refused")

	e.clock.Advance(res.RequeueAfter)
	e.mustReconcile()
	task := e.task()
	assert.Equal(t, "waiting", task.Status.Phase)
	assert.Equal(t, "payments", task.Labels["team"])
	assert.Equal(t, 1.0, metricValue(t, e.metrics, "stepflow_kube_reconciles_total", "outcome", kube.OutcomeConflict))
}

// MaxSteps bounds one reconcile; a process still runnable asks to come
// back after RequeueOptions.Runnable.
func TestReconcilerMaxSteps(t *testing.T) {
	e := newEnv(t, nil, func(o *kube.Options[Job, *Task]) { o.MaxSteps = 1 }, newTask())
	res := e.mustReconcile()
	assert.Equal(t, kube.DefaultRequeueRunnable, res.RequeueAfter)
	assert.Equal(t, "running", e.task().Status.Phase)
	assert.Equal(t, uint64(1), e.state().Steps)
	e.mustReconcile()
	assert.Equal(t, "waiting", e.task().Status.Phase)
}

// The metrics count reconciles by outcome, steps by version, and objects
// by phase; a released object leaves the counts.
func TestReconcilerMetrics(t *testing.T) {
	e := newEnv(t, nil, nil, newTask())
	e.mustReconcile()
	assert.Equal(t, 1.0, metricValue(t, e.metrics, "stepflow_kube_processes", "version", "task/v1", "phase", "waiting"))
	e.clock.Advance(time.Second)
	e.mustReconcile() // not due: idle
	e.clock.Advance(time.Second)
	e.markReady()
	e.mustReconcile()

	assert.Equal(t, 2.0, metricValue(t, e.metrics, "stepflow_kube_reconciles_total", "outcome", kube.OutcomeAdvanced))
	assert.Equal(t, 1.0, metricValue(t, e.metrics, "stepflow_kube_reconciles_total", "outcome", kube.OutcomeIdle))
	st := e.state()
	assert.Equal(t, float64(st.Steps), metricValue(t, e.metrics, "stepflow_kube_steps_total", "version", "task/v1"))
	assert.Equal(t, 1.0, metricValue(t, e.metrics, "stepflow_kube_processes", "version", "task/v1", "phase", "done"))

	e.deleteTask()
	e.mustReconcile()
	assert.Equal(t, 1.0, metricValue(t, e.metrics, "stepflow_kube_reconciles_total", "outcome", kube.OutcomeReleased))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.metrics)
	n, err := testutil.GatherAndCount(reg, "stepflow_kube_processes")
	require.NoError(t, err)
	assert.Zero(t, n, "the released object is forgotten")
}

func TestNewReconcilerChecks(t *testing.T) {
	e := newEnv(t, nil, nil)
	_, err := kube.NewReconciler[Job, *Task](nil, e.reg, newJob, nil)
	assert.ErrorContains(t, err, "client")
	_, err = kube.NewReconciler[Job, *Task](e.client, e.reg, nil, nil)
	assert.ErrorContains(t, err, "start")
	_, err = kube.NewReconciler[Job, *Task](e.client, nil, newJob, nil)
	assert.ErrorContains(t, err, "registry")
	r, err := kube.NewReconciler[Job, *Task](e.client, e.reg, newJob, nil)
	require.NoError(t, err)
	assert.Equal(t, "task/v1", r.Flow().Version())
	assert.Equal(t, kube.DefaultMaxSteps, r.Process().Options().MaxSteps)
}

// metricValue returns the value of the series of m named name whose
// labels include the given name, value pairs and controller="task"; 0
// when there is none.
func metricValue(t *testing.T, m *kube.Metrics, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(m))
	families, err := reg.Gather()
	require.NoError(t, err)
	want := map[string]string{"controller": "task"}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
					continue series
				}
			}
			switch {
			case s.GetCounter() != nil:
				return s.GetCounter().GetValue()
			case s.GetGauge() != nil:
				return s.GetGauge().GetValue()
			}
		}
	}
	return 0
}
