package kube

import (
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// RequeueOptions bounds the delays Requeue asks for. The zero value is
// ready to use; each field documents its default.
type RequeueOptions struct {
	// Min is the shortest delay of a waiting process, also when its
	// WakeAt has passed: a reconcile costs an API round trip or so, and
	// a flow that waits less than that is better served by a step that
	// waits. Zero means DefaultRequeueMin.
	Min time.Duration
	// Max is the longest delay. A process waiting longer (or for a
	// signal only, with no WakeAt) is looked at again after Max anyway,
	// which costs one reconcile that writes nothing, and bounds the harm
	// of a wake time wrongly far away (a clock that jumped). Zero means
	// DefaultRequeueMax.
	Max time.Duration
	// Runnable is the delay of a process that could go on at once but
	// whose reconcile used up ProcessOptions.MaxSteps. The status write
	// itself brings the next reconcile: its watch event arrives once the
	// informer cache holds the new state, whereas an immediate requeue
	// would likely read the old state from the cache, redo the steps and
	// lose the write to a conflict. The delay is the safety net should
	// that event be filtered out. Zero means DefaultRequeueRunnable.
	Runnable time.Duration
}

// Defaults for RequeueOptions.
const (
	DefaultRequeueMin      = time.Second
	DefaultRequeueMax      = time.Hour
	DefaultRequeueRunnable = time.Second
)

// RequeueConflict is the delay after a write lost to a newer version of
// the object: the next reconcile reads that version and goes on from it.
const RequeueConflict = 100 * time.Millisecond

func (o RequeueOptions) withDefaults() RequeueOptions {
	if o.Min <= 0 {
		o.Min = DefaultRequeueMin
	}
	if o.Max <= 0 {
		o.Max = DefaultRequeueMax
	}
	o.Max = max(o.Max, o.Min)
	if o.Runnable <= 0 {
		o.Runnable = DefaultRequeueRunnable
	}
	return o
}

// Requeue tells controller-runtime when st can go on, as seen at now:
//   - Running: after Runnable (the status write brings it back sooner);
//   - Waiting: at WakeAt, no sooner than Min and no later than Max; a
//     process waiting for a signal only, after Max;
//   - ended, or needing a person: never (an empty Result).
//
// opts may be nil.
func Requeue[S any](st stepflow.State[S], now time.Time, opts *RequeueOptions) ctrl.Result {
	var o RequeueOptions
	if opts != nil {
		o = *opts
	}
	o = o.withDefaults()
	switch st.Status {
	case stepflow.Running:
		return ctrl.Result{RequeueAfter: o.Runnable}
	case stepflow.Waiting:
		if st.WakeAt.IsZero() {
			return ctrl.Result{RequeueAfter: o.Max}
		}
		return ctrl.Result{RequeueAfter: min(max(st.WakeAt.Sub(now), o.Min), o.Max)}
	}
	return ctrl.Result{}
}
