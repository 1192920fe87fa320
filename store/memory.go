package store

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store/internal/index"
)

// Memory is a Store that keeps everything in memory, for tests and
// benchmarks, in the way raft's MemoryStorage stands next to its Storage
// interface. Claim and NextDue never scan the store: a runnable process
// that a runner writes back is queued in O(1) and claimed in O(1), and
// other due times are kept in heaps, O(log n). List never scans it either:
// it reads an index of the filtered fields (package store/internal/index),
// at a cost that follows the records it returns, which every write keeps
// up to date in O(log n) per field it changes. Blobs are kept by
// reference: callers must not modify a slice after writing it or after
// reading it from the store.
//
// The zero value is not ready; use NewMemory.
type Memory struct {
	mu     sync.Mutex
	byID   map[string]*memItem
	scheds map[string]*scheduler // by flow version
	counts Counts
	ix     *index.Index // for List
	// watchers and ended are the channels of Watch and WatchEnded.
	watchers map[chan struct{}]struct{}
	ended    map[chan struct{}]struct{}
	closed   bool
	// now is the clock for writes that bring no time.
	now func() time.Time
}

type memItem struct {
	rec   Record
	sched *scheduler // of its version, while it is scheduled
	num   int32      // its number in sched
	ixNum int32      // its number in Memory.ix
	in    uint8      // which part of sched holds it (inNone...)
	idx   int        // its position there
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		byID:     map[string]*memItem{},
		scheds:   map[string]*scheduler{},
		ix:       index.New(),
		watchers: map[chan struct{}]struct{}{},
		ended:    map[chan struct{}]struct{}{},
		now:      time.Now,
	}
}

var _ Store = (*Memory)(nil)

// Create implements Store.
func (m *Memory) Create(ctx context.Context, rec Record) error {
	errs, err := m.CreateMany(ctx, []Record{rec})
	if err != nil {
		return err
	}
	if errs != nil {
		return errs[0]
	}
	return nil
}

// CreateMany implements Store.
func (m *Memory) CreateMany(ctx context.Context, recs []Record) ([]error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var errs []error
	fail := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(recs))
		}
		errs[i] = err
	}
	seen := make(map[string]bool, len(recs))
	for i := range recs {
		rec := recs[i]
		if rec.ID == "" {
			fail(i, fmt.Errorf("%w: empty id", ErrInvalid))
			continue
		}
		if err := FillVersion(&rec); err != nil {
			fail(i, err)
			continue
		}
		if _, ok := m.byID[rec.ID]; ok || seen[rec.ID] {
			fail(i, fmt.Errorf("%w: %q", ErrExists, rec.ID))
			continue
		}
		seen[rec.ID] = true
		rec.Revision, rec.Owner = 1, ""
		rec.Due = NormalizeDue(rec.Status, rec.Quarantine, rec.Due)
		if rec.Updated.IsZero() {
			rec.Updated = m.now()
		}
		rec.Updated = rec.Updated.UTC()
		it := &memItem{rec: rec}
		m.byID[rec.ID] = it
		it.ixNum = m.ix.Add(rec.ID, indexFields(&it.rec))
		m.counts.Add(&it.rec, 1)
		m.schedule(it)
	}
	m.notify(m.watchers)
	return errs, nil
}

// Load implements Store.
func (m *Memory) Load(ctx context.Context, id string) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Record{}, ErrClosed
	}
	it, ok := m.byID[id]
	if !ok {
		return Record{}, ErrNotFound
	}
	return it.rec, nil
}

// Claim implements Store.
func (m *Memory) Claim(ctx context.Context, c Claim) ([]Record, error) {
	if err := CheckClaim(c); err != nil {
		return nil, err
	}
	until := c.Now.Add(c.Lease).UTC()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var out []Record
	for len(out) < c.Limit {
		s, e := m.first(c.Versions)
		if e == nil || e.after(c.Now) {
			break
		}
		if out == nil {
			out = make([]Record, 0, min(c.Limit, s.len()))
		}
		// The lease's end becomes the due time: the record comes due
		// again, for anyone, when the lease expires.
		it := s.item(e)
		it.rec.Owner, it.rec.Due = c.Owner, until
		m.schedule(it)
		out = append(out, it.rec)
	}
	return out, nil
}

// first returns the earliest scheduled entry among the given versions
// (all when empty), and its scheduler.
func (m *Memory) first(versions []string) (*scheduler, *dueEntry) {
	var bs *scheduler
	var be *dueEntry
	consider := func(s *scheduler) {
		if s == nil {
			return
		}
		if e := s.first(); e != nil && (be == nil || e.before(be, s, bs)) {
			bs, be = s, e
		}
	}
	if len(versions) == 0 {
		for _, s := range m.scheds {
			consider(s)
		}
	} else {
		for _, v := range versions {
			consider(m.scheds[v])
		}
	}
	return bs, be
}

// Commit implements Store. The batch is applied under one lock, which is
// the in-memory equivalent of a transaction.
func (m *Memory) Commit(ctx context.Context, owner string, ws []Write) ([]error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var errs []error
	wake, ended := false, false
	for i := range ws {
		w := &ws[i]
		it, ok := m.byID[w.ID]
		var err error
		switch {
		case !ok:
			err = ErrNotFound
		case it.rec.Revision != w.Revision:
			err = ErrConflict
		case owner != "" && it.rec.Owner != owner:
			err = ErrLeaseLost
		}
		if err != nil {
			if errs == nil {
				errs = make([]error, len(ws))
			}
			errs[i] = &WriteError{ID: w.ID, Err: err}
			continue
		}
		m.counts.Add(&it.rec, -1)
		it.rec.Revision++
		it.rec.Status = w.Status
		it.rec.Quarantine = w.Quarantine
		it.rec.Owner = ""
		it.rec.Due = NormalizeDue(w.Status, w.Quarantine, w.Due)
		if w.Blob != nil {
			it.rec.Blob = w.Blob
			it.rec.Position, it.rec.ErrorKind = w.Position, w.ErrorKind
		}
		if w.Version != "" {
			it.rec.Version = w.Version
		}
		it.rec.Updated = w.Updated.UTC()
		if w.Updated.IsZero() {
			it.rec.Updated = m.now().UTC()
		}
		m.counts.Add(&it.rec, 1)
		m.ix.Update(it.ixNum, indexFields(&it.rec))
		m.schedule(it)
		wake = wake || owner == ""
		ended = ended || w.Status.Terminal()
	}
	if wake {
		m.notify(m.watchers)
	}
	if ended {
		m.notify(m.ended)
	}
	return errs, nil
}

// Renew implements Store.
func (m *Memory) Renew(ctx context.Context, owner string, ids []string, now time.Time, lease time.Duration) ([]string, error) {
	until := now.Add(lease).UTC()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var lost []string
	for _, id := range ids {
		it, ok := m.byID[id]
		if !ok || it.rec.Owner != owner || owner == "" {
			lost = append(lost, id)
			continue
		}
		it.rec.Due = until
		m.schedule(it)
	}
	return lost, nil
}

// Release implements Store.
func (m *Memory) Release(ctx context.Context, owner string, ids []string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	for _, id := range ids {
		it, ok := m.byID[id]
		if !ok || owner == "" || it.rec.Owner != owner {
			continue
		}
		it.rec.Owner, it.rec.Due = "", now.UTC()
		m.schedule(it)
	}
	m.notify(m.watchers)
	return nil
}

// NextDue implements Store.
func (m *Memory) NextDue(ctx context.Context, versions []string) (time.Time, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return time.Time{}, false, ErrClosed
	}
	s, e := m.first(versions)
	if e == nil {
		return time.Time{}, false, nil
	}
	return s.item(e).rec.Due, true, nil
}

// Watch implements Store.
func (m *Memory) Watch(ctx context.Context) <-chan struct{} { return m.watch(ctx, m.watchers) }

// WatchEnded implements Store.
func (m *Memory) WatchEnded(ctx context.Context) <-chan struct{} { return m.watch(ctx, m.ended) }

func (m *Memory) watch(ctx context.Context, set map[chan struct{}]struct{}) <-chan struct{} {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		close(ch)
		return ch
	}
	set[ch] = struct{}{}
	m.mu.Unlock()
	// context.AfterFunc runs in its own goroutine owned by the context: it
	// unregisters and closes the channel once, when ctx is done.
	context.AfterFunc(ctx, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := set[ch]; ok {
			delete(set, ch)
			close(ch)
		}
	})
	return ch
}

// Count implements Store.
func (m *Memory) Count(ctx context.Context) (Counts, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Counts{}, ErrClosed
	}
	c := Counts{ByStatus: maps.Clone(m.counts.ByStatus), Quarantined: m.counts.Quarantined, ByVersion: map[string]VersionCounts{}}
	if c.ByStatus == nil {
		c.ByStatus = map[stepflow.Status]int{}
	}
	for v, vc := range m.counts.ByVersion {
		c.ByVersion[v] = VersionCounts{ByStatus: maps.Clone(vc.ByStatus), Quarantined: vc.Quarantined}
	}
	return c, nil
}

// List implements Store. It reads the index's candidates in id order and
// keeps those that Match, until it has f.Limit.
func (m *Memory) List(ctx context.Context, f Filter) ([]Record, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var out []Record
	for id := range m.ix.Candidates(indexQuery(f)) {
		if it := m.byID[id]; it != nil && Match(&it.rec, f) {
			out = append(out, it.rec)
			if len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

// indexFields and indexQuery translate a record and a filter for the
// index.
func indexFields(r *Record) index.Fields {
	return index.Fields{Status: r.Status, Quarantined: r.Quarantine != "", Version: r.Version, Position: r.Position, ErrorKind: r.ErrorKind}
}

func indexQuery(f Filter) index.Query {
	return index.Query{Status: f.Status, Quarantined: f.Quarantined, Flow: f.Flow, Version: f.Version, IDPrefix: f.IDPrefix,
		Position: f.Position, ErrorKind: f.ErrorKind, After: f.After}
}

// DeleteRevisions implements RevisionDeleter.
func (m *Memory) DeleteRevisions(ctx context.Context, ds []Deletion) ([]error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var errs []error
	n := 0
	for i, d := range ds {
		it, ok := m.byID[d.ID]
		var err error
		switch {
		case !ok:
			err = ErrNotFound
		case it.rec.Revision != d.Revision:
			err = ErrConflict
		default:
			m.remove(it)
			n++
			continue
		}
		if errs == nil {
			errs = make([]error, len(ds))
		}
		errs[i] = &WriteError{ID: d.ID, Err: err}
	}
	if n > 0 {
		m.notify(m.ended)
	}
	return errs, nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, ids []string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	n := 0
	for _, id := range ids {
		if it, ok := m.byID[id]; ok {
			m.remove(it)
			n++
		}
	}
	if n > 0 {
		m.notify(m.ended)
	}
	return n, nil
}

// DeleteEnded implements Store. It scans every process: the in-memory
// store is for tests and benchmarks.
func (m *Memory) DeleteEnded(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("%w: limit %d", ErrInvalid, limit)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	var old []*memItem
	for _, it := range m.byID {
		if it.rec.Status.Terminal() && it.rec.Quarantine == "" && it.rec.Updated.Before(before) {
			old = append(old, it)
		}
	}
	slices.SortFunc(old, func(a, b *memItem) int {
		return cmp.Or(a.rec.Updated.Compare(b.rec.Updated), cmp.Compare(a.rec.ID, b.rec.ID))
	})
	old = old[:min(limit, len(old))]
	for _, it := range old {
		m.remove(it)
	}
	return len(old), nil
}

// remove takes it out of the store. Its scheduler keeps, under its
// number, only its id, which stale queue entries may still compare.
func (m *Memory) remove(it *memItem) {
	m.unschedule(it)
	m.counts.Add(&it.rec, -1)
	m.ix.Remove(it.ixNum)
	delete(m.byID, it.rec.ID)
	if it.sched != nil {
		it.sched.items[it.num] = &memItem{rec: Record{ID: it.rec.ID}, num: it.num}
	}
}

// Close implements Store. It closes every Watch channel.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	for ch := range m.watchers {
		close(ch)
	}
	clear(m.watchers)
	return nil
}

// schedule files it under its version, due time and owner, or nowhere
// when it is never due.
func (m *Memory) schedule(it *memItem) {
	m.unschedule(it)
	if it.rec.Due.IsZero() {
		return
	}
	s := m.scheds[it.rec.Version]
	if s == nil {
		s = &scheduler{}
		m.scheds[it.rec.Version] = s
	}
	if it.sched != s {
		// First scheduled under this version: number it there. (Its
		// old scheduler keeps its number, unused from now on.)
		s.add(it)
		it.sched = s
	}
	s.link(it)
}

// unschedule takes it out of its scheduler, if any.
func (m *Memory) unschedule(it *memItem) {
	if it.sched != nil {
		it.sched.unlink(it)
	}
}

// notify wakes every channel of set without blocking.
func (m *Memory) notify(set map[chan struct{}]struct{}) {
	for ch := range set {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Where a scheduled item is (memItem.in).
const (
	inNone = iota
	inReady
	inLater
	inLeased
)

// scheduler orders the items that have a due time by due time, then id, so
// claims are deterministic. It keeps them in three parts:
//
//   - ready, a queue of unleased items whose keys never decrease from head
//     to tail. A runner writes its runnable processes back due "now",
//     which is no earlier than the queue's tail, so the common path of a
//     step costs O(1) to schedule and O(1) to claim.
//   - later, a heap of the other unleased items (waiting processes, and
//     due times given out of order).
//   - leased, a heap of the leased items by lease end, small: only the
//     processes runners are working on.
//
// The earliest item is the first of the three heads. Entries hold no
// pointers (items are named by their number), so that moving them costs
// the garbage collector nothing.
type scheduler struct {
	items  []*memItem // by memItem.num
	ready  dueQueue
	later  []dueEntry // heap
	leased []dueEntry // heap
}

type dueEntry struct {
	sec  int64  // due time: seconds since the Unix epoch
	nsec int32  // and nanoseconds within the second
	num  int32  // the item's number
	pre  uint64 // the first 8 bytes of the item's id, for ties
}

// add numbers a new item.
func (s *scheduler) add(it *memItem) {
	it.num = int32(len(s.items))
	s.items = append(s.items, it)
}

func (s *scheduler) item(e *dueEntry) *memItem { return s.items[e.num] }

// less orders entries by due time, then id.
func (s *scheduler) less(a, b *dueEntry) bool {
	if a.sec != b.sec {
		return a.sec < b.sec
	}
	if a.nsec != b.nsec {
		return a.nsec < b.nsec
	}
	if a.pre != b.pre {
		return a.pre < b.pre
	}
	return s.id(a) < s.id(b)
}

// id returns the id of the entry's item, dead entries included.
func (s *scheduler) id(e *dueEntry) string {
	n := e.num
	if n < 0 {
		n = ^n
	}
	return s.items[n].rec.ID
}

// idPrefix packs the first 8 bytes of id, big-endian and padded with
// zeros, so that comparing prefixes orders ids as comparing them does,
// except between ids equal on their first 8 bytes.
func idPrefix(id string) uint64 {
	var p uint64
	for i := range 8 {
		p <<= 8
		if i < len(id) {
			p |= uint64(id[i])
		}
	}
	return p
}

// len is the number of scheduled items, an upper bound for a claim.
func (s *scheduler) len() int { return s.ready.live + len(s.later) + len(s.leased) }

// first returns the entry of the earliest item, nil if none.
func (s *scheduler) first() *dueEntry {
	e := s.ready.head()
	if len(s.later) > 0 && (e == nil || s.less(&s.later[0], e)) {
		e = &s.later[0]
	}
	if len(s.leased) > 0 && (e == nil || s.less(&s.leased[0], e)) {
		e = &s.leased[0]
	}
	return e
}

func (s *scheduler) unlink(it *memItem) {
	switch it.in {
	case inReady:
		s.ready.remove(it.idx)
	case inLater:
		s.remove(&s.later, it.idx)
	case inLeased:
		s.remove(&s.leased, it.idx)
	}
	it.in = inNone
}

func (s *scheduler) link(it *memItem) {
	d := it.rec.Due
	e := dueEntry{sec: d.Unix(), nsec: int32(d.Nanosecond()), num: it.num, pre: idPrefix(it.rec.ID)}
	switch {
	case it.rec.Owner != "":
		it.in = inLeased
		s.push(&s.leased, e)
	case s.ready.h == len(s.ready.q) || !s.less(&e, &s.ready.q[len(s.ready.q)-1]):
		it.in = inReady
		s.ready.push(s, e)
	default:
		it.in = inLater
		s.push(&s.later, e)
	}
}

// before orders entries of two schedulers as less orders those of one.
func (e *dueEntry) before(o *dueEntry, es, os *scheduler) bool {
	switch {
	case e.sec != o.sec:
		return e.sec < o.sec
	case e.nsec != o.nsec:
		return e.nsec < o.nsec
	case e.pre != o.pre:
		return e.pre < o.pre
	}
	return es.id(e) < os.id(o)
}

// after reports whether the entry is due after t.
func (e *dueEntry) after(t time.Time) bool {
	sec := t.Unix()
	return e.sec > sec || e.sec == sec && e.nsec > int32(t.Nanosecond())
}

// dueQueue is a queue of entries in key order. Removed entries stay in
// place, dead (num complemented, so negative), until the head passes them.
type dueQueue struct {
	q    []dueEntry
	h    int // index of the head
	live int // entries not dead
}

func (d *dueQueue) push(s *scheduler, e dueEntry) {
	if d.h == len(d.q) {
		// Empty: start again at the front of the buffer.
		d.q, d.h = d.q[:0], 0
	} else if d.h > 1024 && 2*d.h > len(d.q) {
		// Most of the buffer is behind the head: move the rest down.
		n := copy(d.q, d.q[d.h:])
		d.q, d.h = d.q[:n], 0
		for i := range d.q {
			if num := d.q[i].num; num >= 0 {
				s.items[num].idx = i
			}
		}
	}
	s.items[e.num].idx = len(d.q)
	d.q = append(d.q, e)
	d.live++
}

// head returns the first live entry, nil if none.
func (d *dueQueue) head() *dueEntry {
	for d.h < len(d.q) && d.q[d.h].num < 0 {
		d.h++
	}
	if d.h == len(d.q) {
		return nil
	}
	return &d.q[d.h]
}

func (d *dueQueue) remove(i int) {
	d.q[i].num = ^d.q[i].num
	d.live--
}

// The heaps are binary min-heaps of entries under s.less.

func (s *scheduler) swap(h []dueEntry, i, j int) {
	h[i], h[j] = h[j], h[i]
	s.items[h[i].num].idx, s.items[h[j].num].idx = i, j
}

func (s *scheduler) push(h *[]dueEntry, e dueEntry) {
	s.items[e.num].idx = len(*h)
	*h = append(*h, e)
	s.up(*h, len(*h)-1)
}

// remove takes the entry at i out of the heap.
func (s *scheduler) remove(h *[]dueEntry, i int) {
	n := len(*h) - 1
	if i != n {
		s.swap(*h, i, n)
	}
	*h = (*h)[:n]
	if i != n && !s.down(*h, i) {
		s.up(*h, i)
	}
}

func (s *scheduler) up(h []dueEntry, j int) {
	for j > 0 {
		i := (j - 1) / 2 // parent
		if !s.less(&h[j], &h[i]) {
			break
		}
		s.swap(h, i, j)
		j = i
	}
}

func (s *scheduler) down(h []dueEntry, i0 int) bool {
	i, n := i0, len(h)
	for {
		j := 2*i + 1
		if j >= n || j < 0 {
			break
		}
		if r := j + 1; r < n && s.less(&h[r], &h[j]) {
			j = r
		}
		if !s.less(&h[j], &h[i]) {
			break
		}
		s.swap(h, i, j)
		i = j
	}
	return i > i0
}
