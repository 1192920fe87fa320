package controller

import (
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// BenchmarkReconcileWaiting measures the most frequent reconcile: a
// Rollout waiting for its Deployment, woken before its time (a resync, an
// unrelated event). It reads the object, decodes and validates the state,
// derives the status and writes nothing. Most of the time goes to the fake
// client's copy of the object, which the informer cache of a real manager
// also makes.
func BenchmarkReconcileWaiting(b *testing.B) {
	scheme := testScheme(b)
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(newRollout()).
		WithStatusSubresource(&v1alpha1.Rollout{}, &appsv1.Deployment{}).Build()
	r, err := NewRolloutReconciler(c, scheme, &Options{Clock: stepflowtest.NewClock(stepflowtest.Epoch)})
	require.NoError(b, err)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(newRollout())}
	ctx := b.Context()
	res, err := r.Reconcile(ctx, req)
	require.NoError(b, err)
	require.Positive(b, res.RequeueAfter)

	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Reconcile(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
