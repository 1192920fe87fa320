package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

var (
	bucketProcs = []byte("procs")
	bucketDue   = []byte("due")
	bucketMeta  = []byte("meta")
	keyQuar     = []byte("quarantined")
)

// headerVersion is the first byte of every stored value; a later release
// that changes the layout bumps it. A value with another version reads as
// damaged (see readValue), its bytes kept whole.
const headerVersion = 1

// Options configures Open. The zero value is ready to use.
type Options struct {
	// Timeout is how long Open waits for another process to release the
	// file before it fails with ErrLocked. Default 5s.
	Timeout time.Duration
	// NoSync skips the fsync at each commit: much faster, but a power
	// failure (not a process crash) can lose or corrupt recent commits.
	// Default false.
	NoSync bool
}

// Store is a store.Store in a bbolt file.
type Store struct {
	db *bolt.DB

	mu       sync.Mutex
	leases   map[string]lease
	watchers map[chan struct{}]struct{}
	closed   bool
}

type lease struct {
	owner string
	until time.Time
}

var _ store.Store = (*Store)(nil)

// DB returns the underlying bbolt database, for backups (DB.View with
// Tx.WriteTo) and inspection.
func (s *Store) DB() *bolt.DB { return s.db }

// value layout: version(1) revision(8) status(1) due(8, 0 = never)
// quarantine length(4) quarantine, blob.
type meta struct {
	rev    uint64
	status stepflow.Status
	due    int64 // unix nanos, 0 = never due
	quar   string
}

const fixedHeader = 1 + 8 + 1 + 8 + 4

func encodeValue(m meta, blob []byte) []byte {
	b := make([]byte, fixedHeader+len(m.quar)+len(blob))
	b[0] = headerVersion
	binary.BigEndian.PutUint64(b[1:], m.rev)
	b[9] = byte(m.status)
	binary.BigEndian.PutUint64(b[10:], uint64(m.due))
	binary.BigEndian.PutUint32(b[18:], uint32(len(m.quar)))
	copy(b[fixedHeader:], m.quar)
	copy(b[fixedHeader+len(m.quar):], blob)
	return b
}

// decodeValue splits a stored value into its header and blob. problem is
// why the header cannot be read, "" when it can.
func decodeValue(v []byte) (m meta, blob []byte, problem string) {
	if len(v) < fixedHeader {
		return meta{}, nil, fmt.Sprintf("the value is %d bytes, shorter than the %d-byte header", len(v), fixedHeader)
	}
	if v[0] != headerVersion {
		return meta{}, nil, fmt.Sprintf("header version %d, want %d", v[0], headerVersion)
	}
	m = meta{
		rev:    binary.BigEndian.Uint64(v[1:]),
		status: stepflow.Status(v[9]),
		due:    int64(binary.BigEndian.Uint64(v[10:])),
	}
	if !m.status.Valid() {
		return meta{}, nil, fmt.Sprintf("unknown status %d", v[9])
	}
	n := uint64(binary.BigEndian.Uint32(v[18:]))
	if fixedHeader+n > uint64(len(v)) {
		return meta{}, nil, fmt.Sprintf("a quarantine reason of %d bytes runs past the %d-byte value", n, len(v))
	}
	m.quar = string(v[fixedHeader : fixedHeader+n])
	return m, v[fixedHeader+n:], ""
}

// readValue decodes the stored value v of process id. A value whose
// header cannot be read comes back, with ok false, as the quarantined
// record the package documentation describes: revision 0, status
// NeedsAttention, never due, the whole value as its blob.
func readValue(id, v []byte) (m meta, blob []byte, ok bool) {
	m, blob, problem := decodeValue(v)
	if problem == "" {
		return m, blob, true
	}
	return meta{
		status: stepflow.NeedsAttention,
		quar:   fmt.Sprintf("stepflow/boltstore: process %q: unreadable record header: %s", id, problem),
	}, v, false
}

// reconcile sets aside every record whose header cannot be read: it
// rewrites it as the quarantined record readValue returns, with a valid
// header and the whole old value as its blob, so that later reads find it
// as it was first reported, and drops its due-index entry and any
// malformed one. It then rewrites the counts that differ from the records
// (those of a damaged record were kept under a status no longer known).
// It reads every record: Open calls it, and Claim and Commit when they
// meet a damaged record.
func reconcile(tx *bolt.Tx) error {
	procs, due, mb := tx.Bucket(bucketProcs), tx.Bucket(bucketDue), tx.Bucket(bucketMeta)
	type damaged struct{ id, value []byte }
	var bad []damaged
	counts := map[string]int64{}
	c := procs.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			continue // a nested bucket, not a record
		}
		m, _, ok := readValue(k, v)
		if !ok {
			bad = append(bad, damaged{bytes.Clone(k), bytes.Clone(v)})
		}
		counts[string(countKeyOf(m))]++
	}
	badIDs := map[string]bool{}
	for _, d := range bad {
		m, _, _ := readValue(d.id, d.value)
		if err := procs.Put(d.id, encodeValue(m, d.value)); err != nil {
			return err
		}
		badIDs[string(d.id)] = true
	}
	var drop [][]byte
	c = due.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if _, id, ok := parseDueKey(k); !ok || badIDs[id] {
			drop = append(drop, bytes.Clone(k))
		}
	}
	for _, k := range drop {
		if err := due.Delete(k); err != nil {
			return err
		}
	}
	// Counts: rewrite those that differ from the records, malformed
	// ones included.
	stored := map[string][]byte{}
	c = mb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if isCountKey(k) {
			stored[string(k)] = v
			if _, ok := counts[string(k)]; !ok {
				counts[string(k)] = 0
			}
		}
	}
	for k, n := range counts {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(n))
		if bytes.Equal(stored[k], v[:]) {
			continue
		}
		if err := mb.Put([]byte(k), v[:]); err != nil {
			return err
		}
	}
	return nil
}

// dueNanos turns a due time into its stored form; 0 means never.
func dueNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	n := t.UnixNano()
	if n == 0 {
		// The epoch (store.DueNow) must not read as "never".
		return 1
	}
	return n
}

func dueTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	if n == 1 {
		return store.DueNow
	}
	return time.Unix(0, n).UTC()
}

// dueKey orders by due time, then id. Flipping the sign bit makes the
// big-endian bytes sort like the signed number.
func dueKey(due int64, id string) []byte {
	k := make([]byte, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(due)^(1<<63))
	copy(k[8:], id)
	return k
}

// parseDueKey reads a due-index key; ok is false for a malformed one.
func parseDueKey(k []byte) (due int64, id string, ok bool) {
	if len(k) < 8 {
		return 0, "", false
	}
	return int64(binary.BigEndian.Uint64(k) ^ (1 << 63)), string(k[8:]), true
}

func countKey(st stepflow.Status) []byte { return []byte{'s', byte(st)} }

// countKeyOf is the counter a record counts under.
func countKeyOf(m meta) []byte {
	if m.quar != "" {
		return keyQuar
	}
	return countKey(m.status)
}

func isCountKey(k []byte) bool {
	return bytes.Equal(k, keyQuar) || len(k) == 2 && k[0] == 's'
}

func addCount(b *bolt.Bucket, m meta, d int64) error {
	k := countKeyOf(m)
	var n int64
	if v := b.Get(k); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(n+d))
	return b.Put(k, v[:])
}

func (s *Store) record(id string, m meta, blob []byte, copyBlob bool) store.Record {
	r := store.Record{ID: id, Revision: m.rev, Status: m.status, Due: dueTime(m.due), Quarantine: m.quar, Blob: blob}
	if copyBlob {
		r.Blob = bytes.Clone(blob)
	}
	if l, ok := s.leases[id]; ok {
		r.Owner, r.Due = l.owner, l.until
	}
	return r
}

func (s *Store) checkOpen() error {
	if s.closed {
		return store.ErrClosed
	}
	return nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, rec store.Record) error {
	if rec.ID == "" {
		return store.ErrInvalid
	}
	s.mu.Lock()
	err := s.checkOpen()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	m := meta{rev: 1, status: rec.Status, quar: rec.Quarantine, due: dueNanos(store.NormalizeDue(rec.Status, rec.Quarantine, rec.Due))}
	err = s.db.Update(func(tx *bolt.Tx) error {
		procs := tx.Bucket(bucketProcs)
		if procs.Get([]byte(rec.ID)) != nil {
			return store.ErrExists
		}
		if err := procs.Put([]byte(rec.ID), encodeValue(m, rec.Blob)); err != nil {
			return err
		}
		if m.due != 0 {
			if err := tx.Bucket(bucketDue).Put(dueKey(m.due, rec.ID), nil); err != nil {
				return err
			}
		}
		return addCount(tx.Bucket(bucketMeta), m, 1)
	})
	if err != nil {
		return wrap(err)
	}
	s.notify()
	return nil
}

func wrap(err error) error {
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

// Load implements store.Store.
func (s *Store) Load(ctx context.Context, id string) (store.Record, error) {
	var rec store.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketProcs).Get([]byte(id))
		if v == nil {
			return store.ErrNotFound
		}
		m, blob, _ := readValue([]byte(id), v)
		s.mu.Lock()
		rec = s.record(id, m, blob, true)
		s.mu.Unlock()
		return nil
	})
	return rec, wrap(err)
}

// Claim implements store.Store. It reads the due index in a read-only
// transaction and records the leases in memory, so claiming costs no disk
// write, unless it meets a damaged record: it then sets the damaged
// records aside (one write transaction) and claims again.
func (s *Store) Claim(ctx context.Context, c store.Claim) ([]store.Record, error) {
	if err := store.CheckClaim(c); err != nil {
		return nil, err
	}
	out, damaged, err := s.claim(c, false)
	if err != nil || !damaged {
		return out, wrap(err)
	}
	if err := s.db.Update(reconcile); err != nil {
		return nil, wrap(err)
	}
	out, _, err = s.claim(c, true)
	return out, wrap(err)
}

// claim leases due records. Unless skipDamaged, it stops at the first
// damaged record or due-index entry, leasing nothing, and reports it.
func (s *Store) claim(c store.Claim, skipDamaged bool) (out []store.Record, damaged bool, err error) {
	now := c.Now.UnixNano()
	until := c.Now.Add(c.Lease).UTC()
	err = s.db.View(func(tx *bolt.Tx) error {
		procs := tx.Bucket(bucketProcs)
		cur := tx.Bucket(bucketDue).Cursor()
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := s.checkOpen(); err != nil {
			return err
		}
		type found struct {
			id   string
			m    meta
			blob []byte
		}
		var due []found
		for k, _ := cur.First(); k != nil && len(due) < c.Limit; k, _ = cur.Next() {
			at, id, ok := parseDueKey(k)
			if ok && at > now {
				break
			}
			if !ok {
				if !skipDamaged {
					damaged = true
					return nil
				}
				continue
			}
			if l, ok := s.leases[id]; ok && l.until.After(c.Now) {
				continue // leased to someone, lease still running
			}
			v := procs.Get([]byte(id))
			if v == nil {
				continue
			}
			m, blob, ok := readValue([]byte(id), v)
			if !ok {
				if !skipDamaged {
					damaged = true
					return nil
				}
				continue
			}
			if m.quar != "" {
				continue
			}
			due = append(due, found{id, m, blob})
		}
		for _, f := range due {
			s.leases[f.id] = lease{owner: c.Owner, until: until}
			out = append(out, s.record(f.id, f.m, f.blob, true))
		}
		return nil
	})
	return out, damaged, err
}

// Commit implements store.Store: one bbolt transaction (one fsync) for the
// whole batch.
func (s *Store) Commit(ctx context.Context, owner string, ws []store.Write) ([]error, error) {
	var errs []error
	var applied []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		errs, applied = nil, applied[:0]
		procs, due, mb := tx.Bucket(bucketProcs), tx.Bucket(bucketDue), tx.Bucket(bucketMeta)
		for i := range ws {
			w := &ws[i]
			werr, err := s.write(procs, due, mb, owner, w)
			if err != nil {
				return err
			}
			if werr != nil {
				if errs == nil {
					errs = make([]error, len(ws))
				}
				errs[i] = &store.WriteError{ID: w.ID, Err: werr}
				continue
			}
			applied = append(applied, w.ID)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err)
	}
	// Leases are dropped only once the transaction is durable, so that no
	// one claims a record from the state before it.
	s.mu.Lock()
	for _, id := range applied {
		delete(s.leases, id)
	}
	s.mu.Unlock()
	if owner == "" && len(applied) > 0 {
		s.notify()
	}
	return errs, nil
}

func (s *Store) write(procs, due, mb *bolt.Bucket, owner string, w *store.Write) (werr, err error) {
	v := procs.Get([]byte(w.ID))
	if v == nil {
		return store.ErrNotFound, nil
	}
	old, oldBlob, ok := readValue([]byte(w.ID), v)
	if !ok {
		// Set the damaged records aside first, so that the counts know
		// where this one stands.
		if err := reconcile(procs.Tx()); err != nil {
			return nil, err
		}
		old, oldBlob, _ = readValue([]byte(w.ID), procs.Get([]byte(w.ID)))
	}
	if old.rev != w.Revision {
		return store.ErrConflict, nil
	}
	if owner != "" {
		s.mu.Lock()
		l, ok := s.leases[w.ID]
		s.mu.Unlock()
		if !ok || l.owner != owner {
			return store.ErrLeaseLost, nil
		}
	}
	m := meta{rev: old.rev + 1, status: w.Status, quar: w.Quarantine, due: dueNanos(store.NormalizeDue(w.Status, w.Quarantine, w.Due))}
	blob := w.Blob
	if blob == nil {
		blob = oldBlob
	}
	if old.due != 0 && old.due != m.due {
		if err := due.Delete(dueKey(old.due, w.ID)); err != nil {
			return nil, err
		}
	}
	if m.due != 0 && old.due != m.due {
		if err := due.Put(dueKey(m.due, w.ID), nil); err != nil {
			return nil, err
		}
	}
	if err := procs.Put([]byte(w.ID), encodeValue(m, blob)); err != nil {
		return nil, err
	}
	if old.quar != m.quar || old.status != m.status {
		if err := addCount(mb, old, -1); err != nil {
			return nil, err
		}
		if err := addCount(mb, m, 1); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// Renew implements store.Store.
func (s *Store) Renew(ctx context.Context, owner string, ids []string, now time.Time, d time.Duration) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var lost []string
	for _, id := range ids {
		l, ok := s.leases[id]
		if !ok || owner == "" || l.owner != owner {
			lost = append(lost, id)
			continue
		}
		s.leases[id] = lease{owner: owner, until: now.Add(d).UTC()}
	}
	return lost, nil
}

// Release implements store.Store. The released records keep their stored
// due time, which is at or before the time they were claimed.
func (s *Store) Release(ctx context.Context, owner string, ids []string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	for _, id := range ids {
		if l, ok := s.leases[id]; ok && owner != "" && l.owner == owner {
			delete(s.leases, id)
		}
	}
	s.notifyLocked()
	return nil
}

// NextDue implements store.Store.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var next time.Time
	err := s.db.View(func(tx *bolt.Tx) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := s.checkOpen(); err != nil {
			return err
		}
		cur := tx.Bucket(bucketDue).Cursor()
		for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
			due, id, ok := parseDueKey(k)
			if !ok {
				continue // dropped by the next reconcile
			}
			if _, leased := s.leases[id]; leased {
				continue // counted below at its lease's end
			}
			next = dueTime(due)
			break
		}
		for _, l := range s.leases {
			if next.IsZero() || l.until.Before(next) {
				next = l.until
			}
		}
		return nil
	})
	return next, !next.IsZero(), wrap(err)
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		close(ch)
		return ch
	}
	s.watchers[ch] = struct{}{}
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.watchers[ch]; ok {
			delete(s.watchers, ch)
			close(ch)
		}
	})
	return ch
}

func (s *Store) notify() {
	s.mu.Lock()
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Store) notifyLocked() {
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Count implements store.Store.
func (s *Store) Count(ctx context.Context) (store.Counts, error) {
	c := store.Counts{ByStatus: map[stepflow.Status]int{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return nil
			}
			n := int(int64(binary.BigEndian.Uint64(v)))
			switch {
			case bytes.Equal(k, keyQuar):
				c.Quarantined = n
			case len(k) == 2 && k[0] == 's' && n > 0:
				c.ByStatus[stepflow.Status(k[1])] = n
			}
			return nil
		})
	})
	return c, wrap(err)
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, f store.Filter) ([]store.Record, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	var out []store.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketProcs).Cursor()
		k, v := cur.First()
		if f.After != "" {
			k, v = cur.Seek([]byte(f.After))
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for ; k != nil && len(out) < limit; k, v = cur.Next() {
			if v == nil {
				continue // a nested bucket, not a record
			}
			m, blob, _ := readValue(k, v)
			r := s.record(string(k), m, blob, false)
			if store.Match(&r, f) {
				r.Blob = bytes.Clone(blob)
				out = append(out, r)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, wrap(err)
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for ch := range s.watchers {
		close(ch)
	}
	clear(s.watchers)
	s.mu.Unlock()
	return s.db.Close()
}
