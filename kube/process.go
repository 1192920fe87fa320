package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

// ProcessOptions configures a Process. The zero value is ready to use;
// each field documents its default.
type ProcessOptions struct {
	// MaxSteps bounds the Applies of one Advance, and so the steps one
	// reconcile runs before it writes the status. Each step is an API
	// round trip or so; a small bound keeps a reconcile short, the status
	// current, and the work lost to a conflict small. Zero means
	// DefaultMaxSteps.
	MaxSteps int
	// MaxStateSize bounds the encoded state, which lives in the object and
	// so in etcd (about 1.5 MiB per object). A larger state is
	// ErrUnwritable, reported as Failed with reason StateUnwritable rather
	// than a write the API server refuses. Zero means DefaultMaxStateSize.
	MaxStateSize int
	// RestartUnknown starts a new process in place of a stored one of a
	// flow version the registry does not know. Without it such a process
	// is reported (Failed, reason UnknownFlowVersion) and left as it is,
	// so that the release that wrote it can continue it: during a rolling
	// upgrade, or after a rollback of the controller, the state may be of
	// a newer version than this controller runs. Restarting suits flows
	// whose steps converge to the spec, so that running them again from
	// the start does no harm.
	RestartUnknown bool
	// Requeue bounds the delays of Requeue.
	Requeue RequeueOptions
	// Noun names the process in condition messages ("the rollout is in
	// progress at ..."). Empty means "process".
	Noun string
	// ReadyMessage is the message of Ready=True. Empty means the
	// process's own, "the flow completed".
	ReadyMessage string
	// StepConditions, when not nil, adds one condition per step (see
	// StepConditions). Nil sets the process conditions only.
	StepConditions *StepConditions
}

// Defaults for ProcessOptions.
const (
	DefaultMaxSteps = 4
	// DefaultMaxStateSize leaves most of etcd's 1.5 MiB object limit to
	// the rest of the object.
	DefaultMaxStateSize = 256 << 10
)

func (o ProcessOptions) withDefaults() ProcessOptions {
	if o.MaxSteps <= 0 {
		o.MaxSteps = DefaultMaxSteps
	}
	if o.MaxStateSize <= 0 {
		o.MaxStateSize = DefaultMaxStateSize
	}
	if o.Noun == "" {
		o.Noun = "process"
	}
	o.Requeue = o.Requeue.withDefaults()
	if o.StepConditions != nil {
		sc := o.StepConditions.withDefaults()
		o.StepConditions = &sc
	}
	return o
}

// Process runs the processes of one flow, in all the versions of its
// registry, kept in objects' statuses (ProcessStatus). It holds no
// per-object memory and is safe for concurrent use. Reconciler uses it;
// a controller with a Reconcile of its own calls it in this order:
//
//	st, err := p.Load(ps, obj.Generation)      // ErrNoProcess: st = p.Start(...)
//	next, err := p.Advance(ctx, st)            // CannotContinue(err): p.Report
//	err = p.Save(ps, obj.Generation, &st, next, now)
//	// write the status with its resourceVersion
//	return p.Requeue(next, now), nil
type Process[S any] struct {
	reg   *versions.Registry[S]
	codec codec.Codec[S]
	opts  ProcessOptions
	// tagged holds the condition types named with ConditionTag in any
	// version of the flow, so that those of another version are removed.
	tagged map[string]bool
}

// NewProcess returns a Process over the flow versions of reg: new
// processes start on reg.Latest(), and states of older versions are
// migrated as reg's policy says. opts may be nil. It fails when a step's
// ConditionTag names an invalid condition type, or the same type as
// another step.
func NewProcess[S any](reg *versions.Registry[S], opts *ProcessOptions) (*Process[S], error) {
	if reg == nil {
		return nil, errors.New("stepflow/kube: NewProcess needs a registry")
	}
	var o ProcessOptions
	if opts != nil {
		o = *opts
	}
	o = o.withDefaults()
	p := &Process[S]{reg: reg, opts: o, tagged: map[string]bool{},
		codec: codec.JSON[S](&codec.Options{MaxSize: o.MaxStateSize})}
	if sc := o.StepConditions; sc != nil {
		if !strings.HasSuffix(sc.Prefix, "/") {
			return nil, fmt.Errorf("stepflow/kube: step condition prefix %q must end in /", sc.Prefix)
		}
		if err := checkConditionType(sc.Prefix + "X"); err != nil {
			return nil, fmt.Errorf("stepflow/kube: step condition prefix: %w", err)
		}
	}
	var probs []error
	for _, v := range reg.Versions() {
		f, ok := reg.Flow(v)
		if !ok {
			continue
		}
		seen := map[string]string{}
		for _, n := range f.Nodes() {
			t, ok := taggedType(n.Meta.Tags)
			if !ok {
				continue
			}
			if err := checkConditionType(t); err != nil {
				probs = append(probs, fmt.Errorf("stepflow/kube: %s node %s: %w", v, n.Path, err))
			}
			if other, dup := seen[t]; dup {
				probs = append(probs, fmt.Errorf("stepflow/kube: %s nodes %s and %s both name condition %q", v, other, n.Path, t))
			}
			seen[t] = n.Path
			p.tagged[t] = true
		}
	}
	if len(probs) > 0 {
		return nil, errors.Join(probs...)
	}
	return p, nil
}

// NewFlowProcess is NewProcess for a flow with one version.
func NewFlowProcess[S any](f *stepflow.Flow[S], opts *ProcessOptions) (*Process[S], error) {
	reg, err := versions.New([]*stepflow.Flow[S]{f}, nil)
	if err != nil {
		return nil, err
	}
	return NewProcess(reg, opts)
}

// Registry returns the flow versions the process runs.
func (p *Process[S]) Registry() *versions.Registry[S] { return p.reg }

// Flow returns the current flow, the one new processes start on.
func (p *Process[S]) Flow() *stepflow.Flow[S] { return p.reg.Latest() }

// Options returns the options in effect, defaults filled in.
func (p *Process[S]) Options() ProcessOptions { return p.opts }

// Start returns a new process on the current flow version. id names it
// (State.ID) and goes into every step's idempotency key; ProcessID gives
// the usual one.
func (p *Process[S]) Start(data S, id string) stepflow.State[S] {
	st := p.reg.Start(data)
	st.ID = id
	return st
}

// ProcessID names the process of obj's current spec: its UID and
// generation, "<uid>/<generation>". One object has one process per
// generation of its spec, and a deleted and re-created object of the same
// name gets new ones.
func ProcessID(obj metav1.Object) string {
	return fmt.Sprintf("%s/%d", obj.GetUID(), obj.GetGeneration())
}

// Load returns the process stored in ps for an object whose
// metadata.generation is gen, by these rules:
//   - no process stored, or one started for another generation (the spec
//     changed since): an error matching ErrNoProcess, which says why; the
//     caller starts a new process (Start) for the current spec;
//   - a process of the current flow version, or of an older one the
//     registry knows: that state (an older one is migrated at its next
//     Advance);
//   - a process of a version the registry does not know: an error matching
//     versions.ErrUnknownVersion, or ErrNoProcess with
//     ProcessOptions.RestartUnknown;
//   - bytes that do not decode, or a state that names steps its flow
//     does not have: an error matching ErrUnreadable.
//
// Hand the last two to Report.
func (p *Process[S]) Load(ps *ProcessStatus, gen int64) (stepflow.State[S], error) {
	if !ps.stored() {
		return stepflow.State[S]{}, noProcess("none stored")
	}
	if ps.ObservedGeneration != gen {
		return stepflow.State[S]{}, noProcess("the spec changed from generation %d to %d", ps.ObservedGeneration, gen)
	}
	st, err := p.Stored(ps)
	if errors.Is(err, versions.ErrUnknownVersion) && p.opts.RestartUnknown {
		return st, noProcess("flow version %q is unknown to this controller, which runs %q", st.Version, p.reg.Latest().Version())
	}
	return st, err
}

// Stored returns the process stored in ps, whatever generation of the spec
// it was started for: what a finalizer cancels. The API server bumps
// metadata.generation when it marks an object for deletion, so a deleted
// object never matches its observedGeneration, and Load would take that
// for a spec change. Its errors are Load's, ErrNoProcess meaning that none
// is stored.
func (p *Process[S]) Stored(ps *ProcessStatus) (stepflow.State[S], error) {
	if !ps.stored() {
		return stepflow.State[S]{}, noProcess("none stored")
	}
	st, err := p.codec.Decode(ps.State.Raw)
	if err != nil {
		return st, &unreadableError{err}
	}
	if err := p.reg.Validate(st); err != nil {
		if errors.Is(err, versions.ErrUnknownVersion) {
			return st, err
		}
		return st, &unreadableError{err}
	}
	return st, nil
}

// unreadableError is why a stored process cannot be read.
type unreadableError struct{ err error }

func (e *unreadableError) Error() string   { return ErrUnreadable.Error() + ": " + e.err.Error() }
func (e *unreadableError) Unwrap() []error { return []error{ErrUnreadable, e.err} }

// CannotContinue reports whether err, from Load, Advance, Cancel or Save,
// means that the stored process cannot go on, so that retrying cannot
// help: it is for Report. Any other error (a canceled context) is for
// controller-runtime's rate-limited retry.
func CannotContinue(err error) bool {
	return errors.Is(err, ErrUnreadable) || errors.Is(err, ErrUnwritable) ||
		errors.Is(err, stepflow.ErrInvalidState) || errors.Is(err, versions.ErrUnknownVersion) ||
		errors.Is(err, versions.ErrNoTarget) || errors.Is(err, versions.ErrInvalidMigration) ||
		errors.Is(err, versions.ErrOutdated)
}

// Runnable reports whether Apply would make progress on st at now.
func Runnable[S any](st stepflow.State[S], now time.Time) bool {
	switch st.Status {
	case stepflow.Running:
		return true
	case stepflow.Waiting:
		return !now.Before(st.WakeAt)
	}
	return false
}

// Advance applies st while it is runnable, at most MaxSteps times, with
// the clock of ctx (stepflow.WithClock). The registry applies a state of
// an older version after migrating it to the current one.
//
// A step failure is not an error: the Failed state comes back, to be
// stored. An error is either one that CannotContinue (the state is
// invalid for its flow, a migration failed), for Report, or one of the
// context, for a retry; with either, st comes back unchanged.
func (p *Process[S]) Advance(ctx context.Context, st stepflow.State[S]) (stepflow.State[S], error) {
	log := logf.FromContext(ctx)
	for range p.opts.MaxSteps {
		if !Runnable(st, stepflow.Now(ctx)) {
			break
		}
		n, err := p.reg.Apply(ctx, st)
		var se *stepflow.StepError
		switch {
		case err == nil:
		case errors.As(err, &se):
			// The process failed: n is the Failed state, to be stored.
			log.Info("process failed", "step", se.Path, "error", se.Err.Error())
		case errors.Is(err, stepflow.ErrInvalidState):
			return st, &unreadableError{err}
		default:
			return st, err
		}
		if n.Steps == st.Steps && n.Version == st.Version {
			break
		}
		if n.Version != st.Version {
			log.Info("process migrated to the current flow version", "from", st.Version, "to", n.Version)
		}
		st = n
	}
	return st, nil
}

// Cancel moves st towards Canceled (versions.Registry.Cancel): the
// cleanups of its active Finally nodes run at the next Advances. A state
// already canceling is returned as it is.
func (p *Process[S]) Cancel(st stepflow.State[S], reason string) (stepflow.State[S], error) {
	if st.Canceling() {
		return st, nil
	}
	return p.reg.Cancel(st, reason)
}

// Requeue tells controller-runtime when st can go on (see the function
// Requeue), with the bounds of ProcessOptions.Requeue.
func (p *Process[S]) Requeue(st stepflow.State[S], now time.Time) ctrl.Result {
	return Requeue(st, now, &p.opts.Requeue)
}

// Save stores next in ps for generation gen, and derives the rest of ps
// from it: phase, step, wake time, last error and conditions (SetStatus).
//
// prev is the state Load or Stored returned from ps, or nil when ps does
// not hold it (a new process). next is encoded only when it differs from
// prev: the API server rewrites the stored bytes (key order, spacing), so
// encoding an unchanged state again would look like a change and cost a
// write. A state too large to store is an error matching ErrUnwritable,
// and ps is left as it was.
func (p *Process[S]) Save(ps *ProcessStatus, gen int64, prev *stepflow.State[S], next stepflow.State[S], now time.Time) error {
	if prev == nil || changed(prev, &next) || !ps.stored() || ps.ObservedGeneration != gen {
		raw, err := p.codec.Encode(next)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnwritable, err)
		}
		ps.State = &runtime.RawExtension{Raw: raw}
	}
	p.SetStatus(ps, gen, next, now)
	return nil
}

// changed reports whether next differs from prev in anything Apply,
// Cancel, Signal or a migration changes.
func changed[S any](prev, next *stepflow.State[S]) bool {
	return prev.Version != next.Version || prev.ID != next.ID || prev.Status != next.Status ||
		prev.Steps != next.Steps || !prev.WakeAt.Equal(next.WakeAt) ||
		prev.Canceling() != next.Canceling() || len(prev.Signals) != len(next.Signals) ||
		prev.Intent != next.Intent
}

// SetStatus derives everything in ps that repeats st, without touching
// ps.State: observed generation, flow version, phase, step, wake time,
// last error, the process conditions and, when configured, the step
// conditions. A condition's transition time moves only when its status
// does, and comes from now.
func (p *Process[S]) SetStatus(ps *ProcessStatus, gen int64, st stepflow.State[S], now time.Time) {
	ps.ObservedGeneration = gen
	ps.FlowVersion = st.Version
	ps.Phase = st.Status.String()
	ps.Step = strings.Join(st.Positions(), ",")
	ps.WakeAt = nil
	if st.Status == stepflow.Waiting && !st.WakeAt.IsZero() {
		t := metav1.NewTime(st.WakeAt)
		ps.WakeAt = &t
	}
	c := conditions{ps: ps, gen: gen, now: metav1.NewTime(now)}
	d, err := p.reg.Describe(st)
	if err != nil {
		// Not reached for a state that Load or Advance returned; kept
		// readable all the same.
		d = stepflow.Description{Version: st.Version, Status: st.Status, Positions: st.Positions(), Err: st.Err, Why: err.Error()}
	}
	ps.LastError = ""
	if d.Err != nil {
		ps.LastError = truncate(d.Err.String(), maxMessage)
	}
	setProcessConditions(c, &d, p.opts.Noun, p.opts.ReadyMessage)
	if p.opts.StepConditions != nil && err == nil {
		setStepConditions(c, &d, p.opts.StepConditions, p.tagged)
	}
}

// Report records in ps that its process cannot go on, for an error that
// CannotContinue: Failed=True with a reason and a message that say what
// is wrong and what to do, the phase saying so too (PhaseUnreadable,
// PhaseUnknownVersion, PhaseUnwritable, PhaseMigrationFailed), and
// ps.State left as it is for a person to inspect. It returns false, and
// changes nothing, when ps already reports the same for generation gen:
// a problem is reported once per generation, even if the message differs
// in details (a decoder's message may name a byte offset, which moves
// when the API server rewrites the stored bytes; writing it again would
// only cost a write and a reconcile). Do not requeue: only a new spec, or
// a controller that can read the state, helps.
func (p *Process[S]) Report(ps *ProcessStatus, gen int64, err error, now time.Time) bool {
	phase, reason, msg := p.problem(err)
	if c := findCondition(ps.Conditions, ConditionFailed); c != nil &&
		ps.Phase == phase && ps.ObservedGeneration == gen &&
		c.Status == metav1.ConditionTrue && c.Reason == reason && c.ObservedGeneration == gen {
		return false
	}
	ps.ObservedGeneration = gen
	ps.Phase = phase
	ps.Step = ""
	ps.WakeAt = nil
	ps.LastError = truncate(msg, maxMessage)
	setBrokenConditions(conditions{ps: ps, gen: gen, now: metav1.NewTime(now)}, p.opts.Noun, reason, msg)
	return true
}

// problem classifies an error that CannotContinue.
func (p *Process[S]) problem(err error) (phase, reason, msg string) {
	next := "; the controller leaves it unchanged for inspection; change the spec to start a new " + p.opts.Noun
	var uv *versions.UnknownVersionError
	var ue *unreadableError
	switch {
	case errors.As(err, &uv):
		return PhaseUnknownVersion, ReasonUnknownFlowVersion, fmt.Sprintf(
			"status.state is of flow version %q, which this controller does not know (it runs %v)%s, or run a controller that knows %q",
			uv.Version, uv.Known, next, uv.Version)
	case errors.Is(err, ErrUnwritable):
		return PhaseUnwritable, ReasonStateUnwritable, err.Error()
	case errors.Is(err, versions.ErrNoTarget), errors.Is(err, versions.ErrInvalidMigration), errors.Is(err, versions.ErrOutdated):
		return PhaseMigrationFailed, ReasonMigrationFailed, "status.state cannot be moved to the current flow version: " + err.Error() + next
	case errors.As(err, &ue):
		err = ue.err
	}
	return PhaseUnreadable, ReasonStateUnreadable, "status.state cannot be continued: " + err.Error() + next
}

func findCondition(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}
