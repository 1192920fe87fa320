package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// FlowVersion names the rollout flow. It is stored in every state and in
// status.flowVersion. Change it whenever a step is renamed, removed or
// moved, so that the controller notices states written by the old flow
// (see RolloutReconciler for what it does with them).
const FlowVersion = "rollout/v1"

// The flow's nodes, by path. Paths are persisted in states, shown in
// status.step, and become condition reasons in CamelCase
// (RolloutStepsApplyDeployment, RolloutStepsAvailable), so every name in
// them is a chosen string that never changes silently.
//
//	rollout            Finally: run steps, then cleanup, whatever happened
//	  steps            Sequence
//	    apply          Retry: transient API errors are retried with backoff
//	      config       Do: create or update the ConfigMap
//	      deployment   Do: create or update the Deployment
//	    available      WaitFor: the Deployment runs the new template
//	  cleanup          Retry
//	    teardown       Do: when the process was canceled, delete its objects
const (
	PathRollout    = "rollout"
	PathConfig     = "rollout/steps/apply/config"
	PathDeployment = "rollout/steps/apply/deployment"
	PathAvailable  = "rollout/steps/available"
	PathTeardown   = "rollout/cleanup/teardown"
)

// Plan is the data of one rollout process. It is a snapshot of the spec
// taken when the process started, plus what the steps learned on the way.
// Steps read the spec from here, never from the live object, so that one
// process rolls out exactly one generation of the spec.
type Plan struct {
	// Namespace, Name and UID identify the Rollout, which owns every object
	// the steps create. The UID goes into the owner references, and the
	// teardown deletes only objects whose controller reference carries it.
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid"`
	// Generation is the Rollout's metadata.generation this process rolls out.
	Generation int64 `json:"generation"`

	App         string `json:"app"`
	Image       string `json:"image"`
	Environment string `json:"environment"`
	Replicas    int32  `json:"replicas"`

	// ConfigHash is the hash of the ConfigMap written by the config step. It
	// goes into the pod template, so that a change of configuration alone
	// still rolls the pods.
	ConfigHash string `json:"configHash,omitempty"`
	// DeploymentGeneration is the Deployment's metadata.generation after
	// the deployment step wrote it. The wait is over only once the Deployment
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
	// read reads through client, which may be a manager's informer cache,
	// and confirms a "not found" with the API server (see
	// Options.APIReader).
	read *kube.Reader
}

// newSteps returns the steps acting through c. api reads from the API
// server itself; nil leaves it to SetupWithManager (kube.Reader).
func newSteps(c client.Client, scheme *runtime.Scheme, api client.Reader) *steps {
	return &steps{client: c, scheme: scheme, read: &kube.Reader{Cache: c, API: api}}
}

// newFlow compiles the rollout flow (see the Path constants for its
// shape). Each step converges the cluster to the plan and is safe to
// repeat: a step runs again when the status write that would have recorded
// its completion loses a conflict, when the controller restarts between
// the two, and on every retry.
func newFlow(s *steps, o Options) (*stepflow.Flow[Plan], error) {
	return stepflow.NewWithOptions(FlowVersion, &stepflow.Options{Record: o.Record},
		combinators.Finally(PathRollout,
			combinators.Sequence("steps",
				combinators.Retry("apply", *o.Retry,
					combinators.Do("config", s.writeConfig),
					combinators.Do("deployment", s.applyDeployment)),
				combinators.WaitFor("available", s.deploymentAvailable,
					combinators.Backoff(o.PollInitial, o.PollMax),
					combinators.Timeout(o.ReadyTimeout))),
			combinators.Retry("cleanup", *o.Retry,
				combinators.Do("teardown", s.cleanup))),
	)
}

// cleanup runs after the steps, whatever happened to them. Only a canceled
// rollout (its Rollout was deleted mid-flight) has something to do: remove
// what it half made. A completed rollout's objects are what was asked for;
// a failed one's are left for people to look at; and once the Rollout is
// gone, the garbage collector removes both through their owner references.
func (s *steps) cleanup(ctx context.Context, p *Plan) error {
	call, _ := stepflow.CallFrom(ctx)
	if call.Caught == nil || call.Caught.Kind != stepflow.KindCanceled {
		return nil
	}
	return s.teardown(ctx, p)
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
		return apiError(fmt.Errorf("configmap %s/%s: %w", cm.Namespace, cm.Name, err))
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
		return apiError(fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, err))
	}
	p.DeploymentGeneration = d.Generation
	return nil
}

// deploymentAvailable reports whether the Deployment runs the planned
// template on every replica. A failed read is a poll that said "not yet":
// the wait's own timeout bounds how long that can go on.
//
// The polls read from the client, which in a manager is the informer
// cache: cheap, and a stale answer only delays the rollout by one poll.
// Not so a stale "not found". The first poll runs in the reconcile that
// created the Deployment, a moment after the create, and the cache learns
// of a new object only when the watch event arrives (it may not even have
// listed Deployments before this reconcile). So the polls read through a
// kube.Reader, which checks "not found" against the API server before it
// fails the rollout; only a Deployment the API server does not have
// either was really deleted.
func (s *steps) deploymentAvailable(ctx context.Context, p *Plan) (bool, error) {
	var d appsv1.Deployment
	key := types.NamespacedName{Namespace: p.Namespace, Name: deploymentName(p)}
	err := s.read.Get(ctx, key, &d)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return false, stepflow.Permanent(fmt.Errorf("deployment %s was deleted during the rollout", key))
		}
		logf.FromContext(ctx).Info("cannot read the deployment; polling again", "deployment", key, "error", err.Error())
		return false, nil
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
// left alone. It is idempotent. It reads through the API reader: an
// object the cache has not seen yet (the rollout created it a moment
// before the Rollout was deleted) must be deleted all the same.
func (s *steps) teardown(ctx context.Context, p *Plan) error {
	objs := []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: deploymentName(p)}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: configMapName(p)}},
	}
	for _, obj := range objs {
		err := s.read.Live().Get(ctx, client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if ref := metav1.GetControllerOf(obj); ref == nil || ref.UID != p.UID {
			continue
		}
		// The precondition makes sure the object deleted is the one just
		// checked, not a replacement created in between.
		uid := obj.GetUID()
		err = s.client.Delete(ctx, obj, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground))
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

// apiError marks errors that repeating the request cannot fix (the API
// server rejected it as malformed) as permanent, so Retry gives up at
// once. Everything else (lost races, a busy server, quota, permissions) is
// retried with backoff until the attempts run out.
func apiError(err error) error {
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		return stepflow.Permanent(err)
	}
	return err
}
