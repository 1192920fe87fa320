package boltstore_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/boltstore"
)

// storeFile is a store file written through the store's own API.
type storeFile struct {
	data     []byte // the whole file
	used     int    // bytes in use: bbolt's high-water mark times the page size
	pageSize int
	records  int
	leaves   []int // ids of leaf pages in use
	branches []int // ids of branch pages in use
}

// buildStoreFile writes n records with blobs of blobSize bytes, closes
// the store, and opens and closes it once more so that both meta pages
// describe every record.
func buildStoreFile(t testing.TB, n, blobSize int) storeFile {
	t.Helper()
	path := filepath.Join(t.TempDir(), "build.db")
	s, err := boltstore.Open(path, &boltstore.Options{NoSync: true})
	require.NoError(t, err)
	ctx := t.Context()
	blob := bytes.Repeat([]byte("s"), blobSize)
	for i := range n {
		st, due := stepflow.Running, time.Time{}
		if i%3 == 1 {
			st, due = stepflow.Waiting, time.Date(2030, 1, 1, 0, 0, i, 0, time.UTC)
		} else if i%3 == 2 {
			st = stepflow.Done
		}
		require.NoError(t, s.Create(ctx, store.Record{ID: fmt.Sprintf("proc-%06d", i), Version: "test/v1", Status: st, Due: due, Blob: blob}))
	}
	require.NoError(t, s.Close())
	s, err = boltstore.Open(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	f := storeFile{records: n}
	f.data, err = os.ReadFile(path)
	require.NoError(t, err)
	// Find the pages in use with bbolt itself, on the intact file.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	require.NoError(t, err)
	defer db.Close()
	f.pageSize = db.Info().PageSize
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		f.used = int(tx.Size())
		for id := 2; id < f.used/f.pageSize; {
			p, err := tx.Page(id)
			if err != nil {
				return err
			}
			switch p.Type {
			case "leaf":
				f.leaves = append(f.leaves, id)
			case "branch":
				f.branches = append(f.branches, id)
			}
			if p.Type == "free" {
				id++
			} else {
				id += 1 + p.OverflowCount
			}
		}
		return nil
	}))
	return f
}

func writeFile(t testing.TB, dir string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, "stepflow.db")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// requireCorrupt asserts that err is the typed error for path.
func requireCorrupt(t testing.TB, err error, path string) *boltstore.CorruptFileError {
	t.Helper()
	require.ErrorIs(t, err, boltstore.ErrCorruptFile)
	var ce *boltstore.CorruptFileError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, path, ce.Path)
	assert.NotEmpty(t, ce.Reason)
	assert.Equal(t, 1, strings.Count(err.Error(), path), "the message names the file once: %v", err)
	return ce
}

// TestOpenDamagedFile: Open refuses a damaged file with a typed error
// naming it, and never crashes the process (a crash kills this test
// binary).
func TestOpenDamagedFile(t *testing.T) {
	f := buildStoreFile(t, 3000, 400)
	ps := f.pageSize
	require.Greater(t, f.used, 1<<20, "the file must be larger than the 1 MiB cut")
	require.NotEmpty(t, f.leaves)
	require.NotEmpty(t, f.branches)
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	mid := func(ids []int) int { return ids[len(ids)/2] }
	edit := func(fn func(b []byte)) []byte {
		b := bytes.Clone(f.data)
		fn(b)
		return b
	}

	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"cut to 16 KiB", f.data[:16<<10]},
		{"cut to 1 MiB", f.data[:1<<20]},
		{"cut to half its pages", f.data[:f.used/2/ps*ps]},
		{"cut inside a page", f.data[:f.used/2+100]},
		{"cut below 4 pages", f.data[:2*ps]},
		{"both meta pages zeroed", edit(func(b []byte) { clear(b[:2*ps]) })},
		{"garbage page in the middle of the tree", edit(func(b []byte) {
			id := mid(f.leaves)
			copy(b[id*ps:(id+1)*ps], garbage(ps))
		})},
		{"garbage branch page", edit(func(b []byte) {
			id := mid(f.branches)
			copy(b[id*ps:(id+1)*ps], garbage(ps))
		})},
		{"leaf page with garbage elements", edit(func(b []byte) {
			id := mid(f.leaves)
			copy(b[id*ps+16:(id+1)*ps], garbage(ps-16))
		})},
		{"page that names another id", edit(func(b []byte) {
			id := mid(f.leaves)
			binary.NativeEndian.PutUint64(b[id*ps:], uint64(id+1))
		})},
		{"branch pointing past the file", edit(func(b []byte) {
			id := f.branches[0]
			binary.NativeEndian.PutUint64(b[id*ps+16+8:], 1<<40)
		})},
		{"branch pointing at a meta page", edit(func(b []byte) {
			id := f.branches[0]
			binary.NativeEndian.PutUint64(b[id*ps+16+8:], 1)
		})},
		{"random garbage", garbage(64 << 10)},
		{"random garbage with the meta pages kept", append(bytes.Clone(f.data[:2*ps]), garbage(f.used-2*ps)...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), tc.data)
			s, err := boltstore.Open(path, &boltstore.Options{Timeout: time.Second})
			if err == nil {
				s.Close()
			}
			ce := requireCorrupt(t, err, path)
			t.Log(ce.Reason)
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(tc.data, after), "Open leaves a damaged file as it found it")
		})
	}

	opens := []struct {
		name string
		data []byte
	}{
		{"untouched", f.data},
		{"cut to the pages in use", f.data[:f.used]},
		{"meta page 0 zeroed", edit(func(b []byte) { clear(b[:ps]) })},
		{"meta page 1 zeroed", edit(func(b []byte) { clear(b[ps : 2*ps]) })},
		{"meta page 0 garbage", edit(func(b []byte) { copy(b[16:ps], garbage(ps-16)) })},
	}
	for _, tc := range opens {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			path := writeFile(t, t.TempDir(), tc.data)
			s, err := boltstore.Open(path, nil)
			require.NoError(t, err)
			defer s.Close()
			c, err := s.Count(ctx)
			require.NoError(t, err)
			assert.Equal(t, f.records, c.Total())
			assert.Zero(t, c.Quarantined)
			all, err := s.List(ctx, store.Filter{Limit: f.records + 1})
			require.NoError(t, err)
			assert.Len(t, all, f.records)
			got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), Limit: f.records, Lease: time.Minute})
			require.NoError(t, err)
			assert.Len(t, got, 2*f.records/3, "running and waiting records are due")
		})
	}
}

// TestOpenBackup: a backup written with Tx.WriteTo, as DB suggests,
// passes the check and opens with every record.
func TestOpenBackup(t *testing.T) {
	f := buildStoreFile(t, 500, 100)
	src := writeFile(t, t.TempDir(), f.data)
	s, err := boltstore.Open(src, nil)
	require.NoError(t, err)
	defer s.Close()
	var backup bytes.Buffer
	require.NoError(t, s.DB().View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(&backup)
		return err
	}))
	b, err := boltstore.Open(writeFile(t, t.TempDir(), backup.Bytes()), nil)
	require.NoError(t, err)
	defer b.Close()
	c, err := b.Count(t.Context())
	require.NoError(t, err)
	assert.Equal(t, f.records, c.Total())
}

// TestOpenNoFile: Open creates a store only where no file exists.
func TestOpenNoFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	s, err := boltstore.Open(path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Create(t.Context(), store.Record{ID: "p", Version: "test/v1", Status: stepflow.Done}))
	require.NoError(t, s.Close())
	s, err = boltstore.Open(path, nil)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Load(t.Context(), "p")
	require.NoError(t, err)

	_, err = boltstore.Open(filepath.Join(t.TempDir(), "missing-dir", "x.db"), nil)
	require.Error(t, err)
	assert.NotErrorIs(t, err, boltstore.ErrCorruptFile)
	assert.True(t, errors.Is(err, os.ErrNotExist), "%v", err)
}

// openDamaged opens data as a store file and, when that works, uses every
// method on it. It fails the test unless Open either works or returns the
// typed error.
func openDamaged(t testing.TB, dir string, data []byte) {
	path := writeFile(t, dir, data)
	s, err := boltstore.Open(path, &boltstore.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		ce := requireCorrupt(t, err, path)
		assert.NotContains(t, ce.Reason, "bbolt refused", "the file check missed what bbolt found")
		return
	}
	defer func() {
		if r := recover(); r != nil {
			// bbolt may hold its locks: Close would wait forever.
			t.Fatalf("panic after Open succeeded: %v", r)
		}
		require.NoError(t, s.Close())
	}()
	ctx := t.Context()
	all, err := s.List(ctx, store.Filter{Limit: 1000})
	require.NoError(t, err)
	for _, r := range all {
		_, err := s.Load(ctx, r.ID)
		require.NoError(t, err)
	}
	_, err = s.Count(ctx)
	require.NoError(t, err)
	_, _, err = s.NextDue(ctx, nil)
	require.NoError(t, err)
	got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), Limit: 1000, Lease: time.Minute})
	require.NoError(t, err)
	var ws []store.Write
	for _, r := range got {
		ws = append(ws, store.Write{ID: r.ID, Revision: r.Revision, Status: stepflow.Done, Blob: []byte("done")})
	}
	_, err = s.Commit(ctx, "A", ws)
	require.NoError(t, err)
	for _, r := range all {
		if r.Quarantine != "" {
			_, err = s.Commit(ctx, "", []store.Write{{ID: r.ID, Revision: r.Revision, Status: stepflow.Canceled, Blob: []byte{}}})
			require.NoError(t, err)
		}
	}
	require.NoError(t, s.Create(ctx, store.Record{ID: "new", Version: "test/v1", Status: stepflow.Running, Blob: []byte("n")}))
	c, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Zero(t, c.Quarantined, "every quarantined record was overwritten")
}

// TestOpenFlippedBytes: whatever bytes of a small valid file are changed,
// Open either works, and then every method works, or returns the typed
// error.
func TestOpenFlippedBytes(t *testing.T) {
	f := buildStoreFile(t, 60, 40)
	rapid.Check(t, func(rt *rapid.T) {
		b := bytes.Clone(f.data)
		n := rapid.IntRange(1, 12).Draw(rt, "flips")
		pages := append([]int{0, 1}, append(f.leaves, f.branches...)...)
		for range n {
			// Half the changes hit page headers and element tables.
			i := rapid.IntRange(0, f.used-1).Draw(rt, "at")
			if rapid.Bool().Draw(rt, "structure") {
				i = rapid.SampledFrom(pages).Draw(rt, "page")*f.pageSize + rapid.IntRange(0, 127).Draw(rt, "offset")
			}
			b[i] ^= rapid.ByteRange(1, 255).Draw(rt, "xor")
		}
		openDamaged(t, t.TempDir(), b)
	})
}

// FuzzOpen changes up to four bytes of a small valid store file; run it
// with go test -fuzz=FuzzOpen to search beyond the seeds.
func FuzzOpen(f *testing.F) {
	sf := buildStoreFile(f, 60, 40)
	f.Add(uint32(0), uint32(0xff))
	f.Add(uint32(sf.pageSize+20), uint32(1))
	f.Add(uint32(2*sf.pageSize+10), uint32(0x01020304))
	for _, id := range append(sf.leaves, sf.branches...) {
		f.Add(uint32(id*sf.pageSize+8), uint32(0x03))
		f.Add(uint32(id*sf.pageSize+20), uint32(0x7f000000))
	}
	f.Fuzz(func(t *testing.T, at, xor uint32) {
		b := bytes.Clone(sf.data)
		i := int(at) % (sf.used - 3)
		b[i] ^= byte(xor)
		b[i+1] ^= byte(xor >> 8)
		b[i+2] ^= byte(xor >> 16)
		b[i+3] ^= byte(xor >> 24)
		openDamaged(t, t.TempDir(), b)
	})
}
