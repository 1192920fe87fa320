package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

// spy listens on a store's two notification channels on a connection of
// the test's own, and counts the notifications of each action exactly: it
// sends a marker after the action, which PostgreSQL delivers after the
// notifications of every transaction committed before it.
type spy struct {
	t          *testing.T
	conn       *pgx.Conn
	due, ended string
	markers    int
}

func newSpy(t *testing.T, schema string) *spy {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), storetest.PostgresDSN(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	sp := &spy{t: t, conn: conn, due: schema + ".stepflow_processes", ended: schema + ".stepflow_processes.ended"}
	for _, ch := range []string{sp.due, sp.ended} {
		_, err := conn.Exec(t.Context(), "LISTEN "+pgx.Identifier{ch}.Sanitize())
		require.NoError(t, err)
	}
	return sp
}

// count returns how many notifications each channel received since the
// last count.
func (sp *spy) count() (due, ended int) {
	sp.t.Helper()
	sp.markers++
	marker := fmt.Sprintf("marker-%d", sp.markers)
	_, err := testPool(sp.t).Exec(sp.t.Context(), `SELECT pg_notify($1, $2)`, sp.due, marker)
	require.NoError(sp.t, err)
	ctx, cancel := context.WithTimeout(sp.t.Context(), 5*time.Second)
	defer cancel()
	for {
		n, err := sp.conn.WaitForNotification(ctx)
		require.NoError(sp.t, err, "waiting for %s", marker)
		switch {
		case n.Payload == marker:
			return due, ended
		case n.Channel == sp.due:
			due++
		case n.Channel == sp.ended:
			ended++
		default:
			sp.t.Fatalf("notification on %q", n.Channel)
		}
	}
}

// TestNotificationsPerTransaction: each call that changes processes sends
// at most one notification per channel, whatever the size of its batch,
// and none when it changed nothing.
func TestNotificationsPerTransaction(t *testing.T) {
	s, schema := newStoreSchema(t)
	ctx := t.Context()
	sp := newSpy(t, schema)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

	recs := make([]store.Record, 500)
	for i := range recs {
		recs[i] = store.Record{ID: fmt.Sprintf("p%03d", i), Version: "a/v1", Status: stepflow.Running, Due: t0, Blob: []byte("x")}
	}
	errs, err := s.CreateMany(ctx, recs)
	require.NoError(t, err)
	require.Nil(t, errs)
	due, ended := sp.count()
	assert.Equal(t, [2]int{1, 0}, [2]int{due, ended}, "CreateMany of 500: one wake-up")

	errs, err = s.CreateMany(ctx, recs[:10])
	require.NoError(t, err)
	require.Len(t, errs, 10)
	due, ended = sp.count()
	assert.Equal(t, [2]int{0, 0}, [2]int{due, ended}, "CreateMany that created nothing")

	claimed, err := s.Claim(ctx, store.Claim{Owner: "r", Now: t0, Limit: 20, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, claimed, 20)
	ws := make([]store.Write, len(claimed))
	for i, r := range claimed {
		ws[i] = store.Write{ID: r.ID, Revision: r.Revision, Status: stepflow.Running, Due: t0, Blob: []byte("y")}
	}
	errs, err = s.Commit(ctx, "r", ws)
	require.NoError(t, err)
	require.Nil(t, errs)
	due, ended = sp.count()
	assert.Equal(t, [2]int{0, 0}, [2]int{due, ended}, "a runner's commit that ends nothing")

	ws = ws[:0]
	for i := range 10 {
		st := stepflow.Running
		if i%2 == 0 {
			st = stepflow.Done
		}
		ws = append(ws, store.Write{ID: fmt.Sprintf("p%03d", i), Revision: 2, Status: st, Blob: []byte("z")})
	}
	errs, err = s.Commit(ctx, "", ws)
	require.NoError(t, err)
	require.Nil(t, errs)
	due, ended = sp.count()
	assert.Equal(t, [2]int{1, 1}, [2]int{due, ended}, "an outside commit with 5 ends")

	claimed, err = s.Claim(ctx, store.Claim{Owner: "r", Now: t0, Limit: 5, Lease: time.Minute})
	require.NoError(t, err)
	ws = ws[:0]
	for _, r := range claimed {
		ws = append(ws, store.Write{ID: r.ID, Revision: r.Revision, Status: stepflow.Failed, Blob: []byte("f")})
	}
	errs, err = s.Commit(ctx, "r", ws)
	require.NoError(t, err)
	require.Nil(t, errs)
	due, ended = sp.count()
	assert.Equal(t, [2]int{0, 1}, [2]int{due, ended}, "a runner's commit that ends processes")

	errs, err = s.Commit(ctx, "", []store.Write{{ID: "p499", Revision: 99, Status: stepflow.Done}})
	require.NoError(t, err)
	require.Len(t, errs, 1)
	due, ended = sp.count()
	assert.Equal(t, [2]int{0, 0}, [2]int{due, ended}, "a refused write")

	claimed, err = s.Claim(ctx, store.Claim{Owner: "r", Now: t0, Limit: 3, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, claimed, 3)
	require.NoError(t, s.Release(ctx, "r", ids(claimed), t0))
	due, ended = sp.count()
	assert.Equal(t, [2]int{1, 0}, [2]int{due, ended}, "Release")

	n, err := s.Delete(ctx, []string{"p100", "p101", "p102", "nope"})
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	due, ended = sp.count()
	assert.Equal(t, [2]int{0, 1}, [2]int{due, ended}, "Delete")
	n, err = s.Delete(ctx, []string{"nope"})
	require.NoError(t, err)
	assert.Zero(t, n)
	due, ended = sp.count()
	assert.Equal(t, [2]int{0, 0}, [2]int{due, ended}, "a Delete that removed nothing")
}

// TestCreateTx: processes created in the caller's transaction exist, and
// wake the runners, if and only if it commits.
func TestCreateTx(t *testing.T) {
	s, schema := newStoreSchema(t)
	ctx := t.Context()
	sp := newSpy(t, schema)
	require.NoError(t, s.Create(ctx, store.Record{ID: "taken", Version: "a/v1", Status: stepflow.Running, Blob: []byte("x")}))
	sp.count()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.Watch(wctx)
	waitWake(t, w, "first wake-up")
	drainCh(w)
	recs := []store.Record{
		{ID: "order-1", Status: stepflow.Running, Blob: msgpackState(t, "ship/v2", stepflow.Running)},
		{ID: "taken", Version: "a/v1", Status: stepflow.Running, Blob: []byte("x")},
		{ID: "order-2", Version: "ship/v2", Status: stepflow.Running, Blob: []byte("y")},
		{ID: "bad", Status: stepflow.Running, Blob: []byte("no version")},
	}

	t.Run("commit", func(t *testing.T) {
		tx, err := testPool(t).Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.Background()) }()
		_, err = tx.Exec(ctx, `CREATE TABLE `+pgx.Identifier{schema, "orders"}.Sanitize()+` (id text)`)
		require.NoError(t, err)
		errs, err := s.CreateTx(ctx, tx, recs...)
		require.NoError(t, err)
		require.Len(t, errs, len(recs))
		assert.NoError(t, errs[0])
		assert.ErrorIs(t, errs[1], store.ErrExists)
		assert.NoError(t, errs[2])
		assert.ErrorIs(t, errs[3], store.ErrInvalid)

		_, err = s.Load(ctx, "order-1")
		assert.ErrorIs(t, err, store.ErrNotFound, "not visible before the commit")
		due, _ := sp.count()
		assert.Zero(t, due, "no wake-up before the commit")

		require.NoError(t, tx.Commit(ctx))
		waitWake(t, w, "after the commit")
		for _, id := range []string{"order-1", "order-2"} {
			r, err := s.Load(ctx, id)
			require.NoError(t, err, id)
			assert.Equal(t, "ship/v2", r.Version, id)
			assert.Equal(t, uint64(1), r.Revision)
		}
		due, _ = sp.count()
		assert.Equal(t, 1, due, "one wake-up, at the commit")
	})

	t.Run("rollback", func(t *testing.T) {
		tx, err := testPool(t).Begin(ctx)
		require.NoError(t, err)
		errs, err := s.CreateTx(ctx, tx, store.Record{ID: "order-3", Version: "ship/v2", Status: stepflow.Running, Blob: []byte("z")})
		require.NoError(t, err)
		require.Nil(t, errs)
		require.NoError(t, tx.Rollback(ctx))
		_, err = s.Load(ctx, "order-3")
		assert.ErrorIs(t, err, store.ErrNotFound, "nothing exists after a rollback")
		due, ended := sp.count()
		assert.Equal(t, [2]int{0, 0}, [2]int{due, ended}, "and nobody was woken")
		c, err := s.Count(ctx)
		require.NoError(t, err)
		assert.Equal(t, 3, c.Total())
	})

	t.Run("closed", func(t *testing.T) {
		s2, _ := newStoreSchema(t)
		require.NoError(t, s2.Close())
		tx, err := testPool(t).Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.Background()) }()
		_, err = s2.CreateTx(ctx, tx, store.Record{ID: "x", Version: "a/v1"})
		assert.ErrorIs(t, err, store.ErrClosed)
	})
}

// TestWatchEndedSharesTheConnection: Watch and WatchEnded share the
// store's one listening session, and each wakes only for its own
// notifications.
func TestWatchEndedSharesTheConnection(t *testing.T) {
	s, pool, channel := newStoreWithPool(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	due, ended := s.Watch(ctx), s.WatchEnded(ctx)
	waitWake(t, due, "Watch, first wake-up")
	waitWake(t, ended, "WatchEnded, first wake-up")
	assert.Equal(t, 1, listeners(t, pool, channel), "one listening session for both")

	quiet := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
			t.Fatal(what)
		case <-time.After(200 * time.Millisecond):
		}
	}
	require.NoError(t, s.Create(ctx, store.Record{ID: "p", Version: "a/v1", Status: stepflow.Running, Blob: []byte("x")}))
	waitWake(t, due, "Watch, after Create")
	quiet(ended, "Create woke WatchEnded")
	n, err := s.Delete(ctx, []string{"p"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	waitWake(t, ended, "WatchEnded, after Delete")
	quiet(due, "Delete woke Watch")
}
