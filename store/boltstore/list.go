package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/stepflow-io/go-stepflow/store"
	listindex "github.com/stepflow-io/go-stepflow/store/internal/index"
)

// List is served by an index kept in memory (package store/internal/index)
// rather than in the file, whose format stays as it is: Open builds it
// from the records it reads, and every write of the store changes it in
// the transaction that changes the records. The store is the file's only
// writer (it holds the file lock), so the index follows the file, with two
// exceptions that it detects: a write made through DB, below the store,
// and a transaction that failed. The index records the bbolt transaction
// whose state it holds (ixTx); List, on finding the file at another
// transaction, builds the index again from the file before it reads it.

// errStale: the index does not hold the state of the file that a List
// reads; List builds it again.
var errStale = errors.New("index behind the file")

// fieldsOf is what the index keeps of a record, its fields as the file
// holds them (encodeValue cuts overlong ones).
func fieldsOf(m *meta) listindex.Fields {
	return listindex.Fields{Status: m.status, Quarantined: m.quar != "", Version: clip(m.version, 1<<16-1),
		Position: clip(m.pos, 1<<16-1), ErrorKind: clip(m.kind, 1<<8-1)}
}

// buildIndex reads every record of the file into a new index. A damaged
// record is filed as readValue reports it: quarantined, under no version,
// position or kind.
func buildIndex(tx *bolt.Tx) *listindex.Index {
	ix := listindex.New()
	ix.Grow(countRecords(tx))
	c := tx.Bucket(bucketProcs).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			continue // a nested bucket, not a record
		}
		m, _, _ := readValue(k, v)
		ix.Set(string(k), fieldsOf(&m))
	}
	return ix
}

// countRecords is the number of records the counts of the meta bucket
// add up to: the number in the file, or about it when some were damaged
// since they were counted.
func countRecords(tx *bolt.Tx) int {
	n := 0
	_ = tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
		if isCountKey(k) && len(v) == 8 {
			n += int(min(binary.BigEndian.Uint64(v), 1<<32))
		}
		return nil
	})
	return n
}

// update runs fn in a write transaction, with the index locked: fn changes
// s.ix along with the records it writes. The index is then marked as
// holding the new transaction's state, or, when it was already behind the
// file or the transaction failed, as holding none, so that the next List
// builds it again.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	s.ixmu.Lock()
	defer s.ixmu.Unlock()
	txid, ran, behind := -1, false, false
	err := s.db.Update(func(tx *bolt.Tx) error {
		// A write transaction's id is one past the last committed one;
		// another means someone wrote through DB.
		ran, txid = true, tx.ID()
		behind = txid != s.ixTx+1
		return fn(tx)
	})
	switch {
	case !ran:
	case err != nil || behind:
		s.ixTx = -1
	default:
		s.ixTx = txid
	}
	return err
}

// List implements store.Store. It reads the index's candidates in id
// order, looks each up by id in the file, and keeps its current record
// when it Matches f, until it has f.Limit: a page costs about as many
// lookups as it returns records (see package store/internal/index),
// whatever the size of the file.
func (s *Store) List(ctx context.Context, f store.Filter) ([]store.Record, error) {
	s.ixmu.RLock()
	out, err := s.list(ctx, f, false)
	s.ixmu.RUnlock()
	if !errors.Is(err, errStale) {
		return out, wrap(err)
	}
	// Behind the file: build the index again, and read it, under the
	// write lock.
	s.ixmu.Lock()
	defer s.ixmu.Unlock()
	out, err = s.list(ctx, f, true)
	return out, wrap(err)
}

// list serves List in one read transaction, under s.ixmu. When the index
// is behind the file it fails with errStale, or with rebuild (s.ixmu then
// held for writing) builds it again.
func (s *Store) list(ctx context.Context, f store.Filter, rebuild bool) ([]store.Record, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	var out []store.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.ID() != s.ixTx {
			if !rebuild {
				return errStale
			}
			s.ix, s.ixTx = buildIndex(tx), tx.ID()
		}
		procs := tx.Bucket(bucketProcs)
		s.mu.Lock()
		defer s.mu.Unlock()
		q := listindex.Query{Status: f.Status, Quarantined: f.Quarantined, Flow: f.Flow, Version: f.Version, IDPrefix: f.IDPrefix,
			Position: f.Position, ErrorKind: f.ErrorKind, After: f.After}
		for id := range s.ix.Candidates(q) {
			if err := ctx.Err(); err != nil {
				return err
			}
			v := procs.Get([]byte(id))
			if v == nil {
				continue
			}
			m, blob, _ := readValue([]byte(id), v)
			r := s.record(id, m, blob, false)
			if !store.Match(&r, f) {
				continue
			}
			r.Blob = bytes.Clone(blob)
			if out = append(out, r); len(out) == limit {
				break
			}
		}
		return nil
	})
	return out, err
}
