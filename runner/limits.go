package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// Limit is the rule of a class of limited resources (Options.Limits): at
// most Capacity holders at once, at most Rate slots granted per Per, or
// both. Every runner sharing a store must give a class the same rule.
type Limit struct {
	Capacity int
	Rate     int
	Per      time.Duration
}

func (l Limit) check(class string) error {
	switch {
	case l.Capacity < 0 || l.Rate < 0 || l.Per < 0:
		return fmt.Errorf("%w: limit %q: negative field", ErrInvalidOptions, class)
	case l.Capacity == 0 && l.Rate == 0:
		return fmt.Errorf("%w: limit %q: neither a capacity nor a rate", ErrInvalidOptions, class)
	case l.Rate > 0 && l.Per == 0:
		return fmt.Errorf("%w: limit %q: a rate needs Per", ErrInvalidOptions, class)
	}
	return nil
}

// LimitPoll is how often a process waiting for a slot asks again.
var LimitPoll = time.Second

// ErrNoLimit: a Limited node names a class of resources that the runner's
// Options.Limits do not define.
var ErrNoLimit = errors.New("stepflow/runner: no such limit")

// memLimiters are the in-memory limiters of stores that do not share
// limits themselves, one per store, so that every runner of a program over
// one store shares it.
var memLimiters sync.Map // store.Store -> store.Limiter

// limiterOf returns the limiter the runners over st share.
func limiterOf(st store.Store) store.Limiter {
	if l, ok := st.(store.Limiter); ok {
		return l
	}
	l, _ := memLimiters.LoadOrStore(st, store.NewMemoryLimiter())
	return l.(store.Limiter)
}

// Limited is a node that runs body holding a slot of a limited resource:
// the class names its rule in Options.Limits, and key, when not nil,
// tells which resource of the class a process needs ("cluster" and
// "eu-1" make the resource "cluster/eu-1"; every resource of a class has
// the class's rule). While no slot is free the process waits (status
// Waiting, the node "waiting for a slot of CLASS"), asking again every
// LimitPoll; slots are granted first come, first served. The slot is
// given back when body ends, fails or is canceled, and when the process
// is deleted (Runner.Delete).
//
// On PostgreSQL the slots are rows shared by every runner process (see
// pgstore); on the other stores they are kept in memory, shared by the
// runners of one program. The node is a Finally: "use" holds the
// waiting ("acquire") and body, and "release" gives the slot back. key
// must give the same resource for as long as the slot is held.
func Limited[S any](name, class string, key func(*S) (string, error), body ...stepflow.Node[S]) stepflow.Node[S] {
	acquire := func(ctx context.Context, s *S) (bool, error) {
		r, holder, err := limitCall(ctx, "/use/acquire")
		if err != nil {
			return false, err
		}
		rule, ok := r.opts.Limits[class]
		if !ok {
			return false, fmt.Errorf("%w: %q (runner.Options.Limits)", ErrNoLimit, class)
		}
		resource := class
		if key != nil {
			k, err := key(s)
			if err != nil {
				return false, err
			}
			if k != "" {
				resource += "/" + k
			}
		}
		return r.limiter.Acquire(ctx, store.LimitRequest{Resource: resource, Holder: holder,
			Capacity: rule.Capacity, Rate: rule.Rate, Per: rule.Per, Now: stepflow.Now(ctx), Stale: r.opts.Lease * 2})
	}
	release := func(ctx context.Context, _ *S) error {
		r, holder, err := limitCall(ctx, "/release")
		if err != nil {
			return err
		}
		return r.limiter.ReleaseSlots(ctx, holder)
	}
	use := append([]stepflow.Node[S]{stepflow.Annotate(combinators.WaitFor("acquire", acquire, combinators.Every(LimitPoll)),
		stepflow.Meta{Description: "waiting for a slot of " + class})}, body...)
	return combinators.Finally(name, combinators.Sequence("use", use...), combinators.Do("release", release))
}

// limitCall finds the runner of a Limited node's call and the holder name
// of its process and node: the process id, '|', the node's path, and the
// iteration numbers of the loops around it.
func limitCall(ctx context.Context, suffix string) (*Runner, string, error) {
	l, ok := ctx.Value(leaseKey{}).(*Lease)
	call, cok := stepflow.CallFrom(ctx)
	if !ok || l.r == nil || !cok {
		return nil, "", errors.New("stepflow/runner: a Limited node runs only under a runner")
	}
	return l.r, nodeKey(call, '|', suffix), nil
}

// releaseSlotsOf gives back the slots of deleted processes.
func (r *Runner) releaseSlotsOf(ctx context.Context, ids []string) error {
	var errs []error
	for _, id := range ids {
		if _, err := r.limiter.ReleaseSlotsPrefix(ctx, id+"|"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sweepSlots gives back the slots whose process no longer needs them: it
// was deleted (by a store's retention, say) or has ended. A process that
// holds a slot normally gives it back itself; this is for the others.
func (r *Runner) sweepSlots(ctx context.Context) error {
	var afterRes, afterHolder string
	for {
		hs, err := r.limiter.SlotHolders(ctx, afterRes, afterHolder, 500)
		if err != nil {
			return err
		}
		for _, h := range hs {
			id, _, _ := strings.Cut(h.Holder, "|")
			rec, err := r.store.Load(ctx, id)
			switch {
			case errors.Is(err, store.ErrNotFound) || err == nil && rec.Status.Terminal() && rec.Quarantine == "":
				if err := r.limiter.ReleaseSlots(ctx, h.Holder); err != nil {
					return err
				}
			case err != nil:
				return err
			}
		}
		if len(hs) < 500 {
			return nil
		}
		afterRes, afterHolder = hs[len(hs)-1].Resource, hs[len(hs)-1].Holder
	}
}

// sweepLoop runs sweepSlots every Lease while Run runs, when the runner has
// limits.
func (r *Runner) sweepLoop(ctx context.Context) {
	t := time.NewTicker(r.opts.Lease)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.sweepSlots(ctx); err != nil && ctx.Err() == nil {
				r.report(fmt.Errorf("stepflow/runner: sweep slots: %w", err))
			}
		}
	}
}
