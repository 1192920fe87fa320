package boltstore_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/boltstore"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

func open(t *testing.T) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "stepflow.db"), &boltstore.Options{NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

// TestReopen: records and counts survive a close, leases do not (a
// restarted runner resumes at once).
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stepflow.db")
	ctx := t.Context()
	s, err := boltstore.Open(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Create(ctx, store.Record{ID: "p", Version: "test/v1", Status: stepflow.Running, Blob: []byte("x")}))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: now, Limit: 1, Lease: time.Hour})
	require.NoError(t, err)
	require.Len(t, got, 1)

	_, err = boltstore.Open(path, &boltstore.Options{Timeout: 50 * time.Millisecond})
	require.Error(t, err, "the file is locked while open")
	require.NoError(t, s.Close())
	_, err = s.Load(ctx, "p")
	require.ErrorIs(t, err, store.ErrClosed)

	s, err = boltstore.Open(path, nil)
	require.NoError(t, err)
	defer s.Close()
	r, err := s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, []byte("x"), r.Blob)
	assert.Empty(t, r.Owner)
	got, err = s.Claim(ctx, store.Claim{Owner: "B", Now: now, Limit: 1, Lease: time.Hour})
	require.NoError(t, err)
	assert.Len(t, got, 1, "leases die with the process that held them")
	c, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, c.ByStatus[stepflow.Running])
}
