package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/stepflow-io/go-stepflow/store"
)

// CreateMany implements store.Store: the batch is one INSERT statement,
// hence one transaction, one WAL flush and one notification.
func (s *Store) CreateMany(ctx context.Context, recs []store.Record) ([]error, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	b := newBatch(recs)
	if len(b.ids) > 0 {
		// The statement is its own transaction: when it fails nothing of
		// it was written, and it can run again as a whole.
		err := retry(ctx, func() error { return s.insert(ctx, s.pool, b) })
		if err != nil {
			return nil, fmt.Errorf("stepflow/pgstore: create: %w", err)
		}
	}
	return b.results(), nil
}

// CreateTx stores new processes as CreateMany does, inside the caller's
// transaction tx: they exist if and only if tx commits, and the runners
// watching the store are woken (the notification is part of tx) only
// then. The results are CreateMany's: nil when every record was created,
// otherwise one entry per record, nil or an error matching store.ErrExists
// or store.ErrInvalid. A non-nil error means the statement failed, which
// aborts tx: the caller must roll it back.
//
// tx may come from any pool or connection to the store's database. Unlike
// the store's own statements, CreateTx does not run the statement again
// when PostgreSQL aborts tx as the victim of a deadlock; the caller may
// run its whole transaction again.
func (s *Store) CreateTx(ctx context.Context, tx pgx.Tx, recs ...store.Record) ([]error, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	b := newBatch(recs)
	if len(b.ids) > 0 {
		if err := s.insert(ctx, tx, b); err != nil {
			return nil, fmt.Errorf("stepflow/pgstore: create: %w", err)
		}
	}
	return b.results(), nil
}

// batch is a CreateMany batch as the statement takes it: the valid records
// with distinct ids, sorted by id, in columns.
type batch struct {
	n     int            // records given
	errs  []error        // per record given; nil when none failed yet
	at    map[string]int // index in the records given, by id
	ids   []string
	sts   []int16
	dues  []*int64
	quar  []string
	blobs [][]byte
	vers  []string
	flows []string
	pos   []string
	kinds []string
	upds  []*int64
}

func (b *batch) fail(i int, err error) {
	if b.errs == nil {
		b.errs = make([]error, b.n)
	}
	b.errs[i] = err
}

// newBatch checks recs and lays the valid ones out for the statement. A
// record with no id, whose version is not given and cannot be read from
// its blob, or with text PostgreSQL cannot store, is an ErrInvalid; an id
// repeated in the batch is an ErrExists for every record after the first.
func newBatch(recs []store.Record) *batch {
	b := &batch{n: len(recs), at: make(map[string]int, len(recs))}
	// valid are copies: filling in a version leaves the caller's records
	// as they were.
	valid := make([]store.Record, 0, len(recs))
	for i, r := range recs {
		if r.ID == "" {
			b.fail(i, fmt.Errorf("%w: empty id", store.ErrInvalid))
			continue
		}
		if err := store.FillVersion(&r); err != nil {
			b.fail(i, err)
			continue
		}
		if !isText(r.ID, r.Version, r.Position, r.ErrorKind, r.Quarantine) {
			// It would fail the whole statement.
			b.fail(i, fmt.Errorf("%w: process %q: id, version, position, error kind and quarantine must be UTF-8 without NUL", store.ErrInvalid, r.ID))
			continue
		}
		if _, dup := b.at[r.ID]; dup {
			b.fail(i, fmt.Errorf("%w: %q", store.ErrExists, r.ID))
			continue
		}
		b.at[r.ID] = i
		valid = append(valid, r)
	}
	// Sorted by id, two batches that share ids insert them in the same
	// order, and so never wait for each other in a cycle.
	slices.SortFunc(valid, func(x, y store.Record) int { return strings.Compare(x.ID, y.ID) })
	n := len(valid)
	b.ids, b.sts, b.dues, b.quar, b.blobs = make([]string, n), make([]int16, n), make([]*int64, n), make([]string, n), make([][]byte, n)
	b.vers, b.flows, b.pos, b.kinds, b.upds = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]*int64, n)
	for j := range valid {
		r := &valid[j]
		b.ids[j], b.sts[j], b.quar[j] = r.ID, int16(r.Status), r.Quarantine
		b.dues[j] = nanos(store.NormalizeDue(r.Status, r.Quarantine, r.Due))
		b.blobs[j] = r.Blob
		if b.blobs[j] == nil {
			b.blobs[j] = []byte{} // the column is NOT NULL
		}
		b.vers[j], b.flows[j], b.pos[j], b.kinds[j], b.upds[j] = r.Version, r.Flow(), r.Position, r.ErrorKind, nanos(r.Updated)
	}
	return b
}

// isText reports whether PostgreSQL can store every s as text: valid
// UTF-8 without NUL bytes.
func isText(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return false
		}
	}
	return true
}

// querier is what insert needs of a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// insert runs the statement for b on q, and marks the records it did not
// insert (their id was taken) with ErrExists.
func (s *Store) insert(ctx context.Context, q querier, b *batch) error {
	rows, err := q.Query(ctx, s.q.create, b.ids, b.sts, b.dues, b.quar, b.blobs, b.vers, b.flows, b.pos, b.kinds, b.upds, s.chanRaw)
	if err != nil {
		return err
	}
	created, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if len(created) == len(b.ids) {
		return nil
	}
	in := make(map[string]bool, len(created))
	for _, id := range created {
		in[id] = true
	}
	for _, id := range b.ids {
		if !in[id] {
			b.fail(b.at[id], fmt.Errorf("%w: %q", store.ErrExists, id))
		}
	}
	return nil
}

// results returns the per-record results, nil when all were created.
func (b *batch) results() []error { return b.errs }
