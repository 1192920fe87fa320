package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// The tests of this file cover what a store does for several flows and
// versions, and the lifecycle calls: batches, deletes, retention, ends.

func rec(id, version string, st stepflow.Status, due time.Time) store.Record {
	return store.Record{ID: id, Version: version, Status: st, Due: due, Blob: []byte("blob-" + id)}
}

func testVersionsClaim(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for i, r := range []store.Record{
		rec("a1", "a/v1", stepflow.Running, t0),
		rec("a2", "a/v2", stepflow.Running, t0.Add(time.Second)),
		rec("b1", "b/v1", stepflow.Waiting, t0.Add(-time.Minute)),
		rec("a1b", "a/v1", stepflow.Running, t0.Add(2*time.Second)),
	} {
		require.NoError(t, s.Create(ctx, r), "record %d", i)
	}
	d, ok, err := s.NextDue(ctx, []string{"a/v1"})
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, d.Equal(t0), "the earliest a/v1 record, not b/v1's: %v", d)
	d, ok, err = s.NextDue(ctx, nil)
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, d.Equal(t0.Add(-time.Minute)), "any version: %v", d)
	_, ok, err = s.NextDue(ctx, []string{"c/v1"})
	require.NoError(t, err)
	assert.False(t, ok, "no record of c/v1")

	got, err := s.Claim(ctx, store.Claim{Owner: "old", Now: t0.Add(time.Hour), Limit: 10, Lease: time.Minute, Versions: []string{"a/v1"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"a1", "a1b"}, ids(got), "only a/v1, earliest first")
	for _, r := range got {
		assert.Equal(t, "a/v1", r.Version)
	}
	got, err = s.Claim(ctx, store.Claim{Owner: "new", Now: t0.Add(time.Hour), Limit: 10, Lease: time.Minute, Versions: []string{"a/v1", "a/v2"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"a2"}, ids(got), "a/v1 is leased to old")
	got, err = s.Claim(ctx, store.Claim{Owner: "any", Now: t0.Add(time.Hour), Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, []string{"b1"}, ids(got), "no versions: any version")
}

func testVersionFromBlob(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	b, err := codec.Msgpack[stepflow.None](nil).Encode(stepflow.State[stepflow.None]{Version: "deploy/v3", ID: "p"})
	require.NoError(t, err)
	require.NoError(t, s.Create(ctx, store.Record{ID: "p", Status: stepflow.Running, Blob: b}))
	r, err := s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, "deploy/v3", r.Version, "read from the blob")
	assert.Equal(t, "deploy", r.Flow())
	err = s.Create(ctx, store.Record{ID: "q", Status: stepflow.Running, Blob: []byte("garbage")})
	assert.ErrorIs(t, err, store.ErrInvalid, "no version given and none readable")
	_, err = s.Load(ctx, "q")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func testCommitVersion(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r0 := rec("p", "a/v1", stepflow.Running, t0)
	r0.Position, r0.Updated = "one", t0
	require.NoError(t, s.Create(ctx, r0))
	got, err := s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, "one", got.Position)
	assert.True(t, got.Updated.Equal(t0), "Updated as given: %v", got.Updated)

	errs, err := s.Commit(ctx, "", []store.Write{{ID: "p", Revision: 1, Version: "a/v2", Status: stepflow.Failed,
		Position: "two/three", ErrorKind: stepflow.KindTimeout, Updated: t0.Add(time.Minute), Blob: []byte("v2")}})
	require.NoError(t, err)
	require.Nil(t, errs)
	got, err = s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, "a/v2", got.Version, "a migrated state names its new version")
	assert.Equal(t, "two/three", got.Position)
	assert.Equal(t, stepflow.KindTimeout, got.ErrorKind)
	assert.True(t, got.Updated.Equal(t0.Add(time.Minute)))

	// A write that names no version keeps it; a quarantine write keeps the
	// bytes, position and error kind.
	errs, err = s.Commit(ctx, "", []store.Write{{ID: "p", Revision: 2, Status: stepflow.Failed, Quarantine: "bad", Updated: t0.Add(2 * time.Minute)}})
	require.NoError(t, err)
	require.Nil(t, errs)
	got, err = s.Load(ctx, "p")
	require.NoError(t, err)
	assert.Equal(t, "a/v2", got.Version)
	assert.Equal(t, "two/three", got.Position)
	assert.Equal(t, stepflow.KindTimeout, got.ErrorKind)
	assert.Equal(t, []byte("v2"), got.Blob)
	assert.Equal(t, "bad", got.Quarantine)
}

func testCreateMany(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	require.NoError(t, s.Create(ctx, rec("taken", "a/v1", stepflow.Running, t0)))
	wctx, cancel := contextWithCancel(t)
	defer cancel()
	w := s.Watch(wctx)
	drain(w)
	recs := []store.Record{rec("n1", "a/v1", stepflow.Running, t0), rec("taken", "a/v1", stepflow.Running, t0),
		rec("n2", "b/v1", stepflow.Waiting, t0.Add(time.Hour)), rec("n1", "a/v1", stepflow.Running, t0), {Version: "a/v1", Status: stepflow.Running}}
	errs, err := s.CreateMany(ctx, recs)
	require.NoError(t, err)
	require.Len(t, errs, len(recs))
	assert.NoError(t, errs[0])
	assert.ErrorIs(t, errs[1], store.ErrExists)
	assert.NoError(t, errs[2])
	assert.ErrorIs(t, errs[3], store.ErrExists, "the same id twice in one batch")
	assert.ErrorIs(t, errs[4], store.ErrInvalid, "no id")
	for _, id := range []string{"n1", "n2"} {
		r, err := s.Load(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, uint64(1), r.Revision)
	}
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("CreateMany woke no watcher")
	}
	errs, err = s.CreateMany(ctx, []store.Record{rec("n3", "a/v1", stepflow.Running, t0)})
	require.NoError(t, err)
	assert.Nil(t, errs, "nil when every record was created")
	errs, err = s.CreateMany(ctx, nil)
	require.NoError(t, err)
	assert.Nil(t, errs)
}

func testDelete(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, s.Create(ctx, rec(id, "a/v1", stepflow.Running, t0)))
	}
	got, err := s.Claim(ctx, store.Claim{Owner: "r1", Now: t0, Limit: 1, Lease: time.Minute})
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, ids(got))
	wctx, cancel := contextWithCancel(t)
	defer cancel()
	ended := s.WatchEnded(wctx)
	drain(ended)

	n, err := s.Delete(ctx, []string{"a", "c", "nope"})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	_, err = s.Load(ctx, "a")
	assert.ErrorIs(t, err, store.ErrNotFound)
	errs, err := s.Commit(ctx, "r1", []store.Write{{ID: "a", Revision: 1, Status: stepflow.Done, Blob: []byte("x")}})
	require.NoError(t, err)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], store.ErrNotFound, "the runner that held a deleted process is refused")
	c, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, c.Total())
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("Delete woke no WatchEnded")
	}
	// The deleted ids can be used again.
	require.NoError(t, s.Create(ctx, rec("a", "a/v1", stepflow.Running, t0)))
	got, err = s.Claim(ctx, store.Claim{Owner: "r2", Now: t0, Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, ids(got))
}

// testDeleteRevisions: a deletion at a revision removes the process only
// if it is still at that revision, in one transaction with the others.
func testDeleteRevisions(t *testing.T, s store.Store) {
	rd, ok := s.(store.RevisionDeleter)
	if !ok {
		t.Skip("the store does not implement store.RevisionDeleter")
	}
	ctx := ctxT(t)
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, s.Create(ctx, rec(id, "a/v1", stepflow.Running, t0)))
	}
	errs, err := s.Commit(ctx, "", []store.Write{{ID: "b", Revision: 1, Status: stepflow.Failed, Blob: []byte("b2")}})
	require.NoError(t, err)
	require.Nil(t, errs)
	wctx, cancel := contextWithCancel(t)
	defer cancel()
	ended := s.WatchEnded(wctx)
	drain(ended)

	errs, err = rd.DeleteRevisions(ctx, []store.Deletion{{ID: "a", Revision: 1}, {ID: "b", Revision: 1}, {ID: "nope", Revision: 1}})
	require.NoError(t, err)
	require.Len(t, errs, 3)
	assert.NoError(t, errs[0])
	assert.ErrorIs(t, errs[1], store.ErrConflict, "b changed since revision 1")
	assert.ErrorIs(t, errs[2], store.ErrNotFound)
	var we *store.WriteError
	require.ErrorAs(t, errs[1], &we)
	assert.Equal(t, "b", we.ID)
	_, err = s.Load(ctx, "a")
	assert.ErrorIs(t, err, store.ErrNotFound)
	r, err := s.Load(ctx, "b")
	require.NoError(t, err, "a process that changed is kept")
	assert.Equal(t, []byte("b2"), r.Blob)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("DeleteRevisions woke no WatchEnded")
	}

	errs, err = rd.DeleteRevisions(ctx, []store.Deletion{{ID: "b", Revision: 2}, {ID: "c", Revision: 1}})
	require.NoError(t, err)
	assert.Nil(t, errs, "nil when every process was removed")
	c, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, c.Total())
	errs, err = rd.DeleteRevisions(ctx, nil)
	require.NoError(t, err)
	assert.Nil(t, errs)
}

func testDeleteEnded(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mk := func(id string, st stepflow.Status, updated time.Time, quarantine string) {
		r := rec(id, "a/v1", st, time.Time{})
		r.Updated, r.Quarantine = updated, quarantine
		require.NoError(t, s.Create(ctx, r))
	}
	mk("done-old", stepflow.Done, t0.Add(-3*time.Hour), "")
	mk("failed-old", stepflow.Failed, t0.Add(-2*time.Hour), "")
	mk("canceled-old", stepflow.Canceled, t0.Add(-90*time.Minute), "")
	mk("done-new", stepflow.Done, t0, "")
	mk("waiting-old", stepflow.Waiting, t0.Add(-5*time.Hour), "")
	mk("attention-old", stepflow.NeedsAttention, t0.Add(-5*time.Hour), "")
	mk("quarantined-old", stepflow.Done, t0.Add(-5*time.Hour), "unreadable")

	_, err := s.DeleteEnded(ctx, t0, 0)
	assert.ErrorIs(t, err, store.ErrInvalid)
	n, err := s.DeleteEnded(ctx, t0.Add(-time.Hour), 2)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	for id, gone := range map[string]bool{"done-old": true, "failed-old": true, "canceled-old": false} {
		_, err := s.Load(ctx, id)
		if gone {
			assert.ErrorIs(t, err, store.ErrNotFound, "%s: oldest first", id)
		} else {
			assert.NoError(t, err, id)
		}
	}
	n, err = s.DeleteEnded(ctx, t0.Add(-time.Hour), 2)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = s.DeleteEnded(ctx, t0.Add(-time.Hour), 2)
	require.NoError(t, err)
	assert.Equal(t, 0, n)
	for _, id := range []string{"done-new", "waiting-old", "attention-old", "quarantined-old"} {
		_, err := s.Load(ctx, id)
		assert.NoError(t, err, "%s is kept", id)
	}
}

func testWatchEnded(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	require.NoError(t, s.Create(ctx, rec("p", "a/v1", stepflow.Running, t0)))
	wctx, cancel := contextWithCancel(t)
	ended := s.WatchEnded(wctx)
	drain(ended)
	errs, err := s.Commit(ctx, "", []store.Write{{ID: "p", Revision: 1, Status: stepflow.Waiting, Due: t0.Add(time.Hour), Blob: []byte("w")}})
	require.NoError(t, err)
	require.Nil(t, errs)
	errs, err = s.Commit(ctx, "", []store.Write{{ID: "p", Revision: 2, Status: stepflow.Done, Blob: []byte("d")}})
	require.NoError(t, err)
	require.Nil(t, errs)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("an end woke no WatchEnded")
	}
	cancel()
	for range ended {
	}
}

func testCountByVersion(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	require.NoError(t, s.Create(ctx, rec("a", "a/v1", stepflow.Running, t0)))
	require.NoError(t, s.Create(ctx, rec("b", "a/v1", stepflow.Waiting, t0)))
	require.NoError(t, s.Create(ctx, rec("c", "a/v3", stepflow.Waiting, t0)))
	q := rec("d", "b/v1", stepflow.Running, t0)
	q.Quarantine = "bad"
	require.NoError(t, s.Create(ctx, q))
	c, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 4, c.Total())
	assert.Equal(t, map[stepflow.Status]int{stepflow.Running: 1, stepflow.Waiting: 2}, c.ByStatus)
	assert.Equal(t, 1, c.Quarantined)
	require.Len(t, c.ByVersion, 3)
	assert.Equal(t, map[stepflow.Status]int{stepflow.Running: 1, stepflow.Waiting: 1}, c.ByVersion["a/v1"].ByStatus)
	assert.Equal(t, 1, c.ByVersion["a/v3"].Total())
	assert.Equal(t, 1, c.ByVersion["b/v1"].Quarantined)
	n, err := s.Delete(ctx, []string{"c"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	c, err = s.Count(ctx)
	require.NoError(t, err)
	_, ok := c.ByVersion["a/v3"]
	assert.False(t, ok, "a version without processes is not listed")
}

func testListFilters(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mk := func(id, version string, st stepflow.Status, pos, kind string) {
		r := rec(id, version, st, t0)
		r.Position, r.ErrorKind = pos, kind
		require.NoError(t, s.Create(ctx, r))
	}
	mk("deploy-1", "deploy/v1", stepflow.Failed, "shouldDeploy/rollout", stepflow.KindTimeout)
	mk("deploy-2", "deploy/v2", stepflow.Failed, "shouldDeploy/rollout/wait", stepflow.KindError)
	mk("deploy-3", "deploy/v2", stepflow.Waiting, "approve", "")
	mk("deploy-4", "deploy/v1", stepflow.Failed, "shouldDeployOther", stepflow.KindTimeout)
	mk("rollback-1", "rollback/v1", stepflow.Failed, "shouldDeploy/rollout", stepflow.KindTimeout)
	failed := stepflow.Failed
	for _, tc := range []struct {
		f    store.Filter
		want []string
	}{
		{store.Filter{Flow: "deploy"}, []string{"deploy-1", "deploy-2", "deploy-3", "deploy-4"}},
		{store.Filter{Version: "deploy/v2"}, []string{"deploy-2", "deploy-3"}},
		{store.Filter{IDPrefix: "roll"}, []string{"rollback-1"}},
		{store.Filter{Position: "shouldDeploy/rollout"}, []string{"deploy-1", "deploy-2", "rollback-1"}},
		{store.Filter{Position: "shouldDeploy"}, []string{"deploy-1", "deploy-2", "rollback-1"}},
		{store.Filter{ErrorKind: stepflow.KindTimeout, Flow: "deploy"}, []string{"deploy-1", "deploy-4"}},
		{store.Filter{Status: &failed, Flow: "deploy", Position: "shouldDeploy/rollout"}, []string{"deploy-1", "deploy-2"}},
		{store.Filter{Flow: "deploy", After: "deploy-2", Limit: 1}, []string{"deploy-3"}},
		{store.Filter{Flow: "nope"}, []string{}},
	} {
		got, err := s.List(ctx, tc.f)
		require.NoError(t, err)
		assert.Equal(t, tc.want, ids(got), "%+v", tc.f)
		for _, r := range got {
			assert.True(t, store.Match(&r, tc.f), "Match agrees for %s", r.ID)
		}
	}
}

// testManyFlowsConcurrent claims from several owners, each knowing some
// versions, and checks that no record is claimed by an owner that does not
// know its version, and none twice.
func testManyFlowsConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	versions := []string{"a/v1", "a/v2", "b/v1"}
	var recs []store.Record
	for i := range 60 {
		recs = append(recs, rec(fmt.Sprintf("p%03d", i), versions[i%3], stepflow.Running, t0))
	}
	errs, err := s.CreateMany(ctx, recs)
	require.NoError(t, err)
	require.Nil(t, errs)
	knows := map[string][]string{"old": {"a/v1"}, "new": {"a/v1", "a/v2"}, "other": {"b/v1"}}
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for owner, vs := range knows {
		wg.Go(func() {
			for {
				got, err := s.Claim(ctx, store.Claim{Owner: owner, Now: t0, Limit: 3, Lease: time.Hour, Versions: vs})
				if !assert.NoError(t, err) || len(got) == 0 {
					return
				}
				mu.Lock()
				for _, r := range got {
					assert.Contains(t, vs, r.Version, "%s claimed %s of %s", owner, r.ID, r.Version)
					_, dup := seen[r.ID]
					assert.False(t, dup, "%s claimed twice", r.ID)
					seen[r.ID] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Len(t, seen, 60)
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}

// drain empties a watch channel of the wake-ups already pending.
func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
