package store

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// A limited resource is something processes must share: "at most 3
// deployments touch cluster X at once" (a capacity), "at most 10 calls a
// minute to this API" (a rate), or both. A process takes a slot before it
// uses the resource and gives it back after; while none is free it waits
// in a queue, first come, first served.

// LimitRequest asks for a slot of a resource.
type LimitRequest struct {
	// Resource names the resource ("cluster/eu-1").
	Resource string
	// Holder names who asks: a process and the node that asks (runners
	// use the process id, '|', the node's path). A holder asks again,
	// with the same name, until it is granted a slot; asking for a slot
	// it holds is granted at once.
	Holder string
	// Capacity, when positive, is the most holders the resource has at
	// once.
	Capacity int
	// Rate, when positive, is the most slots granted per Per.
	Rate int
	Per  time.Duration
	// Now is the asker's clock.
	Now time.Time
	// Stale is how long a waiter that stops asking keeps its place in the
	// queue: a waiter not seen for longer (its process was deleted or
	// crashed while waiting) no longer holds back those behind it.
	Stale time.Duration
}

// LimitHolder is a holder of a slot, for Holders.
type LimitHolder struct {
	Resource, Holder string
	Since            time.Time
}

// Limiter grants slots of limited resources. Stores that several runner
// processes share implement it so that the limits hold across all of them
// (pgstore, with a table); for the others, runners share a Limiter made
// by NewMemoryLimiter among the runners of one program.
type Limiter interface {
	// Acquire asks for a slot: it reports whether holder has one now.
	// A holder that is not granted one is queued (or keeps its place)
	// and should ask again later.
	Acquire(ctx context.Context, req LimitRequest) (bool, error)
	// ReleaseSlots gives back every slot holder holds and leaves every
	// queue it waits in. Releasing what is not held does nothing.
	ReleaseSlots(ctx context.Context, holder string) error
	// ReleaseSlotsPrefix does ReleaseSlots for every holder whose name
	// starts with prefix (every node of a deleted process), and returns
	// how many slots and places it gave back.
	ReleaseSlotsPrefix(ctx context.Context, prefix string) (int, error)
	// SlotHolders lists the holders of slots, ordered by resource and
	// holder, after the given (resource, holder) pair, at most limit.
	SlotHolders(ctx context.Context, afterResource, afterHolder string, limit int) ([]LimitHolder, error)
}

// NewMemoryLimiter returns a Limiter that keeps its slots in memory, for
// the processes of one program.
func NewMemoryLimiter() Limiter {
	return &memLimiter{res: map[string]*memResource{}}
}

type memLimiter struct {
	mu  sync.Mutex
	res map[string]*memResource
}

type memResource struct {
	holders map[string]time.Time // holder -> since
	waiters map[string]memWaiter
	grants  []time.Time // recent grants, oldest first, for rates
}

type memWaiter struct{ since, seen time.Time }

func (m *memLimiter) Acquire(_ context.Context, req LimitRequest) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.res[req.Resource]
	if r == nil {
		r = &memResource{holders: map[string]time.Time{}, waiters: map[string]memWaiter{}}
		m.res[req.Resource] = r
	}
	if _, ok := r.holders[req.Holder]; ok {
		return true, nil
	}
	w, ok := r.waiters[req.Holder]
	if !ok {
		w.since = req.Now
	}
	w.seen = req.Now
	r.waiters[req.Holder] = w
	if req.Per > 0 {
		cut := req.Now.Add(-req.Per)
		i := 0
		for i < len(r.grants) && !r.grants[i].After(cut) {
			i++
		}
		r.grants = r.grants[i:]
	}
	// The holder's place: the live waiters that came before it.
	var ahead int
	for h, o := range r.waiters {
		if h == req.Holder || req.Stale > 0 && req.Now.Sub(o.seen) > req.Stale {
			continue
		}
		if o.since.Before(w.since) || o.since.Equal(w.since) && h < req.Holder {
			ahead++
		}
	}
	if ahead >= Free(req, len(r.holders), len(r.grants)) {
		return false, nil
	}
	delete(r.waiters, req.Holder)
	r.holders[req.Holder] = req.Now
	if req.Rate > 0 {
		r.grants = append(r.grants, req.Now)
	}
	return true, nil
}

// Free is how many slots a resource can grant now, given how many holders
// it has and how many slots it granted in the last req.Per: the least of
// what the capacity and the rate leave, unbounded when it has neither.
// Limiter implementations share it.
func Free(req LimitRequest, holders, recent int) int {
	free := int(^uint(0) >> 1)
	if req.Capacity > 0 {
		free = min(free, req.Capacity-holders)
	}
	if req.Rate > 0 {
		free = min(free, req.Rate-recent)
	}
	return max(free, 0)
}

func (m *memLimiter) ReleaseSlots(_ context.Context, holder string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.res {
		delete(r.holders, holder)
		delete(r.waiters, holder)
	}
	return nil
}

func (m *memLimiter) ReleaseSlotsPrefix(_ context.Context, prefix string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.res {
		for h := range r.holders {
			if strings.HasPrefix(h, prefix) {
				delete(r.holders, h)
				n++
			}
		}
		for h := range r.waiters {
			if strings.HasPrefix(h, prefix) {
				delete(r.waiters, h)
				n++
			}
		}
	}
	return n, nil
}

func (m *memLimiter) SlotHolders(_ context.Context, afterResource, afterHolder string, limit int) ([]LimitHolder, error) {
	m.mu.Lock()
	var out []LimitHolder
	for name, r := range m.res {
		for h, since := range r.holders {
			if cmp.Or(cmp.Compare(name, afterResource), cmp.Compare(h, afterHolder)) > 0 {
				out = append(out, LimitHolder{Resource: name, Holder: h, Since: since})
			}
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b LimitHolder) int {
		return cmp.Or(cmp.Compare(a.Resource, b.Resource), cmp.Compare(a.Holder, b.Holder))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
