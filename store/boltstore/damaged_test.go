package boltstore_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/boltstore"
)

// damage overwrites stored values directly, below the store's API, as a
// faulty disk or a stray tool would.
func damage(t *testing.T, db *bolt.DB, values map[string][]byte) {
	t.Helper()
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		for id, v := range values {
			if err := tx.Bucket([]byte("procs")).Put([]byte(id), v); err != nil {
				return err
			}
		}
		return nil
	}))
}

// TestDamagedRecordHeaders: records whose store header cannot be read are
// set aside as quarantined, byte for byte, and the others carry on.
func TestDamagedRecordHeaders(t *testing.T) {
	bad := map[string][]byte{
		"p100": {1, 2, 3},                                 // cut short
		"p377": append([]byte{0x7f}, make([]byte, 40)...), // unknown header version
	}
	for _, when := range []string{"while open", "while closed"} {
		t.Run(when, func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "stepflow.db")
			s, err := boltstore.Open(path, &boltstore.Options{NoSync: true})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			for i := range 500 {
				id := fmt.Sprintf("p%03d", i)
				require.NoError(t, s.Create(ctx, store.Record{ID: id, Version: "test/v1", Status: stepflow.Running, Blob: []byte("state-" + id)}))
			}
			if when == "while open" {
				damage(t, s.DB(), bad)
			} else {
				require.NoError(t, s.Close())
				db, err := bolt.Open(path, 0o600, nil)
				require.NoError(t, err)
				damage(t, db, bad)
				require.NoError(t, db.Close())
				s, err = boltstore.Open(path, &boltstore.Options{NoSync: true})
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Close() })
			}

			checkQuarantined := func(t *testing.T) {
				t.Helper()
				for id, v := range bad {
					r, err := s.Load(ctx, id)
					require.NoError(t, err, id)
					assert.Contains(t, r.Quarantine, id, "the reason names the process")
					assert.Contains(t, r.Quarantine, "header")
					assert.Equal(t, v, r.Blob, "the stored value is kept byte for byte")
					assert.Equal(t, uint64(0), r.Revision)
					assert.True(t, r.Due.IsZero())
				}
				q, err := s.List(ctx, store.Filter{Quarantined: true})
				require.NoError(t, err)
				assert.Equal(t, []string{"p100", "p377"}, ids(q))
				for _, r := range q {
					assert.Equal(t, bad[r.ID], r.Blob)
				}
				all, err := s.List(ctx, store.Filter{Limit: 1000})
				require.NoError(t, err)
				assert.Len(t, all, 500)
			}
			checkQuarantined(t)

			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			var claimed []string
			for {
				got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: now, Limit: 100, Lease: time.Hour})
				require.NoError(t, err)
				if len(got) == 0 {
					break
				}
				claimed = append(claimed, ids(got)...)
			}
			assert.Len(t, claimed, 498)
			assert.NotContains(t, claimed, "p100")
			assert.NotContains(t, claimed, "p377")
			slices.Sort(claimed)
			assert.Len(t, slices.Compact(claimed), 498, "no record claimed twice")

			c, err := s.Count(ctx)
			require.NoError(t, err)
			assert.Equal(t, 2, c.Quarantined)
			assert.Equal(t, 498, c.ByStatus[stepflow.Running])
			checkQuarantined(t) // the same once the store has set them aside

			// An operator repairs one with a write outside any runner.
			errs, err := s.Commit(ctx, "", []store.Write{{ID: "p100", Revision: 0, Status: stepflow.Running, Blob: []byte("fixed")}})
			require.NoError(t, err)
			assert.Nil(t, errs)
			got, err := s.Claim(ctx, store.Claim{Owner: "B", Now: now.Add(2 * time.Hour), Limit: 1000, Lease: time.Hour})
			require.NoError(t, err)
			assert.Contains(t, ids(got), "p100")
			r, err := s.Load(ctx, "p100")
			require.NoError(t, err)
			assert.Equal(t, []byte("fixed"), r.Blob)
			assert.Empty(t, r.Quarantine)
			c, err = s.Count(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, c.Quarantined)
			assert.Equal(t, 499, c.ByStatus[stepflow.Running])
		})
	}
}

// TestDamagedHeaderMetCommit: a runner that claimed a record before its
// header was damaged gets a conflict, not an opaque error, and the record
// is set aside.
func TestDamagedHeaderMetCommit(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	require.NoError(t, s.Create(ctx, store.Record{ID: "p", Version: "test/v1", Status: stepflow.Running, Blob: []byte("x")}))
	require.NoError(t, s.Create(ctx, store.Record{ID: "q", Version: "test/v1", Status: stepflow.Waiting, Due: time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC), Blob: []byte("y")}))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: now, Limit: 1, Lease: time.Hour})
	require.NoError(t, err)
	require.Len(t, got, 1)
	damage(t, s.DB(), map[string][]byte{"p": {1}, "q": {1, 0}})

	errs, err := s.Commit(ctx, "A", []store.Write{{ID: "p", Revision: 1, Status: stepflow.Done, Blob: []byte("z")}})
	require.NoError(t, err)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], store.ErrConflict)
	c, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, c.Quarantined, "the Commit set both damaged records aside")
	assert.Equal(t, 0, c.Total()-c.Quarantined)
	_, ok, err := s.NextDue(ctx, nil)
	require.NoError(t, err)
	assert.True(t, ok, "p's lease is still running")
}

// TestOpenLocked: a second Open of a file in use fails with ErrLocked,
// naming the file. flock locks belong to open file descriptions, so two
// Opens in one process conflict as two processes would.
func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stepflow.db")
	s, err := boltstore.Open(path, nil)
	require.NoError(t, err)
	defer s.Close()

	start := time.Now()
	_, err = boltstore.Open(path, &boltstore.Options{Timeout: 100 * time.Millisecond})
	require.ErrorIs(t, err, boltstore.ErrLocked)
	assert.Contains(t, err.Error(), path)
	assert.Contains(t, err.Error(), "locked by another process")
	assert.Less(t, time.Since(start), 5*time.Second, "Options.Timeout bounds the wait")

	require.NoError(t, s.Close())
	s2, err := boltstore.Open(path, &boltstore.Options{Timeout: 100 * time.Millisecond})
	require.NoError(t, err, "free again once closed")
	require.NoError(t, s2.Close())
}

func ids(rs []store.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}
