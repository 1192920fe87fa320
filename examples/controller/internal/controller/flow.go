package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// FlowVersion names the rollout flow. It is stored in every state and in
// status.flowVersion. Change it whenever a step is renamed, removed or
// moved, so that the controller notices states written by the old flow
// (see Reconcile for what it does with them).
const FlowVersion = "rollout/v1"

// Step names. They are persisted in states and become condition reasons
// (WriteConfig, ApplyDeployment, WaitAvailable), so they are chosen strings
// that never change silently.
const (
	StepWriteConfig     = "write-config"
	StepApplyDeployment = "apply-deployment"
	StepWaitAvailable   = "wait-available"
)

// Plan is the data of one rollout process. It is a snapshot of the spec
// taken when the process started, plus what the steps learned on the way.
// Steps read the spec from here, never from the live object, so that one
// process rolls out exactly one generation of the spec.
type Plan struct {
	// Namespace, Name and UID identify the Rollout. It owns every object
	// the steps create, and the UID makes sure a Rollout deleted and
	// recreated under the same name does not adopt its predecessor's work.
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid"`
	// Generation is the Rollout's metadata.generation this process rolls out.
	Generation int64 `json:"generation"`

	App         string `json:"app"`
	Image       string `json:"image"`
	Environment string `json:"environment"`
	Replicas    int32  `json:"replicas"`

	// ConfigHash is the hash of the ConfigMap written by write-config. It
	// goes into the pod template, so that a change of configuration alone
	// still rolls the pods.
	ConfigHash string `json:"configHash,omitempty"`
	// DeploymentGeneration is the Deployment's metadata.generation after
	// apply-deployment wrote it. The wait is over only once the Deployment
	// controller has observed that generation.
	DeploymentGeneration int64 `json:"deploymentGeneration,omitempty"`
}

// newPlan snapshots a Rollout's spec.
func newPlan(ro *v1alpha1.Rollout) Plan {
	return Plan{
		Namespace: ro.Namespace, Name: ro.Name, UID: ro.UID, Generation: ro.Generation,
		App: ro.Spec.App, Image: ro.Spec.Image, Environment: ro.Spec.Environment,
		Replicas: ro.Spec.DesiredReplicas(),
	}
}

// processID names a process in State.ID, and so in every step's
// idempotency key: one process per generation of one Rollout object.
func processID(ro *v1alpha1.Rollout) string {
	return fmt.Sprintf("%s/%d", ro.UID, ro.Generation)
}

// Names of the objects a rollout creates, and the labels on them.
func configMapName(p *Plan) string  { return p.App + "-config" }
func deploymentName(p *Plan) string { return p.App }

// Labels and annotations the controller writes.
const (
	labelApp        = "app.kubernetes.io/name"
	labelManagedBy  = "app.kubernetes.io/managed-by"
	managerName     = "stepflow-rollout-controller"
	annotConfigHash = "examples.stepflow.io/config-hash"
	containerName   = "app"
)

// steps holds what the steps need besides the process data: the client
// through which they act on the cluster.
type steps struct {
	client client.Client
	scheme *runtime.Scheme
}

// newFlow compiles the rollout flow. Each step converges the cluster to the
// plan and is safe to repeat: a step can run again when the status write
// that would have recorded its completion loses a conflict, or when the
// controller restarts between the two.
func newFlow(s *steps, o Options) (*stepflow.Flow[Plan], error) {
	return stepflow.NewWithOptions(FlowVersion, &stepflow.Options{Record: o.Record},
		combinators.Do(StepWriteConfig, s.writeConfig),
		combinators.Do(StepApplyDeployment, s.applyDeployment),
		combinators.WaitFor(StepWaitAvailable, s.deploymentAvailable,
			combinators.Backoff(o.PollInitial, o.PollMax),
			combinators.Timeout(o.ReadyTimeout)),
	)
}

// owner returns a stand-in for the Rollout, enough to build an owner
// reference from (name, UID, and the kind that the scheme knows).
func owner(p *Plan) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID}}
}

// writeConfig creates or updates the ConfigMap "<app>-config".
func (s *steps) writeConfig(ctx context.Context, p *Plan) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: configMapName(p)}}
	data := map[string]string{"APP_NAME": p.App, "APP_ENVIRONMENT": p.Environment, "APP_IMAGE": p.Image}
	_, err := controllerutil.CreateOrUpdate(ctx, s.client, cm, func() error {
		if err := s.claim(cm, p); err != nil {
			return err
		}
		cm.Labels = mergeLabels(cm.Labels, p)
		cm.Data = data
		return nil
	})
	if err != nil {
		return classify(fmt.Errorf("configmap %s/%s: %w", cm.Namespace, cm.Name, err))
	}
	p.ConfigHash = hashData(data)
	return nil
}

// applyDeployment creates or updates the Deployment "<app>".
func (s *steps) applyDeployment(ctx context.Context, p *Plan) error {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: deploymentName(p)}}
	_, err := controllerutil.CreateOrUpdate(ctx, s.client, d, func() error {
		if err := s.claim(d, p); err != nil {
			return err
		}
		d.Labels = mergeLabels(d.Labels, p)
		replicas := p.Replicas
		d.Spec.Replicas = &replicas
		// The selector is immutable: set it on creation only.
		if d.Spec.Selector == nil {
			d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{labelApp: p.App}}
		}
		t := &d.Spec.Template
		t.Labels = mergeLabels(t.Labels, p)
		if t.Annotations == nil {
			t.Annotations = map[string]string{}
		}
		t.Annotations[annotConfigHash] = p.ConfigHash
		c := container(&t.Spec)
		c.Image = p.Image
		c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: configMapName(p)},
		}}}
		return nil
	})
	if err != nil {
		return classify(fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, err))
	}
	p.DeploymentGeneration = d.Generation
	return nil
}

// deploymentAvailable reports whether the Deployment runs the planned
// template on every replica.
func (s *steps) deploymentAvailable(ctx context.Context, p *Plan) (bool, error) {
	var d appsv1.Deployment
	key := types.NamespacedName{Namespace: p.Namespace, Name: deploymentName(p)}
	if err := s.client.Get(ctx, key, &d); err != nil {
		if apierrors.IsNotFound(err) {
			return false, stepflow.Permanent(fmt.Errorf("deployment %s was deleted during the rollout", key))
		}
		return false, classify(fmt.Errorf("deployment %s: %w", key, err))
	}
	st := d.Status
	return st.ObservedGeneration >= p.DeploymentGeneration &&
		st.UpdatedReplicas >= p.Replicas &&
		st.AvailableReplicas >= p.Replicas, nil
}

// teardown deletes what a rollout created, the Deployment first so that no
// pod outlives the configuration it reads. The garbage collector would
// delete both eventually through their owner references, in no particular
// order; a finalizer is where a controller puts cleanups that must happen
// in order, or that the garbage collector cannot do at all (records in
// systems outside the cluster). Objects the Rollout does not control are
// left alone. It is idempotent.
func (s *steps) teardown(ctx context.Context, p *Plan) error {
	objs := []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: deploymentName(p)}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: configMapName(p)}},
	}
	for _, obj := range objs {
		err := s.client.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if ref := metav1.GetControllerOf(obj); ref == nil || ref.UID != p.UID {
			continue
		}
		err = s.client.Delete(ctx, obj, client.Preconditions{UID: &p.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground))
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
		}
	}
	return nil
}

// claim makes the Rollout the controller of obj, refusing an object that
// another owner controls (a Deployment of the same name made by hand, say).
func (s *steps) claim(obj metav1.Object, p *Plan) error {
	if err := controllerutil.SetControllerReference(owner(p), obj, s.scheme); err != nil {
		return stepflow.Permanent(err)
	}
	return nil
}

// container returns the app container of a pod spec, adding it if missing.
func container(ps *corev1.PodSpec) *corev1.Container {
	for i := range ps.Containers {
		if ps.Containers[i].Name == containerName {
			return &ps.Containers[i]
		}
	}
	ps.Containers = append(ps.Containers, corev1.Container{Name: containerName})
	return &ps.Containers[len(ps.Containers)-1]
}

func mergeLabels(l map[string]string, p *Plan) map[string]string {
	if l == nil {
		l = map[string]string{}
	}
	l[labelApp] = p.App
	l[labelManagedBy] = managerName
	return l
}

// hashData hashes a string map independently of iteration order.
func hashData(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s=%d:%s;", len(k), k, len(m[k]), m[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// TransientError marks a step error that says nothing about the rollout
// itself: the API server was busy, or an object changed between a read and
// a write. The reconciler does not record such a failure; it keeps the
// previous state and lets controller-runtime retry the reconcile with
// backoff, so the step runs again.
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// classify sorts an API error: requests the server rejected as malformed
// are permanent (repeating them cannot help), server-side hiccups and
// lost races are transient, and anything else (quota, permissions) is a
// plain step failure.
func classify(err error) error {
	switch {
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return stepflow.Permanent(err)
	case apierrors.IsConflict(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
		apierrors.IsTooManyRequests(err), apierrors.IsServiceUnavailable(err),
		apierrors.IsInternalError(err), errors.Is(err, context.DeadlineExceeded):
		return &TransientError{Err: err}
	}
	return err
}

// isTransient reports whether a failed Apply should be retried rather than
// recorded.
func isTransient(err error) bool {
	var t *TransientError
	return errors.As(err, &t)
}
