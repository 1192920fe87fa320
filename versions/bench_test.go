package versions_test

import (
	"fmt"
	"testing"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

// wide builds a flow of n groups of 10 steps; suffix renames every group.
func wide(version, suffix string, n int) *stepflow.Flow[D] {
	groups := make([]stepflow.Node[D], n)
	for i := range groups {
		steps := make([]stepflow.Node[D], 10)
		for j := range steps {
			steps[j] = step(fmt.Sprintf("s%d", j), "x")
		}
		groups[i] = combinators.Sequence(fmt.Sprintf("g%d%s", i, suffix), steps...)
	}
	return must(stepflow.New(version, groups...))
}

func wideRegistry(b *testing.B, n int) (*versions.Registry[D], stepflow.State[D]) {
	v1, v2 := wide("b/v1", "", n), wide("b/v2", "r", n)
	m := versions.NewMigration[D]("b/v1", "b/v2")
	for i := range n {
		m.Rename(fmt.Sprintf("g%d", i), fmt.Sprintf("g%dr", i))
	}
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m)
	if err != nil {
		b.Fatal(err)
	}
	st := stepflow.State[D]{Version: "b/v1", Status: stepflow.Running, Root: stepflow.Frame{Children: []stepflow.Frame{
		{Name: fmt.Sprintf("g%d", n/2), Children: []stepflow.Frame{{Name: "s5"}}},
	}}}
	return reg, st
}

// BenchmarkMigrate migrates one state (one position two levels deep) in a
// flow of 1,000 steps where every group was renamed.
func BenchmarkMigrate(b *testing.B) {
	reg, st := wideRegistry(b, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Migrate(st); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNew is the start-up cost: compiling and checking a migration
// between two versions of 1,000 steps each.
func BenchmarkNew(b *testing.B) {
	v1, v2 := wide("b/v1", "", 100), wide("b/v2", "r", 100)
	m := versions.NewMigration[D]("b/v1", "b/v2")
	for i := range 100 {
		m.Rename(fmt.Sprintf("g%d", i), fmt.Sprintf("g%dr", i))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m); err != nil {
			b.Fatal(err)
		}
	}
}
