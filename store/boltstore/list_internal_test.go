package boltstore

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// TestIndexKeepsUp: the store's own writes keep the index at the file's
// transaction, so that List never builds it again; only a write through
// DB leaves it behind.
func TestIndexKeepsUp(t *testing.T) {
	ctx := t.Context()
	s, err := Open(filepath.Join(t.TempDir(), "stepflow.db"), &Options{NoSync: true})
	require.NoError(t, err)
	defer s.Close()
	current := func() bool {
		t.Helper()
		var txid int
		require.NoError(t, s.db.View(func(tx *bolt.Tx) error { txid = tx.ID(); return nil }))
		s.ixmu.RLock()
		defer s.ixmu.RUnlock()
		return s.ixTx == txid
	}
	require.True(t, current(), "after Open")
	var recs []store.Record
	for i := range 20 {
		recs = append(recs, store.Record{ID: fmt.Sprintf("p%02d", i), Version: "f/v1", Status: stepflow.Running, Blob: []byte("x")})
	}
	_, err = s.CreateMany(ctx, recs)
	require.NoError(t, err)
	now := time.Now()
	got, err := s.Claim(ctx, store.Claim{Owner: "o", Now: now, Limit: 5, Lease: time.Minute})
	require.NoError(t, err)
	var ws []store.Write
	for _, r := range got {
		ws = append(ws, store.Write{ID: r.ID, Revision: r.Revision, Status: stepflow.Done, Blob: []byte("y")})
	}
	_, err = s.Commit(ctx, "o", ws)
	require.NoError(t, err)
	_, err = s.Delete(ctx, []string{"p10", "p11"})
	require.NoError(t, err)
	_, err = s.DeleteEnded(ctx, now.Add(time.Hour), 2)
	require.NoError(t, err)
	require.True(t, current(), "after the store's writes")

	require.NoError(t, s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketProcs).Delete([]byte("p12")) }))
	require.False(t, current(), "after a write through DB")
	rs, err := s.List(ctx, store.Filter{})
	require.NoError(t, err)
	require.Len(t, rs, 15)
	require.True(t, current(), "List has built it again")
	require.Equal(t, 15, s.ix.Len())
}
