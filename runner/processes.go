package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/versions"
)

// Processes are the processes of one flow hosted by a runner, with their
// data type S: the handle through which a program starts, reads, signals
// and otherwise changes them. Register and RegisterVersions return it; a
// flow is registered once, under its name (the part of its versions
// before '/'), and its methods never see the processes of another flow.
// Its methods are safe for concurrent use.
type Processes[S any] struct {
	r   *Runner
	eng engine[S]
	enc codec.Codec[S]

	cacheMu sync.Mutex
	cache   map[string]*cached[S]

	// batches recycles the typed working memory of Step.
	batches sync.Pool
}

type cached[S any] struct {
	id  string // the process the entry holds now (entries are reused)
	rev uint64
	st  stepflow.State[S]
}

// Register hosts a single flow version in r: r claims and applies the
// processes of that version, and the returned Processes start and manage
// them. Register before Run. It fails with ErrInvalidOptions for a nil
// flow, and ErrDuplicateFlow when r already hosts a flow of that name.
func Register[S any](r *Runner, flow *stepflow.Flow[S]) (*Processes[S], error) {
	if flow == nil {
		return nil, fmt.Errorf("%w: nil flow", ErrInvalidOptions)
	}
	return register(r, oneFlow[S]{flow})
}

// RegisterVersions hosts every version of a versions.Registry in r. New
// processes start at the registry's latest version; r claims the
// processes of every version the registry can apply under its policy
// (PolicyRefuse: the latest only) and applies them through the registry,
// which under PolicyLazy migrates an older state at its next step. A
// migrated state is saved under its new version (Metrics.Applied reports
// the migration). Processes of versions r does not know are never claimed:
// they wait, untouched, for a runner that knows them, and Counts shows
// them per version.
func RegisterVersions[S any](r *Runner, reg *versions.Registry[S]) (*Processes[S], error) {
	if reg == nil {
		return nil, fmt.Errorf("%w: nil registry", ErrInvalidOptions)
	}
	return register(r, registry[S]{reg})
}

func register[S any](r *Runner, eng engine[S]) (*Processes[S], error) {
	p := &Processes[S]{r: r, eng: eng, cache: map[string]*cached[S]{}}
	if r.opts.Encoding == "json" {
		p.enc = codec.JSON[S](r.opts.Codec)
	} else {
		p.enc = codec.Msgpack[S](r.opts.Codec)
	}
	if err := r.host(p); err != nil {
		return nil, err
	}
	return p, nil
}

// Name returns the flow's name.
func (p *Processes[S]) Name() string { return p.eng.flowName() }

// Versions returns the flow versions whose processes the runner claims.
func (p *Processes[S]) Versions() []string { return p.eng.claims() }

// Latest returns the version new processes start at.
func (p *Processes[S]) Latest() string { return p.eng.latest() }

// Runner returns the runner hosting the flow.
func (p *Processes[S]) Runner() *Runner { return p.r }

// Flow returns the definition of a version, when the runner has it.
func (p *Processes[S]) Flow(version string) (*stepflow.Flow[S], bool) { return p.eng.flow(version) }

// NewProcess is one process for StartMany: its id and initial data.
type NewProcess[S any] struct {
	ID   string
	Data S
}

// Record returns the store record that starts a process: the initial
// state at the latest version, encoded, due at once. Start and StartMany
// store such records; a caller that stores them itself (inside its own
// database transaction, with pgstore.Store.CreateTx) builds them here.
func (p *Processes[S]) Record(id string, data S) (store.Record, error) {
	if id == "" {
		return store.Record{}, fmt.Errorf("stepflow/runner: start: %w: empty process id", store.ErrInvalid)
	}
	st := p.eng.start(data)
	st.ID = id
	b, err := p.enc.Encode(st)
	if err != nil {
		return store.Record{}, fmt.Errorf("stepflow/runner: start %q: %w", id, err)
	}
	now := p.r.now()
	return store.Record{ID: id, Version: st.Version, Status: st.Status, Due: now, Updated: now, Blob: b}, nil
}

// Start stores a new process with the given id and initial data, due at
// once, and wakes the runners watching the store. The id becomes State.ID,
// so it is part of every step's idempotency key. It fails with an error
// matching store.ErrExists when the id is taken.
func (p *Processes[S]) Start(ctx context.Context, id string, data S) error {
	rec, err := p.Record(id, data)
	if err != nil {
		return err
	}
	if err := p.r.store.Create(ctx, rec); err != nil {
		return fmt.Errorf("stepflow/runner: start %q: %w", id, err)
	}
	return nil
}

// StartMany stores many new processes in one store transaction, with one
// wake-up: on PostgreSQL one statement and one notification for the whole
// batch, which is what makes starting thousands of processes cheap. The
// slice is nil when every process was started; otherwise it has one entry
// per process, nil or why that one was not (an error matching
// store.ErrExists for an id that is taken), and the others were started. A
// non-nil error means none was.
func (p *Processes[S]) StartMany(ctx context.Context, procs []NewProcess[S]) ([]error, error) {
	recs := make([]store.Record, len(procs))
	var errs []error
	fail := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(procs))
		}
		errs[i] = err
	}
	var todo []int
	for i := range procs {
		rec, err := p.Record(procs[i].ID, procs[i].Data)
		if err != nil {
			fail(i, err)
			continue
		}
		recs[i] = rec
		todo = append(todo, i)
	}
	batch := make([]store.Record, len(todo))
	for j, i := range todo {
		batch[j] = recs[i]
	}
	serrs, err := p.r.store.CreateMany(ctx, batch)
	if err != nil {
		return nil, fmt.Errorf("stepflow/runner: start %d processes: %w", len(batch), err)
	}
	for j, e := range serrs {
		if e != nil {
			fail(todo[j], fmt.Errorf("stepflow/runner: start %q: %w", batch[j].ID, e))
		}
	}
	return errs, nil
}

// State returns the stored state of a process. A quarantined process gives
// a *QuarantineError (and the state too, when its bytes still decode); a
// process of another flow gives an error matching ErrOtherFlow.
func (p *Processes[S]) State(ctx context.Context, id string) (stepflow.State[S], error) {
	st, _, err := p.load(ctx, id)
	return st, err
}

// load reads a process and decodes it.
func (p *Processes[S]) load(ctx context.Context, id string) (stepflow.State[S], store.Record, error) {
	rec, err := p.r.store.Load(ctx, id)
	if err != nil {
		return stepflow.State[S]{}, rec, fmt.Errorf("stepflow/runner: process %q: %w", id, err)
	}
	st, err := p.decode(&rec)
	return st, rec, err
}

// decode reads the state of a loaded record. A quarantined record gives a
// *QuarantineError, and the state too when its bytes still decode.
func (p *Processes[S]) decode(rec *store.Record) (stepflow.State[S], error) {
	if rec.Flow() != p.Name() {
		return stepflow.State[S]{}, fmt.Errorf("stepflow/runner: process %q: %w: it is a process of %s, not of flow %q", rec.ID, ErrOtherFlow, rec.Version, p.Name())
	}
	st, derr := codec.Decode[S](rec.Blob, p.r.opts.Codec)
	if rec.Quarantine != "" {
		return st, &QuarantineError{ID: rec.ID, Reason: rec.Quarantine}
	}
	if derr != nil {
		return st, fmt.Errorf("stepflow/runner: process %q: %w", rec.ID, derr)
	}
	return st, nil
}

// Describe explains a process: every node's status, why it is where it is,
// its error (see stepflow.Flow.Describe), by the definition of its own
// version.
func (p *Processes[S]) Describe(ctx context.Context, id string) (stepflow.Description, error) {
	st, err := p.State(ctx, id)
	if err != nil {
		return stepflow.Description{}, err
	}
	return p.eng.describe(st)
}

// Wait blocks until the process has ended (done, failed or canceled) and
// returns its final state, or returns ctx's error. It is woken by the
// store's notifications of ends (store.Store.WatchEnded), not by polling;
// it also looks again every Options.MaxIdle, in case a notification was
// lost. A process that is quarantined or deleted meanwhile ends the wait
// with that error.
func (p *Processes[S]) Wait(ctx context.Context, id string) (stepflow.State[S], error) {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	ended := p.r.store.WatchEnded(wctx)
	t := time.NewTimer(p.r.opts.MaxIdle)
	defer t.Stop()
	for {
		st, err := p.State(ctx, id)
		if err != nil || st.Terminal() {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("stepflow/runner: wait for %q: %w", id, ctx.Err())
		case <-ended:
		case <-t.C:
			t.Reset(p.r.opts.MaxIdle)
		}
	}
}

// Signal delivers an external event to a process (stepflow.Flow.Signal),
// for a WaitSignal node to consume, and wakes the runners: a waiting
// process becomes runnable at once.
func (p *Processes[S]) Signal(ctx context.Context, id, name string, payload []byte) error {
	return p.update(ctx, "signal", id, func(st stepflow.State[S]) (stepflow.State[S], error) {
		return p.eng.signal(st, name, payload)
	})
}

// Cancel cancels a process (stepflow.Flow.Cancel): the cleanups of its
// active Finally nodes run (the runner applies them as usual), then it is
// Canceled with the reason recorded, and it never runs again. Canceling a
// process that has already ended does nothing. If a runner is working on
// the process at that moment, that runner's save is refused (the revision
// changed) and its result dropped; the step it ran may still have had its
// effect.
//
// Processes the process started with Child nodes are canceled too, with
// theirs.
func (p *Processes[S]) Cancel(ctx context.Context, id, reason string) error {
	if err := p.cancelOne(ctx, id, reason); err != nil {
		return err
	}
	return p.r.cancelChildren(ctx, id, reason)
}

// cancelOne cancels the process alone, not its children.
func (p *Processes[S]) cancelOne(ctx context.Context, id, reason string) error {
	return p.update(ctx, "cancel", id, func(st stepflow.State[S]) (stepflow.State[S], error) {
		if st.Terminal() {
			return st, errUnchanged
		}
		return p.eng.cancel(st, reason)
	})
}

// Redrive resumes a failed process at the step that failed
// (stepflow.Flow.Redrive), after the cause was fixed. It fails with an
// error matching stepflow.ErrNotFailed for a process that has not failed.
func (p *Processes[S]) Redrive(ctx context.Context, id string) error {
	return p.update(ctx, "redrive", id, p.eng.redrive)
}

// Resolve tells a process that needs attention what became of its
// at-most-once step (stepflow.Flow.Resolve).
func (p *Processes[S]) Resolve(ctx context.Context, id string, how stepflow.Resolution) error {
	return p.update(ctx, "resolve", id, func(st stepflow.State[S]) (stepflow.State[S], error) {
		return p.eng.resolve(st, how)
	})
}

// Migrate moves a process of an older version to the latest one now,
// through the registry's migrations, rather than at its next step; for a
// quarantined process (after a migration was added for it, say) it also
// puts it back in service. It does nothing for a process that is already
// at the latest version and healthy.
func (p *Processes[S]) Migrate(ctx context.Context, id string) error {
	return p.updateRecord(ctx, "migrate", id, true, func(st stepflow.State[S]) (stepflow.State[S], error) {
		if st.Version == p.Latest() {
			if err := p.eng.validate(st); err != nil {
				return st, err
			}
			return st, errUnchanged
		}
		return p.eng.migrate(st)
	})
}

// errUnchanged tells update that there is nothing to write.
var errUnchanged = errors.New("unchanged")

// update changes a process from outside the run loop: load, change, write
// back with the revision check, and try again on a conflict.
func (p *Processes[S]) update(ctx context.Context, op, id string, change func(stepflow.State[S]) (stepflow.State[S], error)) error {
	return p.updateRecord(ctx, op, id, false, change)
}

// updateRecord is update; with quarantined set it also takes quarantined
// processes, and a successful change puts them back in service.
func (p *Processes[S]) updateRecord(ctx context.Context, op, id string, quarantined bool, change func(stepflow.State[S]) (stepflow.State[S], error)) error {
	for range 10 {
		st, rec, err := p.load(ctx, id)
		var qe *QuarantineError
		switch {
		case errors.As(err, &qe) && quarantined:
			if st.Version == "" {
				// The bytes do not decode: nothing to migrate.
				_, derr := codec.Decode[S](rec.Blob, p.r.opts.Codec)
				return fmt.Errorf("stepflow/runner: %s %q: %w", op, id, derr)
			}
		case err != nil:
			return fmt.Errorf("stepflow/runner: %s: %w", op, err)
		}
		next, err := change(st)
		switch {
		case errors.Is(err, errUnchanged) && rec.Quarantine == "":
			return nil
		case errors.Is(err, errUnchanged):
			next = st
		case err != nil:
			return fmt.Errorf("stepflow/runner: %s %q: %w", op, id, err)
		}
		b, err := p.enc.Encode(next)
		if err != nil {
			return fmt.Errorf("stepflow/runner: %s %q: %w", op, id, err)
		}
		now := p.r.now()
		w := store.Write{ID: id, Revision: rec.Revision, Version: next.Version, Status: next.Status, Due: next.WakeAt, Updated: now, Blob: b}
		if next.Status == stepflow.Running {
			w.Due = now
		}
		w.Position, w.ErrorKind = positionOf(&next, nil, "")
		errs, err := p.r.store.Commit(ctx, "", []store.Write{w})
		if err != nil {
			return fmt.Errorf("stepflow/runner: %s %q: %w", op, id, err)
		}
		if errs == nil {
			p.forget(id)
			if next.Version != rec.Version {
				p.r.migrated(id, rec.Version, next.Version)
			}
			return nil
		}
		if !errors.Is(errs[0], store.ErrConflict) {
			return fmt.Errorf("stepflow/runner: %s %q: %w", op, id, errs[0])
		}
		// Someone wrote in between: reload and try again.
	}
	return fmt.Errorf("stepflow/runner: %s %q: %w (too many concurrent writes)", op, id, store.ErrConflict)
}

func (p *Processes[S]) forget(id string) {
	p.cacheMu.Lock()
	delete(p.cache, id)
	p.cacheMu.Unlock()
}

// positionOf returns where st stands for the store's index (see
// store.Record.Position): the node path where it failed or needs a person,
// the first position of a waiting process, and the kind of its failure. It reuses old, the stored
// position, when it is the same, so that a poll allocates no string; buf
// is scratch.
func positionOf[S any](st *stepflow.State[S], buf []byte, old string) (pos, kind string) {
	if (st.Status == stepflow.Failed || st.Status == stepflow.NeedsAttention) && st.Err != nil {
		return stepflow.NodePath(st.Err.Path), st.Err.Kind
	}
	if st.Status != stepflow.Waiting {
		// Ended, or running: a running process moves on at once, and an
		// index of its position would be rewritten at every step.
		return "", ""
	}
	buf = appendFirstPosition(buf[:0], &st.Root)
	if string(buf) == old {
		return old, ""
	}
	return string(buf), ""
}

// appendFirstPosition appends the node path of the first leaf below f:
// the first position, without ForEach instance segments.
func appendFirstPosition(b []byte, f *stepflow.Frame) []byte {
	for len(f.Children) > 0 {
		f = &f.Children[0]
		if n := f.Name; len(n) > 2 && n[0] == '[' && n[len(n)-1] == ']' {
			continue
		}
		if len(b) > 0 {
			b = append(b, '/')
		}
		b = append(b, f.Name...)
	}
	return b
}
