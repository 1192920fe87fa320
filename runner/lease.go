package runner

import (
	"context"
	"time"
)

// Lease describes the lease under which a runner applies a process: a step
// reads it from its context with LeaseFrom.
//
// A lease does not promise that nobody else runs the step at the same
// time: a runner that stalls past Until (a long pause of the machine or of
// the process) keeps running its step while another runner, which claimed
// the process after the lease ended, runs it too. The store accepts only
// one of their results (the first commit of a revision wins), but both
// steps had their effects. Revision is a fencing token for those effects:
// it is the stored revision the step's state was loaded at, and every
// commit of a process increments it, so an external system that keeps the
// highest Revision it has seen for a process, and refuses requests that
// carry a lower one, refuses a runner that is still working on an older
// revision after a newer one was committed. Two runners that run the same
// revision at once carry the same Revision: they run the same call, with
// the same idempotency key (stepflow.Call.IdempotencyKey), which is what
// makes the second request harmless.
type Lease struct {
	// Owner is the runner holding the lease (Options.Owner).
	Owner string
	// Revision is the stored revision of the process when it was claimed.
	// It strictly increases across the commits of one process.
	Revision uint64
	// Until is when the lease ends, as claimed. The runner renews the
	// leases of processes it is still working on (every Options.Lease/3),
	// so a running step's lease normally lasts longer; past Until without
	// renewal, another runner may have claimed the process.
	Until time.Time

	r *Runner // the runner, for the nodes that need it (Limited)
}

// leaseKey is the context key of the *Lease a runner passes to Apply.
type leaseKey struct{}

// LeaseFrom returns the lease of the process whose step is running, from
// the context a runner passes to the step; ok is false outside a runner.
//
// The value is valid during the call that received ctx only: the runner
// reuses one context for every process of a batch (which keeps steps from
// paying for a context per call) and changes the lease it holds between
// steps. Read it during the call, and pass the Lease value, not ctx, to
// work that outlives the call.
func LeaseFrom(ctx context.Context) (Lease, bool) {
	l, ok := ctx.Value(leaseKey{}).(*Lease)
	if !ok || l == nil {
		return Lease{}, false
	}
	out := *l
	out.r = nil
	return out, true
}
