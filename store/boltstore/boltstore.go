package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/internal/blocks"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	listindex "github.com/stepflow-io/go-stepflow/store/internal/index"
)

var (
	bucketProcs = []byte("procs")
	bucketDue   = []byte("due")
	bucketEnded = []byte("ended")
	bucketMeta  = []byte("meta")
	keyFormat   = []byte("format")
)

// headerVersion is the first byte of every stored value; a release that
// changes the layout bumps it, and Open upgrades older values in place
// (see upgrade). A value with a version this release does not know reads
// as damaged (see readValue), its bytes kept whole. Values of version 1 lack the flow version, position,
// error kind and time of the last write.
const headerVersion = 2

// fileFormat is the layout of the whole file (buckets and keys), kept in
// the meta bucket under keyFormat; files written before it was kept are
// format 1.
const fileFormat = 2

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

	// ix indexes the records for List (see list.go). ixmu guards it: held
	// for reading by List, for writing by every write transaction of the
	// store, from its start until the index has its changes, so that List
	// never sees the file and the index at two different transactions.
	// ixTx is the bbolt transaction whose state ix holds, -1 for none.
	ixmu sync.RWMutex
	ix   *listindex.Index
	ixTx int

	mu       sync.Mutex
	leases   map[string]lease
	watchers map[chan struct{}]struct{}
	ended    map[chan struct{}]struct{}
	closed   bool
}

type lease struct {
	owner   string
	until   time.Time
	version string
}

var _ store.Store = (*Store)(nil)

// DB returns the underlying bbolt database, for backups (DB.View with
// Tx.WriteTo) and inspection.
func (s *Store) DB() *bolt.DB { return s.db }

// meta is a record's header.
//
// Value layout, version 2: version(1) revision(8) status(1) due(8, 0 =
// never) updated(8) quarantine length(4) flow version length(2) position
// length(2) error kind length(1), then the quarantine reason, flow
// version, position and error kind, then the blob. Version 1: version(1)
// revision(8) status(1) due(8) quarantine length(4) quarantine, blob.
type meta struct {
	rev     uint64
	status  stepflow.Status
	due     int64 // unix nanos, 0 = never due
	updated int64 // unix nanos
	quar    string
	version string
	pos     string
	kind    string
}

const (
	fixedHeader1 = 1 + 8 + 1 + 8 + 4
	fixedHeader  = 1 + 8 + 1 + 8 + 8 + 4 + 2 + 2 + 1
)

func encodeValue(t *txBytes, m meta, blob []byte) []byte {
	// Lengths past their fields' widths are cut, so a header always reads
	// back; no real version, path or kind comes near them.
	ver, pos, kind := clip(m.version, 1<<16-1), clip(m.pos, 1<<16-1), clip(m.kind, 1<<8-1)
	b := t.Take(fixedHeader + len(m.quar) + len(ver) + len(pos) + len(kind) + len(blob))
	b[0] = headerVersion
	binary.BigEndian.PutUint64(b[1:], m.rev)
	b[9] = byte(m.status)
	binary.BigEndian.PutUint64(b[10:], uint64(m.due))
	binary.BigEndian.PutUint64(b[18:], uint64(m.updated))
	binary.BigEndian.PutUint32(b[26:], uint32(len(m.quar)))
	binary.BigEndian.PutUint16(b[30:], uint16(len(ver)))
	binary.BigEndian.PutUint16(b[32:], uint16(len(pos)))
	b[34] = byte(len(kind))
	at := fixedHeader
	for _, f := range []string{m.quar, ver, pos, kind} {
		at += copy(b[at:], f)
	}
	copy(b[at:], blob)
	return b
}

func clip(s string, n int) string { return s[:min(len(s), n)] }

// txBytes hands out the keys and values of one write transaction from
// shared blocks (package blocks): bbolt keeps every key and value it is
// given until the transaction ends, so each needs memory of its own, but
// not an allocation of its own. A nil *txBytes allocates each.
type txBytes = blocks.Blocks[byte]

// newTxBytes returns the txBytes of a transaction of n writes: blocks of
// about 512 bytes a write, from 2 to 32 KiB, so that a transaction of one
// write does not clear a large block for a few hundred bytes.
func newTxBytes(n int) *txBytes {
	size := min(max(n*512, 2<<10), 32<<10)
	return &txBytes{Size: size, Max: size / 4}
}

// keyOf returns a copy of s from t.
func keyOf(t *txBytes, s string) []byte {
	b := t.Take(len(s))
	copy(b, s)
	return b
}

// decodeValue splits a stored value into its header and blob. problem is
// why the header cannot be read, "" when it can.
func decodeValue(v []byte) (m meta, blob []byte, problem string) {
	if len(v) == 0 {
		return meta{}, nil, "the value is empty"
	}
	switch v[0] {
	case 1:
		return decodeValue1(v)
	case headerVersion:
	default:
		return meta{}, nil, fmt.Sprintf("header version %d, want %d", v[0], headerVersion)
	}
	if len(v) < fixedHeader {
		return meta{}, nil, fmt.Sprintf("the value is %d bytes, shorter than the %d-byte header", len(v), fixedHeader)
	}
	m = meta{
		rev:     binary.BigEndian.Uint64(v[1:]),
		status:  stepflow.Status(v[9]),
		due:     int64(binary.BigEndian.Uint64(v[10:])),
		updated: int64(binary.BigEndian.Uint64(v[18:])),
	}
	if !m.status.Valid() {
		return meta{}, nil, fmt.Sprintf("unknown status %d", v[9])
	}
	lens := []uint64{uint64(binary.BigEndian.Uint32(v[26:])), uint64(binary.BigEndian.Uint16(v[30:])), uint64(binary.BigEndian.Uint16(v[32:])), uint64(v[34])}
	at := uint64(fixedHeader)
	var fields [4]string
	for i, n := range lens {
		if at+n > uint64(len(v)) {
			return meta{}, nil, fmt.Sprintf("a header field of %d bytes runs past the %d-byte value", n, len(v))
		}
		fields[i] = string(v[at : at+n])
		at += n
	}
	m.quar, m.version, m.pos, m.kind = fields[0], fields[1], fields[2], fields[3]
	return m, v[at:], ""
}

// decodeValue1 reads a value of header version 1.
func decodeValue1(v []byte) (m meta, blob []byte, problem string) {
	if len(v) < fixedHeader1 {
		return meta{}, nil, fmt.Sprintf("the value is %d bytes, shorter than the %d-byte header", len(v), fixedHeader1)
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
	if fixedHeader1+n > uint64(len(v)) {
		return meta{}, nil, fmt.Sprintf("a quarantine reason of %d bytes runs past the %d-byte value", n, len(v))
	}
	m.quar = string(v[fixedHeader1 : fixedHeader1+n])
	return m, v[fixedHeader1+n:], ""
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

// ended reports whether the record is in the index of ended processes
// (DeleteEnded): a terminal status, not quarantined.
func (m *meta) ended() bool { return m.status.Terminal() && m.quar == "" }

// index files the record under its due time and, when it has ended, its
// time of last write; unindex takes it out.
func index(tx *bolt.Tx, t *txBytes, id string, m *meta) error {
	if m.due != 0 && m.quar == "" {
		if err := tx.Bucket(bucketDue).Put(dueKey(t, m.version, m.due, id), nil); err != nil {
			return err
		}
	}
	if m.ended() {
		return tx.Bucket(bucketEnded).Put(timeKey(t, m.updated, id), nil)
	}
	return nil
}

func unindex(tx *bolt.Tx, id string, m *meta) error {
	if m.due != 0 {
		if err := tx.Bucket(bucketDue).Delete(dueKey(nil, m.version, m.due, id)); err != nil {
			return err
		}
	}
	if m.ended() {
		return tx.Bucket(bucketEnded).Delete(timeKey(nil, m.updated, id))
	}
	return nil
}

// reconcile sets aside every record whose header cannot be read: it
// rewrites it as the quarantined record readValue returns, with a valid
// header and the whole old value as its blob, so that later reads find it
// as it was first reported, and drops its index entries and any malformed
// one. It then rewrites the counts that differ from the records (those of
// a damaged record were kept under a status no longer known). It reads
// every record: Open calls it, and Claim and Commit when they meet a
// damaged record. It files every record in ix, as it leaves it, when ix
// is not nil.
func reconcile(tx *bolt.Tx, ix *listindex.Index) error {
	procs, mb := tx.Bucket(bucketProcs), tx.Bucket(bucketMeta)
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
		counts[string(countKeyOf(&m))]++
		if ix != nil {
			ix.Set(string(k), fieldsOf(&m))
		}
	}
	badIDs := map[string]bool{}
	for _, d := range bad {
		m, _, _ := readValue(d.id, d.value)
		if err := procs.Put(d.id, encodeValue(nil, m, d.value)); err != nil {
			return err
		}
		badIDs[string(d.id)] = true
	}
	for _, b := range [][]byte{bucketDue, bucketEnded} {
		var drop [][]byte
		c = tx.Bucket(b).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			var id string
			var ok bool
			if bytes.Equal(b, bucketDue) {
				_, _, id, ok = parseDueKey(k)
			} else {
				_, id, ok = parseTimeKey(k)
			}
			if !ok || badIDs[id] {
				drop = append(drop, bytes.Clone(k))
			}
		}
		for _, k := range drop {
			if err := tx.Bucket(b).Delete(k); err != nil {
				return err
			}
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
		if n == 0 {
			if stored[k] != nil {
				if err := mb.Delete([]byte(k)); err != nil {
					return err
				}
			}
			continue
		}
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

// upgrade brings a file of an earlier format to the current one, in the
// transaction that opens it: values get header version 2, with the flow
// version read from each state (codec.PeekVersion) and the time of the
// upgrade as their last write; the due index is rebuilt by version; the
// index of ended processes is made; the counts are kept per version
// (reconcile then writes them). A record whose state names no readable
// version is quarantined, its bytes kept. Nothing is lost, and a file
// already at the current format is left alone.
func upgrade(tx *bolt.Tx, now time.Time) error {
	mb := tx.Bucket(bucketMeta)
	if v := mb.Get(keyFormat); len(v) == 1 && v[0] >= fileFormat {
		return nil
	}
	procs := tx.Bucket(bucketProcs)
	type item struct {
		id    []byte
		value []byte
	}
	var rewrite []item
	var all []item
	c := procs.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			continue
		}
		m, blob, problem := decodeValue(v)
		if problem != "" {
			continue // reconcile sets it aside
		}
		if m.version == "" {
			ver, err := codec.PeekVersion(blob)
			if err != nil {
				if m.quar == "" {
					m.quar = fmt.Sprintf("stepflow/boltstore: upgrade: process %q names no readable flow version: %v", k, err)
				}
			} else {
				m.version = ver
			}
		}
		if m.updated == 0 {
			m.updated = now.UnixNano()
		}
		it := item{bytes.Clone(k), encodeValue(nil, m, blob)}
		rewrite = append(rewrite, it)
		all = append(all, it)
	}
	for _, it := range rewrite {
		if err := procs.Put(it.id, it.value); err != nil {
			return err
		}
	}
	for _, b := range [][]byte{bucketDue, bucketEnded} {
		if tx.Bucket(b) != nil {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		if _, err := tx.CreateBucket(b); err != nil {
			return err
		}
	}
	for _, it := range all {
		m, _, _ := decodeValue(it.value)
		if err := index(tx, nil, string(it.id), &m); err != nil {
			return err
		}
	}
	// The counts of format 1, by status alone, go; reconcile writes them
	// per version.
	var old [][]byte
	c = mb.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if bytes.Equal(k, []byte("quarantined")) || len(k) == 2 && k[0] == 's' {
			old = append(old, bytes.Clone(k))
		}
	}
	for _, k := range old {
		if err := mb.Delete(k); err != nil {
			return err
		}
	}
	return mb.Put(keyFormat, []byte{fileFormat})
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

// dueKey orders by flow version, then due time, then id, so that a claim
// reads the due entries of the versions it names only. The version comes
// with its length first; flipping the sign bit of the due time makes the
// big-endian bytes sort like the signed number.
func dueKey(t *txBytes, version string, due int64, id string) []byte {
	version = clip(version, 255)
	k := t.Take(1 + len(version) + 8 + len(id))
	k[0] = byte(len(version))
	copy(k[1:], version)
	binary.BigEndian.PutUint64(k[1+len(version):], uint64(due)^(1<<63))
	copy(k[1+len(version)+8:], id)
	return k
}

// duePrefix is the part of the due keys of version that names it.
func duePrefix(version string) []byte {
	version = clip(version, 255)
	return append([]byte{byte(len(version))}, version...)
}

// parseDueKey reads a due-index key; ok is false for a malformed one.
func parseDueKey(k []byte) (version string, due int64, id string, ok bool) {
	if len(k) < 1 || len(k) < 1+int(k[0])+8 {
		return "", 0, "", false
	}
	n := 1 + int(k[0])
	return string(k[1:n]), int64(binary.BigEndian.Uint64(k[n:]) ^ (1 << 63)), string(k[n+8:]), true
}

// timeKey orders the index of ended processes by time of last write,
// then id.
func timeKey(tb *txBytes, t int64, id string) []byte {
	k := tb.Take(8 + len(id))
	binary.BigEndian.PutUint64(k, uint64(t)^(1<<63))
	copy(k[8:], id)
	return k
}

func parseTimeKey(k []byte) (t int64, id string, ok bool) {
	if len(k) < 8 {
		return 0, "", false
	}
	return int64(binary.BigEndian.Uint64(k) ^ (1 << 63)), string(k[8:]), true
}

// Counters live in the meta bucket: 'c', the status, then the flow
// version for healthy records; 'q' then the flow version for quarantined
// ones.
func countKeyOf(m *meta) []byte { return countOf(m).bytes() }

// countKey names a counter without the allocation of its stored key.
type countKey struct {
	quarantined bool
	status      stepflow.Status // zero when quarantined
	version     string
}

func countOf(m *meta) countKey {
	if m.quar != "" {
		return countKey{quarantined: true, version: m.version}
	}
	return countKey{status: m.status, version: m.version}
}

// bytes is the counter's key in the meta bucket.
func (k countKey) bytes() []byte {
	if k.quarantined {
		return append([]byte{'q'}, k.version...)
	}
	return append([]byte{'c', byte(k.status)}, k.version...)
}

func isCountKey(k []byte) bool {
	return len(k) >= 1 && k[0] == 'q' || len(k) >= 2 && k[0] == 'c'
}

// counter gathers the count changes of one transaction, written once at
// its end: a batch changes the same few counters many times.
type counter map[countKey]int64

func (c counter) add(m *meta, d int64) { c[countOf(m)] += d }

func (c counter) flush(b *bolt.Bucket) error {
	for k, d := range c {
		if d == 0 {
			continue
		}
		if err := addCountKey(b, k.bytes(), d); err != nil {
			return err
		}
	}
	return nil
}

func addCount(b *bolt.Bucket, m *meta, d int64) error { return addCountKey(b, countKeyOf(m), d) }

func addCountKey(b *bolt.Bucket, k []byte, d int64) error {
	var n int64
	if v := b.Get(k); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	if n+d == 0 {
		return b.Delete(k)
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(n+d))
	return b.Put(k, v[:])
}

func (s *Store) record(id string, m meta, blob []byte, copyBlob bool) store.Record {
	r := store.Record{ID: id, Version: m.version, Revision: m.rev, Status: m.status, Due: dueTime(m.due), Quarantine: m.quar,
		Position: m.pos, ErrorKind: m.kind, Blob: blob}
	if m.updated != 0 {
		r.Updated = time.Unix(0, m.updated).UTC()
	}
	if copyBlob {
		r.Blob = bytes.Clone(blob)
	}
	if l, ok := s.leases[id]; ok {
		r.Owner, r.Due = l.owner, l.until
	}
	return r
}

func (s *Store) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	return nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, rec store.Record) error {
	errs, err := s.CreateMany(ctx, []store.Record{rec})
	if err != nil {
		return err
	}
	if errs != nil {
		return errs[0]
	}
	return nil
}

// CreateMany implements store.Store: one bbolt transaction (one fsync).
func (s *Store) CreateMany(ctx context.Context, recs []store.Record) ([]error, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	now := time.Now()
	var errs []error
	created := 0
	err := s.update(func(tx *bolt.Tx) error {
		errs, created = nil, 0
		fail := func(i int, err error) {
			if errs == nil {
				errs = make([]error, len(recs))
			}
			errs[i] = err
		}
		procs, counts, t := tx.Bucket(bucketProcs), counter{}, newTxBytes(len(recs))
		// One cursor looks up every id: a Get makes a cursor each time.
		seen := procs.Cursor()
		for i := range recs {
			rec := recs[i]
			if rec.ID == "" {
				fail(i, fmt.Errorf("%w: empty id", store.ErrInvalid))
				continue
			}
			if err := store.FillVersion(&rec); err != nil {
				fail(i, err)
				continue
			}
			if k, v := seen.Seek([]byte(rec.ID)); v != nil && string(k) == rec.ID {
				fail(i, fmt.Errorf("%w: %q", store.ErrExists, rec.ID))
				continue
			}
			m := meta{rev: 1, status: rec.Status, quar: rec.Quarantine, version: rec.Version, pos: rec.Position, kind: rec.ErrorKind,
				due: dueNanos(store.NormalizeDue(rec.Status, rec.Quarantine, rec.Due)), updated: nanos(rec.Updated, now)}
			if err := procs.Put(keyOf(t, rec.ID), encodeValue(t, m, rec.Blob)); err != nil {
				return err
			}
			if err := index(tx, t, rec.ID, &m); err != nil {
				return err
			}
			s.ix.Set(rec.ID, fieldsOf(&m))
			counts.add(&m, 1)
			created++
		}
		return counts.flush(tx.Bucket(bucketMeta))
	})
	if err != nil {
		return nil, wrap(err)
	}
	if created > 0 {
		s.notify(s.watchers)
	}
	return errs, nil
}

// nanos is t in unix nanoseconds, or now when t is zero.
func nanos(t, now time.Time) int64 {
	if t.IsZero() {
		t = now
	}
	return t.UnixNano()
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
	err = s.update(func(tx *bolt.Tx) error { return reconcile(tx, s.ix) })
	if err != nil {
		return nil, wrap(err)
	}
	out, _, err = s.claim(c, true)
	return out, wrap(err)
}

// versionsIn lists the flow versions of the due index, each once, by
// jumping from one version's keys to the next's.
func versionsIn(cur *bolt.Cursor) []string {
	var out []string
	for k, _ := cur.First(); k != nil; {
		v, _, _, ok := parseDueKey(k)
		if !ok {
			k, _ = cur.Next()
			continue
		}
		out = append(out, v)
		// The first key past every key of v: its prefix, incremented.
		next := duePrefix(v)
		for i := len(next) - 1; i >= 0; i-- {
			if next[i]++; next[i] != 0 {
				break
			}
		}
		k, _ = cur.Seek(next)
	}
	return out
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
		if s.closed {
			return store.ErrClosed
		}
		type found struct {
			id   string
			due  int64
			m    meta
			blob []byte
		}
		versions := c.Versions
		if len(versions) == 0 {
			versions = versionsIn(cur)
		}
		// The earliest Limit of each version, then the earliest Limit of
		// them all.
		var due []found
		for _, version := range versions {
			prefix, n := duePrefix(version), 0
			for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < c.Limit; k, _ = cur.Next() {
				v, at, id, ok := parseDueKey(k)
				if ok && v != version {
					break // a longer version that starts with this one's bytes
				}
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
				val := procs.Get([]byte(id))
				if val == nil {
					continue
				}
				m, blob, ok := readValue([]byte(id), val)
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
				due = append(due, found{id, at, m, blob})
				n++
			}
		}
		slices.SortFunc(due, func(a, b found) int { return cmp.Or(cmp.Compare(a.due, b.due), cmp.Compare(a.id, b.id)) })
		for _, f := range due[:min(len(due), c.Limit)] {
			s.leases[f.id] = lease{owner: c.Owner, until: until, version: f.m.version}
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
	ended := false
	now := time.Now()
	err := s.update(func(tx *bolt.Tx) error {
		errs, applied, ended = nil, applied[:0], false
		counts, t := counter{}, newTxBytes(len(ws))
		for i := range ws {
			w := &ws[i]
			werr, err := s.write(tx, t, owner, w, now, counts)
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
			ended = ended || w.Status.Terminal()
		}
		return counts.flush(tx.Bucket(bucketMeta))
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
	if owner == "" && len(applied) > 0 {
		s.notifyLocked(s.watchers)
	}
	if ended {
		s.notifyLocked(s.ended)
	}
	s.mu.Unlock()
	return errs, nil
}

func (s *Store) write(tx *bolt.Tx, t *txBytes, owner string, w *store.Write, now time.Time, counts counter) (werr, err error) {
	procs := tx.Bucket(bucketProcs)
	v := procs.Get([]byte(w.ID))
	if v == nil {
		return store.ErrNotFound, nil
	}
	old, oldBlob, ok := readValue([]byte(w.ID), v)
	if !ok {
		// Set the damaged records aside first, so that the counts know
		// where this one stands (the changes gathered so far go first).
		if err := counts.flush(tx.Bucket(bucketMeta)); err != nil {
			return nil, err
		}
		clear(counts)
		if err := reconcile(tx, s.ix); err != nil {
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
	m := meta{rev: old.rev + 1, status: w.Status, quar: w.Quarantine, due: dueNanos(store.NormalizeDue(w.Status, w.Quarantine, w.Due)),
		updated: nanos(w.Updated, now), version: old.version, pos: old.pos, kind: old.kind}
	if w.Version != "" {
		m.version = w.Version
	}
	blob := w.Blob
	if blob == nil {
		blob = oldBlob
	} else {
		m.pos, m.kind = w.Position, w.ErrorKind
	}
	if err := unindex(tx, w.ID, &old); err != nil {
		return nil, err
	}
	if err := index(tx, t, w.ID, &m); err != nil {
		return nil, err
	}
	if err := procs.Put(keyOf(t, w.ID), encodeValue(t, m, blob)); err != nil {
		return nil, err
	}
	s.ix.Set(w.ID, fieldsOf(&m))
	if old.status != m.status || old.quar != m.quar || old.version != m.version {
		counts.add(&old, -1)
		counts.add(&m, 1)
	}
	return nil, nil
}

// Renew implements store.Store.
func (s *Store) Renew(ctx context.Context, owner string, ids []string, now time.Time, d time.Duration) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var lost []string
	for _, id := range ids {
		l, ok := s.leases[id]
		if !ok || owner == "" || l.owner != owner {
			lost = append(lost, id)
			continue
		}
		l.until = now.Add(d).UTC()
		s.leases[id] = l
	}
	return lost, nil
}

// Release implements store.Store. The released records keep their stored
// due time, which is at or before the time they were claimed.
func (s *Store) Release(ctx context.Context, owner string, ids []string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	for _, id := range ids {
		if l, ok := s.leases[id]; ok && owner != "" && l.owner == owner {
			delete(s.leases, id)
		}
	}
	s.notifyLocked(s.watchers)
	return nil
}

// NextDue implements store.Store.
func (s *Store) NextDue(ctx context.Context, versions []string) (time.Time, bool, error) {
	var next time.Time
	err := s.db.View(func(tx *bolt.Tx) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return store.ErrClosed
		}
		cur := tx.Bucket(bucketDue).Cursor()
		vs := versions
		if len(vs) == 0 {
			vs = versionsIn(cur)
		}
		for _, version := range vs {
			prefix := duePrefix(version)
			for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
				v, due, id, ok := parseDueKey(k)
				if !ok || v != version {
					break
				}
				if _, leased := s.leases[id]; leased {
					continue // counted below at its lease's end
				}
				if t := dueTime(due); next.IsZero() || t.Before(next) {
					next = t
				}
				break
			}
		}
		for _, l := range s.leases {
			if store.Claimable(versions, l.version) && (next.IsZero() || l.until.Before(next)) {
				next = l.until
			}
		}
		return nil
	})
	return next, !next.IsZero(), wrap(err)
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context) <-chan struct{} { return s.watch(ctx, s.watchers) }

// WatchEnded implements store.Store.
func (s *Store) WatchEnded(ctx context.Context) <-chan struct{} { return s.watch(ctx, s.ended) }

func (s *Store) watch(ctx context.Context, set map[chan struct{}]struct{}) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		close(ch)
		return ch
	}
	set[ch] = struct{}{}
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := set[ch]; ok {
			delete(set, ch)
			close(ch)
		}
	})
	return ch
}

func (s *Store) notify(set map[chan struct{}]struct{}) {
	s.mu.Lock()
	s.notifyLocked(set)
	s.mu.Unlock()
}

func (s *Store) notifyLocked(set map[chan struct{}]struct{}) {
	for ch := range set {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Count implements store.Store.
func (s *Store) Count(ctx context.Context) (store.Counts, error) {
	c := store.Counts{ByStatus: map[stepflow.Status]int{}, ByVersion: map[string]store.VersionCounts{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
			if len(v) != 8 || !isCountKey(k) {
				return nil
			}
			n := int(int64(binary.BigEndian.Uint64(v)))
			r := store.Record{}
			if k[0] == 'q' {
				r.Version, r.Quarantine = string(k[1:]), "quarantined"
			} else {
				r.Version, r.Status = string(k[2:]), stepflow.Status(k[1])
			}
			c.Add(&r, n)
			return nil
		})
	})
	return c, wrap(err)
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, ids []string) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	n := 0
	err := s.update(func(tx *bolt.Tx) (err error) {
		n, err = s.removeAll(tx, ids)
		return err
	})
	if err != nil {
		return 0, wrap(err)
	}
	s.mu.Lock()
	for _, id := range ids {
		delete(s.leases, id)
	}
	if n > 0 {
		s.notifyLocked(s.ended)
	}
	s.mu.Unlock()
	return n, nil
}

// removeAll removes the records of ids that exist and returns how many it
// removed.
// DeleteRevisions implements store.RevisionDeleter.
func (s *Store) DeleteRevisions(ctx context.Context, ds []store.Deletion) ([]error, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var errs []error
	var gone []string
	err := s.update(func(tx *bolt.Tx) error {
		errs, gone = nil, gone[:0]
		procs := tx.Bucket(bucketProcs)
		for i, d := range ds {
			var werr error
			if v := procs.Get([]byte(d.ID)); v == nil {
				werr = store.ErrNotFound
			} else if m, _, ok := readValue([]byte(d.ID), v); !ok || m.rev != d.Revision {
				werr = store.ErrConflict
			}
			if werr != nil {
				if errs == nil {
					errs = make([]error, len(ds))
				}
				errs[i] = &store.WriteError{ID: d.ID, Err: werr}
				continue
			}
			if _, err := s.remove(tx, d.ID); err != nil {
				return err
			}
			gone = append(gone, d.ID)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err)
	}
	s.mu.Lock()
	for _, id := range gone {
		delete(s.leases, id)
	}
	if len(gone) > 0 {
		s.notifyLocked(s.ended)
	}
	s.mu.Unlock()
	return errs, nil
}

func (s *Store) removeAll(tx *bolt.Tx, ids []string) (int, error) {
	n := 0
	for _, id := range ids {
		ok, err := s.remove(tx, id)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// remove deletes a record with its index entries and counts.
func (s *Store) remove(tx *bolt.Tx, id string) (bool, error) {
	procs := tx.Bucket(bucketProcs)
	v := procs.Get([]byte(id))
	if v == nil {
		return false, nil
	}
	m, _, ok := readValue([]byte(id), v)
	if !ok {
		if err := reconcile(tx, s.ix); err != nil {
			return false, err
		}
		m, _, _ = readValue([]byte(id), procs.Get([]byte(id)))
	}
	if err := unindex(tx, id, &m); err != nil {
		return false, err
	}
	if err := addCount(tx.Bucket(bucketMeta), &m, -1); err != nil {
		return false, err
	}
	s.ix.Delete(id)
	return true, procs.Delete([]byte(id))
}

// DeleteEnded implements store.Store, through the index of ended
// processes by time of last write.
func (s *Store) DeleteEnded(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("%w: limit %d", store.ErrInvalid, limit)
	}
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	cut := before.UnixNano()
	n := 0
	err := s.update(func(tx *bolt.Tx) (err error) {
		var ids []string
		cur := tx.Bucket(bucketEnded).Cursor()
		for k, _ := cur.First(); k != nil && len(ids) < limit; k, _ = cur.Next() {
			t, id, ok := parseTimeKey(k)
			if !ok {
				continue
			}
			if t >= cut {
				break
			}
			ids = append(ids, id)
		}
		n, err = s.removeAll(tx, ids)
		return err
	})
	if err != nil {
		return 0, wrap(err)
	}
	return n, nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, set := range []map[chan struct{}]struct{}{s.watchers, s.ended} {
		for ch := range set {
			close(ch)
		}
		clear(set)
	}
	s.mu.Unlock()
	return s.db.Close()
}
