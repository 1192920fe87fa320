package boltstore

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"pgregory.net/rapid"
)

// TestCheckAcceptsWhatBboltWrites: after any sequence of bbolt writes
// (puts, deletes, values that span several pages, nested buckets, small
// pages for deep trees, with or without a free page list on disk), the
// file check finds nothing wrong: it never refuses a sound file.
func TestCheckAcceptsWhatBboltWrites(t *testing.T) {
	dir := t.TempDir()
	run := 0
	rapid.Check(t, func(rt *rapid.T) {
		run++
		path := filepath.Join(dir, fmt.Sprintf("w%d.db", run))
		db, err := bolt.Open(path, 0o600, &bolt.Options{
			PageSize:       1024,
			NoSync:         true,
			NoFreelistSync: rapid.Bool().Draw(rt, "noFreelistSync"),
		})
		require.NoError(rt, err)
		defer db.Close()
		key := rapid.SliceOfN(rapid.ByteRange('a', 'e'), 1, 12)
		// Buckets by path from the root; nested ones are added as made.
		paths := [][][]byte{{[]byte("a")}, {[]byte("b")}}
		txs := rapid.IntRange(1, 25).Draw(rt, "txs")
		for range txs {
			require.NoError(rt, db.Update(func(tx *bolt.Tx) error {
				for range rapid.IntRange(1, 60).Draw(rt, "ops") {
					bp := rapid.SampledFrom(paths).Draw(rt, "bucket")
					b, err := tx.CreateBucketIfNotExists(bp[0])
					if err != nil {
						return err
					}
					for _, name := range bp[1:] {
						if b = b.Bucket(name); b == nil {
							break // deleted since
						}
					}
					if b == nil {
						continue
					}
					k := key.Draw(rt, "key")
					switch op := rapid.IntRange(0, 9).Draw(rt, "op"); {
					case op < 5:
						size := rapid.SampledFrom([]int{0, 10, 200, 3000}).Draw(rt, "size")
						if b.Bucket(k) == nil {
							err = b.Put(k, bytes.Repeat([]byte{'v'}, size))
						}
					case op < 8:
						if b.Bucket(k) == nil {
							err = b.Delete(k)
						}
					case op < 9:
						if b.Get(k) == nil && len(bp) < 4 {
							if _, err = b.CreateBucketIfNotExists(k); err == nil {
								paths = append(paths, append(append([][]byte{}, bp...), k))
							}
						}
					default:
						if b.Bucket(k) != nil {
							err = b.DeleteBucket(k)
						}
					}
					if err != nil {
						return err
					}
				}
				return nil
			}))
			requireSound(rt, path)
		}
		require.NoError(rt, db.Close())
		requireSound(rt, path)
	})
}

func requireSound(t require.TestingT, path string) {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	info, err := f.Stat()
	require.NoError(t, err)
	require.NoError(t, checkFile(f, info.Size()))
}
