package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// Errors returned by the runner. Store errors (store.ErrNotFound,
// store.ErrExists...) are passed through wrapped, so errors.Is reaches them.
var (
	// ErrInvalidOptions: New was given options it cannot use.
	ErrInvalidOptions = errors.New("stepflow/runner: invalid options")
	// ErrRunning: Run was called while the same Runner was already running.
	ErrRunning = errors.New("stepflow/runner: already running")
	// ErrQuarantined: the process was set aside because its stored state
	// cannot be used; see QuarantineError.
	ErrQuarantined = errors.New("stepflow/runner: process quarantined")
)

// QuarantineError is returned by State for a quarantined process.
type QuarantineError struct {
	// ID of the process.
	ID string
	// Reason recorded when it was quarantined.
	Reason string
}

func (e *QuarantineError) Error() string {
	return fmt.Sprintf("process %q quarantined: %s", e.ID, e.Reason)
}

// Is matches ErrQuarantined.
func (e *QuarantineError) Is(target error) bool { return target == ErrQuarantined }

// Runner advances the processes of one flow kept in a store. Create one
// with New, start processes with Start, and call Run to work on them.
// Its methods are safe for concurrent use.
type Runner[S any] struct {
	flow  *stepflow.Flow[S]
	store store.Store
	opts  Options
	enc   codec.Codec[S]

	running atomic.Bool

	heldMu sync.Mutex
	held   map[string]struct{}

	cacheMu sync.Mutex
	cache   map[string]cached[S]

	// intents maps a process id to the revision at which this runner saved
	// a state holding an at-most-once intent: only that revision, claimed
	// again by this runner, may run the step (stepflow.WithIntentSaved).
	// It lives in memory on purpose: after a crash nobody knows whether
	// the step ran, and the step's policy decides.
	intentMu sync.Mutex
	intents  map[string]uint64
}

type cached[S any] struct {
	rev uint64
	st  stepflow.State[S]
}

// New returns a runner for flow's processes in st. opts may be nil.
func New[S any](flow *stepflow.Flow[S], st store.Store, opts *Options) (*Runner[S], error) {
	if flow == nil || st == nil {
		return nil, fmt.Errorf("%w: nil flow or store", ErrInvalidOptions)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Runner[S]{flow: flow, store: st, opts: o, held: map[string]struct{}{}, cache: map[string]cached[S]{}, intents: map[string]uint64{}}
	if o.Encoding == "json" {
		r.enc = codec.JSON[S](o.Codec)
	} else {
		r.enc = codec.Msgpack[S](o.Codec)
	}
	return r, nil
}

// Owner returns the name this runner uses for its leases.
func (r *Runner[S]) Owner() string { return r.opts.Owner }

// Flow returns the runner's flow.
func (r *Runner[S]) Flow() *stepflow.Flow[S] { return r.flow }

// Store returns the runner's store.
func (r *Runner[S]) Store() store.Store { return r.store }

func (r *Runner[S]) now() time.Time {
	if r.opts.Clock != nil {
		return r.opts.Clock.Now().UTC()
	}
	return time.Now().UTC()
}

// Start stores a new process with the given id and initial data, due at
// once, and wakes the runners watching the store. The id becomes State.ID,
// so it is part of every step's idempotency key. It fails with an error
// matching store.ErrExists when the id is taken.
func (r *Runner[S]) Start(ctx context.Context, id string, data S) (stepflow.State[S], error) {
	if id == "" {
		return stepflow.State[S]{}, fmt.Errorf("%w: empty process id", store.ErrInvalid)
	}
	st := r.flow.Start(data)
	st.ID = id
	b, err := r.enc.Encode(st)
	if err != nil {
		return st, fmt.Errorf("stepflow/runner: start %q: %w", id, err)
	}
	if err := r.store.Create(ctx, store.Record{ID: id, Status: st.Status, Due: r.now(), Blob: b}); err != nil {
		return st, fmt.Errorf("stepflow/runner: start %q: %w", id, err)
	}
	return st, nil
}

// State returns the stored state of a process. A quarantined process gives
// a *QuarantineError (and the state too, when its bytes still decode).
func (r *Runner[S]) State(ctx context.Context, id string) (stepflow.State[S], error) {
	rec, err := r.store.Load(ctx, id)
	if err != nil {
		return stepflow.State[S]{}, fmt.Errorf("stepflow/runner: state %q: %w", id, err)
	}
	st, derr := codec.Decode[S](rec.Blob, r.opts.Codec)
	if rec.Quarantine != "" {
		return st, &QuarantineError{ID: id, Reason: rec.Quarantine}
	}
	if derr != nil {
		return st, fmt.Errorf("stepflow/runner: state %q: %w", id, derr)
	}
	return st, nil
}

// Counts returns how many processes the store holds, by status.
func (r *Runner[S]) Counts(ctx context.Context) (store.Counts, error) { return r.store.Count(ctx) }

// Cancel cancels a process through Flow.Cancel: the cleanups of its active
// Finally nodes run (the runner applies them as usual), then it is
// Canceled with the reason recorded, and it never runs again. Canceling a
// process that has already ended does nothing. If a runner is working on
// the process at that moment, that runner's save is refused (the revision
// changed) and its result dropped; the step it ran may still have had its
// effect.
func (r *Runner[S]) Cancel(ctx context.Context, id, reason string) error {
	return r.update(ctx, "cancel", id, func(st stepflow.State[S]) (stepflow.State[S], error) {
		if st.Terminal() {
			return st, errUnchanged
		}
		return r.flow.Cancel(st, reason)
	})
}

// Signal delivers an external event to a process through Flow.Signal, for
// a WaitSignal node to consume, and wakes the runners: a waiting process
// becomes runnable at once.
func (r *Runner[S]) Signal(ctx context.Context, id, name string, payload []byte) error {
	return r.update(ctx, "signal", id, func(st stepflow.State[S]) (stepflow.State[S], error) {
		return r.flow.Signal(st, name, payload)
	})
}

// errUnchanged tells update that there is nothing to write.
var errUnchanged = errors.New("unchanged")

// update changes a process from outside the run loop: load, change, write
// back with the revision check, and try again on a conflict.
func (r *Runner[S]) update(ctx context.Context, op, id string, change func(stepflow.State[S]) (stepflow.State[S], error)) error {
	for range 10 {
		rec, err := r.store.Load(ctx, id)
		if err != nil {
			return fmt.Errorf("stepflow/runner: %s %q: %w", op, id, err)
		}
		if rec.Quarantine != "" {
			return &QuarantineError{ID: id, Reason: rec.Quarantine}
		}
		st, err := codec.Decode[S](rec.Blob, r.opts.Codec)
		if err != nil {
			return fmt.Errorf("stepflow/runner: %s %q: %w", op, id, err)
		}
		next, err := change(st)
		if errors.Is(err, errUnchanged) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stepflow/runner: %s %q: %w", op, id, err)
		}
		b, err := r.enc.Encode(next)
		if err != nil {
			return fmt.Errorf("stepflow/runner: %s %q: %w", op, id, err)
		}
		due := next.WakeAt
		if next.Status == stepflow.Running {
			due = r.now()
		}
		errs, err := r.store.Commit(ctx, "", []store.Write{{ID: id, Revision: rec.Revision, Status: next.Status, Due: due, Blob: b}})
		if err != nil {
			return fmt.Errorf("stepflow/runner: %s %q: %w", op, id, err)
		}
		if errs == nil {
			r.forget(id)
			return nil
		}
		if !errors.Is(errs[0], store.ErrConflict) {
			return fmt.Errorf("stepflow/runner: %s %q: %w", op, id, errs[0])
		}
		// Someone wrote in between: reload and try again.
	}
	return fmt.Errorf("stepflow/runner: %s %q: %w (too many concurrent writes)", op, id, store.ErrConflict)
}

// Run advances due processes until ctx is done, then shuts down
// gracefully: steps already started finish, their states are saved, and the
// leases of claimed processes that were not started are released. It
// returns nil after a graceful shutdown, and an error matching
// store.ErrClosed if the store is closed while it runs. Other store errors
// are taken as transient: reported to Options.OnError and retried with a
// growing pause.
//
// Run starts Options.Workers worker goroutines and one lease renewer, and
// returns only after all of them have returned.
func (r *Runner[S]) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)

	var wg sync.WaitGroup
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { r.renewLoop(renewCtx) })
	var workers sync.WaitGroup
	errs := make([]error, r.opts.Workers)
	for i := range r.opts.Workers {
		workers.Go(func() { errs[i] = r.work(ctx) })
	}
	workers.Wait()
	stopRenew()
	wg.Wait()
	return errors.Join(errs...)
}

// work is one worker's loop. It returns nil when ctx is done, and
// store.ErrClosed (wrapped) if the store was closed under it.
func (r *Runner[S]) work(ctx context.Context) error {
	wake := r.store.Watch(ctx)
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		n, err := r.Step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, store.ErrClosed) {
				return fmt.Errorf("stepflow/runner: %w", err)
			}
			r.report(err)
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			sleep(ctx, backoff, nil)
			continue
		}
		backoff = 0
		if n > 0 {
			continue
		}
		r.idle(ctx, wake)
	}
	return nil
}

// idle sleeps until the earliest due time, a notification, MaxIdle, or the
// end of ctx, whichever comes first.
func (r *Runner[S]) idle(ctx context.Context, wake <-chan struct{}) {
	d := r.opts.MaxIdle
	next, ok, err := r.store.NextDue(ctx)
	if err != nil {
		r.report(err)
	} else if ok {
		d = min(d, next.Sub(r.now()))
	}
	// A due time in the past means another runner holds it or it was just
	// written: look again soon, without spinning.
	d = max(d, time.Millisecond)
	sleep(ctx, d, wake)
}

func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	}
}

func (r *Runner[S]) report(err error) {
	if r.opts.OnError != nil {
		r.opts.OnError(err)
	}
}

// renewLoop extends the leases of processes being worked on, every
// Lease/3, so that a slow batch is not taken over while it runs.
func (r *Runner[S]) renewLoop(ctx context.Context) {
	t := time.NewTicker(r.opts.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.heldMu.Lock()
		ids := make([]string, 0, len(r.held))
		for id := range r.held {
			ids = append(ids, id)
		}
		r.heldMu.Unlock()
		if len(ids) == 0 {
			continue
		}
		// Lost leases need no action here: the commit of those processes
		// is refused with store.ErrLeaseLost and their results dropped.
		if _, err := r.store.Renew(ctx, r.opts.Owner, ids, r.now(), r.opts.Lease); err != nil && ctx.Err() == nil {
			r.report(err)
		}
	}
}

func (r *Runner[S]) hold(recs []store.Record) {
	r.heldMu.Lock()
	for i := range recs {
		r.held[recs[i].ID] = struct{}{}
	}
	r.heldMu.Unlock()
}

func (r *Runner[S]) unhold(recs []store.Record) {
	r.heldMu.Lock()
	for i := range recs {
		delete(r.held, recs[i].ID)
	}
	r.heldMu.Unlock()
}

// Step claims one batch of due processes, advances each by one Apply, and
// commits the new states (in transactions of at most GroupCommit writes).
// It returns how many processes it claimed: zero means nothing was due.
// Run calls it in a loop; tests and tools may call it directly (without
// Run, leases are not renewed).
//
// When ctx is done, the step in progress finishes and is saved, and the
// processes not yet started are released.
func (r *Runner[S]) Step(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	recs, err := r.store.Claim(ctx, store.Claim{Owner: r.opts.Owner, Now: r.now(), Limit: r.opts.Batch, Lease: r.opts.Lease})
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	r.hold(recs)
	defer r.unhold(recs)

	// Steps run to completion even when ctx is canceled meanwhile, and the
	// states they produced are saved: that is the graceful shutdown.
	base := context.WithoutCancel(ctx)
	actx := base
	if r.opts.Clock != nil {
		actx = stepflow.WithClock(actx, r.opts.Clock)
	}
	if m := r.opts.Metrics; m != nil && m.Step != nil {
		actx = stepflow.WithInterceptor(actx, stepInterceptor(m.Step))
	}

	ws := make([]store.Write, 0, len(recs))
	trans := make([]transition[S], 0, len(recs))
	done := len(recs)
	for i := range recs {
		if ctx.Err() != nil {
			done = i
			break
		}
		w, tr := r.advance(actx, &recs[i])
		ws = append(ws, w)
		trans = append(trans, tr)
	}
	var firstErr error
	if done < len(recs) {
		rest := make([]string, 0, len(recs)-done)
		for _, rec := range recs[done:] {
			rest = append(rest, rec.ID)
		}
		rctx, cancel := context.WithTimeout(base, 30*time.Second)
		firstErr = r.store.Release(rctx, r.opts.Owner, rest, r.now())
		cancel()
	}
	if err := r.commit(base, ws, trans); err != nil && firstErr == nil {
		firstErr = err
	}
	return len(recs), firstErr
}

// transition is what the runner remembers about one write until it is
// committed.
type transition[S any] struct {
	from, to stepflow.Status
	next     stepflow.State[S]
	cache    bool
	quar     error
}

// advance computes the write for one claimed record.
func (r *Runner[S]) advance(ctx context.Context, rec *store.Record) (store.Write, transition[S]) {
	st, err := r.load(rec)
	if err != nil {
		return r.quarantine(rec, err)
	}
	if st.ID == "" {
		st.ID = rec.ID
	}
	if st.Intent != "" && r.takeIntent(rec.ID, rec.Revision) {
		ctx = stepflow.WithIntentSaved(ctx, st)
	}
	next, err := r.flow.Apply(ctx, st)
	var se *stepflow.StepError
	switch {
	case err == nil, errors.As(err, &se):
		// A *StepError comes with the Failed state, which is saved.
	case errors.Is(err, stepflow.ErrVersionMismatch), errors.Is(err, stepflow.ErrInvalidState):
		return r.quarantine(rec, err)
	default:
		// Anything else (the context, in practice) leaves the state as it
		// was: write it back unchanged so the lease is released.
		next = st
	}
	tr := transition[S]{from: st.Status, to: next.Status, next: next, cache: true}
	w := store.Write{ID: rec.ID, Revision: rec.Revision, Status: next.Status, Due: next.WakeAt}
	if next.Status == stepflow.Running {
		w.Due = r.now()
	}
	if next.Steps == st.Steps && next.Status == st.Status {
		// Nothing happened (a wake-up before WakeAt): keep the bytes.
		return w, tr
	}
	b, err := r.enc.Encode(next)
	if err != nil {
		// The new state cannot be stored (data too large, say): the step
		// ran, but its result is lost. Set the process aside with the old
		// bytes rather than retry forever.
		return r.quarantine(rec, fmt.Errorf("encode after step: %w", err))
	}
	w.Blob = b
	return w, tr
}

func (r *Runner[S]) quarantine(rec *store.Record, err error) (store.Write, transition[S]) {
	return store.Write{ID: rec.ID, Revision: rec.Revision, Status: rec.Status, Quarantine: err.Error()},
		transition[S]{from: rec.Status, to: rec.Status, quar: err}
}

// load decodes a record, or takes its state from the cache when the runner
// wrote that very revision itself.
func (r *Runner[S]) load(rec *store.Record) (stepflow.State[S], error) {
	if r.opts.Cache > 0 {
		r.cacheMu.Lock()
		c, ok := r.cache[rec.ID]
		r.cacheMu.Unlock()
		if ok && c.rev == rec.Revision {
			return c.st, nil
		}
	}
	return codec.Decode[S](rec.Blob, r.opts.Codec)
}

func (r *Runner[S]) remember(id string, rev uint64, st stepflow.State[S]) {
	if r.opts.Cache <= 0 {
		return
	}
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	if st.Terminal() {
		delete(r.cache, id)
		return
	}
	if _, ok := r.cache[id]; !ok && len(r.cache) >= r.opts.Cache {
		for k := range r.cache { // evict one arbitrary entry
			delete(r.cache, k)
			break
		}
	}
	r.cache[id] = cached[S]{rev: rev, st: st}
}

func (r *Runner[S]) saveIntent(id string, rev uint64) {
	r.intentMu.Lock()
	r.intents[id] = rev
	r.intentMu.Unlock()
}

// takeIntent reports whether this runner itself saved revision rev of id
// with its intent, and forgets it: the authorization is good once.
func (r *Runner[S]) takeIntent(id string, rev uint64) bool {
	r.intentMu.Lock()
	defer r.intentMu.Unlock()
	saved, ok := r.intents[id]
	delete(r.intents, id)
	return ok && saved == rev
}

func (r *Runner[S]) forget(id string) {
	r.cacheMu.Lock()
	delete(r.cache, id)
	r.cacheMu.Unlock()
}

// commit writes ws in transactions of at most GroupCommit writes.
func (r *Runner[S]) commit(ctx context.Context, ws []store.Write, trans []transition[S]) error {
	m := r.opts.Metrics
	var firstErr error
	for lo := 0; lo < len(ws); lo += r.opts.GroupCommit {
		hi := min(lo+r.opts.GroupCommit, len(ws))
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		start := time.Now()
		errs, err := r.store.Commit(cctx, r.opts.Owner, ws[lo:hi])
		cancel()
		refused := 0
		for i := lo; i < hi; i++ {
			var werr error
			if err != nil {
				werr = err
			} else if errs != nil {
				werr = errs[i-lo]
			}
			if werr != nil {
				refused++
				r.forget(ws[i].ID)
				continue
			}
			tr := &trans[i]
			if tr.quar != nil {
				r.forget(ws[i].ID)
				if m != nil && m.Quarantined != nil {
					m.Quarantined(ws[i].ID, tr.quar)
				}
				continue
			}
			if tr.cache {
				r.remember(ws[i].ID, ws[i].Revision+1, tr.next)
			}
			if tr.next.Intent != "" && tr.next.Status == stepflow.Running && ws[i].Blob != nil {
				r.saveIntent(ws[i].ID, ws[i].Revision+1)
			}
			if m != nil && m.Applied != nil {
				m.Applied(ws[i].ID, tr.from, tr.to)
			}
		}
		if m != nil && m.Committed != nil {
			m.Committed(hi-lo, refused, time.Since(start), err)
		}
		if err != nil {
			// The transaction failed as a whole: nothing of it was saved.
			// Its processes stay leased until the lease expires, then run
			// again (at-least-once).
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

func stepInterceptor(hook func(stepflow.Call, time.Duration, error)) stepflow.Interceptor {
	return func(ctx context.Context, call stepflow.Call, next func(context.Context) error) error {
		start := time.Now()
		err := next(ctx)
		hook(call, time.Since(start), err)
		return err
	}
}
