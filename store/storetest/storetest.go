// Package storetest is the conformance suite for store.Store
// implementations. Every store in this module runs it; a third-party store
// should too:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return newMyStore(t) })
//	}
//
// newStore must return an empty store for each call, and close it (or
// register its cleanup with t.Cleanup) itself.
package storetest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// t0 is the suite's "now". Times are explicit inputs to every store
// method, so the suite never depends on the wall clock.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)

// Run runs the whole suite against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateLoad", testCreateLoad},
		{"ClaimOrderAndLimit", testClaimOrderAndLimit},
		{"ClaimLease", testClaimLease},
		{"Commit", testCommit},
		{"CommitBatchPartial", testCommitBatchPartial},
		{"CommitLeaseLost", testCommitLeaseLost},
		{"Quarantine", testQuarantine},
		{"RenewRelease", testRenewRelease},
		{"NextDue", testNextDue},
		{"Watch", testWatch},
		{"CountList", testCountList},
		{"ConcurrentClaims", testConcurrentClaims},
		{"Invalid", testInvalid},
		{"Close", testClose},
		{"VersionsClaim", testVersionsClaim},
		{"VersionFromBlob", testVersionFromBlob},
		{"CommitVersion", testCommitVersion},
		{"CreateMany", testCreateMany},
		{"Delete", testDelete},
		{"DeleteEnded", testDeleteEnded},
		{"WatchEnded", testWatchEnded},
		{"CountByVersion", testCountByVersion},
		{"ListFilters", testListFilters},
		{"ManyFlowsConcurrent", testManyFlowsConcurrent},
		{"ListPaging", testListPaging},
		{"ListWrites", testListWrites},
		{"KeepLease", testKeepLease},
		{"DeleteRevisions", testDeleteRevisions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
	t.Run("Model", func(t *testing.T) { testModel(t, newStore) })
	t.Run("ListModel", func(t *testing.T) { testListModel(t, newStore) })
}

func ctxT(t *testing.T) context.Context { return t.Context() }

func mustCreate(t *testing.T, s store.Store, id string, st stepflow.Status, due time.Time) {
	t.Helper()
	require.NoError(t, s.Create(ctxT(t), store.Record{ID: id, Version: "test/v1", Status: st, Due: due, Blob: []byte("blob-" + id)}))
}

func ids(rs []store.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func testCreateLoad(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, err := s.Load(ctx, "nope")
	require.ErrorIs(t, err, store.ErrNotFound)

	require.NoError(t, s.Create(ctx, store.Record{ID: "a", Version: "test/v1", Revision: 42, Owner: "x", Status: stepflow.Waiting, Due: t0, Blob: []byte{0, 1, 2, 0xff}}))
	r, err := s.Load(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, "a", r.ID)
	assert.Equal(t, uint64(1), r.Revision, "Create stores revision 1")
	assert.Equal(t, "", r.Owner, "Create stores an unleased record")
	assert.Equal(t, stepflow.Waiting, r.Status)
	assert.True(t, t0.Equal(r.Due), "due %s", r.Due)
	assert.Equal(t, []byte{0, 1, 2, 0xff}, r.Blob)
	assert.Empty(t, r.Quarantine)

	err = s.Create(ctx, store.Record{ID: "a", Version: "test/v1", Status: stepflow.Running})
	require.ErrorIs(t, err, store.ErrExists)

	mustCreate(t, s, "done", stepflow.Done, t0)
	r, err = s.Load(ctx, "done")
	require.NoError(t, err)
	assert.True(t, r.Due.IsZero(), "a terminal process is never due")
}

func testClaimOrderAndLimit(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "late", stepflow.Waiting, t0.Add(time.Hour))
	mustCreate(t, s, "b", stepflow.Waiting, t0.Add(-time.Second))
	mustCreate(t, s, "a", stepflow.Waiting, t0.Add(-time.Second))
	mustCreate(t, s, "first", stepflow.Waiting, t0.Add(-time.Minute))
	mustCreate(t, s, "now", stepflow.Running, time.Time{})
	mustCreate(t, s, "done", stepflow.Done, time.Time{})

	got, err := s.Claim(ctx, store.Claim{Owner: "o", Now: t0, Limit: 2, Lease: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, []string{"now", "first"}, ids(got), "earliest due first; zero due means at once")
	got, err = s.Claim(ctx, store.Claim{Owner: "o", Now: t0, Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, ids(got), "ties broken by id, never the future or terminal ones")
	for _, r := range got {
		assert.Equal(t, "o", r.Owner)
		assert.True(t, t0.Add(time.Minute).Equal(r.Due), "claimed record is due at the lease's end")
		assert.Equal(t, []byte("blob-"+r.ID), r.Blob)
	}
	got, err = s.Claim(ctx, store.Claim{Owner: "o", Now: t0, Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	assert.Empty(t, got)
}

func testClaimLease(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "p", stepflow.Running, time.Time{})
	got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: t0, Limit: 5, Lease: 10 * time.Second})
	require.NoError(t, err)
	require.Equal(t, []string{"p"}, ids(got))

	got, err = s.Claim(ctx, store.Claim{Owner: "B", Now: t0.Add(9 * time.Second), Limit: 5, Lease: 10 * time.Second})
	require.NoError(t, err)
	assert.Empty(t, got, "a live lease keeps others out")

	got, err = s.Claim(ctx, store.Claim{Owner: "B", Now: t0.Add(10 * time.Second), Limit: 5, Lease: 10 * time.Second})
	require.NoError(t, err)
	require.Equal(t, []string{"p"}, ids(got), "an expired lease is taken over")
	assert.Equal(t, "B", got[0].Owner)
	r, err := s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, "B", r.Owner)
	assert.Equal(t, uint64(1), r.Revision, "claiming does not change the revision")
}

func testCommit(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "p", stepflow.Running, time.Time{})
	got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: t0, Limit: 1, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, got, 1)

	errs, err := s.Commit(ctx, "A", []store.Write{{ID: "p", Revision: 1, Status: stepflow.Waiting, Due: t0.Add(time.Hour), Blob: []byte("v2")}})
	require.NoError(t, err)
	assert.Nil(t, errs)
	r, err := s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), r.Revision)
	assert.Equal(t, stepflow.Waiting, r.Status)
	assert.True(t, t0.Add(time.Hour).Equal(r.Due))
	assert.Equal(t, "", r.Owner, "a write releases the lease")
	assert.Equal(t, []byte("v2"), r.Blob)

	// A stale revision is refused, and changes nothing.
	errs, err = s.Commit(ctx, "", []store.Write{{ID: "p", Revision: 1, Status: stepflow.Done, Blob: []byte("stale")}})
	require.NoError(t, err)
	require.Len(t, errs, 1)
	require.ErrorIs(t, errs[0], store.ErrConflict)
	var we *store.WriteError
	require.ErrorAs(t, errs[0], &we)
	assert.Equal(t, "p", we.ID)
	r, err = s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), r.Revision)
	assert.Equal(t, []byte("v2"), r.Blob)

	// Owner "" writes from outside a runner without a lease.
	errs, err = s.Commit(ctx, "", []store.Write{{ID: "p", Revision: 2, Status: stepflow.Canceled, Due: t0, Blob: []byte("v3")}})
	require.NoError(t, err)
	assert.Nil(t, errs)
	r, err = s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), r.Revision)
	assert.Equal(t, stepflow.Canceled, r.Status)
	assert.True(t, r.Due.IsZero(), "terminal status is never due whatever the write says")

	errs, err = s.Commit(ctx, "", []store.Write{{ID: "ghost", Revision: 1, Status: stepflow.Done}})
	require.NoError(t, err)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], store.ErrNotFound)
}

// testKeepLease: a store that keeps leases (store.LeaseKeeper) leaves a
// runner's record leased to it after a write with KeepUntil, so that no
// other runner claims it, and the owner writes it again; any other store
// releases the lease as for any write.
func testKeepLease(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "p", stepflow.Running, time.Time{})
	got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: t0, Limit: 1, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, got, 1)
	until := t0.Add(time.Minute)
	errs, err := s.Commit(ctx, "A", []store.Write{{ID: "p", Revision: 1, Status: stepflow.Running, Due: t0, KeepUntil: until, Blob: []byte("v2")}})
	require.NoError(t, err)
	require.Nil(t, errs)
	r, err := s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), r.Revision)
	lk, keeps := s.(store.LeaseKeeper)
	if !keeps || !lk.KeepsLeases() {
		assert.Equal(t, "", r.Owner, "a store that does not keep leases releases it")
		return
	}
	assert.Equal(t, "A", r.Owner, "the lease is kept")
	assert.True(t, until.Equal(r.Due), "due at the end of the kept lease, %s", r.Due)
	other, err := s.Claim(ctx, store.Claim{Owner: "B", Now: t0.Add(time.Second), Limit: 1, Lease: time.Minute})
	require.NoError(t, err)
	assert.Empty(t, other, "another runner does not claim a kept lease")
	errs, err = s.Commit(ctx, "A", []store.Write{{ID: "p", Revision: 2, Status: stepflow.Waiting, Due: t0.Add(time.Hour), Blob: []byte("v3")}})
	require.NoError(t, err)
	require.Nil(t, errs, "the owner writes the kept record again")
	r, err = s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, "", r.Owner, "a write without KeepUntil releases the lease")
	// Past the kept lease, another runner takes the record over.
	_, err = s.Commit(ctx, "", []store.Write{{ID: "p", Revision: 3, Status: stepflow.Running, Due: t0, Blob: []byte("v4")}})
	require.NoError(t, err)
	_, err = s.Claim(ctx, store.Claim{Owner: "A", Now: t0, Limit: 1, Lease: time.Minute})
	require.NoError(t, err)
	_, err = s.Commit(ctx, "A", []store.Write{{ID: "p", Revision: 4, Status: stepflow.Running, Due: t0, KeepUntil: until, Blob: []byte("v5")}})
	require.NoError(t, err)
	other, err = s.Claim(ctx, store.Claim{Owner: "B", Now: until.Add(time.Second), Limit: 1, Lease: time.Minute})
	require.NoError(t, err)
	assert.Len(t, other, 1, "a kept lease ends like any lease")
}

func testCommitBatchPartial(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for i := range 5 {
		mustCreate(t, s, fmt.Sprintf("p%d", i), stepflow.Running, time.Time{})
	}
	got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: t0, Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, got, 5)
	ws := make([]store.Write, 0, 5)
	for _, r := range got {
		ws = append(ws, store.Write{ID: r.ID, Revision: r.Revision, Status: stepflow.Running, Blob: []byte("n-" + r.ID)})
	}
	ws[2].Revision = 7
	errs, err := s.Commit(ctx, "A", ws)
	require.NoError(t, err)
	require.Len(t, errs, 5)
	for i, e := range errs {
		if i == 2 {
			assert.ErrorIs(t, e, store.ErrConflict)
			continue
		}
		assert.NoError(t, e)
		r, err := s.Load(ctx, ws[i].ID)
		require.NoError(t, err)
		assert.Equal(t, uint64(2), r.Revision, "other writes of the batch are applied")
	}
	r, err := s.Load(ctx, ws[2].ID)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), r.Revision)
	assert.Equal(t, "A", r.Owner, "a refused write leaves the lease alone")
}

func testCommitLeaseLost(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "p", stepflow.Running, time.Time{})
	_, err := s.Claim(ctx, store.Claim{Owner: "A", Now: t0, Limit: 1, Lease: time.Second})
	require.NoError(t, err)
	got, err := s.Claim(ctx, store.Claim{Owner: "B", Now: t0.Add(2 * time.Second), Limit: 1, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, got, 1)

	errs, err := s.Commit(ctx, "A", []store.Write{{ID: "p", Revision: 1, Status: stepflow.Done, Blob: []byte("A")}})
	require.NoError(t, err)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], store.ErrLeaseLost)

	errs, err = s.Commit(ctx, "B", []store.Write{{ID: "p", Revision: 1, Status: stepflow.Done, Blob: []byte("B")}})
	require.NoError(t, err)
	assert.Nil(t, errs)
	r, err := s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, []byte("B"), r.Blob)
	assert.Equal(t, stepflow.Done, r.Status)
}

func testQuarantine(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "bad", stepflow.Running, time.Time{})
	mustCreate(t, s, "good", stepflow.Running, time.Time{})
	got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: t0, Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, got, 2)
	errs, err := s.Commit(ctx, "A", []store.Write{{ID: "bad", Revision: 1, Status: stepflow.Running, Due: t0, Quarantine: "decode: corrupt"}})
	require.NoError(t, err)
	assert.Nil(t, errs)

	r, err := s.Load(ctx, "bad")
	require.NoError(t, err)
	assert.Equal(t, "decode: corrupt", r.Quarantine)
	assert.Equal(t, []byte("blob-bad"), r.Blob, "quarantine keeps the bytes")
	assert.True(t, r.Due.IsZero())
	assert.Equal(t, uint64(2), r.Revision)

	got, err = s.Claim(ctx, store.Claim{Owner: "A", Now: t0.Add(24 * time.Hour), Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, []string{"good"}, ids(got), "a quarantined process is never claimed")

	c, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, c.Quarantined)
	assert.Equal(t, 1, c.ByStatus[stepflow.Running])

	q, err := s.List(ctx, store.Filter{Quarantined: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"bad"}, ids(q))

	// Repair: a write with new bytes and no reason brings it back.
	errs, err = s.Commit(ctx, "", []store.Write{{ID: "bad", Revision: 2, Status: stepflow.Running, Blob: []byte("fixed")}})
	require.NoError(t, err)
	assert.Nil(t, errs)
	got, err = s.Claim(ctx, store.Claim{Owner: "B", Now: t0, Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, []string{"bad"}, ids(got))
	assert.Equal(t, []byte("fixed"), got[0].Blob)
}

func testRenewRelease(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustCreate(t, s, "p", stepflow.Running, time.Time{})
	mustCreate(t, s, "q", stepflow.Running, time.Time{})
	got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: t0, Limit: 1, Lease: 10 * time.Second})
	require.NoError(t, err)
	require.Equal(t, []string{"p"}, ids(got))

	lost, err := s.Renew(ctx, "A", []string{"p", "q", "ghost"}, t0.Add(5*time.Second), 10*time.Second)
	require.NoError(t, err)
	slices.Sort(lost)
	assert.Equal(t, []string{"ghost", "q"}, lost)
	got, err = s.Claim(ctx, store.Claim{Owner: "B", Now: t0.Add(12 * time.Second), Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, []string{"q"}, ids(got), "the renewed lease still holds at 12s")

	require.NoError(t, s.Release(ctx, "B", []string{"p", "q"}, t0.Add(13*time.Second)), "releasing a lease one does not hold is ignored")
	r, err := s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, "A", r.Owner)
	r, err = s.Load(ctx, "q")
	require.NoError(t, err)
	assert.Equal(t, "", r.Owner)
	assert.False(t, r.Due.After(t0.Add(13*time.Second)), "a released record is due at once")

	require.NoError(t, s.Release(ctx, "A", []string{"p"}, t0.Add(13*time.Second)))
	got, err = s.Claim(ctx, store.Claim{Owner: "C", Now: t0.Add(13 * time.Second), Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"p", "q"}, ids(got))
}

func testNextDue(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, ok, err := s.NextDue(ctx, nil)
	require.NoError(t, err)
	assert.False(t, ok)
	mustCreate(t, s, "done", stepflow.Done, time.Time{})
	_, ok, err = s.NextDue(ctx, nil)
	require.NoError(t, err)
	assert.False(t, ok, "terminal processes are never due")
	mustCreate(t, s, "forever", stepflow.Waiting, time.Time{})
	_, ok, err = s.NextDue(ctx, nil)
	require.NoError(t, err)
	assert.False(t, ok, "a waiting process without a wake-up time waits for a signal")

	mustCreate(t, s, "w2", stepflow.Waiting, t0.Add(2*time.Hour))
	mustCreate(t, s, "w1", stepflow.Waiting, t0.Add(time.Hour))
	d, ok, err := s.NextDue(ctx, nil)
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, t0.Add(time.Hour).Equal(d))

	_, err = s.Claim(ctx, store.Claim{Owner: "A", Now: t0.Add(time.Hour), Limit: 1, Lease: time.Minute})
	require.NoError(t, err)
	d, ok, err = s.NextDue(ctx, nil)
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, t0.Add(time.Hour+time.Minute).Equal(d), "a lease's end counts: the process is due again then")
}

func testWatch(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	ch := s.Watch(ctx)
	mustCreate(t, s, "p", stepflow.Running, time.Time{})
	select {
	case _, ok := <-ch:
		assert.True(t, ok)
	case <-time.After(10 * time.Second):
		t.Fatal("Create did not wake the watcher")
	}
	// Outside writes wake as well.
	errs, err := s.Commit(ctxT(t), "", []store.Write{{ID: "p", Revision: 1, Status: stepflow.Running, Blob: []byte("x")}})
	require.NoError(t, err)
	require.Nil(t, errs)
	select {
	case _, ok := <-ch:
		assert.True(t, ok)
	case <-time.After(10 * time.Second):
		t.Fatal("an outside write did not wake the watcher")
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the watch channel was not closed after its context ended")
		}
	}
}

func testCountList(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	c, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, c.Total())
	for i := range 7 {
		st := []stepflow.Status{stepflow.Running, stepflow.Waiting, stepflow.Done}[i%3]
		mustCreate(t, s, fmt.Sprintf("id%02d", i), st, t0)
	}
	c, err = s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 7, c.Total())
	assert.Equal(t, 3, c.ByStatus[stepflow.Running])
	assert.Equal(t, 2, c.ByStatus[stepflow.Waiting])
	assert.Equal(t, 2, c.ByStatus[stepflow.Done])

	all, err := s.List(ctx, store.Filter{})
	require.NoError(t, err)
	assert.Equal(t, []string{"id00", "id01", "id02", "id03", "id04", "id05", "id06"}, ids(all))
	page, err := s.List(ctx, store.Filter{After: "id02", Limit: 2})
	require.NoError(t, err)
	assert.Equal(t, []string{"id03", "id04"}, ids(page))
	done := stepflow.Done
	dl, err := s.List(ctx, store.Filter{Status: &done})
	require.NoError(t, err)
	assert.Equal(t, []string{"id02", "id05"}, ids(dl))
	assert.Equal(t, []byte("blob-id02"), dl[0].Blob)
}

func testConcurrentClaims(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 200
	for i := range n {
		mustCreate(t, s, fmt.Sprintf("p%03d", i), stepflow.Running, time.Time{})
	}
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for w := range 4 {
		owner := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for {
				got, err := s.Claim(ctx, store.Claim{Owner: owner, Now: t0, Limit: 7, Lease: time.Hour})
				if !assert.NoError(t, err) || len(got) == 0 {
					return
				}
				mu.Lock()
				for _, r := range got {
					if prev, dup := seen[r.ID]; dup {
						t.Errorf("%s claimed by %s and %s", r.ID, prev, owner)
					}
					seen[r.ID] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Len(t, seen, n, "every due record is claimed exactly once")
}

func testInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for _, c := range []store.Claim{
		{Owner: "", Now: t0, Limit: 1, Lease: time.Second},
		{Owner: "o", Now: t0, Limit: 0, Lease: time.Second},
		{Owner: "o", Now: t0, Limit: 1, Lease: 0},
	} {
		_, err := s.Claim(ctx, c)
		assert.ErrorIs(t, err, store.ErrInvalid, "%+v", c)
	}
	assert.ErrorIs(t, s.Create(ctx, store.Record{Status: stepflow.Running}), store.ErrInvalid)
}

func testClose(t *testing.T, s store.Store) {
	ch := s.Watch(context.Background())
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
	deadline := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch:
		case <-deadline:
			t.Fatal("Close did not end a Watch")
		}
	}
	_, err := s.Load(ctxT(t), "x")
	assert.ErrorIs(t, err, store.ErrClosed)
	_, err = s.Claim(ctxT(t), store.Claim{Owner: "o", Now: t0, Limit: 1, Lease: time.Second})
	assert.ErrorIs(t, err, store.ErrClosed)
}

// testModel drives a store with random operations and compares it with a
// naive model: revisions, owners, statuses and claim exclusivity.
func testModel(t *testing.T, newStore func(t *testing.T) store.Store) {
	rapid.Check(t, func(rt *rapid.T) {
		s := newStore(t)
		defer s.Close()
		ctx := t.Context()
		type mrec struct {
			rev   uint64
			owner string
			due   time.Time // lease end while owned
			st    stepflow.Status
			blob  string
		}
		model := map[string]*mrec{}
		now := t0
		owners := []string{"A", "B"}
		ops := rapid.IntRange(5, 40).Draw(rt, "ops")
		for range ops {
			switch rapid.IntRange(0, 4).Draw(rt, "op") {
			case 0: // create
				id := fmt.Sprintf("p%d", rapid.IntRange(0, 6).Draw(rt, "id"))
				err := s.Create(ctx, store.Record{ID: id, Version: "test/v1", Status: stepflow.Running, Blob: []byte("c")})
				if _, ok := model[id]; ok {
					require.ErrorIs(rt, err, store.ErrExists)
					continue
				}
				require.NoError(rt, err)
				model[id] = &mrec{rev: 1, due: store.DueNow, st: stepflow.Running, blob: "c"}
			case 1: // claim
				owner := rapid.SampledFrom(owners).Draw(rt, "owner")
				got, err := s.Claim(ctx, store.Claim{Owner: owner, Now: now, Limit: rapid.IntRange(1, 3).Draw(rt, "limit"), Lease: 10 * time.Second})
				require.NoError(rt, err)
				for _, r := range got {
					m := model[r.ID]
					require.NotNil(rt, m)
					require.False(rt, m.due.IsZero() || m.due.After(now), "claimed %s not due (%s > %s)", r.ID, m.due, now)
					m.owner, m.due = owner, now.Add(10*time.Second)
				}
			case 2: // commit what one owner holds, or a stale write
				owner := rapid.SampledFrom(owners).Draw(rt, "owner")
				var ws []store.Write
				for id, m := range model {
					rev := m.rev
					if rapid.Bool().Draw(rt, "stale") {
						rev--
					}
					ws = append(ws, store.Write{ID: id, Revision: rev, Status: stepflow.Waiting, Due: now.Add(time.Duration(rapid.IntRange(0, 20).Draw(rt, "in")) * time.Second), Blob: []byte(owner)})
				}
				slices.SortFunc(ws, func(a, b store.Write) int { return cmpString(a.ID, b.ID) })
				errs, err := s.Commit(ctx, owner, ws)
				require.NoError(rt, err)
				for i, w := range ws {
					m := model[w.ID]
					var want error
					switch {
					case w.Revision != m.rev:
						want = store.ErrConflict
					case m.owner != owner:
						want = store.ErrLeaseLost
					}
					var got error
					if errs != nil {
						got = errs[i]
					}
					if want != nil {
						require.ErrorIs(rt, got, want, "write %s", w.ID)
						continue
					}
					require.NoError(rt, got, "write %s", w.ID)
					m.rev++
					m.owner, m.st, m.due, m.blob = "", w.Status, w.Due, owner
				}
			case 3: // time passes
				now = now.Add(time.Duration(rapid.IntRange(1, 15).Draw(rt, "advance")) * time.Second)
			case 4: // load everything and compare
				for id, m := range model {
					r, err := s.Load(ctx, id)
					require.NoError(rt, err)
					require.Equal(rt, m.rev, r.Revision, id)
					require.Equal(rt, m.owner, r.Owner, id)
					require.Equal(rt, m.st, r.Status, id)
					require.Equal(rt, m.blob, string(r.Blob), id)
					require.True(rt, m.due.Equal(r.Due), "%s due %s, model %s", id, r.Due, m.due)
				}
			}
		}
		// NextDue is the model's earliest due time.
		var want time.Time
		for _, m := range model {
			if !m.due.IsZero() && (want.IsZero() || m.due.Before(want)) {
				want = m.due
			}
		}
		got, ok, err := s.NextDue(ctx, nil)
		require.NoError(rt, err)
		require.Equal(rt, !want.IsZero(), ok)
		if ok {
			require.True(rt, want.Equal(got), "next due %s, model %s", got, want)
		}
	})
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// PostgresEnv is the environment variable that names the PostgreSQL
// database tests may use (a postgres:// URL). CI sets it.
const PostgresEnv = "STEPFLOW_TEST_PG"

// PostgresDSN returns the test database from PostgresEnv, or skips the test
// with a message saying how to get one.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(PostgresEnv)
	if dsn == "" {
		t.Skip("PostgreSQL tests need " + PostgresEnv + " (a postgres:// URL); " +
			"for a local server run: export " + PostgresEnv + "=$(bash -c '. .ci/postgres.sh >/dev/null; echo $" + PostgresEnv + "')")
	}
	return dsn
}
