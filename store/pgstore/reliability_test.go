package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/pgstore"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

// newStoreWithPool returns a migrated store in a fresh schema over a pool
// of its own with at most maxConns connections, and the quoted name of the
// store's notification channel.
func newStoreWithPool(t *testing.T, maxConns int32) (*pgstore.Store, *pgxpool.Pool, string) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(storetest.PostgresDSN(t))
	require.NoError(t, err)
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "stepflow_test_" + hex.EncodeToString(b[:])
	s := pgstore.New(pool, &pgstore.Options{Schema: schema})
	require.NoError(t, s.Migrate(context.Background()))
	t.Cleanup(func() {
		_ = s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		pool.Close()
	})
	return s, pool, pgx.Identifier{schema + ".stepflow_processes"}.Sanitize()
}

func waitWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		require.True(t, ok, "%s: channel closed", what)
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no wake-up within 5s", what)
	}
}

// listeners counts the database sessions listening on channel.
func listeners(t *testing.T, pool *pgxpool.Pool, channel string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(),
		`SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN ' || $1`, channel).Scan(&n))
	return n
}

// TestWatchersShareOneConnection: however many Watch callers there are,
// the store listens on one connection of its own and leaves the pool to
// the other methods. With a pool of two connections and four watchers,
// writes still go through and every watcher wakes.
func TestWatchersShareOneConnection(t *testing.T) {
	s, pool, channel := newStoreWithPool(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	chans := make([]<-chan struct{}, 4)
	for i := range chans {
		chans[i] = s.Watch(ctx)
	}
	for i, ch := range chans {
		waitWake(t, ch, fmt.Sprintf("watcher %d, first wake-up", i))
	}
	assert.Zero(t, pool.Stat().AcquiredConns(), "watchers hold no pooled connection")

	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	require.NoError(t, s.Create(cctx, store.Record{ID: "p", Version: "test/v1", Status: stepflow.Running, Blob: []byte("x")}))
	for i, ch := range chans {
		waitWake(t, ch, fmt.Sprintf("watcher %d, after Create", i))
	}
	assert.Equal(t, 1, listeners(t, pool, channel), "one listening session for every watcher")

	cancel()
	for _, ch := range chans {
		for range ch { // drain until closed
		}
	}
	require.Eventually(t, func() bool { return listeners(t, pool, channel) == 0 }, 10*time.Second, 20*time.Millisecond,
		"the listening session ends with the last watcher")
}

// TestWatchReconnects: when the listening session is killed, the store
// listens again on a new one, wakes every watcher (notifications may have
// been missed meanwhile), and later notifications arrive as before.
func TestWatchReconnects(t *testing.T) {
	s, pool, channel := newStoreWithPool(t, 4)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	a, b := s.Watch(ctx), s.Watch(ctx)
	waitWake(t, a, "a, first wake-up")
	waitWake(t, b, "b, first wake-up")

	var killed int
	require.NoError(t, pool.QueryRow(ctx,
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = 'LISTEN ' || $1`, channel).Scan(&killed))
	require.Equal(t, 1, killed)
	waitWake(t, a, "a, after the session was killed")
	waitWake(t, b, "b, after the session was killed")
	require.Eventually(t, func() bool { return listeners(t, pool, channel) == 1 }, 10*time.Second, 20*time.Millisecond)

	require.NoError(t, s.Create(ctx, store.Record{ID: "p", Version: "test/v1", Status: stepflow.Running, Blob: []byte("x")}))
	waitWake(t, a, "a, after Create")
	waitWake(t, b, "b, after Create")
}

// TestCloseEndsListening: Close ends every watch and the listening session.
func TestCloseEndsListening(t *testing.T) {
	s, pool, channel := newStoreWithPool(t, 2)
	ch := s.Watch(context.Background())
	waitWake(t, ch, "first wake-up")
	require.Equal(t, 1, listeners(t, pool, channel))
	require.NoError(t, s.Close())
	for range ch { // drain until closed
	}
	// The server removes the session a moment after the client has
	// closed it.
	assert.Eventually(t, func() bool { return listeners(t, pool, channel) == 0 }, 5*time.Second, 10*time.Millisecond,
		"Close ends the listening session")
}

// TestCommitAndRenewDoNotDeadlock runs batch commits and lease renewals
// concurrently on the same rows, in random orders, for a few seconds: no
// call may fail and no write may be lost.
func TestCommitAndRenewDoNotDeadlock(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of load")
	}
	s := newStore(t)
	ctx := t.Context()
	const n = 200
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("p%03d", i)
		require.NoError(t, s.Create(ctx, store.Record{ID: ids[i], Version: "test/v1", Status: stepflow.Running, Due: t0, Blob: []byte("v0")}))
	}
	rounds := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); rounds++ {
		recs, err := s.Claim(ctx, store.Claim{Owner: "o", Now: t0, Limit: n, Lease: time.Hour})
		require.NoError(t, err)
		require.Len(t, recs, n, "round %d", rounds)
		ws := make([]store.Write, n)
		for i, rec := range recs {
			ws[i] = store.Write{ID: rec.ID, Revision: rec.Revision, Status: stepflow.Running, Due: t0,
				Blob: fmt.Appendf(nil, "v%d", rounds+1)}
		}
		mrand.Shuffle(n, func(i, j int) { ws[i], ws[j] = ws[j], ws[i] })

		stop := make(chan struct{})
		var wg sync.WaitGroup
		renewErrs := make([]error, 4)
		for g := range renewErrs {
			wg.Go(func() {
				mine := append([]string(nil), ids...)
				for {
					select {
					case <-stop:
						return
					default:
					}
					mrand.Shuffle(n, func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
					if _, err := s.Renew(ctx, "o", mine, t0, time.Hour); err != nil {
						renewErrs[g] = err
						return
					}
				}
			})
		}
		// Two committers write the two halves of the batch at once.
		commitErrs := make([]error, 2)
		var cw sync.WaitGroup
		for h := range commitErrs {
			cw.Go(func() {
				part := ws[h*n/2 : (h+1)*n/2]
				errs, err := s.Commit(ctx, "o", part)
				if err == nil && errs != nil {
					err = fmt.Errorf("refused writes: %v", errs)
				}
				commitErrs[h] = err
			})
		}
		cw.Wait()
		close(stop)
		wg.Wait()
		for _, err := range commitErrs {
			require.NoError(t, err, "commit, round %d", rounds)
		}
		for _, err := range renewErrs {
			require.NoError(t, err, "renew, round %d", rounds)
		}
	}
	for _, id := range ids {
		rec, err := s.Load(ctx, id)
		require.NoError(t, err)
		require.Equal(t, uint64(1+rounds), rec.Revision, "%s: every commit applied", id)
		require.Equal(t, fmt.Sprintf("v%d", rounds), string(rec.Blob), id)
	}
	t.Logf("%d rounds", rounds)
}

// TestDeadlockVictimIsRetried makes PostgreSQL choose a store call as the
// victim of a deadlock with another transaction: the store runs its
// transaction again instead of failing.
func TestDeadlockVictimIsRetried(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		call func(ctx context.Context, s *pgstore.Store) error
	}{
		{"commit", func(ctx context.Context, s *pgstore.Store) error {
			errs, err := s.Commit(ctx, "o", []store.Write{
				{ID: "a", Revision: 1, Status: stepflow.Running, Due: t0, Blob: []byte("a2")},
				{ID: "b", Revision: 1, Status: stepflow.Running, Due: t0, Blob: []byte("b2")},
			})
			if err == nil && errs != nil {
				err = fmt.Errorf("refused writes: %v", errs)
			}
			return err
		}},
		{"renew", func(ctx context.Context, s *pgstore.Store) error {
			lost, err := s.Renew(ctx, "o", []string{"a", "b"}, t0, time.Hour)
			if err == nil && len(lost) > 0 {
				err = fmt.Errorf("lost %v", lost)
			}
			return err
		}},
		{"release", func(ctx context.Context, s *pgstore.Store) error {
			return s.Release(ctx, "o", []string{"a", "b"}, t0)
		}},
		{"delete", func(ctx context.Context, s *pgstore.Store) error {
			n, err := s.Delete(ctx, []string{"a", "b"})
			if err == nil && n != 2 {
				err = fmt.Errorf("deleted %d", n)
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// PostgreSQL aborts the transaction whose deadlock check
			// (deadlock_timeout after it began to wait) finds the cycle.
			// The store call waits first, so it is normally the victim;
			// under heavy load the other transaction may be checked first,
			// and then the scenario is played again.
			for attempt := 1; ; attempt++ {
				storeWasVictim := deadlockOnce(t, t0, tc.call)
				if storeWasVictim {
					return
				}
				if attempt == 3 {
					t.Skip("PostgreSQL chose the other transaction as the victim every time")
				}
			}
		})
	}
}

// deadlockOnce makes a store call and another transaction deadlock, and
// reports whether the store call was the victim, in which case it must
// have succeeded after retrying.
func deadlockOnce(t *testing.T, t0 time.Time, call func(ctx context.Context, s *pgstore.Store) error) bool {
	t.Helper()
	s, schema := newStoreSchema(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, id := range []string{"a", "b"} {
		require.NoError(t, s.Create(ctx, store.Record{ID: id, Version: "test/v1", Status: stepflow.Running, Due: t0, Blob: []byte(id)}))
	}
	recs, err := s.Claim(ctx, store.Claim{Owner: "o", Now: t0, Limit: 2, Lease: time.Hour})
	require.NoError(t, err)
	require.Len(t, recs, 2)

	// The other transaction runs on a connection of its own, which checks
	// for deadlocks late when the server lets it (a superuser setting),
	// so that the store call's check comes first.
	conn, err := pgx.Connect(ctx, storetest.PostgresDSN(t))
	require.NoError(t, err)
	defer func() { _ = conn.Close(context.Background()) }()
	_, _ = conn.Exec(ctx, "SET deadlock_timeout = '10s'")
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	table := pgx.Identifier{schema, "stepflow_processes"}.Sanitize()
	_, err = tx.Exec(ctx, "SELECT 1 FROM "+table+" WHERE id = 'b' FOR UPDATE")
	require.NoError(t, err)

	// The store call locks a, then waits for b.
	done := make(chan error, 1)
	go func() { done <- call(ctx, s) }()
	require.Eventually(t, func() bool {
		var n int
		err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE NOT l.granted AND a.pid <> $1 AND strpos(a.query, $2) > 0`, conn.PgConn().PID(), schema).Scan(&n)
		return err == nil && n > 0
	}, 10*time.Second, 5*time.Millisecond, "the store call waits for b")

	// Now the other transaction wants a: a cycle.
	_, err = tx.Exec(ctx, "SELECT 1 FROM "+table+" WHERE id = 'a' FOR UPDATE")
	if err != nil {
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "40P01", pe.Code, "the other transaction fails only as a deadlock victim")
		_ = tx.Rollback(ctx)
		require.NoError(t, <-done)
		return false
	}
	require.NoError(t, tx.Commit(ctx))
	require.NoError(t, <-done, "the store call is retried after the deadlock")
	return true
}
