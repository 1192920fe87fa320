package index

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// naive is the oracle: every record's fields in a map, and a query answered
// by sorting the ids and checking each, as store.Match does.
type naive map[string]Fields

func (n naive) candidates(q Query, limit int) []string {
	ids := make([]string, 0, len(n))
	for id := range n {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := []string{}
	for _, id := range ids {
		f := n[id]
		switch {
		case len(out) == limit,
			q.After != "" && id <= q.After,
			!strings.HasPrefix(id, q.IDPrefix),
			q.Status != nil && (f.Quarantined || f.Status != *q.Status),
			q.Quarantined && !f.Quarantined,
			q.Version != "" && f.Version != q.Version,
			q.Flow != "" && strings.SplitN(f.Version, "/", 2)[0] != q.Flow,
			q.ErrorKind != "" && f.ErrorKind != q.ErrorKind,
			q.Position != "" && f.Position != q.Position && !strings.HasPrefix(f.Position, q.Position+"/"):
			continue
		}
		out = append(out, id)
	}
	return out
}

func collect(x *Index, q Query, limit int) []string {
	out := []string{}
	for id := range x.Candidates(q) {
		if len(out) == limit {
			break
		}
		out = append(out, id)
	}
	return out
}

// check verifies the index's structure: every set sorted and counted,
// every entry in exactly the sets its fields name.
func (x *Index) check(t require.TestingT) {
	walk := func(name string, s *set) []int32 {
		var nums []int32
		for i, c := range s.chunks {
			require.NotEmpty(t, c, "%s: chunk %d empty", name, i)
			require.LessOrEqual(t, len(c), chunkMax, name)
			nums = append(nums, c...)
		}
		require.Len(t, nums, s.n, name)
		for i := 1; i < len(nums); i++ {
			require.Less(t, x.id(nums[i-1]), x.id(nums[i]), "%s out of order", name)
		}
		return nums
	}
	require.Len(t, walk("all", &x.all), len(x.byID))
	member := map[int32][]string{}
	note := func(name string, s *set) {
		for _, num := range walk(name, s) {
			member[num] = append(member[num], name)
		}
	}
	note("quarantined", &x.quarantined)
	for st, s := range x.healthy {
		note(fmt.Sprint("status ", st), s)
	}
	for name, m := range map[string]map[string]*valueSet{"flow": x.flows, "version": x.versions, "kind": x.kinds, "position": x.positions} {
		for v, vs := range m {
			require.Equal(t, v, vs.key)
			require.Same(t, vs, x.values[vs.num])
			require.Positive(t, vs.n, "%s %q: empty sets are dropped", name, v)
			note(name+" "+v, &vs.set)
		}
	}
	var keys []string
	for k := range x.positions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	require.Equal(t, keys, append([]string(nil), x.posKeys...), "posKeys")
	for id, num := range x.byID {
		e := x.entry(num)
		require.Equal(t, id, x.id(num))
		want := []string{fmt.Sprint("status ", e.status)}
		if e.quarantined {
			want = []string{"quarantined"}
		}
		for name, v := range map[string]string{"flow": x.value(e.flow), "version": x.value(e.version), "kind": x.value(e.kind), "position": x.value(e.position)} {
			if v != "" {
				want = append(want, name+" "+v)
			}
		}
		slices.Sort(want)
		got := member[num]
		slices.Sort(got)
		require.Equal(t, want, got, "sets of %q", id)
	}
}

// TestIndexMatchesNaive drives the index with random sets and deletes,
// and compares every query with the oracle. Ids, positions and versions
// are drawn from characters around '/', so that "a/b", "a.b", "a0" and
// "ab" sit next to one another; thousands of ids make sets of many
// chunks.
func TestIndexMatchesNaive(t *testing.T) {
	alphabet := []string{"a", "b", "/", ".", "0"}
	versions := []string{"a/v1", "a/v2", "b/v1", "a", "ab/v1", "a.b/v1"}
	kinds := []string{"", "timeout", "error"}
	rapid.Check(t, func(rt *rapid.T) {
		word := func(label string, lo, hi int) string {
			var b strings.Builder
			for i := range rapid.IntRange(lo, hi).Draw(rt, label+"Len") {
				b.WriteString(rapid.SampledFrom(alphabet).Draw(rt, fmt.Sprint(label, i)))
			}
			return b.String()
		}
		fields := func() Fields {
			return Fields{
				Status:      stepflow.Status(rapid.IntRange(0, 5).Draw(rt, "status")),
				Quarantined: rapid.IntRange(0, 4).Draw(rt, "quarantined") == 0,
				Version:     rapid.SampledFrom(versions).Draw(rt, "version"),
				Position:    word("position", 0, 3),
				ErrorKind:   rapid.SampledFrom(kinds).Draw(rt, "kind"),
			}
		}
		x, model := New(), naive{}
		// A bulk of records first, in random order, so that sets split.
		rnd := rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "seed"), 1))
		for i := range rapid.IntRange(0, 3000).Draw(rt, "bulk") {
			id := fmt.Sprintf("%s%05d", alphabet[rnd.IntN(len(alphabet))], rnd.IntN(100000))
			f := Fields{Status: stepflow.Status(i % 6), Quarantined: i%50 == 0, Version: versions[i%len(versions)],
				Position: []string{"", "a", "a/b", "ab", "a.b", "a/b/c"}[rnd.IntN(6)], ErrorKind: kinds[i%3]}
			x.Set(id, f)
			model[id] = f
		}
		ids := func() []string { return slices.Sorted(maps.Keys(model)) }
		for range rapid.IntRange(1, 60).Draw(rt, "ops") {
			switch rapid.IntRange(0, 3).Draw(rt, "op") {
			case 0: // a new record, or new fields for one
				id := word("id", 1, 4)
				f := fields()
				x.Set(id, f)
				model[id] = f
			case 1: // an existing record changes
				if all := ids(); len(all) > 0 {
					id := rapid.SampledFrom(all).Draw(rt, "changed")
					f := fields()
					x.Set(id, f)
					model[id] = f
				}
			case 2: // a delete, of an existing id or not
				id := word("deleted", 1, 4)
				if all := ids(); len(all) > 0 && rapid.Bool().Draw(rt, "existing") {
					id = rapid.SampledFrom(all).Draw(rt, "deletedExisting")
				}
				x.Delete(id)
				delete(model, id)
			case 3: // a query
				var q Query
				if rapid.IntRange(0, 2).Draw(rt, "hasStatus") == 0 {
					st := stepflow.Status(rapid.IntRange(0, 5).Draw(rt, "qstatus"))
					q.Status = &st
				}
				q.Quarantined = rapid.IntRange(0, 4).Draw(rt, "qquarantined") == 0
				if rapid.IntRange(0, 2).Draw(rt, "hasFlow") == 0 {
					q.Flow = rapid.SampledFrom([]string{"a", "b", "ab", "a.b", "nope"}).Draw(rt, "qflow")
				}
				if rapid.IntRange(0, 2).Draw(rt, "hasVersion") == 0 {
					q.Version = rapid.SampledFrom(append(versions, "a/v9")).Draw(rt, "qversion")
				}
				q.IDPrefix = word("qprefix", 0, 2)
				if rapid.Bool().Draw(rt, "hasPosition") {
					q.Position = word("qposition", 1, 2)
				}
				q.ErrorKind = rapid.SampledFrom(kinds).Draw(rt, "qkind")
				switch all := ids(); rapid.IntRange(0, 3).Draw(rt, "after") {
				case 1:
					q.After = word("qafter", 1, 6)
				case 2:
					if len(all) > 0 {
						q.After = rapid.SampledFrom(all).Draw(rt, "qafterID")
					}
				case 3:
					if len(all) > 0 {
						q.After = rapid.SampledFrom(all).Draw(rt, "qafterPrefix")
						q.IDPrefix = q.After
					}
				}
				limit := rapid.IntRange(1, 300).Draw(rt, "limit")
				require.Equal(rt, model.candidates(q, limit), collect(x, q, limit), "%+v", q)
			}
		}
		require.Equal(rt, len(model), x.Len())
		x.check(rt)
	})
}

// TestPositionBoundaries: a position filter takes the path and the paths
// below it, not those that merely start with the same characters.
func TestPositionBoundaries(t *testing.T) {
	x := New()
	for id, pos := range map[string]string{"1": "a", "2": "a/b", "3": "ab", "4": "a.b", "5": "a/b/c", "6": "a0", "7": "", "8": "a/"} {
		x.Set(id, Fields{Version: "f/v1", Position: pos})
	}
	for path, want := range map[string][]string{
		"a":     {"1", "2", "5", "8"},
		"a/b":   {"2", "5"},
		"ab":    {"3"},
		"a/b/c": {"5"},
		"a/":    {"8"},
		"b":     {},
	} {
		assert.Equal(t, want, collect(x, Query{Position: path}, 100), path)
	}
	x.check(t)
}

// TestSetChunks inserts and deletes enough ids, in and out of order, for
// sets to split and merge, and checks their structure.
func TestSetChunks(t *testing.T) {
	x := New()
	rnd := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	perm := rnd.Perm(n)
	for _, i := range perm {
		x.Set(fmt.Sprintf("p%06d", i), Fields{Status: stepflow.Status(i % 3), Version: "f/v1"})
	}
	for i := range n { // in id order too
		x.Set(fmt.Sprintf("q%06d", i), Fields{Status: stepflow.Waiting, Version: "f/v1"})
	}
	x.check(t)
	assert.Greater(t, len(x.all.chunks), 2*n/chunkMax, "sets split")
	for _, i := range perm[:n-10] {
		x.Delete(fmt.Sprintf("p%06d", i))
	}
	for i := range n {
		if i%1000 != 0 {
			x.Delete(fmt.Sprintf("q%06d", i))
		}
	}
	x.check(t)
	assert.Equal(t, 30, x.Len())
	assert.Less(t, len(x.all.chunks), 5, "sets merge as they empty")
	assert.Len(t, x.free, 2*n-30, "numbers are kept for reuse")
}
