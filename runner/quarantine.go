package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/versions"
)

// Quarantined lists quarantined processes, with their reasons
// (store.Record.Quarantine), in pages ordered by id: pass the last id of a
// page as after to get the next. limit zero means store.DefaultListLimit.
func (r *Runner) Quarantined(ctx context.Context, after string, limit int) ([]store.Record, error) {
	recs, err := r.store.List(ctx, store.Filter{Quarantined: true, After: after, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("stepflow/runner: quarantined: %w", err)
	}
	return recs, nil
}

// ErrNotQuarantined: Retry was given a process that is not quarantined.
var ErrNotQuarantined = errors.New("stepflow/runner: process is not quarantined")

// Retry reads a quarantined process's kept bytes again with the code
// running now (after a fix, or with a flow version registered since) and,
// if its flow can use them, puts the process back in service, due at once,
// bytes unchanged. If they still cannot be used it returns why, and the
// process stays quarantined with that reason. To move an old version's
// process to the latest version, use Processes.Migrate. A process of a
// flow this runner does not host is refused with an error matching
// ErrUnknownFlow, and one of a version of its flows that none applies with
// one matching versions.ErrUnknownVersion; both leave it as it is.
func (r *Runner) Retry(ctx context.Context, id string) error {
	for range 10 {
		rec, err := r.store.Load(ctx, id)
		if err != nil {
			return fmt.Errorf("stepflow/runner: retry %q: %w", id, err)
		}
		if rec.Quarantine == "" {
			return fmt.Errorf("stepflow/runner: retry %q: %w", id, ErrNotQuarantined)
		}
		h := r.hostOf(rec.Version)
		if h == nil {
			// Neither the flow (ErrUnknownFlow) nor, of a flow it has,
			// the version (versions.ErrUnknownVersion) is this runner's.
			if _, err := r.hostOfRecord("retry", &rec); err != nil {
				return err
			}
			return fmt.Errorf("stepflow/runner: retry %q: %w %q: no flow of this runner applies it", id, versions.ErrUnknownVersion, rec.Version)
		}
		// The record's stored status may be what was known when it was
		// set aside; the state says what it is.
		probe := rec
		probe.Quarantine = ""
		problem := h.retryable(&probe)
		now := r.now()
		w := store.Write{ID: id, Revision: rec.Revision, Status: probe.Status, Updated: now, Due: now, Blob: rec.Blob,
			Position: rec.Position, ErrorKind: rec.ErrorKind}
		if problem != nil {
			w = store.Write{ID: id, Revision: rec.Revision, Status: rec.Status, Quarantine: problem.Error(), Updated: now}
		}
		errs, err := r.store.Commit(ctx, "", []store.Write{w})
		if err != nil {
			return fmt.Errorf("stepflow/runner: retry %q: %w", id, err)
		}
		if errs != nil && errors.Is(errs[0], store.ErrConflict) {
			continue
		}
		if errs != nil {
			return fmt.Errorf("stepflow/runner: retry %q: %w", id, errs[0])
		}
		h.forget(id)
		if problem != nil {
			return &QuarantineError{ID: id, Reason: problem.Error()}
		}
		return nil
	}
	return fmt.Errorf("stepflow/runner: retry %q: %w (too many concurrent writes)", id, store.ErrConflict)
}

// retentionLoop deletes ended processes older than Options.Retention, in
// batches, every Options.RetentionEvery, until ctx is done.
func (r *Runner) retentionLoop(ctx context.Context) {
	t := time.NewTicker(r.opts.RetentionEvery)
	defer t.Stop()
	for {
		r.retain(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// retain runs one retention pass: batches of deletes until one comes back
// short.
func (r *Runner) retain(ctx context.Context) {
	before := r.now().Add(-r.opts.Retention)
	for ctx.Err() == nil {
		n, err := r.store.DeleteEnded(ctx, before, r.opts.RetentionBatch)
		if err != nil {
			if ctx.Err() == nil {
				r.report(fmt.Errorf("stepflow/runner: retention: %w", err))
			}
			return
		}
		if n > 0 {
			if m := r.opts.Metrics; m != nil && m.Deleted != nil {
				m.Deleted(n)
			}
		}
		if n < r.opts.RetentionBatch {
			return
		}
	}
}
