package kube_test

// The custom resource of the tests and examples: a Task, whose process
// writes a ConfigMap "<name>-out" holding the spec's message, waits until
// someone marks the ConfigMap ready, and deletes it again when the Task is
// deleted mid-flight. testdata/crd declares it for the API server.

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

var taskGV = schema.GroupVersion{Group: "test.stepflow.io", Version: "v1"}

// TaskSpec is what a Task asks for.
type TaskSpec struct {
	Message string `json:"message"`
}

// TaskStatus embeds the process, and adds a field of its own that
// Options.Status fills in.
type TaskStatus struct {
	kube.ProcessStatus `json:",inline"`
	Output             string `json:"output,omitempty"`
}

type Task struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              TaskSpec   `json:"spec,omitempty"`
	Status            TaskStatus `json:"status,omitempty"`
}

func (t *Task) GetProcessStatus() *kube.ProcessStatus { return &t.Status.ProcessStatus }

func (t *Task) DeepCopyInto(out *Task) {
	*out = *t
	out.TypeMeta = t.TypeMeta
	t.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	t.Status.ProcessStatus.DeepCopyInto(&out.Status.ProcessStatus)
}

func (t *Task) DeepCopyObject() runtime.Object {
	if t == nil {
		return nil
	}
	out := new(Task)
	t.DeepCopyInto(out)
	return out
}

type TaskList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Task `json:"items"`
}

func (l *TaskList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &TaskList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]Task, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}

// newScheme knows Tasks and ConfigMaps.
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		panic(err)
	}
	s.AddKnownTypes(taskGV, &Task{}, &TaskList{})
	metav1.AddToGroupVersion(s, taskGV)
	return s
}

// Job is the data of a task's process: a snapshot of the spec.
type Job struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid"`
	Message   string    `json:"message"`
}

func newJob(t *Task) Job {
	return Job{Namespace: t.Namespace, Name: t.Name, UID: t.UID, Message: t.Spec.Message}
}

// Paths of the task flow.
const (
	pathCreate  = "task/steps/create"
	pathReady   = "task/steps/ready"
	pathCleanup = "task/cleanup/delete"
)

// readyAnnotation marks a Task's ConfigMap ready; the tests set it.
const readyAnnotation = "test.stepflow.io/ready"

// taskSteps are the steps of the task flow.
type taskSteps struct {
	client client.Client
	read   *kube.Reader
	scheme *runtime.Scheme
}

func outKey(j *Job) types.NamespacedName {
	return types.NamespacedName{Namespace: j.Namespace, Name: j.Name + "-out"}
}

// newTaskFlow compiles the task flow under version; waitName names its
// wait ("ready" in task/v1, "settled" in the task/v0 of the migration
// tests), which polls after poll and then every 2*poll.
func newTaskFlow(s *taskSteps, version, waitName string, poll time.Duration) *stepflow.Flow[Job] {
	retry := combinators.RetryPolicy{MaxAttempts: 5, InitialInterval: 2 * time.Second, MaxInterval: 10 * time.Second}
	return stepflow.Must(stepflow.NewWithOptions(version, &stepflow.Options{Record: 8},
		combinators.Finally("task",
			combinators.Sequence("steps",
				stepflow.Annotate(combinators.Do("create", s.create), stepflow.Meta{
					Description: "write the ConfigMap", Tags: []string{kube.ConditionTag + "=OutputWritten"}}),
				combinators.WaitFor(waitName, s.ready, combinators.Backoff(poll, 2*poll), combinators.Timeout(time.Minute))),
			combinators.Retry("cleanup", retry, combinators.Do("delete", s.cleanup)))))
}

// newTaskRegistry is the task flow alone, task/v1, polling after poll.
func newTaskRegistry(s *taskSteps, poll time.Duration) *versions.Registry[Job] {
	reg, err := versions.New([]*stepflow.Flow[Job]{newTaskFlow(s, "task/v1", "ready", poll)}, nil)
	if err != nil {
		panic(err)
	}
	return reg
}

func (s *taskSteps) create(ctx context.Context, j *Job) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: outKey(j).Name}}
	_, err := controllerutil.CreateOrUpdate(ctx, s.client, cm, func() error {
		owner := &Task{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.Name, UID: j.UID}}
		if err := controllerutil.SetControllerReference(owner, cm, s.scheme); err != nil {
			return stepflow.Permanent(err)
		}
		cm.Data = map[string]string{"message": j.Message}
		return nil
	})
	return err
}

// ready reads the ConfigMap through the Reader: in the reconcile that
// created it, a manager's cache may not have it yet.
func (s *taskSteps) ready(ctx context.Context, j *Job) (bool, error) {
	var cm corev1.ConfigMap
	err := s.read.Get(ctx, outKey(j), &cm)
	if apierrors.IsNotFound(err) {
		return false, stepflow.Permanent(fmt.Errorf("configmap %s was deleted", outKey(j)))
	}
	if err != nil {
		return false, nil
	}
	return cm.Annotations[readyAnnotation] == "true", nil
}

// cleanup deletes the ConfigMap of a canceled task.
func (s *taskSteps) cleanup(ctx context.Context, j *Job) error {
	call, _ := stepflow.CallFrom(ctx)
	if call.Caught == nil || call.Caught.Kind != stepflow.KindCanceled {
		return nil
	}
	var cm corev1.ConfigMap
	if err := s.read.Live().Get(ctx, outKey(j), &cm); err != nil {
		return client.IgnoreNotFound(err)
	}
	return client.IgnoreNotFound(s.client.Delete(ctx, &cm))
}
