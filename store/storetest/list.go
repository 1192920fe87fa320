package storetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// The tests of this file cover List: paging, every filter with the others,
// and filters over records that writes and deletes keep changing. Stores
// serve List from indexes; these tests hold them to store.Match.

// listAll pages through f with pages of size, and returns the ids.
func listAll(t require.TestingT, ctx context.Context, s store.Store, f store.Filter, size int) []string {
	f.Limit = size
	out := []string{}
	for {
		page, err := s.List(ctx, f)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), size)
		for _, r := range page {
			require.True(t, store.Match(&r, f), "%s does not match %+v", r.ID, f)
			out = append(out, r.ID)
		}
		if len(page) < size {
			return out
		}
		f.After = page[len(page)-1].ID
	}
}

// want is the oracle: the ids of recs, in order, that f keeps.
func want(recs map[string]*store.Record, f store.Filter) []string {
	out := []string{}
	for _, id := range slices.Sorted(maps.Keys(recs)) {
		if store.Match(recs[id], f) {
			out = append(out, id)
		}
	}
	return out
}

// listRecords makes 700 records (more than fill one block of an index
// that splits its sets) of several statuses, versions, positions and
// kinds, some quarantined.
func listRecords() []store.Record {
	var recs []store.Record
	statuses := []stepflow.Status{stepflow.Running, stepflow.Waiting, stepflow.Failed, stepflow.Done, stepflow.NeedsAttention}
	positions := []string{"", "a", "a/b", "ab", "a/b/c", "a.b", "b"}
	for i := range 700 {
		r := rec(fmt.Sprintf("%s-%04d", []string{"x", "xy", "y"}[i%3], i), []string{"f/v1", "f/v2", "g/v1", "fg/v1"}[i%4], statuses[i%5], time.Time{})
		r.Position = positions[i%7]
		if r.Status == stepflow.Failed || r.Status == stepflow.NeedsAttention {
			r.ErrorKind = []string{stepflow.KindError, stepflow.KindTimeout}[i/5%2]
		}
		if i%11 == 0 {
			r.Quarantine = "decode: broken"
		}
		recs = append(recs, r)
	}
	return recs
}

// listFilters are filters of every kind, alone and together, with id
// prefixes.
func listFilters() []store.Filter {
	failed, waiting, running := stepflow.Failed, stepflow.Waiting, stepflow.Running
	base := []store.Filter{
		{},
		{Status: &failed},
		{Status: &waiting},
		{Status: &running, Quarantined: true},
		{Quarantined: true},
		{Flow: "f"}, {Flow: "fg"}, {Flow: "g"}, {Flow: "nope"},
		{Version: "f/v2"}, {Version: "f/v9"},
		{Position: "a"}, {Position: "a/b"}, {Position: "ab"}, {Position: "a/b/c"}, {Position: "a."}, {Position: "b"},
		{ErrorKind: stepflow.KindTimeout},
		{Status: &failed, Position: "a"},
		{Status: &failed, Flow: "f", Position: "a/b", ErrorKind: stepflow.KindError},
		{Quarantined: true, Flow: "g"},
		{Quarantined: true, Position: "a"},
		{Version: "fg/v1", ErrorKind: stepflow.KindError},
	}
	var out []store.Filter
	for _, f := range base {
		for _, p := range []string{"", "x", "xy", "x-", "y-06", "z"} {
			f.IDPrefix = p
			out = append(out, f)
		}
	}
	return out
}

// testListPaging pages through every filter, in pages of several sizes,
// After included: every page starts after the last id of the one before,
// whichever index the store reads, and the pages together are what
// store.Match keeps, in id order.
func testListPaging(t *testing.T, s store.Store) {
	recs := listRecords()
	errs, err := s.CreateMany(ctxT(t), recs)
	require.NoError(t, err)
	require.Nil(t, errs)
	all := map[string]*store.Record{}
	for i := range recs {
		all[recs[i].ID] = &recs[i]
	}
	for _, f := range listFilters() {
		w := want(all, f)
		for _, size := range []int{1, 7, 100} {
			if size == 1 && len(w) > 60 {
				continue // enough pages of one are read elsewhere
			}
			require.Equal(t, w, listAll(t, ctxT(t), s, f, size), "%s by %d", describe(f), size)
		}
		// After an id the filter does not keep, or that no record has.
		for _, after := range []string{"x-0001", "x-0350", "xy-0500", "y", "y-0699x", "a", "zz"} {
			f.After = after
			got, err := s.List(ctxT(t), f)
			require.NoError(t, err)
			require.Equal(t, head(want(all, f), store.DefaultListLimit), ids(got), "%s", describe(f))
		}
	}
}

// testListWrites checks List after writes that move records between
// statuses, versions, positions and kinds, into quarantine and out of it,
// and after deletes.
func testListWrites(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	recs := listRecords()
	errs, err := s.CreateMany(ctx, recs)
	require.NoError(t, err)
	require.Nil(t, errs)
	all := map[string]*store.Record{}
	for i := range recs {
		recs[i].Revision = 1
		all[recs[i].ID] = &recs[i]
	}
	check := func(when string) {
		t.Helper()
		for _, f := range listFilters() {
			require.Equal(t, want(all, f), listAll(t, ctx, s, f, 50), "%s: %s", when, describe(f))
		}
	}
	// Every third record moves on: another status, version, position and
	// kind, or the quarantine, or back out of it.
	var ws []store.Write
	for i := 0; i < len(recs); i += 3 {
		r := &recs[i]
		w := store.Write{ID: r.ID, Revision: r.Revision, Status: stepflow.Status((int(r.Status) + 1) % 6), Blob: []byte("moved")}
		switch i % 4 {
		case 0:
			w.Position, w.ErrorKind = "a/b/d", stepflow.KindTimeout
		case 1:
			w.Version, w.Position = "g/v2", "ab"
		case 2:
			w.Quarantine, w.Blob = "decode: moved", nil // keeps position and kind
		}
		ws = append(ws, w)
		r.Revision++
		r.Status, r.Quarantine = w.Status, w.Quarantine
		if w.Version != "" {
			r.Version = w.Version
		}
		if w.Blob != nil {
			r.Position, r.ErrorKind = w.Position, w.ErrorKind
		}
	}
	errs, err = s.Commit(ctx, "", ws)
	require.NoError(t, err)
	require.Nil(t, errs)
	check("after writes")

	var del []string
	for i := 1; i < len(recs); i += 4 {
		del = append(del, recs[i].ID)
		delete(all, recs[i].ID)
	}
	n, err := s.Delete(ctx, del)
	require.NoError(t, err)
	require.Equal(t, len(del), n)
	check("after deletes")

	// The ended records go, whenever they were written.
	for {
		n, err := s.DeleteEnded(ctx, time.Now().Add(time.Hour), 100)
		require.NoError(t, err)
		if n == 0 {
			break
		}
	}
	for id, r := range all {
		if r.Status.Terminal() && r.Quarantine == "" {
			delete(all, id)
		}
	}
	check("after DeleteEnded")

	// New records land among the old ones.
	var more []store.Record
	for i := range 50 {
		r := rec(fmt.Sprintf("x-%04da", i*13), "f/v1", stepflow.Failed, time.Time{})
		r.Position, r.ErrorKind = "a/b", stepflow.KindError
		more = append(more, r)
	}
	errs, err = s.CreateMany(ctx, more)
	require.NoError(t, err)
	require.Nil(t, errs)
	for i := range more {
		all[more[i].ID] = &more[i]
	}
	check("after creates")
}

// testListModel drives a store with random creates, writes, quarantines
// and deletes, and compares List, with random filters and pages, with
// store.Match over a model of the records.
func testListModel(t *testing.T, newStore func(t *testing.T) store.Store) {
	statuses := []stepflow.Status{stepflow.Running, stepflow.Waiting, stepflow.Done, stepflow.Failed, stepflow.Canceled, stepflow.NeedsAttention}
	versions := []string{"a/v1", "a/v2", "b/v1", "ab/v1", "a"}
	positions := []string{"", "a", "a/b", "ab", "a.b", "a/b/c", "b"}
	kinds := []string{"", stepflow.KindError, stepflow.KindTimeout}
	idChars := []string{"a", "b", "/", "."}
	rapid.Check(t, func(rt *rapid.T) {
		s := newStore(t)
		defer s.Close()
		ctx := t.Context()
		model := map[string]*store.Record{}
		word := func(label string, lo, hi int) string {
			var b strings.Builder
			for i := range rapid.IntRange(lo, hi).Draw(rt, label+"Len") {
				b.WriteString(rapid.SampledFrom(idChars).Draw(rt, fmt.Sprint(label, i)))
			}
			return b.String()
		}
		existing := func(label string) (*store.Record, bool) {
			if len(model) == 0 {
				return nil, false
			}
			return model[rapid.SampledFrom(slices.Sorted(maps.Keys(model))).Draw(rt, label)], true
		}
		for range rapid.IntRange(1, 40).Draw(rt, "ops") {
			switch rapid.IntRange(0, 4).Draw(rt, "op") {
			case 0: // create
				r := rec(word("id", 1, 4), rapid.SampledFrom(versions).Draw(rt, "version"), rapid.SampledFrom(statuses).Draw(rt, "status"), time.Time{})
				r.Position = rapid.SampledFrom(positions).Draw(rt, "position")
				r.ErrorKind = rapid.SampledFrom(kinds).Draw(rt, "kind")
				if rapid.IntRange(0, 4).Draw(rt, "quarantined") == 0 {
					r.Quarantine = "bad"
				}
				err := s.Create(ctx, r)
				if model[r.ID] != nil {
					require.ErrorIs(rt, err, store.ErrExists)
					continue
				}
				require.NoError(rt, err)
				r.Revision = 1
				model[r.ID] = &r
			case 1: // write
				r, ok := existing("written")
				if !ok {
					continue
				}
				w := store.Write{ID: r.ID, Revision: r.Revision, Status: rapid.SampledFrom(statuses).Draw(rt, "wstatus"),
					Position: rapid.SampledFrom(positions).Draw(rt, "wposition"), ErrorKind: rapid.SampledFrom(kinds).Draw(rt, "wkind"), Blob: []byte("w")}
				if rapid.Bool().Draw(rt, "migrate") {
					w.Version = rapid.SampledFrom(versions).Draw(rt, "wversion")
				}
				if rapid.IntRange(0, 3).Draw(rt, "wquarantine") == 0 {
					w.Quarantine = "bad"
					if rapid.Bool().Draw(rt, "keep") {
						w.Blob = nil
					}
				}
				errs, err := s.Commit(ctx, "", []store.Write{w})
				require.NoError(rt, err)
				require.Nil(rt, errs)
				r.Revision++
				r.Status, r.Quarantine = w.Status, w.Quarantine
				if w.Version != "" {
					r.Version = w.Version
				}
				if w.Blob != nil {
					r.Position, r.ErrorKind = w.Position, w.ErrorKind
				}
			case 2: // delete
				r, ok := existing("deleted")
				if !ok {
					continue
				}
				n, err := s.Delete(ctx, []string{r.ID, "never"})
				require.NoError(rt, err)
				require.Equal(rt, 1, n)
				delete(model, r.ID)
			default: // list
				var f store.Filter
				if rapid.IntRange(0, 2).Draw(rt, "hasStatus") == 0 {
					st := rapid.SampledFrom(statuses).Draw(rt, "fstatus")
					f.Status = &st
				}
				f.Quarantined = rapid.IntRange(0, 4).Draw(rt, "fquarantined") == 0
				if rapid.IntRange(0, 2).Draw(rt, "hasFlow") == 0 {
					f.Flow = rapid.SampledFrom([]string{"a", "b", "ab", "nope"}).Draw(rt, "fflow")
				}
				if rapid.IntRange(0, 3).Draw(rt, "hasVersion") == 0 {
					f.Version = rapid.SampledFrom(versions).Draw(rt, "fversion")
				}
				if rapid.Bool().Draw(rt, "hasPosition") {
					f.Position = rapid.SampledFrom(positions[1:]).Draw(rt, "fposition")
				}
				f.ErrorKind = rapid.SampledFrom(kinds).Draw(rt, "fkind")
				f.IDPrefix = word("fprefix", 0, 2)
				if r, ok := existing("after"); ok && rapid.Bool().Draw(rt, "hasAfter") {
					f.After = r.ID
				}
				size := rapid.IntRange(1, 5).Draw(rt, "size")
				require.Equal(rt, want(model, f), listAll(rt, ctx, s, f, size), "%s", describe(f))
			}
		}
	})
}

// describe prints a filter for failure messages, the status by name.
func describe(f store.Filter) string {
	st := "-"
	if f.Status != nil {
		st = f.Status.String()
	}
	f.Status = nil
	return fmt.Sprintf("status %s %+v", st, f)
}

func head(s []string, n int) []string { return s[:min(n, len(s))] }
