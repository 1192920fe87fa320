package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
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
	// fail the rollout, and to find what the teardown deletes. Nil means
	// the manager's API reader (mgr.GetAPIReader()) once SetupWithManager
	// has registered the reconciler, and before that the reconciler's own
	// client (a fake client in tests, which has no cache).
	APIReader client.Reader
}

// Defaults for Options.
const (
	DefaultMaxSteps     = 4
	DefaultPollInitial  = 2 * time.Second
	DefaultPollMax      = 30 * time.Second
	DefaultReadyTimeout = 10 * time.Minute
	DefaultRecord       = 8
	// DefaultMaxStateSize leaves most of etcd's 1.5 MiB object limit to the
	// rest of the object.
	DefaultMaxStateSize = 256 << 10
)

// DefaultRetry retries the API writes 5 times over about 15 seconds,
// spread by ±20% so that rollouts failing together do not retry together.
var DefaultRetry = combinators.RetryPolicy{
	MaxAttempts: 5, InitialInterval: time.Second, MaxInterval: 30 * time.Second, Jitter: 0.2,
}

// Requeue delays that do not come from the flow.
const (
	// RequeueRunnable is the delay when a process could go on at once but
	// the reconcile used up its MaxSteps. The status write itself brings
	// the next reconcile: its watch event arrives once the informer cache
	// holds the new state, whereas an immediate requeue would likely read
	// the old one from the cache, redo the steps and lose the write to a
	// conflict. The requeue is the safety net should that event be
	// filtered out.
	RequeueRunnable = time.Second
	// RequeueConflict is the delay after a write lost to a newer version
	// of the object: the next reconcile reads that version and goes on
	// from it.
	RequeueConflict = 100 * time.Millisecond
)

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = stepflow.ClockFunc(time.Now)
	}
	if o.MaxSteps <= 0 {
		o.MaxSteps = DefaultMaxSteps
	}
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
	if o.MaxStateSize <= 0 {
		o.MaxStateSize = DefaultMaxStateSize
	}
	return o
}

// RolloutReconciler drives one stepflow process per Rollout. One reconciler
// serves every Rollout of the cluster: the flow is compiled once, and all
// per-rollout memory is the state in each object's status.
type RolloutReconciler struct {
	client client.Client
	opts   Options
	steps  *steps
	flow   *stepflow.Flow[Plan]
	// reg runs every version a stored state may be at, and migrates the
	// older ones to flow's (see Options.Older).
	reg   *versions.Registry[Plan]
	codec codec.Codec[Plan]
}

// NewRolloutReconciler returns a reconciler that acts through c, whose
// scheme must know Rollouts, Deployments and ConfigMaps. opts may be nil.
func NewRolloutReconciler(c client.Client, scheme *runtime.Scheme, opts *Options) (*RolloutReconciler, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o = o.withDefaults()
	s := &steps{client: c, scheme: scheme, live: o.APIReader}
	f, err := newFlow(s, o)
	if err != nil {
		return nil, err
	}
	reg, err := versions.New(append(slices.Clone(o.Older), f), nil, o.Migrations...)
	if err != nil {
		return nil, fmt.Errorf("rollout flow versions: %w", err)
	}
	return &RolloutReconciler{
		client: c, opts: o, steps: s, flow: f, reg: reg,
		codec: codec.JSON[Plan](&codec.Options{MaxSize: o.MaxStateSize}),
	}, nil
}

// Flow returns the compiled rollout flow, for tools that describe states.
func (r *RolloutReconciler) Flow() *stepflow.Flow[Plan] { return r.flow }

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
	if r.opts.APIReader == nil {
		r.steps.live = mgr.GetAPIReader()
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Rollout{}).
		Named("rollout").
		Complete(r)
}

// +kubebuilder:rbac:groups=examples.stepflow.io,resources=rollouts,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=examples.stepflow.io,resources=rollouts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=examples.stepflow.io,resources=rollouts/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch;delete

// Reconcile advances the Rollout's process by at most MaxSteps steps and
// writes the outcome to its status.
//
// The order of duties:
//  1. Load the Rollout. A deleted one goes to finalize.
//  2. Make sure the finalizer is set before any step acts on the cluster.
//  3. Load the process from status.state. There is none yet, or the spec
//     changed since it started (metadata.generation differs from
//     status.observedGeneration), or it belongs to a flow version the
//     controller does not know: start a new process from the current spec
//     (see below). A state of an older version the controller knows
//     (Options.Older) continues and is migrated to FlowVersion at its next
//     step. A state that cannot be read gets Failed=True with reason
//     StateUnreadable and no requeue: retrying cannot fix it.
//  4. Apply while the process is runnable, at most MaxSteps times.
//  5. Write the status with the object's resourceVersion. A conflict means
//     someone wrote a newer version: drop ours and requeue, so the next
//     reconcile continues from theirs. Nothing newer is ever overwritten.
//  6. Requeue at the state's WakeAt, read against the injected clock.
//
// A spec change restarts the rollout. The running process is abandoned
// where it is, without cleanup, and a new one starts with the new spec.
// That is safe because every step converges the cluster to its plan: the
// new process rewrites the ConfigMap and the Deployment and then waits for
// the new template. Continuing the old process first would only delay the
// rollout people asked for last. A flow version change migrates in-flight
// processes when the controller is given the older version and the
// migration (Options.Older, Options.Migrations), and restarts them
// otherwise; a flow whose steps cannot be repeated must do the former.
//
// Steps run at least once, not exactly once: a step whose completion is
// lost (conflict, crash before the status write) runs again. API errors
// inside steps are retried by the flow itself (Options.Retry), with the
// attempts and the next try kept in the state; only errors of the
// reconcile's own machinery (a canceled context) go back to
// controller-runtime for a rate-limited retry.
func (r *RolloutReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ctx = stepflow.WithClock(ctx, r.opts.Clock)

	var ro v1alpha1.Rollout
	if err := r.client.Get(ctx, req.NamespacedName, &ro); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ro.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &ro)
	}
	if controllerutil.AddFinalizer(&ro, Finalizer) {
		if err := r.client.Update(ctx, &ro); err != nil {
			return writeFailed(ctx, err)
		}
	}

	st, fresh, err := r.load(ctx, &ro)
	if err != nil {
		return r.broken(ctx, &ro, ReasonStateUnreadable, unreadableMessage(err))
	}
	next, retry, invalid := r.advance(ctx, st)
	if invalid != nil {
		return r.broken(ctx, &ro, ReasonStateUnreadable, unreadableMessage(invalid))
	}

	status := ro.Status.DeepCopy()
	// Encode only a changed state: the stored bytes were rewritten by the
	// API server (key order, spacing), so encoding an unchanged state again
	// would look like a change and cost a pointless write.
	if fresh || next.Steps != st.Steps || next.Version != st.Version {
		if err := r.encodeInto(status, next); err != nil {
			logf.FromContext(ctx).Error(err, "cannot encode rollout state")
			return r.broken(ctx, &ro, ReasonStateUnwritable, err.Error())
		}
	}
	setProcessStatus(status, ro.Generation, next, r.why(next), r.now(ctx))
	return r.writeStatus(ctx, &ro, status, r.requeue(ctx, next), retry)
}

// broken records a process that cannot go on: Failed=True with reason and
// msg, the stored state untouched, and no requeue, since trying again
// cannot help. A new spec starts a new rollout.
//
// It is reported once per generation: a status that already says so is
// left alone, even if msg differs in details. (A decoder's message may
// name a byte offset, which moves when the API server rewrites the stored
// bytes; writing it again would only cost a write and a reconcile.)
func (r *RolloutReconciler) broken(ctx context.Context, ro *v1alpha1.Rollout, reason, msg string) (ctrl.Result, error) {
	if c := meta.FindStatusCondition(ro.Status.Conditions, v1alpha1.ConditionFailed); c != nil &&
		ro.Status.Phase == phaseUnreadable && ro.Status.ObservedGeneration == ro.Generation &&
		c.Status == metav1.ConditionTrue && c.Reason == reason && c.ObservedGeneration == ro.Generation {
		return ctrl.Result{}, nil
	}
	logf.FromContext(ctx).Info("rollout cannot go on; leaving its state for a person to inspect", "reason", reason, "message", msg)
	status := ro.Status.DeepCopy()
	setBrokenStatus(status, ro.Generation, reason, msg, r.now(ctx))
	return r.writeStatus(ctx, ro, status, ctrl.Result{}, nil)
}

// load returns the process to continue: the one in the status (fresh is
// false), or a new one for the current spec (fresh is true).
func (r *RolloutReconciler) load(ctx context.Context, ro *v1alpha1.Rollout) (st stepflow.State[Plan], fresh bool, err error) {
	log := logf.FromContext(ctx)
	start := func() (stepflow.State[Plan], bool, error) {
		st := r.flow.Start(newPlan(ro))
		st.ID = processID(ro)
		return st, true, nil
	}
	s := ro.Status
	if s.State == nil || len(s.State.Raw) == 0 {
		return start()
	}
	if s.ObservedGeneration != ro.Generation {
		log.Info("spec changed; starting a new rollout", "from", s.ObservedGeneration, "to", ro.Generation, "abandoned", s.Phase)
		return start()
	}
	st, known, err := r.stored(ro)
	if err != nil {
		return st, false, err
	}
	if !known {
		log.Info("state of a flow version this controller does not know; starting a new rollout", "stored", st.Version, "flow", r.flow.Version())
		return start()
	}
	return st, false, nil
}

// stored decodes and checks the process in the status, whatever generation
// of the spec it rolls out. known is false when there is no process, or
// when it is of a flow version the controller does not know; err says why
// a stored process cannot be read.
func (r *RolloutReconciler) stored(ro *v1alpha1.Rollout) (st stepflow.State[Plan], known bool, err error) {
	if ro.Status.State == nil || len(ro.Status.State.Raw) == 0 {
		return st, false, nil
	}
	st, err = r.codec.Decode(ro.Status.State.Raw)
	if err != nil {
		return st, false, err
	}
	if !slices.Contains(r.reg.Versions(), st.Version) {
		return st, false, nil
	}
	if err := r.reg.Validate(st); err != nil {
		return st, false, err
	}
	return st, true, nil
}

// advance applies st while it is runnable, at most MaxSteps times. It
// returns the last state worth keeping and, when the reconcile should be
// retried by controller-runtime, the error that says why. A state the flow
// rejects as invalid comes back as invalid.
func (r *RolloutReconciler) advance(ctx context.Context, st stepflow.State[Plan]) (next stepflow.State[Plan], retry, invalid error) {
	log := logf.FromContext(ctx)
	for range r.opts.MaxSteps {
		if !r.runnable(ctx, st) {
			break
		}
		// The registry applies a state of an older version after
		// migrating it to the current one.
		n, err := r.reg.Apply(ctx, st)
		var se *stepflow.StepError
		switch {
		case err == nil:
		case errors.As(err, &se):
			// The process failed: n is the Failed state, to be recorded.
			log.Info("rollout failed", "step", se.Path, "error", se.Err.Error())
		case errors.Is(err, stepflow.ErrInvalidState):
			return st, nil, err
		default:
			// The context ended, or something unforeseen: let
			// controller-runtime retry with backoff.
			return st, err, nil
		}
		if n.Steps == st.Steps && n.Version == st.Version {
			break
		}
		if n.Version != st.Version {
			log.Info("rollout migrated to the current flow version", "from", st.Version, "to", n.Version)
		}
		st = n
	}
	return st, nil, nil
}

// finalize runs when a Rollout is being deleted. A process still in flight
// is canceled with Flow.Cancel, which runs the cleanup of the flow's
// Finally node (it tears down what the rollout half made) over as many
// reconciles as it takes; its Canceled state is written, and then the
// finalizer is removed, which lets the API server delete the object. A
// process that has ended, or one whose state cannot be read, has nothing
// to run: the finalizer goes at once, and the garbage collector removes
// the Rollout's objects through their owner references.
//
// The process is the stored one, whatever generation of the spec it rolls
// out. The API server bumps metadata.generation when it sets the deletion
// timestamp, so a deleted Rollout never matches its observedGeneration:
// read as a spec change, as Reconcile does, that would start a new process
// instead of canceling the running one, and release the object with its
// teardown skipped.
func (r *RolloutReconciler) finalize(ctx context.Context, ro *v1alpha1.Rollout) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	if !controllerutil.ContainsFinalizer(ro, Finalizer) {
		return ctrl.Result{}, nil
	}
	st, known, err := r.stored(ro)
	switch {
	case err != nil:
		log.Info("deleting a rollout whose state is unreadable; no cleanup runs", "error", err.Error())
	case !known:
		log.Info("deleting a rollout without a process this controller can cancel; no cleanup runs", "stored", st.Version)
	case !st.Terminal():
		if !st.Canceling() {
			if st, err = r.reg.Cancel(st, "the Rollout is being deleted"); err != nil {
				return ctrl.Result{}, fmt.Errorf("cancel rollout: %w", err)
			}
		}
		next, retry, invalid := r.advance(ctx, st)
		if invalid != nil {
			log.Info("cannot run the cleanups of an invalid state", "error", invalid.Error())
			break
		}
		status := ro.Status.DeepCopy()
		if err := r.encodeInto(status, next); err != nil {
			return ctrl.Result{}, err
		}
		setProcessStatus(status, ro.Generation, next, r.why(next), r.now(ctx))
		res, err := r.writeStatus(ctx, ro, status, r.requeue(ctx, next), retry)
		if err != nil || res.RequeueAfter > 0 {
			// Cleanups still running, or the write lost: come back.
			return res, err
		}
		if next.Status == stepflow.Failed {
			// The cleanup failed; the state says why. Retrying the
			// delete will not help, and an object that cannot be deleted
			// is worse than a half-cleaned rollout: let it go.
			log.Info("rollout cleanup failed; releasing the object anyway", "error", next.Err.String())
		}
	}
	controllerutil.RemoveFinalizer(ro, Finalizer)
	if err := r.client.Update(ctx, ro); err != nil {
		return writeFailed(ctx, err)
	}
	log.Info("rollout released")
	return ctrl.Result{}, nil
}

// encodeInto stores st in status.state.
func (r *RolloutReconciler) encodeInto(status *v1alpha1.RolloutStatus, st stepflow.State[Plan]) error {
	raw, err := r.codec.Encode(st)
	if err != nil {
		return err
	}
	status.State = &runtime.RawExtension{Raw: raw}
	return nil
}

// writeStatus writes status if it differs from the stored one, then
// returns res and retry. A lost write turns into a requeue.
func (r *RolloutReconciler) writeStatus(ctx context.Context, ro *v1alpha1.Rollout, status *v1alpha1.RolloutStatus, res ctrl.Result, retry error) (ctrl.Result, error) {
	if !equality.Semantic.DeepEqual(&ro.Status, status) {
		ro.Status = *status
		// Update, not Patch: it sends the resourceVersion read at the start
		// of this reconcile, so the API server refuses it if anyone wrote
		// the object since. That is what keeps a newer state safe.
		if err := r.client.Status().Update(ctx, ro); err != nil {
			return writeFailed(ctx, err)
		}
	}
	return res, retry
}

// writeFailed handles an error from a write of the Rollout.
func writeFailed(ctx context.Context, err error) (ctrl.Result, error) {
	switch {
	case apierrors.IsConflict(err):
		logf.FromContext(ctx).V(1).Info("rollout changed during reconcile; requeueing", "error", err.Error())
		return ctrl.Result{RequeueAfter: RequeueConflict}, nil
	case apierrors.IsNotFound(err):
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, err
}

// runnable reports whether Apply would make progress on st now.
func (r *RolloutReconciler) runnable(ctx context.Context, st stepflow.State[Plan]) bool {
	switch st.Status {
	case stepflow.Running:
		return true
	case stepflow.Waiting:
		return !r.now(ctx).Before(st.WakeAt)
	}
	return false
}

// requeue tells controller-runtime when st can go on.
func (r *RolloutReconciler) requeue(ctx context.Context, st stepflow.State[Plan]) ctrl.Result {
	switch st.Status {
	case stepflow.Running:
		return ctrl.Result{RequeueAfter: RequeueRunnable}
	case stepflow.Waiting:
		return ctrl.Result{RequeueAfter: max(st.WakeAt.Sub(r.now(ctx)), RequeueRunnable)}
	}
	return ctrl.Result{}
}

func (r *RolloutReconciler) now(ctx context.Context) time.Time { return stepflow.Now(ctx) }

// why explains st in one sentence for condition messages.
func (r *RolloutReconciler) why(st stepflow.State[Plan]) string {
	d, err := r.reg.Describe(st)
	if err != nil {
		return err.Error()
	}
	return d.Why
}

// unreadableMessage says what is wrong with a stored state and what to do.
func unreadableMessage(err error) string {
	return "status.state cannot be continued: " + err.Error() +
		"; the controller leaves it unchanged for inspection; change the spec to start a new rollout"
}
