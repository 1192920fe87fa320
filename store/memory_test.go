package store_test

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflow"

	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := store.NewMemory()
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// TestMemoryClaimOrder compares the due-time index of the in-memory store
// with a naive oracle: after any mix of creates, writes (which move due
// times, or take a process out of scheduling), renewals and releases, a
// claim returns exactly the due records with the earliest (due, id).
func TestMemoryClaimOrder(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		s := store.NewMemory()
		defer s.Close()
		type mrec struct {
			rev   uint64
			owner string
			due   time.Time // zero: never due
		}
		model := map[string]*mrec{}
		// Due times are drawn from a few seconds with a few nanosecond
		// offsets, so that ties on the second, on the instant and on the
		// id's order all occur.
		drawDue := func(name string) time.Time {
			if rapid.IntRange(0, 5).Draw(rt, name+"-never") == 0 {
				return time.Time{}
			}
			return t0.Add(time.Duration(rapid.IntRange(-3, 3).Draw(rt, name+"-s"))*time.Second +
				time.Duration(rapid.IntRange(0, 2).Draw(rt, name+"-ns")))
		}
		now := t0
		for range rapid.IntRange(1, 120).Draw(rt, "ops") {
			// Short ids, and ids alike in their first 8 bytes or more.
			prefix := rapid.SampledFrom([]string{"p", "process-", "process-x"}).Draw(rt, "prefix")
			id := fmt.Sprintf("%s%02d", prefix, rapid.IntRange(0, 12).Draw(rt, "id"))
			m := model[id]
			switch rapid.IntRange(0, 5).Draw(rt, "op") {
			case 0: // create
				due := drawDue("create")
				if due.IsZero() {
					due = store.DueNow
				}
				err := s.Create(ctx, store.Record{ID: id, Version: "test/v1", Status: stepflow.Running, Due: due})
				if m != nil {
					require.ErrorIs(rt, err, store.ErrExists)
					continue
				}
				require.NoError(rt, err)
				model[id] = &mrec{rev: 1, due: due}
			case 1: // write a few processes from outside, moving their due times
				if len(model) == 0 {
					continue
				}
				var ws []store.Write
				for _, id := range rapid.SliceOfNDistinct(rapid.SampledFrom(slices.Sorted(maps.Keys(model))), 0, 4, rapid.ID).Draw(rt, "write") {
					ws = append(ws, store.Write{ID: id, Revision: model[id].rev, Status: stepflow.Waiting, Due: drawDue("write")})
				}
				errs, err := s.Commit(ctx, "", ws)
				require.NoError(rt, err)
				require.Nil(rt, errs)
				for _, w := range ws {
					m := model[w.ID]
					m.rev, m.owner, m.due = m.rev+1, "", w.Due
				}
			case 5: // owner A writes back everything it holds, runnable now,
				// as a runner does
				var ws []store.Write
				for id, m := range model {
					if m.owner == "A" {
						ws = append(ws, store.Write{ID: id, Revision: m.rev, Status: stepflow.Running, Due: now})
					}
				}
				errs, err := s.Commit(ctx, "A", ws)
				require.NoError(rt, err)
				require.Nil(rt, errs)
				for _, w := range ws {
					m := model[w.ID]
					m.rev, m.owner, m.due = m.rev+1, "", now
				}
			case 2: // renew the lease of a leased record
				if m == nil || m.owner == "" {
					continue
				}
				lease := time.Duration(rapid.IntRange(1, 4).Draw(rt, "lease")) * time.Second
				lost, err := s.Renew(ctx, m.owner, []string{id}, now, lease)
				require.NoError(rt, err)
				require.Empty(rt, lost)
				m.due = now.Add(lease)
			case 3: // release a leased record
				if m == nil || m.owner == "" {
					continue
				}
				require.NoError(rt, s.Release(ctx, m.owner, []string{id}, now))
				m.owner, m.due = "", now
			case 4: // claim at a random time
				now = t0.Add(time.Duration(rapid.IntRange(-4, 4).Draw(rt, "now")) * time.Second)
				limit := rapid.IntRange(1, 5).Draw(rt, "limit")
				got, err := s.Claim(ctx, store.Claim{Owner: "A", Now: now, Limit: limit, Lease: time.Second})
				require.NoError(rt, err)
				var due []string
				for id, m := range model {
					if !m.due.IsZero() && !m.due.After(now) {
						due = append(due, id)
					}
				}
				slices.SortFunc(due, func(a, b string) int {
					if c := model[a].due.Compare(model[b].due); c != 0 {
						return c
					}
					return cmp.Compare(a, b)
				})
				want := append([]string{}, due[:min(limit, len(due))]...)
				gotIDs := make([]string, len(got))
				for i, r := range got {
					gotIDs[i] = r.ID
				}
				require.Equal(rt, want, gotIDs, "claim at %s", now)
				for _, id := range want {
					model[id].owner, model[id].due = "A", now.Add(time.Second)
				}
			}
		}
		next, ok, err := s.NextDue(ctx, nil)
		require.NoError(rt, err)
		var want time.Time
		for _, m := range model {
			if !m.due.IsZero() && (want.IsZero() || m.due.Before(want)) {
				want = m.due
			}
		}
		require.Equal(rt, !want.IsZero(), ok)
		require.True(rt, want.Equal(next), "next due %s, model %s", next, want)
	})
}

// BenchmarkMemoryClaimCommit measures the in-memory store's share of one
// runner step: a claim of 256 due processes, then one commit of 256 writes
// that leave them runnable, with 1k to 100k processes in the store. ns/op
// is per process-step.
func BenchmarkMemoryClaimCommit(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("procs=%d", n), func(b *testing.B) {
			ctx := context.Background()
			s := store.NewMemory()
			defer s.Close()
			blob := []byte("state")
			for i := range n {
				require.NoError(b, s.Create(ctx, store.Record{ID: fmt.Sprintf("p%07d", i), Version: "bench/v1", Status: stepflow.Running, Blob: blob}))
			}
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			ws := make([]store.Write, 0, 256)
			b.ReportAllocs()
			steps := 0
			for b.Loop() {
				now = now.Add(time.Microsecond)
				recs, err := s.Claim(ctx, store.Claim{Owner: "bench", Now: now, Limit: 256, Lease: 30 * time.Second})
				if err != nil || len(recs) == 0 {
					b.Fatal(err, len(recs))
				}
				ws = ws[:0]
				for _, r := range recs {
					ws = append(ws, store.Write{ID: r.ID, Revision: r.Revision, Status: stepflow.Running, Due: now, Blob: blob})
				}
				errs, err := s.Commit(ctx, "bench", ws)
				if err != nil || errs != nil {
					b.Fatal(err, errs)
				}
				steps += len(recs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(steps), "ns/step")
		})
	}
}

func TestMemoryLimiter(t *testing.T) {
	storetest.RunLimiter(t, func(*testing.T) store.Limiter { return store.NewMemoryLimiter() })
}
