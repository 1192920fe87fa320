package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
	// ErrDuplicateFlow: a runner already hosts a flow of that name.
	ErrDuplicateFlow = errors.New("stepflow/runner: flow registered twice")
	// ErrOtherFlow: the process belongs to another flow than the
	// Processes asked about it.
	ErrOtherFlow = errors.New("stepflow/runner: process of another flow")
	// ErrNoFlows: Run was called on a runner that hosts no flow.
	ErrNoFlows = errors.New("stepflow/runner: no flow registered")
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

// Runner advances the processes of the flows it hosts, kept in one store.
// Create one with New, register each flow with Register or
// RegisterVersions (which return the typed handle to start and manage its
// processes), and call Run to work on them. Its methods are safe for
// concurrent use.
type Runner struct {
	store store.Store
	opts  Options
	// limiter grants the slots of Limited nodes (limits.go).
	limiter store.Limiter
	// keeps: the store keeps leases on commit (store.LeaseKeeper), so
	// workers apply running processes again without claiming them.
	keeps bool

	running atomic.Bool

	hostMu    sync.RWMutex
	hosts     []host
	byName    map[string]host
	byVersion map[string]host
	versions  []string // every version claimed, sorted

	heldMu sync.Mutex
	held   map[*batch]struct{}

	// batches recycles the untyped working memory of Step.
	batches sync.Pool

	// intents maps a process id to the revision at which this runner saved
	// a state holding an at-most-once intent: only that revision, claimed
	// again by this runner, may run the step (stepflow.WithIntentSaved).
	// It lives in memory on purpose: after a crash nobody knows whether
	// the step ran, and the step's policy decides.
	intentMu sync.Mutex
	intents  map[string]uint64
}

// New returns a runner over st, hosting no flow yet. opts may be nil.
func New(st store.Store, opts *Options) (*Runner, error) {
	if st == nil {
		return nil, fmt.Errorf("%w: nil store", ErrInvalidOptions)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	lk, keeps := st.(store.LeaseKeeper)
	keeps = keeps && lk.KeepsLeases()
	return &Runner{store: st, opts: o, limiter: limiterOf(st), keeps: keeps, held: map[*batch]struct{}{}, intents: map[string]uint64{},
		byName: map[string]host{}, byVersion: map[string]host{}}, nil
}

// host adds a flow; see Register.
func (r *Runner) host(h host) error {
	if r.running.Load() {
		return fmt.Errorf("%w: register %q before Run", ErrRunning, h.name())
	}
	r.hostMu.Lock()
	defer r.hostMu.Unlock()
	if _, dup := r.byName[h.name()]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicateFlow, h.name())
	}
	for _, v := range h.claims() {
		if flowName(v) != h.name() {
			return fmt.Errorf("%w: version %q is not of flow %q", ErrInvalidOptions, v, h.name())
		}
	}
	r.byName[h.name()] = h
	r.hosts = append(r.hosts, h)
	for _, v := range h.claims() {
		r.byVersion[v] = h
		r.versions = append(r.versions, v)
	}
	slices.Sort(r.versions)
	return nil
}

// Flows lists the flows the runner hosts, by name, with the versions it
// claims of each.
func (r *Runner) Flows() map[string][]string {
	r.hostMu.RLock()
	defer r.hostMu.RUnlock()
	out := make(map[string][]string, len(r.hosts))
	for _, h := range r.hosts {
		out[h.name()] = h.claims()
	}
	return out
}

// Owner returns the name this runner uses for its leases.
func (r *Runner) Owner() string { return r.opts.Owner }

// Store returns the runner's store.
func (r *Runner) Store() store.Store { return r.store }

func (r *Runner) now() time.Time {
	if r.opts.Clock != nil {
		return r.opts.Clock.Now().UTC()
	}
	return time.Now().UTC()
}

// Counts returns how many processes the store holds, by status, in all
// and per flow version. A version that no runner knows shows here: its
// processes wait for one.
func (r *Runner) Counts(ctx context.Context) (store.Counts, error) { return r.store.Count(ctx) }

// Delete removes processes from the store, whatever their status; a
// runner working on one drops its result. It returns how many it removed.
func (r *Runner) Delete(ctx context.Context, ids ...string) (int, error) {
	n, err := r.store.Delete(ctx, ids)
	if err != nil {
		return n, fmt.Errorf("stepflow/runner: delete: %w", err)
	}
	return n, r.deleted(ctx, ids)
}

// DeleteRevisions is Delete for processes that must still be at the
// revision the caller read: one that changed since (redriven, signaled,
// stepped) is kept, and its entry in the slice says so with an error
// matching store.ErrConflict (store.ErrNotFound for one that is gone). The
// slice is nil when every process was removed. Deleting what a filter
// listed this way spares the processes that stopped matching it. On a
// store that does not implement store.RevisionDeleter it returns an error
// matching errors.ErrUnsupported and removes nothing.
func (r *Runner) DeleteRevisions(ctx context.Context, ds ...store.Deletion) ([]error, error) {
	rd, ok := r.store.(store.RevisionDeleter)
	if !ok {
		return nil, fmt.Errorf("stepflow/runner: delete: the store cannot delete at a revision: %w", errors.ErrUnsupported)
	}
	errs, err := rd.DeleteRevisions(ctx, ds)
	if err != nil {
		return nil, fmt.Errorf("stepflow/runner: delete: %w", err)
	}
	var gone []string
	for i, d := range ds {
		if errs == nil || errs[i] == nil {
			gone = append(gone, d.ID)
		}
	}
	return errs, r.deleted(ctx, gone)
}

// deleted gives back the resource slots of deleted processes and drops
// them from the decoded states the runner keeps.
func (r *Runner) deleted(ctx context.Context, ids []string) error {
	if err := r.releaseSlotsOf(ctx, ids); err != nil {
		return fmt.Errorf("stepflow/runner: delete: %w", err)
	}
	r.hostMu.RLock()
	for _, h := range r.hosts {
		for _, id := range ids {
			h.forget(id)
		}
	}
	r.hostMu.RUnlock()
	return nil
}

// claimable returns the versions the runner claims.
func (r *Runner) claimable() []string {
	r.hostMu.RLock()
	defer r.hostMu.RUnlock()
	return r.versions
}

func (r *Runner) hostOf(version string) host {
	r.hostMu.RLock()
	defer r.hostMu.RUnlock()
	return r.byVersion[version]
}

func (r *Runner) quarantined(id, version string, err error) {
	if m := r.opts.Metrics; m != nil && m.Quarantined != nil {
		m.Quarantined(id, version, err)
	}
}

func (r *Runner) migrated(id, from, to string) {
	if m := r.opts.Metrics; m != nil && m.Migrated != nil {
		m.Migrated(id, from, to)
	}
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
func (r *Runner) Run(ctx context.Context) error {
	if len(r.claimable()) == 0 {
		return ErrNoFlows
	}
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)

	var wg sync.WaitGroup
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { r.renewLoop(renewCtx) })
	if r.opts.Retention > 0 {
		wg.Go(func() { r.retentionLoop(ctx) })
	}
	if len(r.opts.Limits) > 0 {
		wg.Go(func() { r.sweepLoop(ctx) })
	}
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
func (r *Runner) work(ctx context.Context) error {
	wake := r.store.Watch(ctx)
	backoff := time.Duration(0)
	// failing is when the current series of failed Steps began (wall
	// clock, like the pauses between them); zero after a success.
	var failing time.Time
	// The processes this worker kept leased after its last commit
	// (Write.KeepUntil), to apply again without claiming them.
	carry := carried{wake: wake}
	defer r.releaseCarried(&carry)
	for ctx.Err() == nil {
		start := time.Now()
		n, err := r.step(ctx, &carry)
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
func (r *Runner) idle(ctx context.Context, wake <-chan struct{}) {
	d := r.opts.MaxIdle
	nctx, cancel := context.WithTimeout(ctx, r.opts.Lease)
	next, ok, err := r.store.NextDue(nctx, r.claimable())
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

func (r *Runner) report(err error) {
	if r.opts.OnError != nil {
		r.opts.OnError(err)
	}
}

// renewLoop extends the leases of processes being worked on, every
// Lease/3, so that a slow batch is not taken over while it runs.
func (r *Runner) renewLoop(ctx context.Context) {
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
func (r *Runner) hold(b *batch) {
	r.heldMu.Lock()
	r.held[b] = struct{}{}
	r.heldMu.Unlock()
}

func (r *Runner) unhold(b *batch) {
	r.heldMu.Lock()
	delete(r.held, b)
	r.heldMu.Unlock()
}

// batch is the untyped working memory of one Step. Batches are recycled
// through Runner.batches, so that a step allocates no bookkeeping of its
// own.
type batch struct {
	recs []store.Record
	ws   []store.Write
	// applied says which writes the store applied (commit).
	applied []bool
	// slots says, for each record, which flow's batch handles it and as
	// which of its records.
	slots []slot
	parts []part
	// lease is what LeaseFrom returns to the step being applied: the
	// batch's context holds a pointer to it, and Step updates it before
	// each process.
	lease Lease
}

type slot struct {
	part int // index in parts
	k    int // record index within the part
}

// part is the records of one flow in a batch.
type part struct {
	h    host
	recs []*store.Record
	hb   hostBatch
}

func (r *Runner) getBatch(recs []store.Record) *batch {
	b, _ := r.batches.Get().(*batch)
	if b == nil {
		b = &batch{}
	}
	b.recs = recs
	b.ws = slices.Grow(b.ws[:0], len(recs))[:len(recs)]
	b.applied = slices.Grow(b.applied[:0], len(recs))[:len(recs)]
	b.slots = slices.Grow(b.slots[:0], len(recs))[:len(recs)]
	return b
}

// putBatch recycles b, dropping every reference to states and bytes so
// that a pooled batch keeps nothing of the processes alive.
func (r *Runner) putBatch(b *batch) {
	for i := range b.parts {
		if b.parts[i].hb != nil {
			b.parts[i].hb.release()
		}
	}
	clear(b.ws[:cap(b.ws)])
	clear(b.parts[:cap(b.parts)])
	b.recs, b.ws, b.parts, b.lease = nil, b.ws[:0], b.parts[:0], Lease{}
	r.batches.Put(b)
}

// split gives each record of b to the flow of its version. A record of a
// version no flow of this runner applies (it cannot be claimed, unless a
// store misbehaves) is quarantined rather than guessed at.
func (r *Runner) split(b *batch) {
	r.hostMu.RLock()
	defer r.hostMu.RUnlock()
	for i := range b.recs {
		rec := &b.recs[i]
		h := r.byVersion[rec.Version]
		j := 0
		for j < len(b.parts) && b.parts[j].h != h {
			j++
		}
		if j == len(b.parts) {
			b.parts = append(b.parts, part{h: h, recs: make([]*store.Record, 0, len(b.recs))})
		}
		b.slots[i] = slot{part: j, k: len(b.parts[j].recs)}
		b.parts[j].recs = append(b.parts[j].recs, rec)
	}
	for j := range b.parts {
		if b.parts[j].h != nil {
			b.parts[j].hb = b.parts[j].h.begin(b.parts[j].recs)
		}
	}
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
func (r *Runner) Step(ctx context.Context) (int, error) {
	return r.step(ctx, nil)
}

// carried is what a worker keeps between its steps: the processes whose
// leases its last commit kept, with how many steps in a row each has had
// that way.
type carried struct {
	recs  []store.Record
	chain map[string]int
	// backlog: the last claim filled its limit, so more processes may
	// be due. wake is the worker's channel of the store's notifications.
	backlog bool
	wake    <-chan struct{}
}

// needClaim reports whether a step that carries kept leases should claim
// too: when it has room, and other processes may be due (the last claim
// was full, or the store has said that something changed since). A worker
// that carries processes and has nothing else to do goes straight to them.
func (c *carried) needClaim() bool {
	if c == nil || len(c.recs) == 0 || c.backlog {
		return true
	}
	select {
	case <-c.wake:
		return true
	default:
		return false
	}
}

// maxChain bounds how many steps in a row a worker gives a process it
// keeps leased, so that the processes it holds do not keep others waiting
// for long.
const maxChain = 16

// step is Step for a worker that carries kept leases from one step to the
// next (carry not nil): it applies them first, claims only what the batch
// has room for besides, and keeps the leases of processes that are still
// running after their step, on a store that keeps leases.
func (r *Runner) step(ctx context.Context, carry *carried) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// One clock reading per batch: it is the claim time, and the due time
	// of every process that is still runnable after its step, which keeps
	// runnable processes in first-come, first-served order.
	now := r.now()
	claim := carry.needClaim()
	var recs []store.Record
	if carry != nil {
		recs, carry.recs = carry.recs, nil
	}
	if limit := r.opts.Batch - len(recs); limit > 0 && claim {
		// A claim that takes longer than a lease would hand out leases
		// that have already ended; a store that cannot answer (every
		// connection taken, say) must turn into an error Run reports,
		// not a silent wait.
		cctx, cancel := context.WithTimeout(ctx, r.opts.Lease)
		claimed, err := r.store.Claim(cctx, store.Claim{Owner: r.opts.Owner, Now: now, Limit: limit, Lease: r.opts.Lease, Versions: r.claimable()})
		cancel()
		if err != nil {
			if carry != nil {
				carry.recs = recs
			}
			return 0, err
		}
		recs = append(dropReclaimed(recs, claimed), claimed...)
		if carry != nil {
			carry.backlog = len(claimed) == limit
		}
	}
	if len(recs) == 0 {
		return 0, nil
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
	b.lease = Lease{Owner: r.opts.Owner, r: r}
	actx := context.WithValue(base, leaseKey{}, &b.lease)
	if r.opts.Clock != nil {
		actx = stepflow.WithClock(actx, r.opts.Clock)
	}
	if m := r.opts.Metrics; m != nil && m.Step != nil {
		actx = stepflow.WithInterceptor(actx, stepInterceptor(m.Step))
	}

	r.split(b)
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
		sl := b.slots[i]
		if pt := &b.parts[sl.part]; pt.hb != nil {
			pt.hb.advance(actx, sl.k, now, &b.ws[i])
		} else {
			err := fmt.Errorf("no flow of this runner applies version %q", recs[i].Version)
			b.ws[i] = store.Write{ID: recs[i].ID, Revision: recs[i].Revision, Status: recs[i].Status, Quarantine: err.Error()}
		}
	}
	b.ws = b.ws[:done]
	if carry != nil && r.keeps {
		r.keep(b, carry, now)
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
	if err := r.commit(base, b); err != nil && firstErr == nil {
		firstErr = err
	}
	if carry != nil && r.keeps {
		r.carryKept(b, carry)
	}
	return len(recs), firstErr
}

// dropReclaimed removes from the carried records those of the processes a
// claim has just handed out: a claim hands out only processes no one
// leases, so the lease this worker kept on such a process is gone (an
// outside write, a signal or a cancel, took it) and the carried record is
// older than the claimed one. Without this a batch would hold the process
// twice and apply both.
func dropReclaimed(carried, claimed []store.Record) []store.Record {
	if len(carried) == 0 || len(claimed) == 0 {
		return carried
	}
	ids := make(map[string]bool, len(claimed))
	for i := range claimed {
		ids[claimed[i].ID] = true
	}
	return slices.DeleteFunc(carried, func(rec store.Record) bool { return ids[rec.ID] })
}

// keep asks the store to keep the leases of the batch's processes that are
// still running after their step (and have not had maxChain steps in a row
// so), to apply them again at once without claiming them: the claim of a
// process costs the store about as much as its commit. Under load the
// batch goes on with the processes it holds and claims only for the room
// that those that ended or began to wait left; maxChain bounds how long a
// process that never waits can keep the others in the queue waiting.
func (r *Runner) keep(b *batch, carry *carried, now time.Time) {
	until := now.Add(r.opts.Lease)
	for i := range b.ws {
		w := &b.ws[i]
		if w.Status != stepflow.Running || w.Blob == nil || w.Quarantine != "" || carry.chain[w.ID] >= maxChain {
			continue
		}
		w.KeepUntil = until
	}
}

// carryKept collects the records whose leases the commit kept: the next
// step applies them without claiming them.
func (r *Runner) carryKept(b *batch, carry *carried) {
	next := map[string]int{}
	for i := range b.ws {
		w := &b.ws[i]
		if w.KeepUntil.IsZero() || !b.applied[i] {
			continue
		}
		old := &b.recs[i]
		rec := store.Record{ID: w.ID, Version: cmp.Or(w.Version, old.Version), Revision: w.Revision + 1, Status: w.Status,
			Position: w.Position, ErrorKind: w.ErrorKind, Updated: w.Updated, Due: w.KeepUntil, Owner: r.opts.Owner, Blob: w.Blob}
		carry.recs = append(carry.recs, rec)
		next[w.ID] = carry.chain[w.ID] + 1
	}
	carry.chain = next
}

// releaseCarried gives back the leases a worker kept when it stops, so
// that another runner need not wait for them to end.
func (r *Runner) releaseCarried(carry *carried) {
	if len(carry.recs) == 0 {
		return
	}
	ids := make([]string, len(carry.recs))
	for i := range carry.recs {
		ids[i] = carry.recs[i].ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.store.Release(ctx, r.opts.Owner, ids, r.now()); err != nil {
		r.report(fmt.Errorf("stepflow/runner: release kept leases: %w", err))
	}
	carry.recs = nil
}

func (r *Runner) saveIntent(id string, rev uint64) {
	r.intentMu.Lock()
	r.intents[id] = rev
	r.intentMu.Unlock()
}

// takeIntent reports whether this runner itself saved revision rev of id
// with its intent, and forgets it: the authorization is good once.
func (r *Runner) takeIntent(id string, rev uint64) bool {
	r.intentMu.Lock()
	defer r.intentMu.Unlock()
	saved, ok := r.intents[id]
	delete(r.intents, id)
	return ok && saved == rev
}

// commit writes the batch's writes in transactions of at most
// GroupCommit writes, and tells each flow's batch which were applied.
func (r *Runner) commit(ctx context.Context, b *batch) error {
	m := r.opts.Metrics
	ws := b.ws
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
		refused := 0
		for i := lo; i < hi; i++ {
			// A failed transaction saved nothing: its processes stay
			// leased until the lease expires, then run again
			// (at-least-once).
			applied := err == nil && (errs == nil || errs[i-lo] == nil)
			b.applied[i] = applied
			if !applied {
				refused++
			}
			sl := b.slots[i]
			if hb := b.parts[sl.part].hb; hb != nil {
				hb.committed(sl.k, &ws[i], applied)
			} else if applied {
				r.quarantined(ws[i].ID, b.recs[i].Version, errors.New(ws[i].Quarantine))
			}
		}
		if m != nil && m.Committed != nil {
			m.Committed(hi-lo, refused, time.Since(start), err)
		}
		if err != nil && firstErr == nil {
			firstErr = err
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
