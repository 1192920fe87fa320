package index

import (
	"fmt"
	"testing"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// benchIndex is an index of n records shaped like the console's
// benchmark: one in ten failed at regions/rollout, one in a thousand
// quarantined, the others waiting at approval.
func benchIndex(n int) *Index {
	x := New()
	for i := range n {
		x.Set(fmt.Sprintf("p%06d", i), benchFields(i))
	}
	return x
}

func benchFields(i int) Fields {
	f := Fields{Status: stepflow.Waiting, Version: "deploy/v1", Position: "approval"}
	if i%10 == 0 {
		f.Status, f.Position, f.ErrorKind = stepflow.Failed, "regions/rollout", "error"
	}
	f.Quarantined = i%1000 == 999
	return f
}

// BenchmarkSet measures the index's share of a write: a record that moves
// between two statuses and positions, one that stays where it is, and a
// new record followed by its delete.
func BenchmarkSet(b *testing.B) {
	const n = 100_000
	x := benchIndex(n)
	b.Run("change", func(b *testing.B) {
		i := 0
		for b.Loop() {
			id := 7 + 10*(i%(n/10))
			f := Fields{Status: stepflow.Running, Version: "deploy/v1"}
			if i/(n/10)%2 == 1 {
				f = benchFields(id)
			}
			x.Set(fmt.Sprintf("p%06d", id), f)
			i++
		}
	})
	b.Run("same", func(b *testing.B) {
		f := benchFields(7)
		for b.Loop() {
			x.Set("p000007", f)
		}
	})
	b.Run("create-delete", func(b *testing.B) {
		f := Fields{Status: stepflow.Running, Version: "deploy/v1"}
		for b.Loop() {
			x.Set("p050000x", f)
			x.Delete("p050000x")
		}
	})
}

// BenchmarkCandidates measures reading a page of 50 candidates among
// 100,000 records.
func BenchmarkCandidates(b *testing.B) {
	x := benchIndex(100_000)
	failed, waiting := stepflow.Failed, stepflow.Waiting
	for _, c := range []struct {
		name string
		q    Query
	}{
		{"first", Query{}},
		{"deep", Query{After: "p090000"}},
		{"failed-rollout", Query{Flow: "deploy", Status: &failed, Position: "regions/rollout"}},
		{"failed-regions", Query{Status: &failed, Position: "regions"}},
		{"quarantined", Query{Quarantined: true}},
		{"waiting", Query{Status: &waiting}},
		{"prefix", Query{IDPrefix: "p01234"}},
		{"none", Query{Status: &waiting, ErrorKind: "error"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				n := 0
				for range x.Candidates(c.q) {
					if n++; n == 50 {
						break
					}
				}
			}
		})
	}
}
