package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/pgstore"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

var sharedPool *pgxpool.Pool

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
	dsn := storetest.PostgresDSN(t)
	if sharedPool == nil {
		p, err := pgxpool.New(context.Background(), dsn)
		require.NoError(t, err)
		sharedPool = p
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "stepflow_test_" + hex.EncodeToString(b[:])
	s := pgstore.New(sharedPool, &pgstore.Options{Schema: schema})
	require.NoError(t, s.Migrate(context.Background()))
	t.Cleanup(func() {
		_ = s.Close()
		_, _ = sharedPool.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	return s, schema
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

func TestMigrateIsIdempotent(t *testing.T) {
	s := newStore(t)
	require.NoError(t, s.Migrate(t.Context()))
	require.NoError(t, s.Migrate(t.Context()))
}
