package store

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Memory is a Store that keeps everything in memory, for tests and
// benchmarks, in the way raft's MemoryStorage stands next to its Storage
// interface. Claim and NextDue never scan the store: a runnable process
// that a runner writes back is queued in O(1) and claimed in O(1), and
// other due times are kept in heaps, O(log n). Blobs are kept by reference: callers must not modify
// a slice after writing it or after reading it from the store.
//
// The zero value is not ready; use NewMemory.
type Memory struct {
	mu       sync.Mutex
	byID     map[string]*memItem
	sched    scheduler
	counts   [256]int // by stepflow.Status
	quar     int
	watchers map[chan struct{}]struct{}
	closed   bool
}

type memItem struct {
	rec Record
	in  uint8 // which part of the scheduler holds it (inNone...)
	idx int   // its position there
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		byID:     map[string]*memItem{},
		watchers: map[chan struct{}]struct{}{},
	}
}

var _ Store = (*Memory)(nil)

// Create implements Store.
func (m *Memory) Create(ctx context.Context, rec Record) error {
	if rec.ID == "" {
		return ErrInvalid
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.byID[rec.ID]; ok {
		return ErrExists
	}
	rec.Revision, rec.Owner = 1, ""
	rec.Due = NormalizeDue(rec.Status, rec.Quarantine, rec.Due)
	it := &memItem{rec: rec}
	m.byID[rec.ID] = it
	m.count(&it.rec, 1)
	m.schedule(it)
	m.notify()
	return nil
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
		e := m.sched.first()
		if e == nil || e.after(c.Now) {
			break
		}
		if out == nil {
			out = make([]Record, 0, min(c.Limit, m.sched.len()))
		}
		// The lease's end becomes the due time: the record comes due
		// again, for anyone, when the lease expires.
		it := e.it
		it.rec.Owner, it.rec.Due = c.Owner, until
		m.schedule(it)
		out = append(out, it.rec)
	}
	return out, nil
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
	wake := false
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
		m.count(&it.rec, -1)
		it.rec.Revision++
		it.rec.Status = w.Status
		it.rec.Quarantine = w.Quarantine
		it.rec.Owner = ""
		it.rec.Due = NormalizeDue(w.Status, w.Quarantine, w.Due)
		if w.Blob != nil {
			it.rec.Blob = w.Blob
		}
		m.count(&it.rec, 1)
		m.schedule(it)
		wake = wake || owner == ""
	}
	if wake {
		m.notify()
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
	m.notify()
	return nil
}

// NextDue implements Store.
func (m *Memory) NextDue(ctx context.Context) (time.Time, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return time.Time{}, false, ErrClosed
	}
	e := m.sched.first()
	if e == nil {
		return time.Time{}, false, nil
	}
	return e.it.rec.Due, true, nil
}

// Watch implements Store.
func (m *Memory) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		close(ch)
		return ch
	}
	m.watchers[ch] = struct{}{}
	m.mu.Unlock()
	// context.AfterFunc runs in its own goroutine owned by the context: it
	// unregisters and closes the channel once, when ctx is done.
	context.AfterFunc(ctx, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := m.watchers[ch]; ok {
			delete(m.watchers, ch)
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
	c := Counts{ByStatus: map[stepflow.Status]int{}, Quarantined: m.quar}
	for s, n := range m.counts {
		if n > 0 {
			c.ByStatus[stepflow.Status(s)] = n
		}
	}
	return c, nil
}

// List implements Store.
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
	for _, it := range m.byID {
		if Match(&it.rec, f) {
			out = append(out, it.rec)
		}
	}
	slices.SortFunc(out, func(a, b Record) int { return cmp.Compare(a.ID, b.ID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Match reports whether r passes f (ignoring f.Limit), for implementations.
func Match(r *Record, f Filter) bool {
	if f.After != "" && r.ID <= f.After {
		return false
	}
	if f.Quarantined {
		return r.Quarantine != ""
	}
	if f.Status != nil {
		return r.Quarantine == "" && r.Status == *f.Status
	}
	return true
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

// count adds d to the counter r belongs to.
func (m *Memory) count(r *Record, d int) {
	if r.Quarantine != "" {
		m.quar += d
		return
	}
	m.counts[r.Status] += d
}

// schedule files it under its current due time and owner, or nowhere when
// it is never due.
func (m *Memory) schedule(it *memItem) {
	m.sched.unlink(it)
	if !it.rec.Due.IsZero() {
		m.sched.link(it)
	}
}

// notify wakes every watcher without blocking.
func (m *Memory) notify() {
	for ch := range m.watchers {
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
// The earliest item is the first of the three heads.
type scheduler struct {
	ready  dueQueue
	later  dueHeap
	leased dueHeap
}

// len is the number of scheduled items, an upper bound for a claim.
func (s *scheduler) len() int { return s.ready.live + len(s.later) + len(s.leased) }

// first returns the entry of the earliest item, nil if none.
func (s *scheduler) first() *dueEntry {
	var e *dueEntry
	if q := s.ready.head(); q != nil {
		e = q
	}
	if len(s.later) > 0 && (e == nil || s.later[0].less(e)) {
		e = &s.later[0]
	}
	if len(s.leased) > 0 && (e == nil || s.leased[0].less(e)) {
		e = &s.leased[0]
	}
	return e
}

func (s *scheduler) unlink(it *memItem) {
	switch it.in {
	case inReady:
		s.ready.remove(it.idx)
	case inLater:
		s.later.remove(it.idx)
	case inLeased:
		s.leased.remove(it.idx)
	}
	it.in = inNone
}

func (s *scheduler) link(it *memItem) {
	d := it.rec.Due
	e := dueEntry{sec: d.Unix(), nsec: int64(d.Nanosecond()), id: it.rec.ID, it: it}
	switch {
	case it.rec.Owner != "":
		it.in = inLeased
		s.leased.push(e)
	case s.ready.fits(&e):
		it.in = inReady
		s.ready.push(e)
	default:
		it.in = inLater
		s.later.push(e)
	}
}

type dueEntry struct {
	sec  int64  // due time: seconds since the Unix epoch
	nsec int64  // and nanoseconds within the second
	id   string // the item's id, for ties
	it   *memItem
}

func (a *dueEntry) less(b *dueEntry) bool {
	if a.sec != b.sec {
		return a.sec < b.sec
	}
	if a.nsec != b.nsec {
		return a.nsec < b.nsec
	}
	return a.id < b.id
}

// after reports whether the entry is due after t.
func (a *dueEntry) after(t time.Time) bool {
	sec := t.Unix()
	return a.sec > sec || a.sec == sec && a.nsec > int64(t.Nanosecond())
}

// dueQueue is a queue of entries in key order. Removed entries stay in
// place, dead (nil item), until the head passes them.
type dueQueue struct {
	q    []dueEntry
	h    int // index of the head
	live int // entries not dead
}

// fits reports whether e may be appended without breaking the order.
func (d *dueQueue) fits(e *dueEntry) bool {
	return d.h == len(d.q) || !e.less(&d.q[len(d.q)-1])
}

func (d *dueQueue) push(e dueEntry) {
	if d.h == len(d.q) {
		// Empty: start again at the front of the buffer.
		clear(d.q)
		d.q, d.h = d.q[:0], 0
	} else if d.h > 1024 && 2*d.h > len(d.q) {
		// Most of the buffer is behind the head: move the rest down.
		n := copy(d.q, d.q[d.h:])
		clear(d.q[n:])
		d.q, d.h = d.q[:n], 0
		for i := range d.q {
			if it := d.q[i].it; it != nil {
				it.idx = i
			}
		}
	}
	e.it.idx = len(d.q)
	d.q = append(d.q, e)
	d.live++
}

// head returns the first live entry, nil if none.
func (d *dueQueue) head() *dueEntry {
	for d.h < len(d.q) && d.q[d.h].it == nil {
		d.h++
	}
	if d.h == len(d.q) {
		return nil
	}
	return &d.q[d.h]
}

func (d *dueQueue) remove(i int) {
	d.q[i].it = nil
	d.live--
}

// dueHeap is a binary min-heap of entries. Each entry carries its sort
// key, so that ordering the heap reads no item: with many processes, most
// items are out of the processor's caches.
type dueHeap []dueEntry

func (h dueHeap) less(i, j int) bool { return h[i].less(&h[j]) }

func (h dueHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].it.idx, h[j].it.idx = i, j
}

func (h *dueHeap) push(e dueEntry) {
	e.it.idx = len(*h)
	*h = append(*h, e)
	h.up(e.it.idx)
}

// remove takes the entry at i out of the heap.
func (h *dueHeap) remove(i int) {
	old := *h
	n := len(old) - 1
	if i != n {
		old.swap(i, n)
	}
	old[n] = dueEntry{}
	*h = old[:n]
	if i != n {
		h.fix(i)
	}
}

// fix restores the heap order after the key of entry i changed.
func (h dueHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h dueHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2 // parent
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h dueHeap) down(i0 int) bool {
	i, n := i0, len(h)
	for {
		j := 2*i + 1
		if j >= n || j < 0 {
			break
		}
		if r := j + 1; r < n && h.less(r, j) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
