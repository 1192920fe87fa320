package controller

// Tests against a real API server: controller-runtime's envtest starts etcd
// and kube-apiserver (through package kubetest, which the kube module's
// own tests share), the tests install the CRD from config/crd and run the
// manager with the reconciler as main.go builds it. The fake client of the
// other tests answers every read with the latest write and has no
// generation bumps on deletion; a real API server, read through a
// manager's informer cache, does neither, and each test here covers a
// behaviour that only shows up there.
//
// The binaries come from KUBEBUILDER_ASSETS or, when it is unset, from the
// cache that `make envtest-assets` (.ci/envtest-assets.sh) fills. Without
// either the tests skip, except in CI (CI non-empty), where they fail.
//
// Nothing runs the Deployment controller: the tests play it, by writing a
// Deployment's status (makeAvailable). Nor the garbage collector: objects
// are gone only when the controller deleted them.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/kube/kubetest"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

// realAPI is the package's one API server, started by the first test that
// needs it and stopped by TestMain.
var realAPI = kubetest.NewCluster(kubetest.Options{
	CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd")},
	Scheme:            mustScheme(),
})

func TestMain(m *testing.M) { os.Exit(realAPI.Run(m)) }

// mustScheme knows every type the controller touches.
func mustScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return scheme
}

// cluster returns a client of the running API server, starting it on
// first use. Without binaries the test is skipped, or fails in CI.
func cluster(t *testing.T) client.Client {
	t.Helper()
	return realAPI.Require(t).Client
}

// statusWrite is one status write of a Rollout that the controller sent,
// as the tests see it.
type statusWrite struct {
	phase, step, process string
	generation           int64
	err                  error
}

// controllerRun is a manager running the reconciler, and what it wrote.
type controllerRun struct {
	stop func()

	mu     sync.Mutex
	writes []statusWrite
	// beforeStatusWrite, if set, runs before each status write of a
	// Rollout goes to the API server.
	beforeStatusWrite func(ro *v1alpha1.Rollout)
}

// statusWrites returns what the controller wrote so far.
func (run *controllerRun) statusWrites() []statusWrite {
	run.mu.Lock()
	defer run.mu.Unlock()
	return append([]statusWrite(nil), run.writes...)
}

// envtestOptions are the reconciler's options in these tests: the real
// clock, and polls of the Deployment every second or two rather than
// backing off to 30 seconds.
func envtestOptions() *Options {
	return &Options{PollInitial: time.Second, PollMax: 2 * time.Second}
}

// startController builds a manager on the test environment as main.go
// does (leader election with release on cancel, the reconciler on the
// manager's client, SetupWithManager), restricted to namespace ns, and
// starts it. The manager stops at the end of the test, or earlier by
// run.stop. opts are the reconciler's options (nil: envtestOptions).
func startController(t *testing.T, ns string, opts *Options) *controllerRun {
	t.Helper()
	if opts == nil {
		opts = envtestOptions()
	}
	env := realAPI.Require(t)
	mo := kubetest.ManagerOptions(t, env, ns)
	mo.LeaderElectionID = "rollout-controller.examples.stepflow.io"
	mgr, err := ctrl.NewManager(env.Config, mo)
	require.NoError(t, err)

	run := &controllerRun{}
	c := recordingClient{Client: mgr.GetClient(), run: run}
	r, err := NewRolloutReconciler(c, mgr.GetScheme(), opts)
	require.NoError(t, err)
	require.NoError(t, r.SetupWithManager(mgr))
	run.stop = kubetest.StartManager(t, mgr)
	return run
}

// recordingClient is the manager's client, with the status writes of
// Rollouts recorded in run (and preceded by run.beforeStatusWrite).
type recordingClient struct {
	client.Client
	run *controllerRun
}

func (c recordingClient) Status() client.SubResourceWriter {
	return recordingStatus{SubResourceWriter: c.Client.Status(), run: c.run}
}

type recordingStatus struct {
	client.SubResourceWriter
	run *controllerRun
}

func (w recordingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	ro, ok := obj.(*v1alpha1.Rollout)
	if !ok {
		return w.SubResourceWriter.Update(ctx, obj, opts...)
	}
	run := w.run
	run.mu.Lock()
	before := run.beforeStatusWrite
	run.mu.Unlock()
	if before != nil {
		before(ro)
	}
	sw := statusWrite{phase: ro.Status.Phase, step: ro.Status.Step, generation: ro.Status.ObservedGeneration}
	if ro.Status.State != nil {
		if st, err := codec.JSON[Plan](nil).Decode(ro.Status.State.Raw); err == nil {
			sw.process = st.ID
		}
	}
	sw.err = w.SubResourceWriter.Update(ctx, obj, opts...)
	run.mu.Lock()
	run.writes = append(run.writes, sw)
	run.mu.Unlock()
	return sw.err
}

// createRollout creates the Rollout "web" in ns: 2 replicas of web:1.0.
func createRollout(t *testing.T, c client.Client, ns string) *v1alpha1.Rollout {
	t.Helper()
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: v1alpha1.RolloutSpec{
			App: "web", Image: "registry.example/web:1.0", Environment: "staging", Replicas: ptr(int32(2)),
		},
	}
	require.NoError(t, c.Create(context.Background(), ro))
	return ro
}

// waitRollout polls the Rollout until ok holds, and returns it. It fails
// the test, showing the last status seen, after kubetest.Wait.
func waitRollout(t *testing.T, c client.Client, key types.NamespacedName, what string, ok func(ro *v1alpha1.Rollout) bool) *v1alpha1.Rollout {
	t.Helper()
	var last *v1alpha1.Rollout
	var lastErr error
	deadline := time.Now().Add(kubetest.Wait)
	for time.Now().Before(deadline) {
		var ro v1alpha1.Rollout
		lastErr = c.Get(context.Background(), key, &ro)
		if lastErr == nil {
			last = &ro
			if ok(&ro) {
				return &ro
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last == nil {
		t.Fatalf("waiting for the rollout %s: %s: %v", what, key, lastErr)
	}
	t.Fatalf("the rollout %s is not %s after %s: phase %q, step %q, observedGeneration %d/%d, conditions %+v",
		key, what, kubetest.Wait, last.Status.Phase, last.Status.Step, last.Status.ObservedGeneration, last.Generation, last.Status.Conditions)
	return nil
}

// waitGone polls until obj no longer exists.
func waitGone(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	key := client.ObjectKeyFromObject(obj)
	deadline := time.Now().Add(kubetest.Wait)
	for time.Now().Before(deadline) {
		if apierrors.IsNotFound(c.Get(context.Background(), key, obj)) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%T %s still exists after %s", obj, key, kubetest.Wait)
}

func phaseIs(phase string) func(*v1alpha1.Rollout) bool {
	return func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == phase && ro.Status.ObservedGeneration == ro.Generation
	}
}

// waitingOrEnded holds once the first process waits for its Deployment,
// or has ended in any way (so that a failure shows at once).
func waitingOrEnded(ro *v1alpha1.Rollout) bool {
	switch ro.Status.Phase {
	case "waiting":
		return ro.Status.Step == PathAvailable
	case "", "running":
		return false
	}
	return true
}

// decodeState decodes the Rollout's stored process.
func decodeState(t *testing.T, ro *v1alpha1.Rollout) stepflow.State[Plan] {
	t.Helper()
	require.NotNil(t, ro.Status.State, "status.state is empty")
	st, err := codec.JSON[Plan](nil).Decode(ro.Status.State.Raw)
	require.NoError(t, err)
	return st
}

// deploymentOf reads the Deployment of the Rollout "web" in ns.
func deploymentOf(t *testing.T, c client.Client, ns string) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	require.NoError(t, c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "web"}, &d))
	return &d
}

// makeAvailable plays the Deployment controller: every replica of the
// Deployment's current template is up.
func makeAvailable(t *testing.T, c client.Client, ns string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d := deploymentOf(t, c, ns)
		n := *d.Spec.Replicas
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
		}
		return c.Status().Update(context.Background(), d)
	})
	require.NoError(t, err)
}

// requireNoFailure checks that the controller never wrote a failed
// process, and shows its writes when it did.
func requireNoFailure(t *testing.T, run *controllerRun) {
	t.Helper()
	for _, w := range run.statusWrites() {
		require.NotEqual(t, "failed", w.phase, "the controller recorded a failure: %+v", run.statusWrites())
	}
}

// A Rollout goes all the way: the controller writes the ConfigMap and the
// Deployment, waits, and completes once the Deployment is available.
func TestEnvtestRolloutToReady(t *testing.T) {
	c := cluster(t)
	ns := kubetest.Namespace(t, c)
	run := startController(t, ns, nil)
	ro := createRollout(t, c, ns)
	key := client.ObjectKeyFromObject(ro)

	ro = waitRollout(t, c, key, "waiting for its Deployment", waitingOrEnded)
	require.Equal(t, "waiting", ro.Status.Phase, "conditions: %+v", ro.Status.Conditions)
	assert.Contains(t, ro.Finalizers, Finalizer)
	d := deploymentOf(t, c, ns)
	ref := metav1.GetControllerOf(d)
	require.NotNil(t, ref, "the Deployment has no controller")
	assert.Equal(t, "Rollout", ref.Kind)
	assert.Equal(t, ro.UID, ref.UID)
	assert.Equal(t, "registry.example/web:1.0", d.Spec.Template.Spec.Containers[0].Image)
	var cm corev1.ConfigMap
	require.NoError(t, c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "web-config"}, &cm))
	assert.Equal(t, "staging", cm.Data["APP_ENVIRONMENT"])
	assert.Equal(t, cm.Labels[labelManagedBy], managerName)

	makeAvailable(t, c, ns)
	ro = waitRollout(t, c, key, "done", phaseIs("done"))
	requireCondition(t, ro, v1alpha1.ConditionReady, metav1.ConditionTrue, kube.ReasonComplete)
	requireCondition(t, ro, v1alpha1.ConditionFailed, metav1.ConditionFalse, kube.ReasonNoFailure)
	st := decodeState(t, ro)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, fmt.Sprintf("%s/%d", ro.UID, ro.Generation), st.ID)
	requireNoFailure(t, run)
}

// The reconcile that creates the Deployment polls it at once. A manager
// reads from its informer cache, which has not seen the Deployment yet:
// the first poll must take that for "not yet", not for a Deployment
// deleted during the rollout (a permanent failure).
func TestEnvtestFirstRolloutReadsItsOwnCreate(t *testing.T) {
	c := cluster(t)
	ns := kubetest.Namespace(t, c)
	run := startController(t, ns, nil)
	ro := createRollout(t, c, ns)

	ro = waitRollout(t, c, client.ObjectKeyFromObject(ro), "waiting for its Deployment", waitingOrEnded)
	requireNoFailure(t, run)
	assert.Equal(t, "waiting", ro.Status.Phase)
	requireCondition(t, ro, v1alpha1.ConditionFailed, metav1.ConditionFalse, kube.ReasonNoFailure)
	// The very first status write already held the waiting process: the
	// create and the poll happened in one reconcile. (The write is
	// recorded once the API server has answered it, which may be a moment
	// after this test saw its result.)
	var writes []statusWrite
	kubetest.Eventually(t, "recorded", func() (bool, string) {
		writes = run.statusWrites()
		return len(writes) > 0, "no status write recorded"
	})
	assert.Equal(t, "waiting", writes[0].phase, "writes: %+v", writes)
}

// Deleting a Rollout mid-flight cancels its process: the cleanup deletes
// the Deployment and the ConfigMap, and only then is the finalizer
// released. (Deletion bumps metadata.generation, which the fake client
// does not do.) Nothing else would delete them here: envtest runs no
// garbage collector.
func TestEnvtestDeletionTearsDown(t *testing.T) {
	c := cluster(t)
	ns := kubetest.Namespace(t, c)
	run := startController(t, ns, nil)
	ro := createRollout(t, c, ns)
	bystander := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-settings"}}
	require.NoError(t, c.Create(context.Background(), bystander))

	ro = waitRollout(t, c, client.ObjectKeyFromObject(ro), "waiting for its Deployment", waitingOrEnded)
	require.Equal(t, "waiting", ro.Status.Phase)
	deploymentOf(t, c, ns)

	require.NoError(t, c.Delete(context.Background(), ro))
	waitGone(t, c, &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}})

	// The finalizer went last, so the teardown is complete by now.
	err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "web"}, &appsv1.Deployment{})
	assert.True(t, apierrors.IsNotFound(err), "the Deployment was deleted: %v", err)
	err = c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "web-config"}, &corev1.ConfigMap{})
	assert.True(t, apierrors.IsNotFound(err), "the ConfigMap was deleted: %v", err)
	assert.NoError(t, c.Get(context.Background(), client.ObjectKeyFromObject(bystander), &corev1.ConfigMap{}), "objects the Rollout does not control stay")

	var phases []string
	for _, w := range run.statusWrites() {
		if w.err == nil {
			phases = append(phases, w.phase)
		}
	}
	require.NotEmpty(t, phases)
	assert.Equal(t, "canceled", phases[len(phases)-1], "the canceled process was recorded before the object went: %v", phases)
}

// A spec change mid-rollout abandons the process of the old spec and rolls
// out the new one.
func TestEnvtestSpecChangeMidRollout(t *testing.T) {
	c := cluster(t)
	ns := kubetest.Namespace(t, c)
	run := startController(t, ns, nil)
	ro := createRollout(t, c, ns)
	key := client.ObjectKeyFromObject(ro)

	ro = waitRollout(t, c, key, "waiting for its Deployment", waitingOrEnded)
	require.Equal(t, "waiting", ro.Status.Phase)
	first := decodeState(t, ro)

	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur v1alpha1.Rollout
		if err := c.Get(context.Background(), key, &cur); err != nil {
			return err
		}
		cur.Spec.Image = "registry.example/web:2.0"
		cur.Spec.Replicas = ptr(int32(3))
		return c.Update(context.Background(), &cur)
	}))

	ro = waitRollout(t, c, key, "rolling out generation 2", func(ro *v1alpha1.Rollout) bool {
		return ro.Generation == 2 && ro.Status.ObservedGeneration == 2 && waitingOrEnded(ro)
	})
	require.Equal(t, "waiting", ro.Status.Phase)
	second := decodeState(t, ro)
	assert.NotEqual(t, first.ID, second.ID, "a new process")
	assert.Equal(t, fmt.Sprintf("%s/2", ro.UID), second.ID)
	d := deploymentOf(t, c, ns)
	assert.Equal(t, "registry.example/web:2.0", d.Spec.Template.Spec.Containers[0].Image)
	assert.Equal(t, int32(3), *d.Spec.Replicas)

	makeAvailable(t, c, ns)
	ro = waitRollout(t, c, key, "done", phaseIs("done"))
	requireCondition(t, ro, v1alpha1.ConditionReady, metav1.ConditionTrue, kube.ReasonComplete)
	requireNoFailure(t, run)
}

// Someone else writes the Rollout between the controller's read and its
// status write: the API server refuses the write with a conflict, and the
// controller tries again from the newer object instead of losing its
// progress or overwriting the other write.
func TestEnvtestStatusConflictIsRetried(t *testing.T) {
	c := cluster(t)
	ns := kubetest.Namespace(t, c)
	run := startController(t, ns, nil)
	var touched sync.Once
	run.mu.Lock()
	run.beforeStatusWrite = func(ro *v1alpha1.Rollout) {
		if ro.Status.Phase != "waiting" {
			return
		}
		touched.Do(func() {
			// Another writer: a label, on the object the reconcile read.
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				var cur v1alpha1.Rollout
				if err := c.Get(context.Background(), client.ObjectKeyFromObject(ro), &cur); err != nil {
					return err
				}
				if cur.Labels == nil {
					cur.Labels = map[string]string{}
				}
				cur.Labels["team"] = "checkout"
				return c.Update(context.Background(), &cur)
			})
			assert.NoError(t, err)
		})
	}
	run.mu.Unlock()
	ro := createRollout(t, c, ns)
	key := client.ObjectKeyFromObject(ro)

	ro = waitRollout(t, c, key, "waiting for its Deployment", func(ro *v1alpha1.Rollout) bool {
		return ro.Labels["team"] == "checkout" && waitingOrEnded(ro)
	})
	require.Equal(t, "waiting", ro.Status.Phase)
	conflicts := 0
	for _, w := range run.statusWrites() {
		if apierrors.IsConflict(w.err) {
			conflicts++
		}
	}
	assert.Positive(t, conflicts, "the API server refused the stale write: %+v", run.statusWrites())

	makeAvailable(t, c, ns)
	ro = waitRollout(t, c, key, "done", phaseIs("done"))
	assert.Equal(t, "checkout", ro.Labels["team"], "the other writer's change stays")
	requireCondition(t, ro, v1alpha1.ConditionReady, metav1.ConditionTrue, kube.ReasonComplete)
	requireNoFailure(t, run)
}

// The controller stops mid-rollout (a restart, a new leader) and the next
// one continues the same process from the status: the steps done are not
// done again and the wait goes on.
func TestEnvtestControllerRestartContinues(t *testing.T) {
	c := cluster(t)
	ns := kubetest.Namespace(t, c)
	first := startController(t, ns, nil)
	ro := createRollout(t, c, ns)
	key := client.ObjectKeyFromObject(ro)

	ro = waitRollout(t, c, key, "waiting for its Deployment", waitingOrEnded)
	require.Equal(t, "waiting", ro.Status.Phase)
	first.stop()
	ro = waitRollout(t, c, key, "stored", func(*v1alpha1.Rollout) bool { return true })
	before := decodeState(t, ro)
	require.Equal(t, stepflow.Waiting, before.Status)
	generation := deploymentOf(t, c, ns).Generation

	// While no controller runs, the Deployment becomes available.
	makeAvailable(t, c, ns)
	second := startController(t, ns, nil)
	ro = waitRollout(t, c, key, "done", phaseIs("done"))
	after := decodeState(t, ro)
	assert.Equal(t, before.ID, after.ID, "the same process")
	assert.Greater(t, after.Steps, before.Steps)
	assert.Equal(t, generation, deploymentOf(t, c, ns).Generation, "the Deployment was not written again")
	for _, w := range second.statusWrites() {
		assert.Equal(t, before.ID, w.process, "the second controller wrote no other process: %+v", second.statusWrites())
	}
	requireNoFailure(t, first)
	requireNoFailure(t, second)
}

// A new release of the controller changes the flow (rollout/v0 becomes
// rollout/v1) and declares the migration: a rollout left in flight by the
// old release continues on the new flow where it stood.
func TestEnvtestFlowVersionUpgradeMigrates(t *testing.T) {
	c := cluster(t)
	ns := kubetest.Namespace(t, c)
	ro := createRollout(t, c, ns)
	key := client.ObjectKeyFromObject(ro)

	// What the old release left: the finalizer, and a rollout/v0 process
	// that wrote the objects and waits for the Deployment.
	o := envtestOptions().withDefaults()
	old := olderFlow(t, newSteps(c, realAPI.Require(t).Scheme, nil), o)
	require.NoError(t, c.Get(context.Background(), key, ro))
	ro.Finalizers = []string{Finalizer}
	require.NoError(t, c.Update(context.Background(), ro))
	st := old.Start(newPlan(ro))
	st.ID = kube.ProcessID(ro)
	var err error
	for st.Status != stepflow.Waiting {
		st, err = old.Apply(context.Background(), st)
		require.NoError(t, err)
	}
	require.Equal(t, []string{"rollout/steps/ready"}, st.Positions())
	raw, err := codec.JSON[Plan](nil).Encode(st)
	require.NoError(t, err)
	ro.Status = v1alpha1.RolloutStatus{ProcessStatus: kube.ProcessStatus{
		ObservedGeneration: ro.Generation, FlowVersion: "rollout/v0", Phase: "waiting",
		State: &runtime.RawExtension{Raw: raw},
	}}
	require.NoError(t, c.Status().Update(context.Background(), ro))
	generation := deploymentOf(t, c, ns).Generation

	// The new release: rollout/v1, knowing rollout/v0 and the migration.
	opts := envtestOptions()
	opts.Older = []*stepflow.Flow[Plan]{old}
	opts.Migrations = []*versions.Migration[Plan]{versions.NewMigration[Plan]("rollout/v0", FlowVersion).
		Rename("rollout/steps/ready", "rollout/steps/available").
		Rename("rollout/teardown", "rollout/cleanup/teardown")}
	run := startController(t, ns, opts)

	ro = waitRollout(t, c, key, "migrated", func(ro *v1alpha1.Rollout) bool { return ro.Status.FlowVersion == FlowVersion })
	got := decodeState(t, ro)
	assert.Equal(t, FlowVersion, got.Version)
	assert.Equal(t, st.ID, got.ID, "the same process, not a new one")
	assert.Equal(t, []string{PathAvailable}, got.Positions())
	assert.Equal(t, leaf(&st.Root).Since, leaf(&got.Root).Since, "the wait keeps its first poll")
	assert.Equal(t, st.Record, got.Record[:len(st.Record)], "the history of rollout/v0 is kept")

	makeAvailable(t, c, ns)
	ro = waitRollout(t, c, key, "done", phaseIs("done"))
	requireCondition(t, ro, v1alpha1.ConditionReady, metav1.ConditionTrue, kube.ReasonComplete)
	assert.Equal(t, st.ID, decodeState(t, ro).ID)
	assert.Equal(t, generation, deploymentOf(t, c, ns).Generation, "the Deployment was not written again")
	requireNoFailure(t, run)
}
