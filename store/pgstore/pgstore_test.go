package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/pgstore"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

var (
	sharedPool *pgxpool.Pool
	poolOnce   sync.Once
	poolErr    error
)

// testPool returns the pool the tests of this package share.
func testPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dsn := storetest.PostgresDSN(t)
	poolOnce.Do(func() {
		p, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			poolErr = err
			return
		}
		sharedPool = p
	})
	require.NoError(t, poolErr)
	return sharedPool
}

// newStore returns a migrated store in a fresh schema, dropped after the
// test, so tests never see each other's rows.
func newStore(t testing.TB) *pgstore.Store {
	t.Helper()
	s, _ := newStoreSchema(t)
	return s
}

// newStoreSchema is newStore, and also returns the schema's name.
func newStoreSchema(t testing.TB) (*pgstore.Store, string) {
	t.Helper()
	pool := testPool(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "stepflow_test_" + hex.EncodeToString(b[:])
	s := pgstore.New(pool, &pgstore.Options{Schema: schema})
	require.NoError(t, s.Migrate(context.Background()))
	t.Cleanup(func() {
		_ = s.Close()
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	return s, schema
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

func TestLimiterConformance(t *testing.T) {
	storetest.RunLimiter(t, func(t *testing.T) store.Limiter { return newStore(t) })
}

// TestMigrateIsIdempotent: Migrate on an up-to-date table changes nothing
// and takes no table lock, so it does not wait for the transactions of
// running runners (here one that writes a row and stays open), nor make
// them wait.
func TestMigrateIsIdempotent(t *testing.T) {
	s, schema := newStoreSchema(t)
	ctx := t.Context()
	require.NoError(t, s.Create(ctx, store.Record{ID: "p", Version: "a/v1", Status: stepflow.Running, Blob: []byte("x")}))
	tx, err := testPool(t).Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = tx.Exec(ctx, `UPDATE `+pgx.Identifier{schema, "stepflow_processes"}.Sanitize()+` SET revision = revision WHERE id = 'p'`)
	require.NoError(t, err)
	for range 2 {
		mctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		require.NoError(t, s.Migrate(mctx), "Migrate waited for the open transaction")
		cancel()
	}
}

// TestWriteFields: the columns behind the filters follow the writes. A
// write that names a new version moves the process to that version's
// flow, for claims and lists; a write or create that gives no time is
// stamped with the database's clock.
func TestWriteFields(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	before := time.Now()
	require.NoError(t, s.Create(ctx, store.Record{ID: "p", Version: "a/v1", Status: stepflow.Running, Due: t0, Blob: []byte("x")}))
	r, err := s.Load(ctx, "p")
	require.NoError(t, err)
	assert.WithinRange(t, r.Updated, before.Add(-time.Minute), time.Now().Add(time.Minute), "created without a time")

	errs, err := s.Commit(ctx, "", []store.Write{{ID: "p", Revision: 1, Version: "b/v2", Status: stepflow.Failed,
		Position: "x/y", ErrorKind: stepflow.KindTimeout, Blob: []byte("y")}})
	require.NoError(t, err)
	require.Nil(t, errs)
	r, err = s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, "b/v2", r.Version)
	assert.WithinRange(t, r.Updated, before.Add(-time.Minute), time.Now().Add(time.Minute), "written without a time")
	for _, tc := range []struct {
		f    store.Filter
		want []string
	}{
		{store.Filter{Flow: "b"}, []string{"p"}},
		{store.Filter{Flow: "a"}, []string{}},
		{store.Filter{Version: "b/v2"}, []string{"p"}},
		{store.Filter{Version: "a/v1"}, []string{}},
		{store.Filter{Position: "x", ErrorKind: stepflow.KindTimeout}, []string{"p"}},
	} {
		got, err := s.List(ctx, tc.f)
		require.NoError(t, err)
		assert.Equal(t, tc.want, ids(got), "%+v", tc.f)
	}
	errs, err = s.Commit(ctx, "", []store.Write{{ID: "p", Revision: 2, Status: stepflow.Running, Due: t0, Blob: []byte("z")}})
	require.NoError(t, err)
	require.Nil(t, errs)
	got, err := s.Claim(ctx, store.Claim{Owner: "o", Now: t0, Limit: 1, Lease: time.Minute, Versions: []string{"a/v1"}})
	require.NoError(t, err)
	assert.Empty(t, got, "no longer a/v1")
	got, err = s.Claim(ctx, store.Claim{Owner: "o", Now: t0, Limit: 1, Lease: time.Minute, Versions: []string{"b/v2"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"p"}, ids(got))
	assert.Empty(t, got[0].Position, "the running write stands nowhere")
}

// TestClaimVersionNamedTwice: a version named twice in a claim counts
// once against its limit.
func TestClaimVersionNamedTwice(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, s.Create(ctx, store.Record{ID: id, Version: "a/v1", Status: stepflow.Running, Due: t0, Blob: []byte("x")}))
	}
	got, err := s.Claim(ctx, store.Claim{Owner: "o", Now: t0, Limit: 2, Lease: time.Minute, Versions: []string{"a/v1", "b/v1", "a/v1"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, ids(got))
}

// TestCreateManyRefusesWhatTextCannotHold: an id that is not UTF-8 fails
// its record only, not the batch.
func TestCreateManyRefusesWhatTextCannotHold(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	errs, err := s.CreateMany(ctx, []store.Record{
		{ID: "ok", Version: "a/v1", Status: stepflow.Running, Blob: []byte("x")},
		{ID: "bad\xff", Version: "a/v1", Status: stepflow.Running, Blob: []byte("x")},
		{ID: "nul", Version: "a/v1", Position: "a\x00b", Status: stepflow.Running, Blob: []byte("x")},
	})
	require.NoError(t, err)
	require.Len(t, errs, 3)
	assert.NoError(t, errs[0])
	assert.ErrorIs(t, errs[1], store.ErrInvalid)
	assert.ErrorIs(t, errs[2], store.ErrInvalid)
	_, err = s.Load(ctx, "ok")
	assert.NoError(t, err)
}
