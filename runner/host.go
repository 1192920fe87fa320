package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// host is a registered flow as the untyped runner sees it. Processes[S]
// is the only implementation; the interface keeps the run loop free of S.
type host interface {
	name() string
	claims() []string
	// begin prepares the typed working memory for the given claimed
	// records of this flow (looking their states up in the cache).
	begin(recs []*store.Record) hostBatch
	forget(id string)
	// inspect says what makes a healthy record unusable by this flow;
	// other is true for an ended process of a version the flow no longer
	// applies (Verify leaves it).
	inspect(rec *store.Record) (problem error, other bool)
	// retryable says what still makes a quarantined record unusable, and
	// sets rec.Status to its state's status when it is usable.
	retryable(rec *store.Record) error

	// The rest serves the Runner's methods that know a process by its id
	// only (byid.go): examine reads a loaded record of this flow, and the
	// others are the typed methods of Processes themselves.
	examine(rec store.Record) Inspection
	Signal(ctx context.Context, id, name string, payload []byte) error
	Cancel(ctx context.Context, id, reason string) error
	// cancelOne cancels the process but not its children.
	cancelOne(ctx context.Context, id, reason string) error
	Redrive(ctx context.Context, id string) error
	Resolve(ctx context.Context, id string, how stepflow.Resolution) error
	Migrate(ctx context.Context, id string) error
}

// hostBatch is the typed part of one Step for one flow: record k of the
// records given to begin.
type hostBatch interface {
	advance(ctx context.Context, k int, now time.Time, w *store.Write)
	committed(k int, w *store.Write, applied bool)
	release()
}

func (p *Processes[S]) name() string     { return p.eng.flowName() }
func (p *Processes[S]) claims() []string { return p.eng.claims() }

// procBatch is the typed working memory of one Step for one flow.
// Batches are recycled, so that a step allocates no bookkeeping of its
// own.
type procBatch[S any] struct {
	p     *Processes[S]
	recs  []*store.Record
	trans []transition[S]
	pos   []byte // scratch for positions
}

// transition is what the runner remembers about one write until it is
// committed.
type transition[S any] struct {
	from, to stepflow.Status
	// next is the state after the step. Between begin and advance it
	// holds the cached state of the claimed revision, when hit is set.
	next  stepflow.State[S]
	entry *cached[S] // the cache entry begin found, if any
	hit   bool
	cache bool
	quar  error
	// migrated is the version the state had before this step, when the
	// step migrated it.
	migrated string
}

func (p *Processes[S]) begin(recs []*store.Record) hostBatch {
	b, _ := p.batches.Get().(*procBatch[S])
	if b == nil {
		b = &procBatch[S]{p: p}
	}
	b.recs = recs
	b.trans = slices.Grow(b.trans[:0], len(recs))[:len(recs)]
	if p.r.opts.Cache <= 0 {
		return b
	}
	p.cacheMu.Lock()
	for i, rec := range recs {
		if c, ok := p.cache[rec.ID]; ok {
			b.trans[i].entry = c
			if c.rev == rec.Revision {
				b.trans[i].next, b.trans[i].hit = c.st, true
			}
		}
	}
	p.cacheMu.Unlock()
	return b
}

// release recycles b, dropping every reference to states and records so
// that a pooled batch keeps nothing of the processes alive.
func (b *procBatch[S]) release() {
	clear(b.trans[:cap(b.trans)])
	clear(b.recs)
	b.recs, b.trans = nil, b.trans[:0]
	b.p.batches.Put(b)
}

// advance computes the write for claimed record k into w. Its transition
// may already hold the cached state (see begin).
func (b *procBatch[S]) advance(ctx context.Context, k int, now time.Time, w *store.Write) {
	p, rec, tr := b.p, b.recs[k], &b.trans[k]
	// The state is read in place from tr.next: a state is a few hundred
	// bytes, and each copy of one shows in the cost of a step.
	if !tr.hit {
		var err error
		tr.next, err = codec.Decode[S](rec.Blob, p.r.opts.Codec)
		if err != nil {
			quarantine(rec, err, w, tr)
			return
		}
	}
	st := &tr.next
	if st.ID == "" {
		st.ID = rec.ID
	}
	if st.Intent != "" && p.r.takeIntent(rec.ID, rec.Revision) {
		ctx = stepflow.WithIntentSaved(ctx, *st)
	}
	from, steps, version := st.Status, st.Steps, st.Version
	if m := p.r.opts.Metrics; m != nil && m.Claimed != nil {
		due := rec.Updated
		if st.WakeAt.After(due) {
			due = st.WakeAt
		}
		m.Claimed(version, max(now.Sub(due), 0))
	}
	var next stepflow.State[S]
	var err error
	if t := p.r.opts.Tracer; t != nil {
		tctx := t.ApplyStart(ctx, rec.ID, version, from)
		next, err = p.eng.apply(tctx, *st)
		t.ApplyEnd(tctx, next.Status, err)
	} else {
		next, err = p.eng.apply(ctx, *st)
	}
	if err != nil && !isStepError(err) {
		// Apply returned its input: the state does not fit the flow
		// (an unknown path, a version it cannot migrate). Nothing else
		// fails an Apply here, since its context is never canceled.
		quarantine(rec, err, w, tr)
		return
	}
	// A *StepError comes with the Failed state, which is saved.
	tr.from, tr.to, tr.hit, tr.cache, tr.quar, tr.migrated = from, next.Status, false, true, nil, ""
	tr.next = next
	*w = store.Write{ID: rec.ID, Revision: rec.Revision, Status: next.Status, Due: next.WakeAt, Updated: now,
		Position: rec.Position, ErrorKind: rec.ErrorKind}
	if next.Status == stepflow.Running {
		w.Due = now
	}
	if next.Steps == steps && next.Status == from && next.Version == version {
		// Nothing happened (a wake-up before WakeAt): keep the bytes.
		return
	}
	if next.Version != version {
		w.Version, tr.migrated = next.Version, version
	}
	bs, err := p.enc.Encode(next)
	if err != nil {
		// The new state cannot be stored (data too large, say): the step
		// ran, but its result is lost. Set the process aside with the old
		// bytes rather than retry forever.
		quarantine(rec, fmt.Errorf("encode after step: %w", err), w, tr)
		return
	}
	w.Blob = bs
	w.Position, w.ErrorKind = positionOf(&tr.next, b.pos, rec.Position)
}

// isStepError reports whether err carries a *stepflow.StepError, without
// the allocation errors.As costs.
func isStepError(err error) bool {
	_, ok := errors.AsType[*stepflow.StepError](err)
	return ok
}

func quarantine[S any](rec *store.Record, err error, w *store.Write, tr *transition[S]) {
	*w = store.Write{ID: rec.ID, Revision: rec.Revision, Status: rec.Status, Quarantine: err.Error()}
	*tr = transition[S]{from: rec.Status, to: rec.Status, quar: err}
}

// committed is told whether the write of record k was applied: it caches
// the state the runner has just committed, forgets the others, and reports
// to the metrics hooks.
func (b *procBatch[S]) committed(k int, w *store.Write, applied bool) {
	p, tr := b.p, &b.trans[k]
	r := p.r
	switch {
	case !applied:
		p.forget(w.ID)
		return
	case tr.quar != nil:
		p.forget(w.ID)
		r.quarantined(w.ID, b.recs[k].Version, tr.quar)
		return
	}
	p.remember(w, tr)
	if tr.next.Intent != "" && tr.next.Status == stepflow.Running && w.Blob != nil {
		r.saveIntent(w.ID, w.Revision+1)
	}
	if tr.migrated != "" {
		r.migrated(w.ID, tr.migrated, tr.next.Version)
	}
	if m := r.opts.Metrics; m != nil && m.Applied != nil {
		m.Applied(Transition{ID: w.ID, Version: tr.next.Version, From: tr.from, To: tr.to})
	}
}

// remember caches the state this runner has just committed. A cache entry
// is updated in place, so a process that keeps running costs the cache no
// allocation.
func (p *Processes[S]) remember(w *store.Write, tr *transition[S]) {
	if p.r.opts.Cache <= 0 || !tr.cache {
		return
	}
	p.cacheMu.Lock()
	defer p.cacheMu.Unlock()
	id, st := w.ID, &tr.next
	// The entry begin found saves a second map access, unless it has been
	// given to another process since.
	c, found := tr.entry, true
	if c == nil || c.id != id {
		c, found = p.cache[id]
	}
	if st.Terminal() {
		if found {
			delete(p.cache, id)
		}
		return
	}
	if !found {
		if len(p.cache) >= p.r.opts.Cache {
			for k, old := range p.cache { // evict one arbitrary entry
				delete(p.cache, k)
				c = old
				break
			}
		} else {
			c = &cached[S]{}
		}
		c.id = id
		p.cache[id] = c
	}
	c.rev, c.st = w.Revision+1, *st
}

// inspect implements host (see Runner.Verify).
func (p *Processes[S]) inspect(rec *store.Record) (problem error, other bool) {
	st, err := codec.Decode[S](rec.Blob, p.r.opts.Codec)
	if err != nil {
		return err, false
	}
	if st.ID != "" && st.ID != rec.ID {
		return fmt.Errorf("the state names process %q", st.ID), false
	}
	if st.Status != rec.Status {
		return fmt.Errorf("stored with status %s, but the state is %s", rec.Status, st.Status), false
	}
	if st.Version != rec.Version {
		return fmt.Errorf("stored as version %s, but the state is %s", rec.Version, st.Version), false
	}
	if !store.Claimable(p.claims(), st.Version) {
		// A version this runner does not apply: another runner's, or an
		// ended process of a version dropped since. Not this runner's to
		// judge.
		return nil, true
	}
	if err := p.eng.validate(st); err != nil {
		return err, false
	}
	return nil, false
}

// retryable implements host (see Runner.Retry).
func (p *Processes[S]) retryable(rec *store.Record) error {
	st, err := codec.Decode[S](rec.Blob, p.r.opts.Codec)
	if err != nil {
		return err
	}
	rec.Status = st.Status
	problem, other := p.inspect(rec)
	if other {
		return fmt.Errorf("version %s is not one this runner applies", rec.Version)
	}
	return problem
}
