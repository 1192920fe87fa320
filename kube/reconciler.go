package kube

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

// Object is a Kubernetes object whose status holds a process: a pointer to
// a custom resource type whose status embeds ProcessStatus.
//
//	func (r *Rollout) GetProcessStatus() *kube.ProcessStatus { return &r.Status.ProcessStatus }
type Object interface {
	client.Object
	// GetProcessStatus returns the object's own ProcessStatus, for the
	// reconciler to read and write in place.
	GetProcessStatus() *ProcessStatus
}

// Options configures a Reconciler. The zero value is ready to use; each
// field documents its default.
type Options[S any, O Object] struct {
	// ProcessOptions configure the process: steps per reconcile, state
	// size, conditions, requeue bounds, unknown versions.
	ProcessOptions
	// Clock tells the time to the flow (wait deadlines, condition times)
	// and to RequeueAfter. Nil means the real clock. Tests pass a fake one.
	Clock stepflow.Clock
	// Finalizer is added to every object before its process takes a
	// step, and removed once a deleted object's process has run its
	// cleanups (see Reconcile). A qualified name such as
	// "example.com/teardown". Empty means no finalizer: a deleted
	// object's process is abandoned where it stands, and the garbage
	// collector removes what the object owns.
	Finalizer string
	// CancelReason is the reason given to Flow.Cancel when an object is
	// deleted mid-flight; the cleanups see it in
	// stepflow.CallFrom(ctx).Caught. Empty means "the object is being
	// deleted".
	CancelReason string
	// ProcessID names the process of an object's current spec. Nil means
	// ProcessID, "<uid>/<generation>".
	ProcessID func(obj O) string
	// Status, when set, is called before every status write of a process
	// that goes on, to set fields of the object's status of its own from
	// the process (a URL a step found, say). It must not touch the
	// ProcessStatus.
	Status func(obj O, st stepflow.State[S])
	// Reader, when set, gets the manager's API reader in
	// SetupWithManager, if its API is nil. Give the same Reader to the
	// steps.
	Reader *Reader
	// Metrics, when set, counts reconciles, steps and processes.
	Metrics *Metrics
	// Name names the controller (in logs, metrics and the manager). Empty
	// means the object type's name in lower case ("rollout").
	Name string
}

// Reconciler is a controller-runtime reconciler that drives one stepflow
// process per object of type O, kept in the object's status. One
// reconciler serves every object: the flow is compiled once, and all
// per-object memory is the state in each object's status.
type Reconciler[S any, O Object] struct {
	client client.Client
	proc   *Process[S]
	start  func(obj O) S
	opts   Options[S, O]
	newObj func() O
}

// NewReconciler returns a reconciler that reads and writes objects through
// c (a manager's client), runs the flow versions of reg, and starts each
// new process with the data start returns for the object's current spec.
// opts may be nil.
func NewReconciler[S any, O Object](c client.Client, reg *versions.Registry[S], start func(obj O) S, opts *Options[S, O]) (*Reconciler[S, O], error) {
	var o Options[S, O]
	if opts != nil {
		o = *opts
	}
	t := reflect.TypeFor[O]()
	switch {
	case c == nil:
		return nil, errors.New("stepflow/kube: NewReconciler needs a client")
	case start == nil:
		return nil, errors.New("stepflow/kube: NewReconciler needs a start function")
	case t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct:
		return nil, fmt.Errorf("stepflow/kube: object type %s is not a pointer to a struct", t)
	}
	proc, err := NewProcess(reg, &o.ProcessOptions)
	if err != nil {
		return nil, err
	}
	o.ProcessOptions = proc.Options()
	if o.Clock == nil {
		o.Clock = stepflow.ClockFunc(time.Now)
	}
	if o.CancelReason == "" {
		o.CancelReason = "the object is being deleted"
	}
	if o.ProcessID == nil {
		o.ProcessID = func(obj O) string { return ProcessID(obj) }
	}
	if o.Name == "" {
		o.Name = strings.ToLower(t.Elem().Name())
	}
	return &Reconciler[S, O]{
		client: c, proc: proc, start: start, opts: o,
		newObj: func() O { return reflect.New(t.Elem()).Interface().(O) },
	}, nil
}

// Process returns the process machinery the reconciler runs.
func (r *Reconciler[S, O]) Process() *Process[S] { return r.proc }

// Flow returns the current flow, for tools that describe states.
func (r *Reconciler[S, O]) Flow() *stepflow.Flow[S] { return r.proc.Flow() }

// Builder returns a controller builder for objects of type O, named
// Options.Name, for callers that watch more (Owns, Watches, WithOptions)
// before they Complete it with the reconciler. It gives Options.Reader the
// manager's API reader.
func (r *Reconciler[S, O]) Builder(mgr ctrl.Manager) *builder.Builder {
	if r.opts.Reader != nil && r.opts.Reader.API == nil {
		r.opts.Reader.API = mgr.GetAPIReader()
	}
	return ctrl.NewControllerManagedBy(mgr).For(r.newObj()).Named(r.opts.Name)
}

// SetupWithManager registers the reconciler for objects of type O.
func (r *Reconciler[S, O]) SetupWithManager(mgr ctrl.Manager) error {
	return r.Builder(mgr).Complete(r)
}

// pass is what one reconcile did, for the metrics.
type pass struct {
	outcome        string
	steps          uint64
	version, phase string
}

// Reconcile advances the object's process by at most MaxSteps steps and
// writes the outcome to its status.
//
// The order of duties:
//  1. Load the object. A deleted one is finalized (below).
//  2. Add the finalizer, if any, before any step acts on the cluster.
//  3. Load the process from the status (Process.Load): there is none
//     yet, or the spec changed since it started (metadata.generation
//     differs from status.observedGeneration): start a new one for the
//     current spec. A process of an older flow version the registry
//     knows continues, migrated at its next step. One of a version it
//     does not know, or one that cannot be read, is reported
//     (Process.Report) once per generation, left as it is, and not
//     requeued: retrying cannot help.
//  4. Apply while the process is runnable, at most MaxSteps times.
//  5. Write the status, if it changed, with the object's
//     resourceVersion. A conflict means someone wrote a newer version:
//     drop ours and requeue, so that the next reconcile continues from
//     theirs. Nothing newer is ever overwritten.
//  6. Requeue at the state's WakeAt (Requeue), read from the clock.
//
// A spec change restarts the process: the running one is abandoned where
// it is, without cleanup, and a new one starts. That suits steps that
// converge the cluster to the spec; a flow whose steps cannot be repeated
// should rather deliver spec changes as signals (Flow.Signal).
//
// On deletion, with a finalizer: a process still in flight is canceled
// (Flow.Cancel), which runs the cleanups of its active Finally nodes over
// as many reconciles as they take; its state is written, and then the
// finalizer is removed. The process is the stored one, whatever
// generation of the spec it was started for: the API server bumps
// metadata.generation when it marks an object for deletion, and reading
// that as a spec change would cancel nothing. A process that has ended,
// or that cannot be read, has no cleanup to run: the finalizer goes at
// once. So does it when the cleanups fail: an object that cannot be
// deleted is worse than a half-cleaned one, and the state says what
// failed until the object goes.
//
// Steps run at least once, not exactly once: a step whose completion is
// lost (a conflict, a crash before the status write) runs again. A step
// failure is not a reconcile error; only errors of the reconcile's own
// machinery (a canceled context, an API error other than a conflict) go
// back to controller-runtime for a rate-limited retry.
func (r *Reconciler[S, O]) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ctx = stepflow.WithClock(ctx, r.opts.Clock)
	var p pass
	res, err := r.reconcile(ctx, req, &p)
	if err != nil {
		p.outcome = OutcomeError
	}
	r.opts.Metrics.reconciled(r.opts.Name, req.NamespacedName, p.outcome, p.version, p.phase, p.steps)
	return res, err
}

func (r *Reconciler[S, O]) reconcile(ctx context.Context, req ctrl.Request, p *pass) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	p.outcome = OutcomeIdle
	obj := r.newObj()
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return r.finalize(ctx, obj, p)
	}
	if r.opts.Finalizer != "" && controllerutil.AddFinalizer(obj, r.opts.Finalizer) {
		if err := r.client.Update(ctx, obj); err != nil {
			return r.writeFailed(ctx, err, p)
		}
	}

	orig := r.snapshot(obj)
	ps := obj.GetProcessStatus()
	gen := obj.GetGeneration()
	st, err := r.proc.Load(ps, gen)
	var prev *stepflow.State[S]
	switch {
	case err == nil:
		stored := st
		prev = &stored
	case errors.Is(err, ErrNoProcess):
		if ps.stored() {
			log.Info("starting a new process", "why", err.Error(), "abandoned", ps.Phase)
		}
		st = r.proc.Start(r.start(obj), r.opts.ProcessID(obj))
	default:
		return r.report(ctx, obj, orig, err, p)
	}
	next, err := r.proc.Advance(ctx, st)
	if err != nil {
		if CannotContinue(err) {
			return r.report(ctx, obj, orig, err, p)
		}
		return ctrl.Result{}, err
	}
	p.steps = stepsBetween(st, next)
	now := stepflow.Now(ctx)
	if err := r.proc.Save(ps, gen, prev, next, now); err != nil {
		log.Error(err, "cannot store the process")
		return r.report(ctx, obj, orig, err, p)
	}
	if r.opts.Status != nil {
		r.opts.Status(obj, next)
	}
	return r.write(ctx, obj, orig, r.proc.Requeue(next, now), p)
}

// report records a process that cannot go on, once per generation, and
// does not requeue.
func (r *Reconciler[S, O]) report(ctx context.Context, obj O, orig snapshot, err error, p *pass) (ctrl.Result, error) {
	ps := obj.GetProcessStatus()
	if !r.proc.Report(ps, obj.GetGeneration(), err, stepflow.Now(ctx)) {
		p.version, p.phase = ps.FlowVersion, ps.Phase
		return ctrl.Result{}, nil
	}
	logf.FromContext(ctx).Info("the process cannot go on; leaving its state for a person to inspect",
		"phase", ps.Phase, "error", err.Error())
	res, werr := r.write(ctx, obj, orig, ctrl.Result{}, p)
	if p.outcome == OutcomeAdvanced {
		p.outcome = OutcomeReported
	}
	return res, werr
}

// write writes obj's status if obj differs from orig, and returns res. A
// lost write turns into a requeue.
func (r *Reconciler[S, O]) write(ctx context.Context, obj O, orig snapshot, res ctrl.Result, p *pass) (ctrl.Result, error) {
	ps := obj.GetProcessStatus()
	p.version, p.phase = ps.FlowVersion, ps.Phase
	if !orig.changed(obj) {
		return res, nil
	}
	// Update, not Patch: it sends the resourceVersion read at the start
	// of this reconcile, so the API server refuses it if anyone wrote the
	// object since. That is what keeps a newer state safe.
	if err := r.client.Status().Update(ctx, obj); err != nil {
		return r.writeFailed(ctx, err, p)
	}
	p.outcome = OutcomeAdvanced
	return res, nil
}

func (r *Reconciler[S, O]) writeFailed(ctx context.Context, err error, p *pass) (ctrl.Result, error) {
	res, err := WriteResult(ctx, err)
	if err == nil && res.RequeueAfter > 0 {
		p.outcome = OutcomeConflict
	}
	return res, err
}

// WriteResult turns the error of a write of the reconciled object into
// what Reconcile returns: a conflict (someone wrote a newer version) is a
// requeue after RequeueConflict, with no error, so that the next reconcile
// continues from the newer version; "not found" (the object is gone) is
// the end; anything else is returned for controller-runtime's retry.
func WriteResult(ctx context.Context, err error) (ctrl.Result, error) {
	switch {
	case apierrors.IsConflict(err):
		logf.FromContext(ctx).V(1).Info("the object changed during the reconcile; requeueing", "error", err.Error())
		return ctrl.Result{RequeueAfter: RequeueConflict}, nil
	case apierrors.IsNotFound(err):
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, err
}

// finalize runs when an object is being deleted (see Reconcile).
func (r *Reconciler[S, O]) finalize(ctx context.Context, obj O, p *pass) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	if r.opts.Finalizer == "" || !controllerutil.ContainsFinalizer(obj, r.opts.Finalizer) {
		return ctrl.Result{}, nil
	}
	ps := obj.GetProcessStatus()
	st, err := r.proc.Stored(ps)
	switch {
	case errors.Is(err, ErrNoProcess):
	case err != nil:
		log.Info("deleting an object whose process cannot be read; no cleanup runs", "error", err.Error())
	case !st.Terminal():
		res, done, err := r.cleanup(ctx, obj, st, p)
		if !done {
			return res, err
		}
	}
	controllerutil.RemoveFinalizer(obj, r.opts.Finalizer)
	if err := r.client.Update(ctx, obj); err != nil {
		return r.writeFailed(ctx, err, p)
	}
	p.outcome, p.version, p.phase = OutcomeReleased, "", ""
	log.Info("object released")
	return ctrl.Result{}, nil
}

// cleanup cancels the process of a deleted object and runs its cleanups.
// done is true when the finalizer can go.
func (r *Reconciler[S, O]) cleanup(ctx context.Context, obj O, stored stepflow.State[S], p *pass) (res ctrl.Result, done bool, err error) {
	log := logf.FromContext(ctx)
	orig := r.snapshot(obj)
	ps := obj.GetProcessStatus()
	st, err := r.proc.Cancel(stored, r.opts.CancelReason)
	if err != nil {
		if CannotContinue(err) {
			log.Info("cannot cancel the process; no cleanup runs", "error", err.Error())
			return ctrl.Result{}, true, nil
		}
		return ctrl.Result{}, false, fmt.Errorf("cancel the process: %w", err)
	}
	next, err := r.proc.Advance(ctx, st)
	if err != nil {
		if CannotContinue(err) {
			log.Info("cannot run the cleanups of the process", "error", err.Error())
			return ctrl.Result{}, true, nil
		}
		return ctrl.Result{}, false, err
	}
	p.steps = stepsBetween(st, next)
	now := stepflow.Now(ctx)
	// The process keeps the generation it was started for: the one the
	// deletion bumped is no spec of its.
	if err := r.proc.Save(ps, ps.ObservedGeneration, &stored, next, now); err != nil {
		log.Error(err, "cannot store the process; releasing the object without its cleanups")
		return ctrl.Result{}, true, nil
	}
	if r.opts.Status != nil {
		r.opts.Status(obj, next)
	}
	res, err = r.write(ctx, obj, orig, r.proc.Requeue(next, now), p)
	if err != nil || res.RequeueAfter > 0 {
		// Cleanups still running, or the write lost: come back.
		return res, false, err
	}
	switch next.Status {
	case stepflow.Failed:
		log.Info("the cleanups failed; releasing the object anyway", "error", next.Err.String())
	case stepflow.NeedsAttention:
		log.Info("the cleanups need a person; releasing the object anyway", "positions", next.Positions())
	}
	return ctrl.Result{}, true, nil
}

// snapshot is what an object looked like before a reconcile changed it:
// its ProcessStatus, or the whole object when Options.Status may change
// more of it.
type snapshot struct {
	obj runtime.Object
	ps  *ProcessStatus
}

func (r *Reconciler[S, O]) snapshot(obj O) snapshot {
	if r.opts.Status != nil {
		return snapshot{obj: obj.DeepCopyObject()}
	}
	return snapshot{ps: obj.GetProcessStatus().DeepCopy()}
}

// changed reports whether obj differs from the snapshot.
func (s snapshot) changed(obj Object) bool {
	if s.obj != nil {
		return !equality.Semantic.DeepEqual(s.obj, obj)
	}
	return !equality.Semantic.DeepEqual(s.ps, obj.GetProcessStatus())
}

// stepsBetween counts the steps from st to next.
func stepsBetween[S any](st, next stepflow.State[S]) uint64 {
	if next.Steps < st.Steps {
		return 0
	}
	return next.Steps - st.Steps
}
