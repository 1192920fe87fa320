package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/pgstore"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

// testDSN returns the test database, or skips with how to get one.
func testDSN(t testing.TB) string {
	dsn := os.Getenv("STEPFLOW_TEST_PG")
	if dsn == "" {
		t.Skip("PostgreSQL tests need STEPFLOW_TEST_PG (a postgres:// URL); " +
			"for a local server run: export STEPFLOW_TEST_PG=$(bash -c '. .ci/postgres.sh >/dev/null; echo $STEPFLOW_TEST_PG')")
	}
	return dsn
}

var sharedPool *pgxpool.Pool

// newStore returns a migrated store in a fresh schema, dropped after the
// test, so tests never see each other's rows.
func newStore(t testing.TB) *pgstore.Store {
	t.Helper()
	dsn := testDSN(t)
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
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

func TestMigrateIsIdempotent(t *testing.T) {
	s := newStore(t)
	require.NoError(t, s.Migrate(t.Context()))
	require.NoError(t, s.Migrate(t.Context()))
}
