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
// interface. A due-time heap makes Claim and NextDue O(log n) whatever the
// number of processes. Blobs are kept by reference: callers must not modify
// a slice after writing it or after reading it from the store.
//
// The zero value is not ready; use NewMemory.
type Memory struct {
	mu       sync.Mutex
	byID     map[string]*memItem
	due      dueHeap
	counts   [256]int // by stepflow.Status
	quar     int
	watchers map[chan struct{}]struct{}
	closed   bool
}

type memItem struct {
	rec Record
	idx int // position in the due heap, -1 when not due
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
	it := &memItem{rec: rec, idx: -1}
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
	if len(m.due) == 0 || m.due[0].after(c.Now) {
		return nil, nil
	}
	out := make([]Record, 0, min(c.Limit, len(m.due)))
	for len(out) < c.Limit && len(m.due) > 0 && !m.due[0].after(c.Now) {
		// Moving the due time to the lease's end keeps the record in the
		// heap: it comes due again, for anyone, when the lease expires.
		it := m.due[0].it
		it.rec.Owner, it.rec.Due = c.Owner, until
		m.due[0].setKey()
		m.due.fix(0)
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
	if len(m.due) == 0 {
		return time.Time{}, false, nil
	}
	return m.due[0].it.rec.Due, true, nil
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

// schedule puts it in the heap at its due time, or out of it when it is
// never due.
func (m *Memory) schedule(it *memItem) {
	switch {
	case it.rec.Due.IsZero() && it.idx >= 0:
		m.due.remove(it.idx)
	case it.rec.Due.IsZero():
	case it.idx >= 0:
		m.due[it.idx].setKey()
		m.due.fix(it.idx)
	default:
		m.due.push(it)
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

// dueHeap orders items by due time, then id, so claims are deterministic.
// Each entry carries its sort key, so that ordering the heap reads no
// item: with many processes, most items are out of the processor's
// caches.
type dueHeap []dueEntry

type dueEntry struct {
	sec  int64  // due time: seconds since the Unix epoch
	nsec int64  // and nanoseconds within the second
	id   string // the item's id, for ties
	it   *memItem
}

// setKey copies the item's due time and id into the entry.
func (e *dueEntry) setKey() {
	d := e.it.rec.Due
	e.sec, e.nsec, e.id = d.Unix(), int64(d.Nanosecond()), e.it.rec.ID
}

// after reports whether the entry is due after t.
func (e *dueEntry) after(t time.Time) bool {
	sec := t.Unix()
	return e.sec > sec || e.sec == sec && e.nsec > int64(t.Nanosecond())
}

func (h dueHeap) less(i, j int) bool {
	a, b := &h[i], &h[j]
	if a.sec != b.sec {
		return a.sec < b.sec
	}
	if a.nsec != b.nsec {
		return a.nsec < b.nsec
	}
	return a.id < b.id
}

func (h dueHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].it.idx, h[j].it.idx = i, j
}

func (h *dueHeap) push(it *memItem) {
	it.idx = len(*h)
	*h = append(*h, dueEntry{it: it})
	(*h)[it.idx].setKey()
	h.up(it.idx)
}

// remove takes the entry at i out of the heap.
func (h *dueHeap) remove(i int) {
	old := *h
	n := len(old) - 1
	it := old[i].it
	if i != n {
		old.swap(i, n)
	}
	old[n] = dueEntry{}
	*h = old[:n]
	if i != n {
		h.fix(i)
	}
	it.idx = -1
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
