package boltstore_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/boltstore"
)

// TestListAfterWritesThroughDB: List is served by an index in memory, and
// a write made through DB, below the store, does not leave it behind:
// records added, removed and damaged there are listed as the file holds
// them, before and after the store writes again, and after a reopen.
func TestListAfterWritesThroughDB(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "stepflow.db")
	s, err := boltstore.Open(path, &boltstore.Options{NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	mk := func(id string, st stepflow.Status, pos string) {
		require.NoError(t, s.Create(ctx, store.Record{ID: id, Version: "f/v1", Status: st, Position: pos, Blob: []byte("x")}))
	}
	mk("a", stepflow.Running, "")
	mk("b", stepflow.Waiting, "approve")
	mk("c", stepflow.Failed, "deploy/rollout")
	running, waiting := stepflow.Running, stepflow.Waiting
	list := func(f store.Filter) []string {
		t.Helper()
		rs, err := s.List(ctx, f)
		require.NoError(t, err)
		return ids(rs)
	}
	require.Equal(t, []string{"b"}, list(store.Filter{Status: &waiting}))

	// Below the store: d is a copy of a, c goes, b is damaged.
	require.NoError(t, s.DB().Update(func(tx *bolt.Tx) error {
		procs := tx.Bucket([]byte("procs"))
		if err := procs.Put([]byte("d"), append([]byte(nil), procs.Get([]byte("a"))...)); err != nil {
			return err
		}
		if err := procs.Delete([]byte("c")); err != nil {
			return err
		}
		return procs.Put([]byte("b"), []byte{1, 2, 3})
	}))
	check := func(when string) {
		t.Helper()
		assert.Equal(t, []string{"a", "b", "d"}, list(store.Filter{}), when)
		assert.Equal(t, []string{"a", "d"}, list(store.Filter{Status: &running}), when)
		assert.Empty(t, list(store.Filter{Status: &waiting}), when)
		assert.Equal(t, []string{"b"}, list(store.Filter{Quarantined: true}), when)
		assert.Empty(t, list(store.Filter{Position: "deploy"}), when)
		assert.Equal(t, []string{"a", "d"}, list(store.Filter{Flow: "f"}), when, "a damaged record has no version")
	}
	check("after the writes below the store")

	// The store writes again: a claim sets b aside, a commit moves d.
	_, err = s.Claim(ctx, store.Claim{Owner: "o", Now: time.Now(), Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	check("after a claim")
	errs, err := s.Commit(ctx, "", []store.Write{{ID: "d", Revision: 1, Status: stepflow.Waiting, Position: "approve", Blob: []byte("y")}})
	require.NoError(t, err)
	require.Nil(t, errs)
	assert.Equal(t, []string{"d"}, list(store.Filter{Status: &waiting, Position: "approve"}))
	assert.Equal(t, []string{"a"}, list(store.Filter{Status: &running}))

	require.NoError(t, s.Close())
	s, err = boltstore.Open(path, &boltstore.Options{NoSync: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"d"}, list(store.Filter{Status: &waiting, Position: "approve"}), "after a reopen")
	assert.Equal(t, []string{"b"}, list(store.Filter{Quarantined: true}), "after a reopen")
}
