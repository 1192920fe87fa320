package controller

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// flowEnv is the flow alone, without the reconciler: its steps talk to a
// fake API server, and the stepflowtest driver plays the part of the
// reconciler. With instant set, Deployments become available as soon as
// they are read (an instant Deployment controller); without it, never.
type flowEnv struct {
	base client.WithWatch
	flow *stepflow.Flow[Plan]
}

func newFlowEnv(t *testing.T, instant bool) *flowEnv {
	scheme := testScheme(t)
	base := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&appsv1.Deployment{}).Build()
	c := interceptor.NewClient(base, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if err := c.Get(ctx, key, obj, opts...); err != nil {
				return err
			}
			if d, ok := obj.(*appsv1.Deployment); ok && instant && d.Spec.Replicas != nil {
				n := *d.Spec.Replicas
				d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, UpdatedReplicas: n, AvailableReplicas: n}
			}
			return nil
		},
	})
	r, err := NewRolloutReconciler(c, scheme, nil)
	require.NoError(t, err)
	return &flowEnv{base: base, flow: r.Flow()}
}

// reset empties the fake API server between runs.
func (e *flowEnv) reset(t stepflowtest.TestingT) {
	ctx := context.Background()
	for _, obj := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-config"}},
	} {
		if err := client.IgnoreNotFound(e.base.Delete(ctx, obj)); err != nil {
			t.Errorf("reset: %v", err)
		}
	}
}

func (e *flowEnv) start() stepflow.State[Plan] {
	ro := newRollout()
	st := e.flow.Start(newPlan(ro))
	st.ID = kube.ProcessID(ro)
	return st
}

// The flow has the properties every flow should have: it completes,
// is deterministic, and ends the same when the controller dies between any
// two steps (its steps are safe to repeat).
func TestFlowInvariants(t *testing.T) {
	e := newFlowEnv(t, true)
	stepflowtest.CheckInvariants(t, e.flow, e.start(), &stepflowtest.InvariantOptions[Plan]{
		Reset: func() { e.reset(t) },
	})
}

// Scripted outcomes exercise paths that are awkward to reach through the
// API server: a Deployment slow to become available, a step whose effect
// happened but whose reply was lost, a request rejected for good.
func TestFlowScripts(t *testing.T) {
	ctx := context.Background()
	const unchecked = -1
	tests := []struct {
		name    string
		script  stepflowtest.Script
		status  stepflow.Status
		visited []string
		elapsed time.Duration
	}{{
		name:    "slow deployment",
		script:  stepflowtest.Script{PathAvailable: stepflowtest.Times(stepflowtest.False, 3)},
		status:  stepflow.Done,
		visited: []string{PathConfig, PathDeployment, PathAvailable, PathAvailable, PathAvailable, PathAvailable, PathTeardown},
		elapsed: 2*time.Second + 4*time.Second + 8*time.Second,
	}, {
		name:    "deployment never available",
		script:  stepflowtest.Script{PathAvailable: stepflowtest.Always(stepflowtest.False)},
		status:  stepflow.Failed,
		elapsed: DefaultReadyTimeout,
	}, {
		name:    "lost reply is retried",
		script:  stepflowtest.Script{PathDeployment: stepflowtest.Calls(stepflowtest.FailAfter)},
		status:  stepflow.Done,
		visited: []string{PathConfig, PathDeployment, PathConfig, PathDeployment, PathAvailable, PathTeardown},
		elapsed: unchecked, // one jittered retry delay
	}, {
		name:    "retries run out",
		script:  stepflowtest.Script{PathDeployment: stepflowtest.Always(stepflowtest.Fail)},
		status:  stepflow.Failed,
		elapsed: unchecked,
	}, {
		name:    "rejected for good",
		script:  stepflowtest.Script{PathConfig: stepflowtest.Calls(stepflowtest.FailPermanent)},
		status:  stepflow.Failed,
		visited: []string{PathConfig, PathTeardown},
	}, {
		name:    "crash after the deployment step",
		script:  stepflowtest.Script{PathDeployment: stepflowtest.Calls(stepflowtest.Crash)},
		status:  stepflow.Done,
		visited: []string{PathConfig, PathDeployment, PathDeployment, PathAvailable, PathTeardown},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFlowEnv(t, true)
			tr, err := stepflowtest.Run(ctx, e.flow, e.start(), &stepflowtest.RunOptions[Plan]{Script: tt.script})
			require.NoError(t, err)
			stepflowtest.EndsWith(t, tr, tt.status)
			if tt.visited != nil {
				assert.Equal(t, tt.visited, tr.Visited(), "%s", tr)
			}
			if tt.elapsed != unchecked {
				assert.Equal(t, tt.elapsed, tr.Elapsed())
			}
			if tt.status == stepflow.Failed {
				require.NotNil(t, tr.Final.Err)
				assert.NotEqual(t, PathTeardown, tr.Final.Err.Path, "the cleanup did not fail")
			}
			var d appsv1.Deployment
			err = e.base.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, &d)
			if tt.status == stepflow.Done {
				require.NoError(t, err)
				assert.Equal(t, tr.Final.Data.ConfigHash, d.Spec.Template.Annotations[annotConfigHash])
			}
		})
	}
}

// The trace of a rollout whose Deployment needs three polls, and the
// flow's shape, are kept as golden files: a change of behaviour shows up
// in review. Refresh them with `go test -update`.
func TestFlowGolden(t *testing.T) {
	e := newFlowEnv(t, true)
	tr, err := stepflowtest.Run(context.Background(), e.flow, e.start(), &stepflowtest.RunOptions[Plan]{
		Script: stepflowtest.Script{PathAvailable: stepflowtest.Times(stepflowtest.False, 3)},
	})
	require.NoError(t, err)
	stepflowtest.Golden(t, tr, "rollout")
	d, err := e.flow.Describe(tr.States()[3])
	require.NoError(t, err)
	stepflowtest.GoldenText(t, d.Tree, "rollout-waiting-tree")
}

// Canceling a process mid-flight runs the cleanup, which removes what the
// rollout made; a process that completed keeps its objects.
func TestFlowCancelTearsDown(t *testing.T) {
	ctx := context.Background()
	e := newFlowEnv(t, false)
	clock := stepflowtest.NewClock(time.Time{})
	st := e.start()
	for range 3 { // config, deployment, first poll
		var err error
		st, err = e.flow.Apply(clock.Context(ctx), st)
		require.NoError(t, err)
	}
	require.Equal(t, stepflow.Waiting, st.Status)
	require.Equal(t, []string{PathAvailable}, st.Positions())

	st, err := e.flow.Cancel(st, "deleted")
	require.NoError(t, err)
	tr, err := stepflowtest.Run(ctx, e.flow, st, &stepflowtest.RunOptions[Plan]{Clock: clock})
	require.NoError(t, err)
	stepflowtest.EndsWith(t, tr, stepflow.Canceled)
	assert.Equal(t, []string{PathTeardown}, tr.Ran())

	for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.ConfigMap{}} {
		name := "web"
		if _, ok := obj.(*corev1.ConfigMap); ok {
			name = "web-config"
		}
		err := e.base.Get(ctx, types.NamespacedName{Namespace: "shop", Name: name}, obj)
		assert.True(t, apierrors.IsNotFound(err), "%T %s: %v", obj, name, err)
	}
}
