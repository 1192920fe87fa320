package versions_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// The property test works on a model of a flow whose nodes have stable ids:
// a renamed or wrapped node keeps its id, so the test knows which node of
// version 2 is which node of version 1, and derives the rules from that.

type mkind uint8

const (
	mDo mkind = iota
	mSeq
	mCase
	mWait
	mWrapCase  // a Case whose predicate is always true, added by an edit
	mWrapRetry // a Retry, added by an edit
	mPar       // a Parallel; its kids are the branches
)

type mnode struct {
	id    int
	name  string
	kind  mkind
	kids  []*mnode // sequence children, or the then branch
	elses []*mnode // else branch of a case
}

func (n *mnode) clone() *mnode {
	c := *n
	c.kids = cloneList(n.kids)
	c.elses = cloneList(n.elses)
	return &c
}

func cloneList(l []*mnode) []*mnode {
	if l == nil {
		return nil
	}
	out := make([]*mnode, len(l))
	for i, n := range l {
		out[i] = n.clone()
	}
	return out
}

// lists returns the node's child lists (each one is a sequence).
func (n *mnode) lists() []*[]*mnode {
	switch n.kind {
	case mSeq, mWrapCase, mWrapRetry, mPar:
		return []*[]*mnode{&n.kids}
	case mCase:
		return []*[]*mnode{&n.kids, &n.elses}
	}
	return nil
}

type model struct{ top []*mnode }

func (m *model) clone() *model { return &model{top: cloneList(m.top)} }

// walk visits every node with its path and parent path, in flow order.
func (m *model) walk(visit func(n *mnode, path, parent string)) {
	var rec func(l []*mnode, prefix string)
	rec = func(l []*mnode, prefix string) {
		for _, n := range l {
			p := n.name
			if prefix != "" {
				p = prefix + "/" + n.name
			}
			visit(n, p, prefix)
			rec(n.kids, p)
			rec(n.elses, p)
		}
	}
	rec(m.top, "")
}

// allLists returns every list of the model: the top level and each node's,
// saying which ones are the branches of a Parallel.
func (m *model) allLists() (lists []*[]*mnode, branches []bool) {
	lists, branches = []*[]*mnode{&m.top}, []bool{false}
	var rec func(l []*mnode)
	rec = func(l []*mnode) {
		for _, n := range l {
			for _, sub := range n.lists() {
				lists = append(lists, sub)
				branches = append(branches, n.kind == mPar)
				rec(*sub)
			}
		}
	}
	rec(m.top)
	return lists, branches
}

type info struct {
	path, parent string
	parentID     int // 0 for the top level
	n            *mnode
}

func (m *model) index() map[int]info {
	out := map[int]info{}
	byPath := map[string]int{}
	m.walk(func(n *mnode, path, parent string) {
		out[n.id] = info{path: path, parent: parent, parentID: byPath[parent], n: n}
		byPath[path] = n.id
	})
	return out
}

func (m *model) flow(version string) *stepflow.Flow[D] {
	var build func(l []*mnode) []stepflow.Node[D]
	build = func(l []*mnode) []stepflow.Node[D] {
		out := make([]stepflow.Node[D], len(l))
		for i, n := range l {
			id := n.id
			switch n.kind {
			case mDo:
				out[i] = step(n.name, fmt.Sprint(id))
			case mWait:
				out[i] = combinators.WaitFor(n.name, func(ctx context.Context, d *D) (bool, error) {
					call, _ := stepflow.CallFrom(ctx)
					return (call.Seq+uint64(id))%3 == 0, nil
				}, combinators.Every(time.Second))
			case mSeq:
				out[i] = combinators.Sequence(n.name, build(n.kids)...)
			case mCase:
				out[i] = combinators.Case(n.name, func(_ context.Context, d *D) (bool, error) {
					return d.Seed>>(id%64)&1 == 1, nil
				}, build(n.kids)...).Else(build(n.elses)...)
			case mWrapCase:
				out[i] = combinators.Case(n.name, func(context.Context, *D) (bool, error) { return true, nil }, build(n.kids)...)
			case mPar:
				out[i] = combinators.Parallel(n.name, build(n.kids)...)
			case mWrapRetry:
				out[i] = combinators.Retry(n.name, combinators.RetryPolicy{}, build(n.kids)...)
			}
		}
		return out
	}
	return must(stepflow.New(version, build(m.top)...))
}

type gen struct {
	t      *rapid.T
	nextID int
}

func (g *gen) node(depth int) *mnode {
	g.nextID++
	n := &mnode{id: g.nextID, name: fmt.Sprintf("n%d", g.nextID)}
	k := rapid.IntRange(0, 9).Draw(g.t, "kind")
	switch {
	case depth >= 3 || k < 4:
		n.kind = mDo
	case k < 6:
		n.kind = mWait
	case k < 7:
		n.kind = mSeq
		n.kids = g.list(depth + 1)
	case k < 8:
		n.kind = mPar
		n.kids = g.list(depth + 1)
	default:
		n.kind = mCase
		n.kids = g.list(depth + 1)
		if rapid.Bool().Draw(g.t, "else") {
			n.elses = g.list(depth + 1)
		}
	}
	return n
}

func (g *gen) list(depth int) []*mnode {
	n := rapid.IntRange(1, 4).Draw(g.t, "len")
	out := make([]*mnode, n)
	for i := range out {
		out[i] = g.node(depth)
	}
	return out
}

// derived is version 2 of a model with the rules that migrate version 1.
type derived struct {
	v2 *model
	// continueAt maps a removed node's id to the id of the node that
	// followed it, where its processes continue.
	continueAt map[int]int
	// anchored ids must stay: a removed node continues there.
	anchored map[int]bool
	// dropped holds the ids of removed Parallel branches (and what they
	// contained): processes there treat the branch as completed.
	dropped map[int]bool
}

func contains(n *mnode, ids map[int]bool) bool {
	if ids[n.id] {
		return true
	}
	for _, l := range n.lists() {
		for _, k := range *l {
			if contains(k, ids) {
				return true
			}
		}
	}
	return false
}

func (g *gen) edit(d *derived) {
	lists, branches := d.v2.allLists()
	li := rapid.IntRange(0, len(lists)-1).Draw(g.t, "list")
	l := lists[li]
	kind := rapid.IntRange(0, 3).Draw(g.t, "edit")
	if kind == 0 {
		// Insert a new step, possibly into an empty else branch.
		i := rapid.IntRange(0, len(*l)).Draw(g.t, "at")
		g.nextID++
		n := &mnode{id: g.nextID, name: fmt.Sprintf("n%d", g.nextID), kind: mDo}
		*l = slices.Insert(*l, i, n)
		return
	}
	if len(*l) == 0 {
		return
	}
	i := rapid.IntRange(0, len(*l)-1).Draw(g.t, "at")
	switch kind {
	case 1: // remove node i, continuing at the node after it
		if contains((*l)[i], d.anchored) {
			return
		}
		if branches[li] {
			// A removed parallel branch has no node after it to continue
			// at (its siblings run beside it): it is dropped.
			if len(*l) < 2 {
				return
			}
			var mark func(n *mnode)
			mark = func(n *mnode) {
				d.dropped[n.id] = true
				for _, sub := range n.lists() {
					for _, k := range *sub {
						mark(k)
					}
				}
			}
			mark((*l)[i])
			*l = slices.Delete(*l, i, i+1)
			return
		}
		if i+1 >= len(*l) {
			return
		}
		next := (*l)[i+1]
		d.anchored[next.id] = true
		var mark func(n *mnode)
		mark = func(n *mnode) {
			d.continueAt[n.id] = next.id
			for _, sub := range n.lists() {
				for _, k := range *sub {
					mark(k)
				}
			}
		}
		mark((*l)[i])
		*l = slices.Delete(*l, i, i+1)
	case 2: // rename
		g.nextID++
		(*l)[i].name = fmt.Sprintf("r%d", g.nextID)
	case 3: // wrap in a sequence, a Retry or an always-true case
		g.nextID++
		kinds := []mkind{mSeq, mWrapRetry, mWrapCase}
		w := &mnode{id: g.nextID, name: fmt.Sprintf("w%d", g.nextID), kind: rapid.SampledFrom(kinds).Draw(g.t, "wrap"), kids: []*mnode{(*l)[i]}}
		(*l)[i] = w
	}
}

type ruleSpec struct {
	kind     string // rename, continue, restart, drop
	from, to string
}

// rules derives the rules from version 1 to version 2, and the ids that
// restarted groups may run again.
func rules(v1 *model, d *derived, restart map[int]bool) []ruleSpec {
	i1, i2 := v1.index(), d.v2.index()
	var out []ruleSpec
	v1.walk(func(n *mnode, path, parent string) {
		in2, kept := i2[n.id]
		if !kept {
			parent := i1[n.id].parentID
			if _, parentKept := i2[parent]; parent != 0 && !parentKept {
				return // covered by the rule of the removed parent
			}
			if d.dropped[n.id] {
				out = append(out, ruleSpec{"drop", path, ""})
			} else {
				out = append(out, ruleSpec{"continue", path, i2[d.continueAt[n.id]].path})
			}
			return
		}
		if want := joinPath(i2[i1[n.id].parentID].path, n.name); in2.path != want {
			out = append(out, ruleSpec{"rename", path, in2.path})
		}
		if restart[n.id] {
			out = append(out, ruleSpec{"restart", path, ""})
		}
	})
	return out
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "/" + b
}

func migration(specs []ruleSpec) *versions.Migration[D] {
	return migrationBetween("p/v1", "p/v2", specs)
}

func migrationBetween(from, to string, specs []ruleSpec) *versions.Migration[D] {
	m := versions.NewMigration[D](from, to)
	for _, r := range specs {
		switch r.kind {
		case "rename":
			m.Rename(r.from, r.to)
		case "continue":
			m.Continue(r.from, r.to)
		case "restart":
			m.Restart(r.from)
		case "drop":
			m.Drop(r.from)
		}
	}
	return m
}

func within(p, q string) bool { return p == q || strings.HasPrefix(p, q+"/") }

// TestPropertyMigrateRandomEdits generates a flow, derives version 2 by
// random edits with the matching rules, drives processes of version 1 to
// random points, migrates them and finishes them on version 2.
func TestPropertyMigrateRandomEdits(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := &gen{t: t}
		v1m := &model{top: g.list(1)}
		d := &derived{v2: v1m.clone(), continueAt: map[int]int{}, anchored: map[int]bool{}, dropped: map[int]bool{}}
		for n := rapid.IntRange(1, 5).Draw(t, "edits"); n > 0; n-- {
			g.edit(d)
		}
		// Some groups kept in version 2 restart.
		restart := map[int]bool{}
		i2 := d.v2.index()
		v1m.walk(func(n *mnode, _, _ string) {
			if _, ok := i2[n.id]; ok && (n.kind == mSeq || n.kind == mCase || n.kind == mPar) && rapid.IntRange(0, 4).Draw(t, "restart") == 0 {
				restart[n.id] = true
			}
		})
		specs := rules(v1m, d, restart)
		v1, v2 := v1m.flow("p/v1"), d.v2.flow("p/v2")
		src, dst := versions.Structure(v1), versions.Structure(v2)

		// The static check accepts the full rules.
		require.NoError(t, versions.Check(migration(specs), src, dst))

		// Drop some rules: the check reports exactly the positions below
		// them that no remaining rule covers.
		var kept []ruleSpec
		var dropped []string
		for i, r := range specs {
			alone := true
			for j, o := range specs {
				if i != j && within(o.from, r.from) {
					alone = false
				}
			}
			if r.kind != "restart" && alone && rapid.IntRange(0, 3).Draw(t, "drop") == 0 {
				dropped = append(dropped, r.from)
				continue
			}
			kept = append(kept, r)
		}
		var want []string
		for _, n := range src {
			covered := false
			for _, r := range kept {
				if r.kind != "rename" && within(n.Path, r.from) {
					covered = true
				}
			}
			for _, q := range dropped {
				if within(n.Path, q) && !covered {
					want = append(want, n.Path)
					break
				}
			}
		}
		var got []string
		for _, line := range lines(versions.Check(migration(kept), src, dst)) {
			_, rest, _ := strings.Cut(line, `position "`)
			p, _, _ := strings.Cut(rest, `"`)
			got = append(got, p)
		}
		require.Equal(t, want, got, "rules %v, dropped %v", specs, dropped)

		// Processes of version 1 at random points migrate and finish.
		var flows []*stepflow.Flow[D]
		m := migration(specs)
		if rapid.Bool().Draw(t, "keepV1") {
			flows = []*stepflow.Flow[D]{v1, v2}
		} else {
			flows = []*stepflow.Flow[D]{v2}
			m.Source(src)
		}
		reg, err := versions.New(flows, nil, m)
		require.NoError(t, err)
		mayRerun := map[string]bool{}
		i1 := v1m.index()
		v1m.walk(func(n *mnode, _, _ string) {
			if restart[n.id] {
				var mark func(n *mnode)
				mark = func(n *mnode) {
					mayRerun[fmt.Sprint(n.id)] = true
					for _, l := range n.lists() {
						for _, k := range *l {
							mark(k)
						}
					}
				}
				mark(i1[n.id].n)
			}
		})
		ctx, c := newCtx()
		for p := rapid.IntRange(1, 5).Draw(t, "processes"); p > 0; p-- {
			st := v1.Start(D{Seed: rapid.Uint64().Draw(t, "seed")})
			st = advance(t, ctx, c, v1, st, rapid.IntRange(0, 12).Draw(t, "steps"))
			before := slices.Clone(st.Data.Ran)
			root := st.Root.Clone()
			moved, err := reg.Migrate(st)
			require.Equal(t, root, st.Root, "Migrate does not change its input")
			require.NoError(t, err, "positions %v, rules %v", st.Positions(), specs)
			require.NoError(t, v2.Validate(moved))
			require.Equal(t, "p/v2", moved.Version)
			done := finish(t, ctx, c, reg, moved)
			require.Equal(t, stepflow.Done, done.Status, "positions %v -> %v", st.Positions(), moved.Positions())
			require.True(t, slices.Equal(before, done.Data.Ran[:len(before)]), "%v then %v", before, done.Data.Ran)
			seen := map[string]bool{}
			for _, id := range done.Data.Ran {
				require.True(t, !seen[id] || mayRerun[id], "step %s ran twice (%v -> %v, rules %v)", id, st.Positions(), moved.Positions(), specs)
				seen[id] = true
			}
		}
	})
}

// TestPropertyChain derives v2 from v1 and v3 from v2 by random edits,
// keeps only v3's code, and migrates processes of v1 and v2 through the
// chain: they finish on v3 without running any step twice.
func TestPropertyChain(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := &gen{t: t}
		m1 := &model{top: g.list(1)}
		d2 := &derived{v2: m1.clone(), continueAt: map[int]int{}, anchored: map[int]bool{}, dropped: map[int]bool{}}
		for n := rapid.IntRange(1, 4).Draw(t, "edits2"); n > 0; n-- {
			g.edit(d2)
		}
		d3 := &derived{v2: d2.v2.clone(), continueAt: map[int]int{}, anchored: map[int]bool{}, dropped: map[int]bool{}}
		for n := rapid.IntRange(1, 4).Draw(t, "edits3"); n > 0; n-- {
			g.edit(d3)
		}
		v1, v2, v3 := m1.flow("c/v1"), d2.v2.flow("c/v2"), d3.v2.flow("c/v3")
		reg, err := versions.New([]*stepflow.Flow[D]{v3}, nil,
			migrationBetween("c/v1", "c/v2", rules(m1, d2, nil)).Source(versions.Structure(v1)),
			migrationBetween("c/v2", "c/v3", rules(d2.v2, d3, nil)).Source(versions.Structure(v2)))
		require.NoError(t, err)
		ctx, c := newCtx()
		for _, f := range []*stepflow.Flow[D]{v1, v2} {
			st := f.Start(D{Seed: rapid.Uint64().Draw(t, "seed")})
			st = advance(t, ctx, c, f, st, rapid.IntRange(0, 12).Draw(t, "steps"))
			moved, err := reg.Migrate(st)
			require.NoError(t, err, "positions %v", st.Positions())
			require.Equal(t, "c/v3", moved.Version)
			require.NoError(t, v3.Validate(moved))
			done := finish(t, ctx, c, reg, moved)
			require.Equal(t, stepflow.Done, done.Status)
			seen := map[string]bool{}
			for _, id := range done.Data.Ran {
				require.False(t, seen[id], "step %s ran twice: %v -> %v", id, st.Positions(), moved.Positions())
				seen[id] = true
			}
		}
	})
}
