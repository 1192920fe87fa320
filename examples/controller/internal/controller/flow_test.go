package controller

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// flowEnv is the flow alone, without the reconciler: its steps talk to a
// fake API server whose Deployments become available as soon as they are
// read (an instant Deployment controller), and the stepflowtest driver
// plays the part of the reconciler.
type flowEnv struct {
	base client.WithWatch
	flow *stepflow.Flow[Plan]
}

func newFlowEnv(t *testing.T) *flowEnv {
	scheme := testScheme(t)
	base := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&appsv1.Deployment{}).Build()
	c := interceptor.NewClient(base, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if err := c.Get(ctx, key, obj, opts...); err != nil {
				return err
			}
			if d, ok := obj.(*appsv1.Deployment); ok && d.Spec.Replicas != nil {
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
	st.ID = processID(ro)
	return st
}

// The flow has the properties every flow should have: it completes,
// is deterministic, and ends the same when the controller dies between any
// two steps (its steps are safe to repeat).
func TestFlowInvariants(t *testing.T) {
	e := newFlowEnv(t)
	stepflowtest.CheckInvariants(t, e.flow, e.start(), &stepflowtest.InvariantOptions[Plan]{
		Reset: func() { e.reset(t) },
	})
}

// Scripted outcomes exercise paths that are awkward to reach through the
// API server: a Deployment slow to become available, a step whose effect
// happened but whose reply was lost.
func TestFlowScripts(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		script  stepflowtest.Script
		status  stepflow.Status
		visited []string
		elapsed time.Duration
	}{{
		name:    "slow deployment",
		script:  stepflowtest.Script{StepWaitAvailable: stepflowtest.Times(stepflowtest.False, 3)},
		status:  stepflow.Done,
		visited: []string{StepWriteConfig, StepApplyDeployment, StepWaitAvailable, StepWaitAvailable, StepWaitAvailable, StepWaitAvailable},
		elapsed: 2*time.Second + 4*time.Second + 8*time.Second,
	}, {
		name:    "deployment never available",
		script:  stepflowtest.Script{StepWaitAvailable: stepflowtest.Always(stepflowtest.False)},
		status:  stepflow.Failed,
		elapsed: DefaultReadyTimeout,
	}, {
		name:    "lost reply",
		script:  stepflowtest.Script{StepApplyDeployment: stepflowtest.Calls(stepflowtest.FailAfter)},
		status:  stepflow.Failed,
		visited: []string{StepWriteConfig, StepApplyDeployment},
	}, {
		name:    "crash after the deployment step",
		script:  stepflowtest.Script{StepApplyDeployment: stepflowtest.Calls(stepflowtest.Crash)},
		status:  stepflow.Done,
		visited: []string{StepWriteConfig, StepApplyDeployment, StepApplyDeployment, StepWaitAvailable},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFlowEnv(t)
			tr, err := stepflowtest.Run(ctx, e.flow, e.start(), &stepflowtest.RunOptions[Plan]{Script: tt.script})
			require.NoError(t, err)
			stepflowtest.EndsWith(t, tr, tt.status)
			if tt.visited != nil {
				assert.Equal(t, tt.visited, tr.Visited(), "%s", tr)
			}
			assert.Equal(t, tt.elapsed, tr.Elapsed())
			if tt.status == stepflow.Done {
				var d appsv1.Deployment
				require.NoError(t, e.base.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, &d))
				assert.Equal(t, tr.Final.Data.ConfigHash, d.Spec.Template.Annotations[annotConfigHash])
			}
		})
	}
}
