package boltstore

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// benchFile writes a store file of n processes with 300-byte states, in
// batches, and returns its path: one in ten failed at a position, the
// others waiting at another.
func benchFile(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "stepflow.db")
	s, err := Open(path, &Options{NoSync: true})
	require.NoError(b, err)
	blob := bytes.Repeat([]byte("s"), 300)
	for lo := 0; lo < n; lo += 5000 {
		var recs []store.Record
		for i := lo; i < min(lo+5000, n); i++ {
			r := store.Record{ID: fmt.Sprintf("p%06d", i), Version: "deploy/v1", Status: stepflow.Waiting, Position: "approval", Blob: blob}
			if i%10 == 0 {
				r.Status, r.Position, r.ErrorKind = stepflow.Failed, "regions/rollout", "error"
			}
			recs = append(recs, r)
		}
		errs, err := s.CreateMany(b.Context(), recs)
		require.NoError(b, err)
		require.Nil(b, errs)
	}
	require.NoError(b, s.Close())
	return path
}

// BenchmarkOpen measures Open and Close of a file of 100,000 processes in
// the page cache: the check, bbolt's walk, the store's and the building
// of the index for List, which BenchmarkBuildIndex measures alone.
func BenchmarkOpen(b *testing.B) {
	path := benchFile(b, 100_000)
	for b.Loop() {
		s, err := Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		_ = s.Close()
	}
}

func BenchmarkBuildIndex(b *testing.B) {
	s, err := Open(benchFile(b, 100_000), nil)
	require.NoError(b, err)
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		_ = s.db.View(func(tx *bolt.Tx) error {
			if n := buildIndex(tx).Len(); n != 100_000 {
				b.Fatal(n)
			}
			return nil
		})
	}
}
