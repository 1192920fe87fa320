// Package pgstore keeps processes in PostgreSQL (through jackc/pgx/v5), so
// that several runner processes on several machines can share them.
//
// One table holds every process: its id, revision, status, due time (Unix
// nanoseconds, NULL when never due), lease owner and end, quarantine reason
// and encoded state. A partial index on (due, id) serves Claim and NextDue.
// Claim leases rows with UPDATE ... FOR UPDATE SKIP LOCKED, so concurrent
// runners never block on each other's rows nor receive the same one. A
// lease is the row's owner and lease end, columns no index covers, so a
// claim is a heap-only (HOT) update that touches no index (the table keeps
// free space in its pages for that); a row whose lease has ended can be
// claimed again, which is how a dead runner's processes are taken over.
// Commit writes a whole batch in one UPDATE statement. Create and outside writes send a
// NOTIFY that Watch turns into wake-ups, so idle runners sleep instead of
// polling.
//
// Statements that change several rows (Commit, Renew, Release) first lock
// them in id order, so that two of them never wait for each other in a
// cycle. A statement that PostgreSQL still aborts as the victim of a
// deadlock (SQLSTATE 40P01), with a transaction of another program say, or
// for a serialization failure (40001, under a stricter default isolation
// level) is run again a few times after a short pause before its error is
// returned.
//
// Watch does not take connections from the pool: the store listens on one
// connection of its own, opened with the pool's connection settings (and
// its BeforeConnect and AfterConnect hooks) when the first Watch starts and
// closed when the last one ends, and every Watch shares it. A pool of any
// size therefore serves runners with any number of workers, and the
// database sees one more session per store while anyone watches.
//
// Create the schema with Migrate (idempotent, safe to run from several
// processes at once) before using the store. All values travel as query
// parameters; the only text put into SQL is the schema and table names,
// quoted as identifiers once, in New.
//
// Due times and lease ends come from the runners' clocks (store.Claim.Now),
// so the machines sharing a database should keep their clocks in sync
// (NTP); a skew shortens or lengthens leases by as much.
package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

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
	pool    *pgxpool.Pool
	ownPool bool
	schema  string
	table   string // quoted schema.table
	channel string // notification channel, quoted
	chanRaw string
	idx     string // quoted index name
	q       queries

	// done ends the listening goroutine when the store is closed.
	done context.Context
	stop context.CancelFunc

	mu     sync.Mutex
	closed bool
	// watchers are the channels of the Watch calls in progress; lis is
	// the listening goroutine that serves them, nil when nobody watches.
	watchers map[chan struct{}]struct{}
	lis      *listener
	// listeners counts listening goroutines still running, including
	// ones being replaced; Close waits for them to close their
	// connections.
	listeners sync.WaitGroup
}

// listener is one run of the listening goroutine.
type listener struct {
	cancel context.CancelFunc
	// ready is closed once the goroutine listens for the first time, or
	// gives up.
	ready     chan struct{}
	readyOnce sync.Once
	// listening is true while its connection listens; guarded by
	// Store.mu.
	listening bool
}

func (l *listener) setReady() { l.readyOnce.Do(func() { close(l.ready) }) }

type queries struct {
	create, load, claim, commit, classify, renew, release, nextDue, count, list string
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
	chanRaw := o.Schema + "." + o.Table
	if len(chanRaw) > 63 {
		chanRaw = chanRaw[:63]
	}
	s := &Store{pool: pool, schema: o.Schema, table: t, chanRaw: chanRaw, channel: pgx.Identifier{chanRaw}.Sanitize(),
		idx: pgx.Identifier{o.Table + "_due"}.Sanitize()}
	s.done, s.stop = context.WithCancel(context.Background())
	r := strings.NewReplacer("{t}", t)
	s.q = queries{
		create: r.Replace(`WITH ins AS (
			INSERT INTO {t} (id, revision, status, due, owner, lease_until, quarantine, blob)
			VALUES ($1, 1, $2, $3, '', 0, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING id)
			SELECT pg_notify($6, '') FROM ins`),
		load: r.Replace(`SELECT revision, status, CASE WHEN owner <> '' THEN lease_until ELSE due END, owner, quarantine, blob
			FROM {t} WHERE id = $1`),
		claim: r.Replace(`WITH c AS (
			SELECT id, due FROM {t} WHERE due <= $1 AND (owner = '' OR lease_until <= $1)
			ORDER BY due, id LIMIT $2 FOR UPDATE SKIP LOCKED)
			UPDATE {t} AS p SET owner = $3, lease_until = $4 FROM c WHERE p.id = c.id
			RETURNING p.id, c.due, p.revision, p.status, p.quarantine, p.blob`),
		// Commit, Renew and Release lock their rows in id order first:
		// the CTE l locks them as it emits them, sorted, and the
		// uncorrelated subquery reading it all is a one-time filter, which
		// the executor evaluates before the UPDATE fetches its first row.
		// The UPDATE itself keeps the plan it would have alone (joining it
		// to l instead makes the planner misjudge the join with unnest).
		// Without the lock each statement locks rows in the order of its
		// own plan (the order of the batch for one, of an index or of the
		// heap for another), and a commit and a renewal of the same rows
		// deadlock.
		commit: r.Replace(`WITH l AS (SELECT 1 FROM {t} WHERE id = ANY($1) ORDER BY id FOR UPDATE)
			UPDATE {t} AS p SET revision = p.revision + 1, status = u.status, due = u.due,
			owner = '', lease_until = 0, quarantine = u.quarantine, blob = COALESCE(u.blob, p.blob)
			FROM unnest($1::text[], $2::bigint[], $3::smallint[], $4::bigint[], $5::text[], $6::bytea[])
				AS u(id, rev, status, due, quarantine, blob)
			WHERE (SELECT count(*) FROM l) >= 0
				AND p.id = u.id AND p.revision = u.rev AND ($7 = '' OR p.owner = $7)
			RETURNING p.id`),
		classify: r.Replace(`SELECT id, revision FROM {t} WHERE id = ANY($1)`),
		renew: r.Replace(`WITH l AS (SELECT 1 FROM {t} WHERE id = ANY($1) AND owner = $2 AND owner <> '' ORDER BY id FOR UPDATE)
			UPDATE {t} SET lease_until = $3
			WHERE (SELECT count(*) FROM l) >= 0 AND id = ANY($1) AND owner = $2 AND owner <> '' RETURNING id`),
		release: r.Replace(`WITH l AS (SELECT 1 FROM {t} WHERE id = ANY($1) AND owner = $2 AND owner <> '' ORDER BY id FOR UPDATE)
			UPDATE {t} SET owner = '', lease_until = 0, due = LEAST(due, $3)
			WHERE (SELECT count(*) FROM l) >= 0 AND id = ANY($1) AND owner = $2 AND owner <> ''`),
		// The earliest due unleased row comes from the index (skipping the
		// few leased rows); the earliest lease end needs a scan, which only
		// idle runners pay.
		nextDue: r.Replace(`SELECT LEAST(
			(SELECT due FROM {t} WHERE due IS NOT NULL AND owner = '' ORDER BY due, id LIMIT 1),
			(SELECT min(lease_until) FROM {t} WHERE owner <> '' AND due IS NOT NULL))`),
		count: r.Replace(`SELECT status, quarantine <> '', count(*) FROM {t} GROUP BY 1, 2`),
		list: r.Replace(`SELECT id, revision, status, CASE WHEN owner <> '' THEN lease_until ELSE due END, owner, quarantine, blob FROM {t}
			WHERE id > $1 AND ($2::smallint IS NULL OR (quarantine = '' AND status = $2)) AND (NOT $3 OR quarantine <> '')
			ORDER BY id LIMIT $4`),
	}
	return s
}

// Pool returns the connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// migrationLock is the advisory lock key that serializes Migrate calls
// across processes ("stepflow" in ASCII).
const migrationLock = 0x73746570666c6f77

// Migrate creates the schema, table and index if they do not exist. It is
// idempotent and may run concurrently from several processes.
func (s *Store) Migrate(ctx context.Context) error {
	r := strings.NewReplacer("{s}", pgx.Identifier{s.schema}.Sanitize(), "{t}", s.table, "{idx}", s.idx)
	stmts := []string{
		`CREATE SCHEMA IF NOT EXISTS {s}`,
		`CREATE TABLE IF NOT EXISTS {t} (
			id         text PRIMARY KEY,
			revision   bigint NOT NULL,
			status     smallint NOT NULL,
			due        bigint,
			owner      text NOT NULL DEFAULT '',
			lease_until bigint NOT NULL DEFAULT 0,
			quarantine text NOT NULL DEFAULT '',
			blob       bytea NOT NULL) WITH (fillfactor = 70)`,
		`CREATE INDEX IF NOT EXISTS {idx} ON {t} (due, id) WHERE due IS NOT NULL`,
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return err
		}
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, r.Replace(q)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("stepflow/pgstore: migrate: %w", err)
	}
	return nil
}

func (s *Store) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	return nil
}

func dueParam(t time.Time) *int64 {
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

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, rec store.Record) error {
	if rec.ID == "" {
		return store.ErrInvalid
	}
	if err := s.check(); err != nil {
		return err
	}
	due := store.NormalizeDue(rec.Status, rec.Quarantine, rec.Due)
	blob := rec.Blob
	if blob == nil {
		blob = []byte{}
	}
	var tag pgconn.CommandTag
	err := retry(ctx, func() (err error) {
		tag, err = s.pool.Exec(ctx, s.q.create, rec.ID, int16(rec.Status), dueParam(due), rec.Quarantine, blob, s.chanRaw)
		return err
	})
	if err != nil {
		return fmt.Errorf("stepflow/pgstore: create %q: %w", rec.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrExists
	}
	return nil
}

// Load implements store.Store.
func (s *Store) Load(ctx context.Context, id string) (store.Record, error) {
	if err := s.check(); err != nil {
		return store.Record{}, err
	}
	r := store.Record{ID: id}
	var st int16
	var due *int64
	err := s.pool.QueryRow(ctx, s.q.load, id).Scan(&r.Revision, &st, &due, &r.Owner, &r.Quarantine, &r.Blob)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Record{}, store.ErrNotFound
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("stepflow/pgstore: load %q: %w", id, err)
	}
	r.Status, r.Due = stepflow.Status(st), dueTime(due)
	return r, nil
}

// Claim implements store.Store.
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
	var got []claimed
	err := retry(ctx, func() error {
		got = got[:0]
		rows, err := s.pool.Query(ctx, s.q.claim, c.Now.UnixNano(), c.Limit, c.Owner, until.UnixNano())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var x claimed
			var st int16
			if err := rows.Scan(&x.rec.ID, &x.due, &x.rec.Revision, &st, &x.rec.Quarantine, &x.rec.Blob); err != nil {
				return err
			}
			x.rec.Status, x.rec.Owner, x.rec.Due = stepflow.Status(st), c.Owner, until
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
// hence one transaction and one WAL flush.
func (s *Store) Commit(ctx context.Context, owner string, ws []store.Write) ([]error, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, nil
	}
	ids := make([]string, len(ws))
	revs := make([]int64, len(ws))
	sts := make([]int16, len(ws))
	dues := make([]*int64, len(ws))
	quar := make([]string, len(ws))
	blobs := make([][]byte, len(ws))
	for i := range ws {
		w := &ws[i]
		ids[i], revs[i], sts[i], quar[i], blobs[i] = w.ID, int64(w.Revision), int16(w.Status), w.Quarantine, w.Blob
		dues[i] = dueParam(store.NormalizeDue(w.Status, w.Quarantine, w.Due))
	}
	done := make(map[string]bool, len(ws))
	// The statement is its own transaction: when it fails nothing of it
	// was written, and it can run again as a whole.
	err := retry(ctx, func() error {
		clear(done)
		rows, err := s.pool.Query(ctx, s.q.commit, ids, revs, sts, dues, quar, blobs, owner)
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
	if err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: commit: %w", err)
	}
	if owner == "" && len(done) > 0 {
		if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, '')`, s.chanRaw); err != nil {
			return nil, fmt.Errorf("stepflow/pgstore: notify: %w", err)
		}
	}
	if len(done) == len(ws) {
		return nil, nil
	}
	return s.classify(ctx, ws, done)
}

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
	err := retry(ctx, func() error {
		clear(kept)
		rows, err := s.pool.Query(ctx, s.q.renew, ids, owner, now.Add(lease).UnixNano())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			kept[id] = true
		}
		return rows.Err()
	})
	if err != nil {
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
		_, err := s.pool.Exec(ctx, s.q.release, ids, owner, now.UnixNano())
		return err
	})
	if err != nil {
		return fmt.Errorf("stepflow/pgstore: release: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, '')`, s.chanRaw); err != nil {
		return fmt.Errorf("stepflow/pgstore: notify: %w", err)
	}
	return nil
}

// NextDue implements store.Store.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	if err := s.check(); err != nil {
		return time.Time{}, false, err
	}
	var due *int64
	if err := s.pool.QueryRow(ctx, s.q.nextDue).Scan(&due); err != nil {
		return time.Time{}, false, fmt.Errorf("stepflow/pgstore: next due: %w", err)
	}
	return dueTime(due), due != nil, nil
}

// Watch implements store.Store. Every Watch shares one listening
// connection of the store's own, outside the pool (see the package
// documentation), which the store opens with the first Watch and closes
// when the last one ends, and which LISTENs on the store's channel. Each
// channel receives one wake-up when it is added to a listening connection
// and each time the store starts listening again after losing its
// connection, since notifications sent in between may have been missed.
// Watch returns once the store listens, or after at most 5 seconds when
// the database cannot be reached (the store keeps trying, once a second,
// and wakes every watcher when it succeeds).
func (s *Store) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.closed || ctx.Err() != nil {
		s.mu.Unlock()
		close(ch)
		return ch
	}
	if s.watchers == nil {
		s.watchers = map[chan struct{}]struct{}{}
	}
	s.watchers[ch] = struct{}{}
	if s.lis == nil {
		s.startListening()
	}
	l := s.lis
	if l.listening {
		send(ch)
	}
	s.mu.Unlock()
	context.AfterFunc(ctx, func() { s.unwatch(ch) })

	// Return once listening, so that nothing created after Watch returns
	// is missed; but not later than a few seconds when the database is
	// unreachable.
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-l.ready:
	case <-ctx.Done():
	case <-t.C:
	}
	return ch
}

// unwatch ends the Watch of ch, and stops listening after the last one.
func (s *Store) unwatch(ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.watchers[ch]; !ok {
		return // Close ended it
	}
	delete(s.watchers, ch)
	close(ch)
	if len(s.watchers) == 0 && s.lis != nil {
		s.lis.cancel()
		s.lis = nil
	}
}

// startListening starts a listening goroutine. s.mu is held.
func (s *Store) startListening() {
	ctx, cancel := context.WithCancel(s.done)
	l := &listener{cancel: cancel, ready: make(chan struct{})}
	s.lis = l
	s.listeners.Add(1)
	go func() {
		defer s.listeners.Done()
		defer l.setReady()
		defer cancel()
		for ctx.Err() == nil {
			_ = s.listen(ctx, l)
			s.mu.Lock()
			l.listening = false
			s.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			// The connection failed or could not be opened: try again
			// shortly.
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}()
}

// wake sends a wake-up to every watcher, if l still serves them; with
// started, l has just started listening.
func (s *Store) wake(l *listener, started bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lis != l {
		return
	}
	if started {
		l.listening = true
	}
	for ch := range s.watchers {
		send(ch)
	}
}

func send(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// listen opens a connection, LISTENs on it and turns notifications into
// wake-ups until the connection fails or ctx is done.
func (s *Store) listen(ctx context.Context, l *listener) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+s.channel); err != nil {
		return err
	}
	// Notifications sent before this point were missed: wake everyone.
	s.wake(l, true)
	l.setReady()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		s.wake(l, false)
	}
}

// connect opens a connection outside the pool with the pool's settings.
func (s *Store) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := s.pool.Config() // a copy
	cc := cfg.ConnConfig
	if cfg.BeforeConnect != nil {
		if err := cfg.BeforeConnect(ctx, cc); err != nil {
			return nil, err
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, err
	}
	if cfg.AfterConnect != nil {
		if err := cfg.AfterConnect(ctx, conn); err != nil {
			_ = conn.Close(ctx)
			return nil, err
		}
	}
	return conn, nil
}

// Count implements store.Store.
func (s *Store) Count(ctx context.Context) (store.Counts, error) {
	if err := s.check(); err != nil {
		return store.Counts{}, err
	}
	c := store.Counts{ByStatus: map[stepflow.Status]int{}}
	rows, err := s.pool.Query(ctx, s.q.count)
	if err != nil {
		return c, fmt.Errorf("stepflow/pgstore: count: %w", err)
	}
	for rows.Next() {
		var st int16
		var q bool
		var n int
		if err := rows.Scan(&st, &q, &n); err != nil {
			rows.Close()
			return c, fmt.Errorf("stepflow/pgstore: count: %w", err)
		}
		if q {
			c.Quarantined += n
		} else {
			c.ByStatus[stepflow.Status(st)] += n
		}
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("stepflow/pgstore: count: %w", err)
	}
	return c, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, f store.Filter) ([]store.Record, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	var st *int16
	if f.Status != nil {
		v := int16(*f.Status)
		st = &v
	}
	rows, err := s.pool.Query(ctx, s.q.list, f.After, st, f.Quarantined, limit)
	if err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: list: %w", err)
	}
	var out []store.Record
	for rows.Next() {
		var r store.Record
		var st int16
		var due *int64
		if err := rows.Scan(&r.ID, &r.Revision, &st, &due, &r.Owner, &r.Quarantine, &r.Blob); err != nil {
			rows.Close()
			return nil, fmt.Errorf("stepflow/pgstore: list: %w", err)
		}
		r.Status, r.Due = stepflow.Status(st), dueTime(due)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: list: %w", err)
	}
	return out, nil
}

// Close implements store.Store. It ends every Watch, closes the listening
// connection, and closes the pool when Open created it.
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
