package runner_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/boltstore"
	"github.com/stepflow-io/go-stepflow/store/pgstore"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

// The runner package itself never imports pgx; only its tests do, to run
// the same scenarios on every store.

var (
	poolOnce sync.Once
	pool     *pgxpool.Pool
	poolErr  error
)

func testPool(t testing.TB) *pgxpool.Pool {
	dsn := storetest.PostgresDSN(t)
	poolOnce.Do(func() {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			poolErr = err
			return
		}
		cfg.MaxConns = 16
		pool, poolErr = pgxpool.NewWithConfig(context.Background(), cfg)
	})
	require.NoError(t, poolErr)
	return pool
}

// newSchema returns a fresh schema name, dropped after the test.
func newSchema(t testing.TB) string {
	p := testPool(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "stepflow_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		_, _ = p.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	return schema
}

// newPG returns a migrated PostgreSQL store in its own schema.
func newPG(t testing.TB, schema string) *pgstore.Store {
	s := pgstore.New(testPool(t), &pgstore.Options{Schema: schema})
	require.NoError(t, s.Migrate(context.Background()))
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newBolt(t testing.TB, path string) *boltstore.Store {
	if path == "" {
		path = filepath.Join(t.TempDir(), "stepflow.db")
	}
	s, err := boltstore.Open(path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var _ store.Store = (*pgstore.Store)(nil)

// newRunner is a runner over s hosting f alone.
func newRunner[S any](f *stepflow.Flow[S], s store.Store, o *runner.Options) (*runner.Runner, *runner.Processes[S], error) {
	r, err := runner.New(s, o)
	if err != nil {
		return nil, nil, err
	}
	ps, err := runner.Register(r, f)
	return r, ps, err
}
