package controller

import (
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

// Finalizer keeps a deleted Rollout around until its teardown has run.
const Finalizer = "examples.stepflow.io/teardown"

// Options configures a RolloutReconciler. The zero value is ready to use;
// each field documents its default.
type Options struct {
	// Clock tells the time to the flow (wait deadlines, condition times) and
	// to RequeueAfter. Nil means the real clock. Tests pass a fake one.
	Clock stepflow.Clock
	// MaxSteps bounds the steps one Reconcile runs before it writes the
	// status. Each step is one API round trip or so; a small bound keeps a
	// reconcile short and the status current. Zero means DefaultMaxSteps.
	MaxSteps int
	// PollInitial and PollMax are the backoff of the wait for the
	// Deployment: the first poll after PollInitial, doubling up to PollMax.
	// Zero means DefaultPollInitial and DefaultPollMax.
	PollInitial, PollMax time.Duration
	// ReadyTimeout fails the rollout when the Deployment is not available
	// this long after the first poll. Zero means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Retry is the policy of the steps that write objects. Nil means
	// DefaultRetry.
	Retry *combinators.RetryPolicy
	// Record is how many completed steps the state keeps for people to
	// read in status.state.record. Zero means DefaultRecord; negative
	// keeps none.
	Record int
	// MaxStateSize bounds the encoded state, which lives in the object and
	// so in etcd. Zero means DefaultMaxStateSize.
	MaxStateSize int
	// Older are earlier versions of the rollout flow that rollouts in
	// flight may still be at, oldest first, and Migrations the declared
	// steps between consecutive versions, ending at FlowVersion (see
	// package versions). A rollout of a version listed here continues: it
	// is migrated to FlowVersion at its next reconcile (the registry's
	// PolicyLazy), where without it the rollout would start again. A
	// version known only by its structure can be listed through
	// versions.Migration.Source instead of a compiled flow.
	Older      []*stepflow.Flow[Plan]
	Migrations []*versions.Migration[Plan]
	// APIReader reads from the API server itself, for the few reads that
	// must see the controller's own latest writes: the client of a manager
	// reads from its informer cache, which learns of an object some time
	// after it was created. The steps use it to make sure that a
	// Deployment they cannot find in the cache is really gone before they
	// fail the rollout, and to find what the teardown deletes (see
	// kube.Reader). Nil means the manager's API reader
	// (mgr.GetAPIReader()) once SetupWithManager has registered the
	// reconciler, and before that the reconciler's own client (a fake
	// client in tests, which has no cache).
	APIReader client.Reader
	// Metrics, when set, counts reconciles, steps and rollouts by phase.
	Metrics *kube.Metrics
}

// Defaults for Options.
const (
	DefaultMaxSteps     = kube.DefaultMaxSteps
	DefaultPollInitial  = 2 * time.Second
	DefaultPollMax      = 30 * time.Second
	DefaultReadyTimeout = 10 * time.Minute
	DefaultRecord       = 8
	DefaultMaxStateSize = kube.DefaultMaxStateSize
)

// DefaultRetry retries the API writes 5 times over about 15 seconds,
// spread by ±20% so that rollouts failing together do not retry together.
var DefaultRetry = combinators.RetryPolicy{
	MaxAttempts: 5, InitialInterval: time.Second, MaxInterval: 30 * time.Second, Jitter: 0.2,
}

func (o Options) withDefaults() Options {
	if o.PollInitial <= 0 {
		o.PollInitial = DefaultPollInitial
	}
	if o.PollMax <= 0 {
		o.PollMax = DefaultPollMax
	}
	o.PollMax = max(o.PollMax, o.PollInitial)
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	switch {
	case o.Record == 0:
		o.Record = DefaultRecord
	case o.Record < 0:
		o.Record = 0
	}
	if o.Retry == nil {
		p := DefaultRetry
		o.Retry = &p
	}
	return o
}

// RolloutReconciler drives one stepflow process per Rollout, with package
// kube doing the work every such controller does: the state in the
// status, conditions, the finalizer, versions, requeues (see
// kube.Reconciler.Reconcile for the order of duties). What is the
// Rollout's own is here and in flow.go: the flow, the plan taken from the
// spec, and the choices below.
//
//   - A spec change restarts the rollout: the steps converge the cluster
//     to the plan, so the new process rewrites the ConfigMap and the
//     Deployment and waits for the new template.
//   - A state of a flow version the controller does not know starts over
//     on the current one (kube.ProcessOptions.RestartUnknown), for the
//     same reason. An older version listed in Options.Older migrates.
//   - Deleting a Rollout mid-flight cancels its process, whose cleanup
//     tears down what it made; then the finalizer goes.
type RolloutReconciler struct {
	*kube.Reconciler[Plan, *v1alpha1.Rollout]
}

// NewRolloutReconciler returns a reconciler that acts through c, whose
// scheme must know Rollouts, Deployments and ConfigMaps. opts may be nil.
func NewRolloutReconciler(c client.Client, scheme *runtime.Scheme, opts *Options) (*RolloutReconciler, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o = o.withDefaults()
	s := newSteps(c, scheme, o.APIReader)
	f, err := newFlow(s, o)
	if err != nil {
		return nil, err
	}
	reg, err := versions.New(append(slices.Clone(o.Older), f), nil, o.Migrations...)
	if err != nil {
		return nil, fmt.Errorf("rollout flow versions: %w", err)
	}
	r, err := kube.NewReconciler(c, reg, newPlan, &kube.Options[Plan, *v1alpha1.Rollout]{
		ProcessOptions: kube.ProcessOptions{
			MaxSteps:       o.MaxSteps,
			MaxStateSize:   o.MaxStateSize,
			RestartUnknown: true,
			Noun:           "rollout",
			ReadyMessage:   "every replica runs the rolled out image",
			StepConditions: &kube.StepConditions{},
		},
		Clock:        o.Clock,
		Finalizer:    Finalizer,
		CancelReason: "the Rollout is being deleted",
		Reader:       s.read,
		Metrics:      o.Metrics,
	})
	if err != nil {
		return nil, err
	}
	return &RolloutReconciler{Reconciler: r}, nil
}

// SetupWithManager registers the reconciler for Rollouts.
//
// It does not watch the Deployments it creates: a rollout polls its
// Deployment on the schedule stored in its state, and an event about the
// Deployment could not wake the process earlier anyway (Apply leaves a
// waiting state alone until its WakeAt). Once a rollout is Done, the
// controller leaves the Deployment to its own controller.
//
// Unless Options.APIReader was set, the steps read through the manager's
// API reader where the informer cache could mislead them (see
// Options.APIReader).
func (r *RolloutReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return r.Reconciler.SetupWithManager(mgr)
}

// +kubebuilder:rbac:groups=examples.stepflow.io,resources=rollouts,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=examples.stepflow.io,resources=rollouts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=examples.stepflow.io,resources=rollouts/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch;delete
