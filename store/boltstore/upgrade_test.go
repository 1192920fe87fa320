package boltstore_test

import (
	"io"
	"os"
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

// testdata/format1.db was written by the release before flow versions
// were kept in the store (header version 1): six deploy/v1 processes
// (five msgpack states, one JSON), running, waiting and done, a record
// whose bytes are not a state, and one quarantined earlier.
func TestUpgradeFormat1(t *testing.T) {
	path := copyFile(t, filepath.Join("testdata", "format1.db"))
	ctx := t.Context()
	before := readAll(t, path)

	s, err := boltstore.Open(path, nil)
	require.NoError(t, err)
	recs, err := s.List(ctx, store.Filter{Limit: 100})
	require.NoError(t, err)
	require.Len(t, recs, 8, "nothing is lost")
	byID := map[string]store.Record{}
	for _, r := range recs {
		byID[r.ID] = r
		assert.Equal(t, before[r.ID], r.Blob, "%s: bytes kept", r.ID)
		assert.False(t, r.Updated.IsZero(), "%s: an upgraded record has a time of last write", r.ID)
	}
	for _, id := range []string{"deploy-0", "deploy-1", "deploy-2", "deploy-3", "deploy-4", "deploy-5", "quarantined"} {
		assert.Equal(t, "deploy/v1", byID[id].Version, "%s: version read from the state", id)
	}
	assert.Equal(t, "an earlier reason", byID["quarantined"].Quarantine)
	assert.Contains(t, byID["garbage"].Quarantine, "no readable flow version", "a record naming no version is set aside")
	assert.Empty(t, byID["deploy-5"].Quarantine, "the JSON state too")

	c, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 8, c.Total())
	v1 := c.ByVersion["deploy/v1"]
	assert.Equal(t, map[stepflow.Status]int{stepflow.Running: 1, stepflow.Waiting: 3, stepflow.Done: 2}, v1.ByStatus)
	assert.Equal(t, 1, v1.Quarantined)
	assert.Equal(t, 2, c.Quarantined)

	// The due index is by version now.
	now := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	got, err := s.Claim(ctx, store.Claim{Owner: "r", Now: now, Limit: 10, Lease: time.Minute, Versions: []string{"deploy/v1"}})
	require.NoError(t, err)
	assert.Len(t, got, 4, "the running and waiting deploy/v1 processes")
	got, err = s.Claim(ctx, store.Claim{Owner: "r", Now: now, Limit: 10, Lease: time.Minute, Versions: []string{"other/v1"}})
	require.NoError(t, err)
	assert.Empty(t, got)
	require.NoError(t, s.Close())

	// Opening again changes nothing.
	s, err = boltstore.Open(path, nil)
	require.NoError(t, err)
	again, err := s.List(ctx, store.Filter{Limit: 100})
	require.NoError(t, err)
	assert.Equal(t, recs, again)
	n, err := s.DeleteEnded(ctx, time.Now().Add(time.Hour), 10)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "the upgraded ended processes are in the retention index")
	require.NoError(t, s.Close())
}

// Two upgrades racing: bbolt's file lock lets one Open at a time, so the
// second waits and finds the file upgraded.
func TestUpgradeTwice(t *testing.T) {
	path := copyFile(t, filepath.Join("testdata", "format1.db"))
	done := make(chan error, 2)
	for range 2 {
		go func() {
			s, err := boltstore.Open(path, &boltstore.Options{Timeout: 10 * time.Second})
			if err == nil {
				err = s.Close()
			}
			done <- err
		}()
	}
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	s, err := boltstore.Open(path, nil)
	require.NoError(t, err)
	defer s.Close()
	c, err := s.Count(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 8, c.Total())
}

func copyFile(t *testing.T, from string) string {
	t.Helper()
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	to := filepath.Join(t.TempDir(), filepath.Base(from))
	out, err := os.Create(to)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
	return to
}

// readAll returns the stored state bytes of every process, as the
// release that wrote the file stored them (after its 22-byte header and
// quarantine reason), read with bbolt directly so that nothing is
// upgraded.
func readAll(t *testing.T, path string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("procs")).ForEach(func(k, v []byte) error {
			n := int(v[18])<<24 | int(v[19])<<16 | int(v[20])<<8 | int(v[21])
			out[string(k)] = append([]byte(nil), v[22+n:]...)
			return nil
		})
	}))
	return out
}
