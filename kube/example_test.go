package kube_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

// A Task driven to Ready as controller-runtime would drive it, on a fake
// API server and a fake clock: each reconcile's RequeueAfter moves the
// clock, and the ConfigMap the process waits for becomes ready after the
// second poll. (Task is a custom resource whose status embeds
// kube.ProcessStatus; its flow writes a ConfigMap and waits for it.)
func ExampleReconciler() {
	scheme := newScheme()
	task := &Task{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "hello", UID: "uid-hello", Generation: 1},
		Spec:       TaskSpec{Message: "hi"},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(task).WithStatusSubresource(&Task{}).Build()
	read := &kube.Reader{Cache: c}
	reg := newTaskRegistry(&taskSteps{client: c, read: read, scheme: scheme}, 2*time.Second)
	clock := stepflowtest.NewClock(time.Time{})
	r, err := kube.NewReconciler(c, reg, newJob, &kube.Options[Job, *Task]{
		ProcessOptions: kube.ProcessOptions{Noun: "task"},
		Clock:          clock,
		Finalizer:      "example.com/cleanup",
		Reader:         read,
	})
	if err != nil {
		panic(err)
	}

	ctx := context.Background()
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(task)}
	for i := 0; ; i++ {
		if i == 2 {
			var cm corev1.ConfigMap
			_ = c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "hello-out"}, &cm)
			cm.Annotations = map[string]string{readyAnnotation: "true"}
			_ = c.Update(ctx, &cm)
		}
		res, err := r.Reconcile(ctx, req)
		if err != nil {
			panic(err)
		}
		_ = c.Get(ctx, req.NamespacedName, task)
		ready := meta.FindStatusCondition(task.Status.Conditions, kube.ConditionReady)
		fmt.Printf("%-7s %-17s Ready=%s/%s requeue=%s\n", task.Status.Phase, task.Status.Step, ready.Status, ready.Reason, res.RequeueAfter)
		if res.RequeueAfter == 0 {
			break
		}
		clock.Advance(res.RequeueAfter)
	}
	// Output:
	// waiting task/steps/ready  Ready=False/TaskStepsReady requeue=2s
	// waiting task/steps/ready  Ready=False/TaskStepsReady requeue=4s
	// done                      Ready=True/Complete requeue=0s
}

// A Reconcile of your own can use Process for the process and keep the
// rest: here a ProcessStatus in memory stands for an object's status, and
// two calls of reconcile for two reconciles.
func ExampleProcess() {
	flow := stepflow.Must(stepflow.New("greet/v1",
		combinators.Do("hello", func(context.Context, *string) error { return nil }),
		combinators.Sleep[string]("pause", 90*time.Second),
		combinators.Do("bye", func(context.Context, *string) error { return nil }),
	))
	p, err := kube.NewFlowProcess(flow, nil)
	if err != nil {
		panic(err)
	}
	clock := stepflowtest.NewClock(time.Time{})
	var status kube.ProcessStatus // obj.Status.ProcessStatus
	const generation = 1          // obj.Generation

	reconcile := func() ctrl.Result {
		ctx := stepflow.WithClock(context.Background(), clock)
		st, err := p.Load(&status, generation)
		prev := &st
		switch {
		case errors.Is(err, kube.ErrNoProcess):
			st, prev = p.Start("world", "uid-1/1"), nil
		case err != nil:
			p.Report(&status, generation, err, clock.Now()) // then write the status
			return ctrl.Result{}
		}
		next, err := p.Advance(ctx, st)
		if err != nil {
			panic(err) // kube.CannotContinue(err): Report; otherwise return err
		}
		if err := p.Save(&status, generation, prev, next, clock.Now()); err != nil {
			panic(err)
		}
		// Write the status here, with Status().Update.
		return p.Requeue(next, clock.Now())
	}

	for {
		res := reconcile()
		fmt.Printf("%s %q requeue=%s\n", status.Phase, status.Step, res.RequeueAfter)
		if res.RequeueAfter == 0 {
			break
		}
		clock.Advance(res.RequeueAfter)
	}
	// Output:
	// waiting "pause" requeue=1m30s
	// done "" requeue=0s
}

// Step conditions: one per step, True once done, Unknown while pending or
// waiting. The step "create" is tagged condition=OutputWritten; the
// others have types derived from their paths.
func ExampleStepConditions() {
	scheme := newScheme()
	task := &Task{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "hello", UID: "uid-hello", Generation: 1}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(task).WithStatusSubresource(&Task{}).Build()
	reg := newTaskRegistry(&taskSteps{client: c, read: &kube.Reader{Cache: c}, scheme: scheme}, 2*time.Second)
	r, err := kube.NewReconciler(c, reg, newJob, &kube.Options[Job, *Task]{
		ProcessOptions: kube.ProcessOptions{StepConditions: &kube.StepConditions{}},
		Clock:          stepflowtest.NewClock(time.Time{}),
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(task)}); err != nil {
		panic(err)
	}
	_ = c.Get(ctx, client.ObjectKeyFromObject(task), task)
	for _, cond := range task.Status.Conditions {
		fmt.Printf("%-40s %-7s %s\n", cond.Type, cond.Status, cond.Reason)
	}
	// Output:
	// Progressing                              True    TaskStepsReady
	// Ready                                    False   TaskStepsReady
	// Failed                                   False   NoFailure
	// OutputWritten                            True    Done
	// step.stepflow.io/TaskStepsReady          Unknown Waiting
	// step.stepflow.io/TaskCleanupDelete       Unknown Pending
}

// Requeue turns a state's wake time into a controller-runtime Result,
// within bounds.
func ExampleRequeue() {
	now := stepflowtest.Epoch
	for _, st := range []stepflow.State[struct{}]{
		{Status: stepflow.Waiting, WakeAt: now.Add(90 * time.Second)},
		{Status: stepflow.Waiting, WakeAt: now.Add(30 * 24 * time.Hour)},
		{Status: stepflow.Running},
		{Status: stepflow.Done},
	} {
		fmt.Printf("%-7s %s\n", st.Status, kube.Requeue(st, now, nil).RequeueAfter)
	}
	// Output:
	// waiting 1m30s
	// waiting 1h0m0s
	// running 1s
	// done    0s
}

// Reason names a step in a condition reason.
func ExampleReason() {
	fmt.Println(kube.Reason("rollout/steps/apply-deployment"))
	fmt.Println(kube.Reason("3rd/step"))
	// Output:
	// RolloutStepsApplyDeployment
	// Step3rdStep
}
