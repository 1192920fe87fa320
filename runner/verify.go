package runner

import (
	"context"
	"errors"
	"fmt"

	"github.com/stepflow-io/go-stepflow/store"
)

// VerifyReport is what Verify found.
type VerifyReport struct {
	// Checked is the number of records read. Every one of them is counted
	// in exactly one of the fields below.
	Checked int
	// OK counts healthy records whose state decodes and is usable by the
	// runner's flow.
	OK int
	// Quarantined lists the records this pass set aside, with the reason
	// recorded in the store.
	Quarantined []VerifyProblem
	// AlreadyQuarantined counts records that were set aside before.
	AlreadyQuarantined int
	// OtherVersion counts processes of a flow or version this runner does
	// not apply: another runner's, or ended processes of a version dropped
	// since. They are left as they are.
	OtherVersion int
	// Skipped lists the records that could not be judged or set aside:
	// one that kept changing while it was checked, or whose quarantine
	// write failed. Run Verify again to check them.
	Skipped []VerifyProblem
}

// VerifyProblem names a record and what is wrong with it.
type VerifyProblem struct {
	ID     string
	Reason string
}

// verifyAttempts bounds how often Verify reads a record that keeps
// changing under it.
const verifyAttempts = 3

// Verify reads every record of the store, in pages of store.List ordered
// by id, and sets aside (quarantines) those of its flows' versions that the
// runner could not use: a state that does not decode with the flow's data
// type, that names another process, whose status or version is not the one
// stored with it, or that the flow rejects (Validate). Records of flows and
// versions it does not apply are counted in OtherVersion and left alone. A claim quarantines such records of
// running and waiting processes when it meets them; Verify also finds
// them in processes that have ended, which are never claimed, and before a
// runner trips over them. A quarantined record keeps its bytes, and
// Metrics.Quarantined is told about it as when a claim quarantines.
//
// Verify changes nothing else and may run while runners work on the same
// store. A record that changes between its read and its quarantine write
// is read again and judged by what it has become. One bad record never
// stops the pass: Verify returns an error only when it cannot read a page
// or ctx is done, with the report of what it did so far.
//
// Run it after disk trouble or a restore from backup, before upgrading to
// a new flow version or library release, and periodically (say daily) so
// that damage is found while backups still hold good copies.
func (r *Runner) Verify(ctx context.Context) (VerifyReport, error) {
	var rep VerifyReport
	after := ""
	for {
		page, err := r.store.List(ctx, store.Filter{After: after, Limit: store.DefaultListLimit})
		if err != nil {
			return rep, fmt.Errorf("stepflow/runner: verify: %w", err)
		}
		if len(page) == 0 {
			return rep, nil
		}
		for i := range page {
			if err := ctx.Err(); err != nil {
				return rep, fmt.Errorf("stepflow/runner: verify: %w", err)
			}
			r.verifyRecord(ctx, page[i], &rep)
		}
		after = page[len(page)-1].ID
	}
}

// verifyRecord judges one record, quarantines it if needed, and counts it
// in rep.
func (r *Runner) verifyRecord(ctx context.Context, rec store.Record, rep *VerifyReport) {
	rep.Checked++
	for attempt := 1; ; attempt++ {
		if rec.Quarantine != "" {
			rep.AlreadyQuarantined++
			return
		}
		problem, other := r.inspect(&rec)
		switch {
		case other:
			rep.OtherVersion++
			return
		case problem == nil:
			rep.OK++
			return
		}
		reason := problem.Error()
		errs, err := r.store.Commit(ctx, "", []store.Write{{ID: rec.ID, Revision: rec.Revision, Status: rec.Status, Quarantine: reason, Updated: r.now()}})
		if err != nil {
			rep.Skipped = append(rep.Skipped, VerifyProblem{ID: rec.ID, Reason: "quarantine failed: " + err.Error()})
			return
		}
		if errs == nil {
			if h := r.hostOf(rec.Version); h != nil {
				h.forget(rec.ID)
			}
			rep.Quarantined = append(rep.Quarantined, VerifyProblem{ID: rec.ID, Reason: reason})
			r.quarantined(rec.ID, rec.Version, problem)
			return
		}
		if !errors.Is(errs[0], store.ErrConflict) || attempt == verifyAttempts {
			rep.Skipped = append(rep.Skipped, VerifyProblem{ID: rec.ID, Reason: errs[0].Error()})
			return
		}
		// The record changed since it was read: judge what it is now.
		if rec, err = r.store.Load(ctx, rec.ID); err != nil {
			rep.Skipped = append(rep.Skipped, VerifyProblem{ID: rec.ID, Reason: err.Error()})
			return
		}
	}
}

// inspect returns what makes a healthy record unusable by this runner,
// nil if nothing does; other is true for a record of a flow or version it
// does not apply.
func (r *Runner) inspect(rec *store.Record) (problem error, other bool) {
	h := r.hostOf(rec.Version)
	if h == nil {
		return nil, true
	}
	return h.inspect(rec)
}
