package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	// ErrStalled: a worker of Run has not been able to claim or commit
	// for longer than Options.Lease; see StallError.
	ErrStalled = errors.New("stepflow/runner: no progress")
)

// StallError is what Run reports to Options.OnError, in place of the
// store error itself, once a worker's claims or commits have failed
// without a break for longer than Options.Lease: the database is
// unreachable, every connection of its pool is taken, and so on. Run
// keeps retrying; alert on errors.Is(err, ErrStalled).
type StallError struct {
	// For is how long the worker has been failing.
	For time.Duration
	// Err is the latest error.
	Err error
}

func (e *StallError) Error() string {
	return fmt.Sprintf("stepflow/runner: no progress for %s: %v", e.For.Round(time.Millisecond), e.Err)
}

// Unwrap returns the latest error.
func (e *StallError) Unwrap() error { return e.Err }

// Is matches ErrStalled.
func (e *StallError) Is(target error) bool { return target == ErrStalled }

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
	held   map[*batch[S]]struct{}

	// batches recycles the working memory of Step.
	batches sync.Pool

	cacheMu sync.Mutex
	cache   map[string]*cached[S]

	// intents maps a process id to the revision at which this runner saved
	// a state holding an at-most-once intent: only that revision, claimed
	// again by this runner, may run the step (stepflow.WithIntentSaved).
	// It lives in memory on purpose: after a crash nobody knows whether
	// the step ran, and the step's policy decides.
	intentMu sync.Mutex
	intents  map[string]uint64
}

type cached[S any] struct {
	id  string // the process the entry holds now (entries are reused)
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
	r := &Runner[S]{flow: flow, store: st, opts: o, held: map[*batch[S]]struct{}{}, cache: map[string]*cached[S]{}, intents: map[string]uint64{}}
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
// growing pause. A store call that does not return is one of them: claims
// and lookups of the next due time give up after Options.Lease, lease
// renewals after Options.Lease/3. Once a worker has failed without a
// break for longer than Options.Lease, it reports a *StallError (matching
// ErrStalled) wrapping each further error, until a Step succeeds again.
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
	// failing is when the current series of failed Steps began (wall
	// clock, like the pauses between them); zero after a success.
	var failing time.Time
	for ctx.Err() == nil {
		start := time.Now()
		n, err := r.Step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, store.ErrClosed) {
				return fmt.Errorf("stepflow/runner: %w", err)
			}
			if failing.IsZero() {
				failing = start
			}
			if d := time.Since(failing); d >= r.opts.Lease {
				err = &StallError{For: d, Err: err}
			}
			r.report(err)
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			sleep(ctx, backoff, nil)
			continue
		}
		backoff, failing = 0, time.Time{}
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
	nctx, cancel := context.WithTimeout(ctx, r.opts.Lease)
	next, ok, err := r.store.NextDue(nctx)
	cancel()
	switch {
	case err != nil:
		if ctx.Err() == nil {
			r.report(err)
		}
	case ok:
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
		var ids []string
		for b := range r.held {
			for i := range b.recs {
				ids = append(ids, b.recs[i].ID)
			}
		}
		r.heldMu.Unlock()
		if len(ids) == 0 {
			continue
		}
		// Lost leases need no action here: the commit of those processes
		// is refused with store.ErrLeaseLost and their results dropped. A
		// renewal that takes longer than its interval is abandoned, and
		// the next one tries again.
		rctx, cancel := context.WithTimeout(ctx, r.opts.Lease/3)
		_, err := r.store.Renew(rctx, r.opts.Owner, ids, r.now(), r.opts.Lease)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.report(err)
		}
	}
}

// hold registers a claimed batch with the lease renewer.
func (r *Runner[S]) hold(b *batch[S]) {
	r.heldMu.Lock()
	r.held[b] = struct{}{}
	r.heldMu.Unlock()
}

func (r *Runner[S]) unhold(b *batch[S]) {
	r.heldMu.Lock()
	delete(r.held, b)
	r.heldMu.Unlock()
}

// batch is the working memory of one Step. Batches are recycled through
// Runner.batches, so that a step allocates no bookkeeping of its own.
type batch[S any] struct {
	recs  []store.Record
	ws    []store.Write
	trans []transition[S]
	// lease is what LeaseFrom returns to the step being applied: the
	// batch's context holds a pointer to it, and advance updates it before
	// each process.
	lease Lease
}

func (r *Runner[S]) getBatch(recs []store.Record) *batch[S] {
	b, _ := r.batches.Get().(*batch[S])
	if b == nil {
		b = &batch[S]{}
	}
	b.recs = recs
	b.ws = slices.Grow(b.ws[:0], len(recs))
	b.trans = slices.Grow(b.trans[:0], len(recs))
	return b
}

// putBatch recycles b, dropping every reference to states and bytes so
// that a pooled batch keeps nothing of the processes alive.
func (r *Runner[S]) putBatch(b *batch[S]) {
	clear(b.ws[:cap(b.ws)])
	clear(b.trans[:cap(b.trans)])
	b.recs, b.ws, b.trans, b.lease = nil, b.ws[:0], b.trans[:0], Lease{}
	r.batches.Put(b)
}

// Step claims one batch of due processes, advances each by one Apply, and
// commits the new states (in transactions of at most GroupCommit writes).
// It returns how many processes it claimed: zero means nothing was due.
// Run calls it in a loop; tests and tools may call it directly (without
// Run, leases are not renewed). A claim that gets no answer from the store
// within Options.Lease fails with an error matching
// context.DeadlineExceeded.
//
// Each step finds the lease of its process in its context (LeaseFrom).
//
// When ctx is done, the step in progress finishes and is saved, and the
// processes not yet started are released.
func (r *Runner[S]) Step(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// One clock reading per batch: it is the claim time, and the due time
	// of every process that is still runnable after its step, which keeps
	// runnable processes in first-come, first-served order.
	now := r.now()
	// A claim that takes longer than a lease would hand out leases that
	// have already ended; a store that cannot answer (every connection
	// taken, say) must turn into an error Run reports, not a silent wait.
	cctx, cancel := context.WithTimeout(ctx, r.opts.Lease)
	recs, err := r.store.Claim(cctx, store.Claim{Owner: r.opts.Owner, Now: now, Limit: r.opts.Batch, Lease: r.opts.Lease})
	cancel()
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	b := r.getBatch(recs)
	defer r.putBatch(b)
	r.hold(b)
	defer r.unhold(b)

	// Steps run to completion even when ctx is canceled meanwhile, and the
	// states they produced are saved: that is the graceful shutdown. The
	// value context on top of context.WithoutCancel is not decoration:
	// looking a value up directly on a WithoutCancel context allocates, and
	// Apply looks values up on every call; through a value context it does
	// not. The value is the batch's lease, which the loop below points at
	// each process in turn: one context serves the whole batch.
	base := context.WithoutCancel(ctx)
	b.lease = Lease{Owner: r.opts.Owner}
	actx := context.WithValue(base, leaseKey{}, &b.lease)
	if r.opts.Clock != nil {
		actx = stepflow.WithClock(actx, r.opts.Clock)
	}
	if m := r.opts.Metrics; m != nil && m.Step != nil {
		actx = stepflow.WithInterceptor(actx, stepInterceptor(m.Step))
	}

	r.lookup(b)
	done := len(recs)
	stop := ctx.Done()
	for i := range recs {
		select {
		case <-stop:
			done = i
		default:
		}
		if done < len(recs) {
			break
		}
		// A claimed record's Due is the end of its lease.
		b.lease.Revision, b.lease.Until = recs[i].Revision, recs[i].Due
		r.advance(actx, &recs[i], now, &b.ws[i], &b.trans[i])
	}
	b.ws, b.trans = b.ws[:done], b.trans[:done]
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
	if err := r.commit(base, b.ws, b.trans); err != nil && firstErr == nil {
		firstErr = err
	}
	return len(recs), firstErr
}

// transition is what the runner remembers about one write until it is
// committed.
type transition[S any] struct {
	from, to stepflow.Status
	// next is the state after the step. Between lookup and advance it
	// holds the cached state of the claimed revision, when hit is set.
	next  stepflow.State[S]
	entry *cached[S] // the cache entry lookup found, if any
	hit   bool
	cache bool
	quar  error
}

// lookup fills the batch's transitions with the cached states of the
// claimed revisions, under one lock for the whole batch.
func (r *Runner[S]) lookup(b *batch[S]) {
	b.ws = b.ws[:len(b.recs)]
	b.trans = b.trans[:len(b.recs)]
	if r.opts.Cache <= 0 {
		return
	}
	r.cacheMu.Lock()
	for i := range b.recs {
		rec := &b.recs[i]
		if c, ok := r.cache[rec.ID]; ok {
			b.trans[i].entry = c
			if c.rev == rec.Revision {
				b.trans[i].next, b.trans[i].hit = c.st, true
			}
		}
	}
	r.cacheMu.Unlock()
}

// advance computes the write for one claimed record into w and tr. tr may
// already hold the cached state of rec (see lookup).
func (r *Runner[S]) advance(ctx context.Context, rec *store.Record, now time.Time, w *store.Write, tr *transition[S]) {
	// The state is read in place from tr.next: a state is a few hundred
	// bytes, and each copy of one shows in the cost of a step.
	if !tr.hit {
		var err error
		tr.next, err = codec.Decode[S](rec.Blob, r.opts.Codec)
		if err != nil {
			r.quarantine(rec, err, w, tr)
			return
		}
	}
	st := &tr.next
	if st.ID == "" {
		st.ID = rec.ID
	}
	if st.Intent != "" && r.takeIntent(rec.ID, rec.Revision) {
		ctx = stepflow.WithIntentSaved(ctx, *st)
	}
	from, steps := st.Status, st.Steps
	next, err := r.flow.Apply(ctx, *st)
	switch {
	case err == nil:
	case isStepError(err):
		// A *StepError comes with the Failed state, which is saved.
	case errors.Is(err, stepflow.ErrVersionMismatch), errors.Is(err, stepflow.ErrInvalidState):
		r.quarantine(rec, err, w, tr)
		return
	default:
		// Anything else (the context, in practice) leaves the state as it
		// was: write it back unchanged so the lease is released.
		next = *st
	}
	tr.from, tr.to, tr.hit, tr.cache, tr.quar = from, next.Status, false, true, nil
	tr.next = next
	w.ID, w.Revision, w.Status, w.Due, w.Blob, w.Quarantine = rec.ID, rec.Revision, next.Status, next.WakeAt, nil, ""
	if next.Status == stepflow.Running {
		w.Due = now
	}
	if next.Steps == steps && next.Status == from {
		// Nothing happened (a wake-up before WakeAt): keep the bytes.
		return
	}
	bs, err := r.enc.Encode(next)
	if err != nil {
		// The new state cannot be stored (data too large, say): the step
		// ran, but its result is lost. Set the process aside with the old
		// bytes rather than retry forever.
		r.quarantine(rec, fmt.Errorf("encode after step: %w", err), w, tr)
		return
	}
	w.Blob = bs
}

// isStepError reports whether err carries a *stepflow.StepError, without
// the allocation errors.As costs.
func isStepError(err error) bool {
	_, ok := errors.AsType[*stepflow.StepError](err)
	return ok
}

func (r *Runner[S]) quarantine(rec *store.Record, err error, w *store.Write, tr *transition[S]) {
	*w = store.Write{ID: rec.ID, Revision: rec.Revision, Status: rec.Status, Quarantine: err.Error()}
	*tr = transition[S]{from: rec.Status, to: rec.Status, quar: err}
}

// remember caches the states this runner has just committed, under one
// lock for the whole group. A cache entry is updated in place, so a
// process that keeps running costs the cache no allocation.
func (r *Runner[S]) remember(ws []store.Write, trans []transition[S], ok func(i int) bool) {
	if r.opts.Cache <= 0 {
		return
	}
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	for i := range ws {
		if !trans[i].cache || !ok(i) {
			continue
		}
		id, st := ws[i].ID, &trans[i].next
		// The entry lookup found saves a second map access, unless it
		// has been given to another process since.
		c, found := trans[i].entry, true
		if c == nil || c.id != id {
			c, found = r.cache[id]
		}
		if st.Terminal() {
			if found {
				delete(r.cache, id)
			}
			continue
		}
		if !found {
			if len(r.cache) >= r.opts.Cache {
				for k, old := range r.cache { // evict one arbitrary entry
					delete(r.cache, k)
					c = old
					break
				}
			} else {
				c = &cached[S]{}
			}
			c.id = id
			r.cache[id] = c
		}
		c.rev, c.st = ws[i].Revision+1, *st
	}
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
		var start time.Time
		if m != nil && m.Committed != nil {
			start = time.Now()
		}
		errs, err := r.store.Commit(cctx, r.opts.Owner, ws[lo:hi])
		cancel()
		if err != nil {
			// The transaction failed as a whole: nothing of it was saved.
			// Its processes stay leased until the lease expires, then run
			// again (at-least-once). Their cached states are dropped.
			for i := lo; i < hi; i++ {
				r.forget(ws[i].ID)
			}
			if m != nil && m.Committed != nil {
				m.Committed(hi-lo, hi-lo, time.Since(start), err)
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		applied := func(i int) bool { return errs == nil || errs[i] == nil }
		r.remember(ws[lo:hi], trans[lo:hi], applied)
		refused := 0
		for i := lo; i < hi; i++ {
			if !applied(i - lo) {
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
			if tr.next.Intent != "" && tr.next.Status == stepflow.Running && ws[i].Blob != nil {
				r.saveIntent(ws[i].ID, ws[i].Revision+1)
			}
			if m != nil && m.Applied != nil {
				m.Applied(ws[i].ID, tr.from, tr.to)
			}
		}
		if m != nil && m.Committed != nil {
			m.Committed(hi-lo, refused, time.Since(start), nil)
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
