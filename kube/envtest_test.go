package kube_test

// Tests against a real API server (package kubetest): the Task controller
// runs in a manager, reading through its informer cache, as it would in a
// cluster. Each test covers what the fake client cannot show: a cache
// that lags behind the controller's own writes, the generation bump of a
// deletion, the API server's validation of the conditions, optimistic
// concurrency on the status.

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/kube/kubetest"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

var cluster = kubetest.NewCluster(kubetest.Options{
	CRDDirectoryPaths: []string{"testdata/crd"},
	Scheme:            newScheme(),
})

func TestMain(m *testing.M) { os.Exit(cluster.Run(m)) }

// taskController is a manager running the Task reconciler in one
// namespace.
type taskController struct {
	metrics *kube.Metrics
	stop    func()
}

// startTaskController starts the reconciler as a controller's main would:
// the manager's client, a Reader that SetupWithManager completes, the
// real clock; the wait polls after one second, then every two.
func startTaskController(t *testing.T, env *kubetest.Env, ns string) *taskController {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, kubetest.ManagerOptions(t, env, ns))
	require.NoError(t, err)
	steps := &taskSteps{client: mgr.GetClient(), read: &kube.Reader{Cache: mgr.GetClient()}, scheme: mgr.GetScheme()}
	tc := &taskController{metrics: kube.NewMetrics("")}
	r, err := kube.NewReconciler(mgr.GetClient(), newTaskRegistry(steps, time.Second), newJob, &kube.Options[Job, *Task]{
		ProcessOptions: kube.ProcessOptions{Noun: "task", StepConditions: &kube.StepConditions{}},
		Finalizer:      testFinalizer,
		Reader:         steps.read,
		Metrics:        tc.metrics,
		Status: func(t *Task, st stepflow.State[Job]) {
			if st.Status == stepflow.Done {
				t.Status.Output = st.Data.Name + "-out"
			}
		},
	})
	require.NoError(t, err)
	// Owning the ConfigMaps, the controller's cache watches them from the
	// start, as most controllers' do: a ConfigMap just created reaches it
	// a moment later, through a watch event, and the poll in the same
	// reconcile does not find it there.
	require.NoError(t, r.Builder(mgr).Owns(&corev1.ConfigMap{}).Complete(r))
	tc.stop = kubetest.StartManager(t, mgr)
	return tc
}

func createTask(t *testing.T, c client.Client, ns string) *Task {
	t.Helper()
	task := &Task{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hello"}, Spec: TaskSpec{Message: "hi"}}
	require.NoError(t, c.Create(context.Background(), task))
	return task
}

// waitTask polls the Task until ok holds, and returns it.
func waitTask(t *testing.T, c client.Client, key types.NamespacedName, what string, ok func(*Task) bool) *Task {
	t.Helper()
	var task Task
	kubetest.Eventually(t, what, func() (bool, string) {
		if err := c.Get(context.Background(), key, &task); err != nil {
			return false, err.Error()
		}
		return ok(&task), fmt.Sprintf("phase %q, step %q, conditions %+v", task.Status.Phase, task.Status.Step, task.Status.Conditions)
	})
	return &task
}

// waitingOrEnded holds once the process waits for its ConfigMap, or has
// ended in any way (so that a failure shows at once).
func waitingOrEnded(task *Task) bool {
	switch task.Status.Phase {
	case "", "running":
		return false
	}
	return true
}

func markReadyIn(t *testing.T, c client.Client, ns string) {
	t.Helper()
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cm corev1.ConfigMap
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "hello-out"}, &cm); err != nil {
			return err
		}
		cm.Annotations = map[string]string{readyAnnotation: "true"}
		return c.Update(context.Background(), &cm)
	}))
}

// A Task goes to Ready. The reconcile that creates the ConfigMap polls it
// at once through the Reader, while the manager's cache has not seen it
// yet: "not found" there must not fail the process. The API server
// accepts the step conditions, whose types and reasons it validates.
func TestEnvtestTaskToReady(t *testing.T) {
	env := cluster.Require(t)
	ns := kubetest.Namespace(t, env.Client)
	tc := startTaskController(t, env, ns)
	key := client.ObjectKeyFromObject(createTask(t, env.Client, ns))

	task := waitTask(t, env.Client, key, "waiting for its ConfigMap", waitingOrEnded)
	require.Equal(t, "waiting", task.Status.Phase, "conditions: %+v", task.Status.Conditions)
	assert.Equal(t, pathReady, task.Status.Step)
	assert.Contains(t, task.Finalizers, testFinalizer)
	requireCondition(t, task, "OutputWritten", metav1.ConditionTrue, kube.StepReasonDone)
	requireCondition(t, task, typeReady, metav1.ConditionUnknown, kube.StepReasonWaiting)
	requireCondition(t, task, typeCleanup, metav1.ConditionUnknown, kube.StepReasonPending)

	markReadyIn(t, env.Client, ns)
	task = waitTask(t, env.Client, key, "done", func(task *Task) bool { return task.Status.Phase == "done" })
	requireCondition(t, task, kube.ConditionReady, metav1.ConditionTrue, kube.ReasonComplete)
	requireCondition(t, task, typeReady, metav1.ConditionTrue, kube.StepReasonDone)
	assert.Equal(t, "hello-out", task.Status.Output)
	st := decodeState(t, task)
	assert.Equal(t, fmt.Sprintf("%s/1", task.UID), st.ID)
	assert.Zero(t, metricValue(t, tc.metrics, "stepflow_kube_processes", "phase", "failed"))
	kubetest.Eventually(t, "counted as done", func() (bool, string) {
		n := metricValue(t, tc.metrics, "stepflow_kube_processes", "version", "task/v1", "phase", "done")
		return n == 1, fmt.Sprint(n)
	})
}

// Deleting a Task mid-flight cancels its process: the cleanup deletes the
// ConfigMap (envtest runs no garbage collector, so nothing else would),
// and only then does the object go. The API server bumps the generation
// on deletion, which must not be taken for a spec change.
func TestEnvtestDeletionCancels(t *testing.T) {
	env := cluster.Require(t)
	ns := kubetest.Namespace(t, env.Client)
	startTaskController(t, env, ns)
	task := createTask(t, env.Client, ns)
	key := client.ObjectKeyFromObject(task)
	task = waitTask(t, env.Client, key, "waiting for its ConfigMap", waitingOrEnded)
	require.Equal(t, "waiting", task.Status.Phase)

	require.NoError(t, env.Client.Delete(context.Background(), task))
	kubetest.Eventually(t, "deleted", func() (bool, string) {
		err := env.Client.Get(context.Background(), key, &Task{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "hello-out"}, &corev1.ConfigMap{})
	assert.True(t, apierrors.IsNotFound(err), "the cleanup deleted the ConfigMap: %v", err)
}

// A Task whose state a newer release wrote (task/v9) is reported once
// and left as it is: the controller neither restarts it nor writes again
// on the event of its own write.
func TestEnvtestUnknownVersionLeftUntouched(t *testing.T) {
	env := cluster.Require(t)
	ns := kubetest.Namespace(t, env.Client)
	task := createTask(t, env.Client, ns)
	key := client.ObjectKeyFromObject(task)
	newer := stepflow.State[Job]{Version: "task/v9", ID: fmt.Sprintf("%s/1", task.UID), Status: stepflow.Waiting,
		Steps: 5, WakeAt: time.Now().Add(time.Hour).UTC().Truncate(time.Second),
		Root: stepflow.Frame{Children: []stepflow.Frame{{Name: "launch"}}}}
	raw, err := codec.JSON[Job](nil).Encode(newer)
	require.NoError(t, err)
	task.Finalizers = []string{testFinalizer}
	require.NoError(t, env.Client.Update(context.Background(), task))
	task.Status = TaskStatus{ProcessStatus: kube.ProcessStatus{ObservedGeneration: task.Generation, FlowVersion: "task/v9",
		Phase: "waiting", State: &runtime.RawExtension{Raw: raw}}}
	require.NoError(t, env.Client.Status().Update(context.Background(), task))

	tc := startTaskController(t, env, ns)
	task = waitTask(t, env.Client, key, "reported", func(task *Task) bool { return task.Status.Phase != "waiting" })
	assert.Equal(t, kube.PhaseUnknownVersion, task.Status.Phase)
	c := requireCondition(t, task, kube.ConditionFailed, metav1.ConditionTrue, kube.ReasonUnknownFlowVersion)
	assert.Contains(t, c.Message, `"task/v9"`)
	assert.JSONEq(t, string(raw), string(task.Status.State.Raw), "the state is left as it was")

	// The write's own watch event brings one more reconcile, which finds
	// the problem reported and writes nothing.
	kubetest.Eventually(t, "reconciled again", func() (bool, string) {
		n := metricValue(t, tc.metrics, "stepflow_kube_reconciles_total", "outcome", kube.OutcomeIdle)
		return n >= 1, fmt.Sprint(n)
	})
	assert.Equal(t, 1.0, metricValue(t, tc.metrics, "stepflow_kube_reconciles_total", "outcome", kube.OutcomeReported))
	assert.Zero(t, metricValue(t, tc.metrics, "stepflow_kube_reconciles_total", "outcome", kube.OutcomeAdvanced))
	err = env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "hello-out"}, &corev1.ConfigMap{})
	assert.True(t, apierrors.IsNotFound(err), "no step ran")
}
