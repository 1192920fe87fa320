package controller_test

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/examples/controller/internal/controller"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// A Rollout driven to Ready as controller-runtime would drive it, on a fake
// API server and a fake clock: each reconcile's RequeueAfter moves the
// clock, and the Deployment becomes available after the second poll.
func ExampleRolloutReconciler_Reconcile() {
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	_ = appsv1.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "uid-web", Generation: 1},
		Spec:       v1alpha1.RolloutSpec{App: "web", Image: "registry.example/web:1.0", Environment: "staging"},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ro).
		WithStatusSubresource(&v1alpha1.Rollout{}, &appsv1.Deployment{}).Build()
	clock := stepflowtest.NewClock(time.Time{})
	r, err := controller.NewRolloutReconciler(c, scheme, &controller.Options{Clock: clock})
	if err != nil {
		panic(err)
	}

	ctx := context.Background()
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(ro)}
	for i := 0; ; i++ {
		if i == 2 {
			var d appsv1.Deployment
			_ = c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &d)
			d.Status = appsv1.DeploymentStatus{UpdatedReplicas: 1, AvailableReplicas: 1}
			_ = c.Status().Update(ctx, &d)
		}
		res, err := r.Reconcile(ctx, req)
		if err != nil {
			panic(err)
		}
		_ = c.Get(ctx, req.NamespacedName, ro)
		ready := meta.FindStatusCondition(ro.Status.Conditions, v1alpha1.ConditionReady)
		fmt.Printf("%-7s %-24s Ready=%s/%s requeue=%s\n", ro.Status.Phase, ro.Status.Step, ready.Status, ready.Reason, res.RequeueAfter)
		if res.RequeueAfter == 0 {
			break
		}
		clock.Advance(res.RequeueAfter)
	}
	// Output:
	// waiting rollout/steps/available  Ready=False/RolloutStepsAvailable requeue=2s
	// waiting rollout/steps/available  Ready=False/RolloutStepsAvailable requeue=4s
	// done                             Ready=True/Complete requeue=0s
}
