package console_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/console"
	"github.com/stepflow-io/go-stepflow/store/boltstore"
)

// boltScale is the console over a bbolt store of the 100,000 processes of
// scaleRecords, in a file of its own, closed and opened again so that the
// store serves them from the index Open builds.
func boltScale(t testing.TB) *console.Console {
	path := filepath.Join(t.TempDir(), "stepflow.db")
	s, err := boltstore.Open(path, &boltstore.Options{NoSync: true})
	require.NoError(t, err)
	fill(t, s, scaleRecords(t))
	require.NoError(t, s.Close())
	start := time.Now()
	s, err = boltstore.Open(path, nil)
	require.NoError(t, err)
	t.Logf("open %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { _ = s.Close() })
	return scaleConsole(t, s)
}

func TestPagesOn100000ProcessesBolt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a store of 100,000 processes")
	}
	checkScale(t, boltScale(t))
}

// BenchmarkListPageBolt is BenchmarkListPage on the bbolt store.
func BenchmarkListPageBolt(b *testing.B) { benchPages(b, boltScale(b), listTargets) }

// BenchmarkProcessPageBolt is BenchmarkProcessPage on the bbolt store.
func BenchmarkProcessPageBolt(b *testing.B) { benchPages(b, boltScale(b), processTargets) }

// rareTargets are list pages whose filter matches few processes, or none:
// a store that reads processes in id order and filters them reads most
// of the 100,000 for them.
var rareTargets = map[string]string{
	"none":             "/?status=done",
	"quarantined-deep": "/?quarantined=true&after=p090000",
	"api-none":         "/api/processes?error_kind=timeout",
}

// BenchmarkListPageRare measures the pages of rareTargets in memory and
// on the bbolt store.
func BenchmarkListPageRare(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchPages(b, memoryScale(b), rareTargets) })
	b.Run("bolt", func(b *testing.B) { benchPages(b, boltScale(b), rareTargets) })
}
