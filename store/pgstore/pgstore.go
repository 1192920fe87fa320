package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Schema holds the table. Default "public".
	Schema string
	// Table name. Default "stepflow_processes".
	Table string
}

// Store is a store.Store in a PostgreSQL table.
type Store struct {
	pool     *pgxpool.Pool
	ownPool  bool
	schema   string
	tableRaw string
	table    string // quoted schema.table
	// chanRaw and endRaw name the notification channels of Watch and
	// WatchEnded.
	chanRaw string
	endRaw  string
	q       queries

	// done ends the listening goroutine when the store is closed.
	done context.Context
	stop context.CancelFunc

	mu     sync.Mutex
	closed bool
	// watchers are the channels of the Watch and WatchEnded calls in
	// progress; lis is the listening goroutine that serves them, nil when
	// nobody watches.
	watchers map[chan struct{}]watchKind
	lis      *listener
	// listeners counts listening goroutines still running, including
	// ones being replaced; Close waits for them to close their
	// connections.
	listeners sync.WaitGroup
}

type queries struct {
	create, load, claim, claimVersions, commit, commitKeep, commitOne, classify, renew, release, nextDue, nextDueVersions,
	count, list, del, delRevisions, deleteEnded string
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a postgres:// URL or key=value
// string) and returns a store that closes its pool on Close.
func Open(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: %w", err)
	}
	s := New(pool, opts)
	s.ownPool = true
	return s, nil
}

// nowNanos is the database's clock in Unix nanoseconds (to the
// microsecond), for records and writes that bring no time.
const nowNanos = `(extract(epoch FROM statement_timestamp()) * 1000000000)::bigint`

// ended is the SQL condition of an ended process: a terminal status, not
// quarantined. The index of DeleteEnded has it as its predicate, and its
// query repeats it word for word so that the planner sees it applies.
var ended = fmt.Sprintf(`quarantine = '' AND status IN (%d, %d, %d)`, stepflow.Done, stepflow.Failed, stepflow.Canceled)

// terminal is the SQL condition of a terminal status.
var terminal = fmt.Sprintf(`status IN (%d, %d, %d)`, stepflow.Done, stepflow.Failed, stepflow.Canceled)

// columns are the columns of a record as load and list read them: the due
// time of a leased record is its lease's end.
const columns = `id, revision, status, CASE WHEN owner <> '' THEN lease_until ELSE due END, owner, quarantine, blob,
	version, position, error_kind, updated`

// New returns a store using pool, which the caller keeps owning.
func New(pool *pgxpool.Pool, opts *Options) *Store {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Schema == "" {
		o.Schema = "public"
	}
	if o.Table == "" {
		o.Table = "stepflow_processes"
	}
	t := pgx.Identifier{o.Schema, o.Table}.Sanitize()
	// PostgreSQL cuts identifiers, channel names included, to 63 bytes.
	base := o.Schema + "." + o.Table
	s := &Store{pool: pool, schema: o.Schema, tableRaw: o.Table, table: t,
		chanRaw: truncate(base, 63), endRaw: truncate(base, 63-len(".ended")) + ".ended"}
	s.done, s.stop = context.WithCancel(context.Background())
	r := strings.NewReplacer("{t}", t, "{now}", nowNanos, "{ended}", ended, "{terminal}", terminal, "{columns}", columns)
	s.q = queries{
		// The batch comes sorted by id, so that two batches sharing ids
		// insert them in the same order and do not deadlock on the
		// primary key. The notification is sent when a row was inserted.
		create: r.Replace(`WITH ins AS (
			INSERT INTO {t} (id, revision, status, due, owner, lease_until, quarantine, blob, version, flow, position, error_kind, updated)
			SELECT u.id, 1, u.status, u.due, '', 0, u.quarantine, u.blob, u.version, u.flow, u.position, u.error_kind, COALESCE(u.updated, {now})
			FROM unnest($1::text[], $2::smallint[], $3::bigint[], $4::text[], $5::bytea[], $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[])
				AS u(id, status, due, quarantine, blob, version, flow, position, error_kind, updated)
			ON CONFLICT (id) DO NOTHING RETURNING id),
			n AS (SELECT pg_notify($11, '') FROM (SELECT 1 FROM ins LIMIT 1) x)
			SELECT id FROM ins WHERE (SELECT count(*) FROM n) >= 0`),
		load: r.Replace(`SELECT {columns} FROM {t} WHERE id = $1`),
		claim: r.Replace(`WITH c AS (
			SELECT id, due FROM {t} WHERE due <= $1 AND (owner = '' OR lease_until <= $1)
			ORDER BY due, id LIMIT $2 FOR UPDATE SKIP LOCKED)
			UPDATE {t} AS p SET owner = $3, lease_until = $4 FROM c WHERE p.id = c.id
			RETURNING p.id, c.due, p.revision, p.status, p.quarantine, p.blob, p.version, p.position, p.error_kind, p.updated`),
		// A claim for some versions reads, for each version, its earliest
		// due rows from the (version, due, id) index, and keeps the
		// earliest of them all. Each range is read only as far as the
		// limit, so due processes of other versions, however many, cost
		// nothing. A row locked here and then left out by the outer
		// limit is unlocked when the statement ends.
		claimVersions: r.Replace(`WITH c AS (
			SELECT x.id, x.due FROM unnest($5::text[]) AS v(version) CROSS JOIN LATERAL (
				SELECT id, due FROM {t} WHERE version = v.version AND due <= $1 AND (owner = '' OR lease_until <= $1)
				ORDER BY due, id LIMIT $2 FOR UPDATE SKIP LOCKED) AS x
			ORDER BY x.due, x.id LIMIT $2)
			UPDATE {t} AS p SET owner = $3, lease_until = $4 FROM c WHERE p.id = c.id
			RETURNING p.id, c.due, p.revision, p.status, p.quarantine, p.blob, p.version, p.position, p.error_kind, p.updated`),
		// Commit, Renew, Release and Delete lock their rows in id order
		// first: the CTE l locks them as it emits them, sorted, and the
		// uncorrelated subquery reading it all is a one-time filter, which
		// the executor evaluates before the UPDATE fetches its first row.
		// The UPDATE itself keeps the plan it would have alone (joining it
		// to l instead makes the planner misjudge the join with unnest).
		// Without the lock each statement locks rows in the order of its
		// own plan (the order of the batch for one, of an index or of the
		// heap for another), and a commit and a renewal of the same rows
		// deadlock.
		//
		// The statement notifies Watch when it applied a write from
		// outside a runner ($12 = '') and WatchEnded when it applied a
		// terminal status, each at most once.
		commit:     commitSQL(r, commitBatch),
		commitKeep: commitSQL(r, commitBatchKeep),
		commitOne:  commitSQL(r, commitOne),
		classify:   r.Replace(`SELECT id, revision FROM {t} WHERE id = ANY($1)`),
		renew: r.Replace(`WITH l AS (SELECT 1 FROM {t} WHERE id = ANY($1) AND owner = $2 AND owner <> '' ORDER BY id FOR UPDATE)
			UPDATE {t} SET lease_until = $3
			WHERE (SELECT count(*) FROM l) >= 0 AND id = ANY($1) AND owner = $2 AND owner <> '' RETURNING id`),
		release: r.Replace(`WITH l AS (SELECT 1 FROM {t} WHERE id = ANY($1) AND owner = $2 AND owner <> '' ORDER BY id FOR UPDATE),
			r AS (UPDATE {t} SET owner = '', lease_until = 0, due = LEAST(due, $3)
				WHERE (SELECT count(*) FROM l) >= 0 AND id = ANY($1) AND owner = $2 AND owner <> '')
			SELECT pg_notify($4, '')`),
		// The earliest due unleased row comes from the index (skipping the
		// few leased rows); the earliest lease end needs a scan, which only
		// idle runners pay.
		nextDue: r.Replace(`SELECT LEAST(
			(SELECT due FROM {t} WHERE due IS NOT NULL AND owner = '' ORDER BY due, id LIMIT 1),
			(SELECT min(lease_until) FROM {t} WHERE owner <> '' AND due IS NOT NULL))`),
		nextDueVersions: r.Replace(`SELECT LEAST(
			(SELECT min(x.due) FROM unnest($1::text[]) AS v(version) CROSS JOIN LATERAL (
				SELECT due FROM {t} WHERE version = v.version AND due IS NOT NULL AND owner = '' ORDER BY due, id LIMIT 1) AS x),
			(SELECT min(lease_until) FROM {t} WHERE owner <> '' AND due IS NOT NULL AND version = ANY($1)))`),
		count: r.Replace(`SELECT version, status, quarantine <> '', count(*) FROM {t} GROUP BY 1, 2, 3`),
		list:  r.Replace(`SELECT {columns} FROM {t}`),
		del: r.Replace(`WITH l AS (SELECT 1 FROM {t} WHERE id = ANY($1) ORDER BY id FOR UPDATE),
			d AS (DELETE FROM {t} WHERE (SELECT count(*) FROM l) >= 0 AND id = ANY($1) RETURNING 1),
			c AS (SELECT count(*) AS n FROM d)
			SELECT n, (SELECT count(*) FROM (SELECT pg_notify($2, '') WHERE n > 0) AS x) FROM c`),
		delRevisions: r.Replace(`WITH l AS (SELECT 1 FROM {t} WHERE id = ANY($1) ORDER BY id FOR UPDATE),
			d AS (DELETE FROM {t} AS p USING unnest($1::text[], $2::bigint[]) AS u(id, rev)
				WHERE (SELECT count(*) FROM l) >= 0 AND p.id = u.id AND p.revision = u.rev RETURNING p.id),
			n AS (SELECT pg_notify($3, '') FROM (SELECT 1 FROM d LIMIT 1) AS x)
			SELECT id FROM d WHERE (SELECT count(*) FROM n) >= 0`),
		// Oldest first from the _ended index. The rows are locked with
		// SKIP LOCKED: the statement never waits for a row, so it cannot
		// deadlock with statements that lock in id order, and a row a
		// runner is writing is left for the next call.
		deleteEnded: r.Replace(`WITH d AS (SELECT id FROM {t} WHERE {ended} AND updated < $1
				ORDER BY updated, id LIMIT $2 FOR UPDATE SKIP LOCKED)
			DELETE FROM {t} AS p USING d WHERE p.id = d.id`),
	}
	return s
}

// commitKind chooses a variant of the commit statement (see commitSQL).
type commitKind int

const (
	// commitBatch: writes in arrays, none keeping its lease.
	commitBatch commitKind = iota
	// commitBatchKeep: writes in arrays, some keeping their lease
	// (Write.KeepUntil, in array $15).
	commitBatchKeep
	// commitOne: a single write, in scalar parameters ($15 its
	// KeepUntil, 0 for none). It locks one row, so it needs no pass that
	// locks rows in id order to keep it from deadlocking; it is the
	// statement of a process running alone, whose every step waits for
	// it.
	commitOne
)

// commitSQL is the commit statement (see queries.commit in New) of the
// given kind. Every kind sets the same columns from u, the writes: the
// batches unnest them from arrays, which plain batches do without the
// keep column, so that they have less to compute per row.
func commitSQL(r *strings.Replacer, kind commitKind) string {
	set := `due = u.due, owner = '', lease_until = 0,`
	if kind != commitBatch {
		set = `due = CASE WHEN u.keep > 0 AND $12 <> '' THEN u.keep ELSE u.due END,
				owner = CASE WHEN u.keep > 0 AND $12 <> '' THEN p.owner ELSE '' END,
				lease_until = CASE WHEN u.keep > 0 AND $12 <> '' THEN u.keep ELSE 0 END,`
	}
	lock, locked := `WITH l AS (SELECT 1 FROM {t} WHERE id = ANY($1) ORDER BY id FOR UPDATE),
			w AS`, `(SELECT count(*) FROM l) >= 0 AND`
	var from string
	switch kind {
	case commitOne:
		lock, locked = `WITH w AS`, ``
		from = `(SELECT $1::text AS id, $2::bigint AS rev, $3::smallint AS status, $4::bigint AS due, $5::text AS quarantine,
					$6::bytea AS blob, $7::text AS version, $8::text AS flow, $9::text AS position, $10::text AS error_kind,
					$11::bigint AS updated, $15::bigint AS keep) AS u`
	case commitBatchKeep:
		from = `unnest($1::text[], $2::bigint[], $3::smallint[], $4::bigint[], $5::text[], $6::bytea[],
					$7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $15::bigint[])
					AS u(id, rev, status, due, quarantine, blob, version, flow, position, error_kind, updated, keep)`
	default:
		from = `unnest($1::text[], $2::bigint[], $3::smallint[], $4::bigint[], $5::text[], $6::bytea[],
					$7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[])
					AS u(id, rev, status, due, quarantine, blob, version, flow, position, error_kind, updated)`
	}
	return r.Replace(lock + ` (UPDATE {t} AS p SET revision = p.revision + 1, status = u.status,
				` + set + `
				quarantine = u.quarantine, blob = COALESCE(u.blob, p.blob),
				version = CASE WHEN u.version = '' THEN p.version ELSE u.version END,
				flow = CASE WHEN u.version = '' THEN p.flow ELSE u.flow END,
				position = CASE WHEN u.blob IS NULL THEN p.position ELSE u.position END,
				error_kind = CASE WHEN u.blob IS NULL THEN p.error_kind ELSE u.error_kind END,
				updated = COALESCE(u.updated, {now})
				FROM ` + from + `
				WHERE ` + locked + ` p.id = u.id AND p.revision = u.rev AND ($12::text = '' OR p.owner = $12::text)
				RETURNING p.id, p.status),
			n AS (SELECT pg_notify($13, '') FROM (SELECT 1 FROM w WHERE $12::text = '' LIMIT 1) AS a
				UNION ALL SELECT pg_notify($14, '') FROM (SELECT 1 FROM w WHERE {terminal} LIMIT 1) AS b)
			SELECT id FROM w WHERE (SELECT count(*) FROM n) >= 0`)
}

// truncate cuts s to at most n bytes, at a character boundary, as
// PostgreSQL cuts identifiers.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Pool returns the connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

func (s *Store) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	return nil
}

// nanos is t in Unix nanoseconds, nil when t is zero.
func nanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

func dueTime(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.Unix(0, *n).UTC()
}

// scanRecord reads a row of columns.
func scanRecord(rows pgx.CollectableRow) (store.Record, error) {
	var r store.Record
	var st int16
	var due *int64
	var upd int64
	err := rows.Scan(&r.ID, &r.Revision, &st, &due, &r.Owner, &r.Quarantine, &r.Blob, &r.Version, &r.Position, &r.ErrorKind, &upd)
	r.Status, r.Due, r.Updated = stepflow.Status(st), dueTime(due), time.Unix(0, upd).UTC()
	return r, err
}

// Create implements store.Store: it is CreateMany of one record.
func (s *Store) Create(ctx context.Context, rec store.Record) error {
	errs, err := s.CreateMany(ctx, []store.Record{rec})
	if err != nil {
		return err
	}
	if errs != nil {
		return errs[0]
	}
	return nil
}

// Load implements store.Store.
func (s *Store) Load(ctx context.Context, id string) (store.Record, error) {
	if err := s.check(); err != nil {
		return store.Record{}, err
	}
	rows, err := s.pool.Query(ctx, s.q.load, id)
	if err != nil {
		return store.Record{}, fmt.Errorf("stepflow/pgstore: load %q: %w", id, err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, scanRecord)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Record{}, store.ErrNotFound
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("stepflow/pgstore: load %q: %w", id, err)
	}
	return r, nil
}

// Claim implements store.Store. A claim that names versions reads only
// their due rows (see the package documentation).
func (s *Store) Claim(ctx context.Context, c store.Claim) ([]store.Record, error) {
	if err := store.CheckClaim(c); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	until := c.Now.Add(c.Lease).UTC()
	type claimed struct {
		rec store.Record
		due int64
	}
	q, args := s.q.claim, []any{c.Now.UnixNano(), c.Limit, c.Owner, until.UnixNano()}
	if len(c.Versions) > 0 {
		// Each version once: a version named twice would have its rows
		// read, and counted against the limit, twice.
		vs := slices.Compact(slices.Sorted(slices.Values(c.Versions)))
		q, args = s.q.claimVersions, append(args, vs)
	}
	var got []claimed
	err := retry(ctx, func() error {
		got = got[:0]
		rows, err := s.pool.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var x claimed
			var st int16
			var upd int64
			if err := rows.Scan(&x.rec.ID, &x.due, &x.rec.Revision, &st, &x.rec.Quarantine, &x.rec.Blob,
				&x.rec.Version, &x.rec.Position, &x.rec.ErrorKind, &upd); err != nil {
				return err
			}
			x.rec.Status, x.rec.Owner, x.rec.Due, x.rec.Updated = stepflow.Status(st), c.Owner, until, time.Unix(0, upd).UTC()
			got = append(got, x)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: claim: %w", err)
	}
	// RETURNING does not keep the subquery's order.
	slices.SortFunc(got, func(a, b claimed) int {
		if a.due != b.due {
			return cmp.Compare(a.due, b.due)
		}
		return cmp.Compare(a.rec.ID, b.rec.ID)
	})
	out := make([]store.Record, len(got))
	for i := range got {
		out[i] = got[i].rec
	}
	return out, nil
}

// Commit implements store.Store: the whole batch is one UPDATE statement,
// hence one transaction and one WAL flush, which also sends the batch's
// notifications.
func (s *Store) Commit(ctx context.Context, owner string, ws []store.Write) ([]error, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, nil
	}
	if len(ws) == 1 {
		return s.commitOne(ctx, owner, &ws[0])
	}
	n := len(ws)
	ids := make([]string, n)
	revs := make([]int64, n)
	sts := make([]int16, n)
	dues := make([]*int64, n)
	quar := make([]string, n)
	blobs := make([][]byte, n)
	vers := make([]string, n)
	flows := make([]string, n)
	pos := make([]string, n)
	kinds := make([]string, n)
	upds := make([]*int64, n)
	keeps := make([]int64, n)
	kept := false
	for i := range ws {
		w := &ws[i]
		ids[i], revs[i], sts[i], quar[i], blobs[i] = w.ID, int64(w.Revision), int16(w.Status), w.Quarantine, w.Blob
		dues[i] = nanos(store.NormalizeDue(w.Status, w.Quarantine, w.Due))
		vers[i], pos[i], kinds[i], upds[i] = w.Version, w.Position, w.ErrorKind, nanos(w.Updated)
		if !w.KeepUntil.IsZero() && w.Quarantine == "" {
			keeps[i], kept = w.KeepUntil.UnixNano(), true
		}
		if w.Version != "" {
			flows[i] = codec.FlowName(w.Version)
		}
	}
	done := make(map[string]bool, n)
	q, args := s.q.commit, []any{ids, revs, sts, dues, quar, blobs, vers, flows, pos, kinds, upds, owner, s.chanRaw, s.endRaw}
	if kept {
		q, args = s.q.commitKeep, append(args, keeps)
	}
	if err := s.queryIDs(ctx, done, q, args...); err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: commit: %w", err)
	}
	if len(done) == len(ws) {
		return nil, nil
	}
	return s.classify(ctx, ws, done)
}

// commitOne is Commit for a batch of one write.
func (s *Store) commitOne(ctx context.Context, owner string, w *store.Write) ([]error, error) {
	var keep int64
	if !w.KeepUntil.IsZero() && w.Quarantine == "" {
		keep = w.KeepUntil.UnixNano()
	}
	var flow string
	if w.Version != "" {
		flow = codec.FlowName(w.Version)
	}
	var done bool
	err := retry(ctx, func() error {
		done = false
		rows, err := s.pool.Query(ctx, s.q.commitOne, w.ID, int64(w.Revision), int16(w.Status),
			nanos(store.NormalizeDue(w.Status, w.Quarantine, w.Due)), w.Quarantine, w.Blob, w.Version, flow,
			w.Position, w.ErrorKind, nanos(w.Updated), owner, s.chanRaw, s.endRaw, keep)
		if err != nil {
			return err
		}
		defer rows.Close()
		// Read to the end: an error at the end of the statement (its
		// commit) comes after the row.
		for rows.Next() {
			done = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: commit: %w", err)
	}
	if done {
		return nil, nil
	}
	return s.classify(ctx, []store.Write{*w}, map[string]bool{})
}

// queryIDs runs q, a statement that is its own transaction and returns
// the ids of the rows it changed, and fills done with them. When the
// statement fails nothing of it was written, so it runs again as a whole
// when PostgreSQL aborted it as a deadlock victim (retry).
func (s *Store) queryIDs(ctx context.Context, done map[string]bool, q string, args ...any) error {
	return retry(ctx, func() error {
		clear(done)
		rows, err := s.pool.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			done[id] = true
		}
		return rows.Err()
	})
}

// KeepsLeases implements store.LeaseKeeper: Commit honours
// Write.KeepUntil for a runner's writes (owner not "").
func (s *Store) KeepsLeases() bool { return true }

// classify explains refused writes. It runs after the UPDATE, so a record
// changed in between may be reported as a conflict rather than a lost
// lease; both tell the writer to drop its result.
func (s *Store) classify(ctx context.Context, ws []store.Write, done map[string]bool) ([]error, error) {
	var missing []string
	for i := range ws {
		if !done[ws[i].ID] {
			missing = append(missing, ws[i].ID)
		}
	}
	revs := map[string]uint64{}
	rows, err := s.pool.Query(ctx, s.q.classify, missing)
	if err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: commit: %w", err)
	}
	for rows.Next() {
		var id string
		var rev int64
		if err := rows.Scan(&id, &rev); err != nil {
			rows.Close()
			return nil, fmt.Errorf("stepflow/pgstore: commit: %w", err)
		}
		revs[id] = uint64(rev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: commit: %w", err)
	}
	errs := make([]error, len(ws))
	for i := range ws {
		w := &ws[i]
		if done[w.ID] {
			continue
		}
		rev, ok := revs[w.ID]
		switch {
		case !ok:
			errs[i] = &store.WriteError{ID: w.ID, Err: store.ErrNotFound}
		case rev != w.Revision:
			errs[i] = &store.WriteError{ID: w.ID, Err: store.ErrConflict}
		default:
			errs[i] = &store.WriteError{ID: w.ID, Err: store.ErrLeaseLost}
		}
	}
	return errs, nil
}

// Renew implements store.Store.
func (s *Store) Renew(ctx context.Context, owner string, ids []string, now time.Time, lease time.Duration) ([]string, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	kept := map[string]bool{}
	if err := s.queryIDs(ctx, kept, s.q.renew, ids, owner, now.Add(lease).UnixNano()); err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: renew: %w", err)
	}
	var lost []string
	for _, id := range ids {
		if !kept[id] {
			lost = append(lost, id)
		}
	}
	return lost, nil
}

// Release implements store.Store.
func (s *Store) Release(ctx context.Context, owner string, ids []string, now time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	err := retry(ctx, func() error {
		_, err := s.pool.Exec(ctx, s.q.release, ids, owner, now.UnixNano(), s.chanRaw)
		return err
	})
	if err != nil {
		return fmt.Errorf("stepflow/pgstore: release: %w", err)
	}
	return nil
}

// NextDue implements store.Store.
func (s *Store) NextDue(ctx context.Context, versions []string) (time.Time, bool, error) {
	if err := s.check(); err != nil {
		return time.Time{}, false, err
	}
	q, args := s.q.nextDue, []any(nil)
	if len(versions) > 0 {
		q, args = s.q.nextDueVersions, []any{versions}
	}
	var due *int64
	if err := s.pool.QueryRow(ctx, q, args...).Scan(&due); err != nil {
		return time.Time{}, false, fmt.Errorf("stepflow/pgstore: next due: %w", err)
	}
	return dueTime(due), due != nil, nil
}

// Count implements store.Store.
func (s *Store) Count(ctx context.Context) (store.Counts, error) {
	if err := s.check(); err != nil {
		return store.Counts{}, err
	}
	c := store.Counts{ByStatus: map[stepflow.Status]int{}, ByVersion: map[string]store.VersionCounts{}}
	rows, err := s.pool.Query(ctx, s.q.count)
	if err != nil {
		return store.Counts{}, fmt.Errorf("stepflow/pgstore: count: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var version string
		var st int16
		var q bool
		var n int
		if err := rows.Scan(&version, &st, &q, &n); err != nil {
			return store.Counts{}, fmt.Errorf("stepflow/pgstore: count: %w", err)
		}
		vc := c.ByVersion[version]
		if vc.ByStatus == nil {
			vc.ByStatus = map[stepflow.Status]int{}
		}
		if q {
			c.Quarantined += n
			vc.Quarantined += n
		} else {
			c.ByStatus[stepflow.Status(st)] += n
			vc.ByStatus[stepflow.Status(st)] += n
		}
		c.ByVersion[version] = vc
	}
	if err := rows.Err(); err != nil {
		return store.Counts{}, fmt.Errorf("stepflow/pgstore: count: %w", err)
	}
	return c, nil
}

// List implements store.Store. The statement names only the conditions f
// sets, each a plain comparison of an indexed column with a parameter, so
// that the planner picks the index that fits (see the package
// documentation).
func (s *Store) List(ctx context.Context, f store.Filter) ([]store.Record, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	q, args := s.listQuery(f, limit)
	// The unnamed statement, which PostgreSQL plans for the values at
	// hand: a plan made once for any value (the generic plan of a
	// prepared statement) reads the table in id order looking for a
	// value it takes for a common one, which for a rare one means the
	// whole table.
	rows, err := s.pool.Query(ctx, q, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: list: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: list: %w", err)
	}
	return out, nil
}

// listQuery builds List's statement for f, which keeps exactly the records
// store.Match keeps.
func (s *Store) listQuery(f store.Filter, limit int) (string, []any) {
	var b strings.Builder
	b.WriteString(s.q.list)
	var args []any
	conds := 0
	and := func(cond string, vals ...any) {
		if conds == 0 {
			b.WriteString(" WHERE ")
		} else {
			b.WriteString(" AND ")
		}
		conds++
		// Each $ in cond takes the next value.
		for _, part := range strings.SplitAfter(cond, "$") {
			b.WriteString(part)
			if strings.HasSuffix(part, "$") {
				args = append(args, vals[0])
				vals = vals[1:]
				b.WriteString(strconv.Itoa(len(args)))
			}
		}
	}
	if f.After != "" {
		and("id > $", f.After)
	}
	if f.IDPrefix != "" {
		and("id >= $", f.IDPrefix)
		if end, ok := prefixEnd(f.IDPrefix); ok {
			and("id < $", end)
		}
	}
	if f.Status != nil {
		and("quarantine = '' AND status = $", int16(*f.Status))
	}
	if f.Quarantined {
		and("quarantine <> ''")
	}
	if f.Flow != "" {
		and("flow = $", f.Flow)
	}
	if f.Version != "" {
		// The flow too, so that the _flow index serves the version in id
		// order.
		and("flow = $ AND version = $", codec.FlowName(f.Version), f.Version)
	}
	if f.ErrorKind != "" {
		and("error_kind = $", f.ErrorKind)
	}
	if f.Position != "" {
		// The path itself, or a path below it: one that starts with
		// path + "/", that is, at or after path + "/" and before path +
		// "0" ('0' follows '/') in bytewise order.
		// The first condition is the predicate of the _position index,
		// which leaves out the many processes that stand nowhere.
		and("position <> '' AND (position = $ OR (position >= $ AND position < $))", f.Position, f.Position+"/", f.Position+"0")
	}
	args = append(args, limit)
	fmt.Fprintf(&b, " ORDER BY id LIMIT $%d", len(args))
	return b.String(), args
}

// prefixEnd returns the least string greater than every string that
// starts with p, in bytewise (and so code point) order, and false when
// there is none. It stays valid UTF-8, as PostgreSQL requires of text.
func prefixEnd(p string) (string, bool) {
	rs := []rune(p)
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i] + 1
		if r == 0xD800 { // surrogates are not characters
			r = 0xE000
		}
		if r <= unicode.MaxRune {
			rs[i] = r
			return string(rs[:i+1]), true
		}
	}
	return "", false
}

// DeleteRevisions implements store.RevisionDeleter: one statement, which
// locks the rows in id order as Delete does.
func (s *Store) DeleteRevisions(ctx context.Context, ds []store.Deletion) ([]error, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, nil
	}
	ids := make([]string, len(ds))
	revs := make([]int64, len(ds))
	for i, d := range ds {
		ids[i], revs[i] = d.ID, int64(d.Revision)
	}
	done := map[string]bool{}
	if err := s.queryIDs(ctx, done, s.q.delRevisions, ids, revs, s.endRaw); err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: delete: %w", err)
	}
	if len(done) == len(ds) {
		return nil, nil
	}
	ws := make([]store.Write, len(ds))
	for i, d := range ds {
		ws[i] = store.Write{ID: d.ID, Revision: d.Revision}
	}
	return s.classify(ctx, ws, done)
}

// Delete implements store.Store. It locks the rows in id order, as Commit
// does, and notifies WatchEnded when it removed any.
func (s *Store) Delete(ctx context.Context, ids []string) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, nil
	}
	var n, notified int
	err := retry(ctx, func() error {
		return s.pool.QueryRow(ctx, s.q.del, ids, s.endRaw).Scan(&n, &notified)
	})
	if err != nil {
		return 0, fmt.Errorf("stepflow/pgstore: delete: %w", err)
	}
	return n, nil
}

// DeleteEnded implements store.Store, with one statement that reads the
// _ended index oldest first.
func (s *Store) DeleteEnded(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("%w: limit %d", store.ErrInvalid, limit)
	}
	if err := s.check(); err != nil {
		return 0, err
	}
	var n int64
	err := retry(ctx, func() error {
		tag, err := s.pool.Exec(ctx, s.q.deleteEnded, before.UnixNano(), limit)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("stepflow/pgstore: delete ended: %w", err)
	}
	return int(n), nil
}

// Close implements store.Store. It ends every Watch and WatchEnded, closes
// the listening connection, and closes the pool when Open created it.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for ch := range s.watchers {
		close(ch)
	}
	s.watchers, s.lis = nil, nil
	s.mu.Unlock()
	s.stop()
	// The listening connection is not the pool's: close it here.
	s.listeners.Wait()
	if s.ownPool {
		s.pool.Close()
	}
	return nil
}
