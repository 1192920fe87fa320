package console_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/console"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/pgstore"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

// The console's pages at scale: a store of 100,000 deploy processes, one
// in ten failed at regions/rollout, one in a thousand quarantined, the
// others waiting for approval.
const scaleN = 100_000

func scaleID(i int) string { return fmt.Sprintf("p%06d", i) }

// scaleRecords builds the 100,000 records from two real states of the
// deploy flow, encoded as the runner encodes them; the states carry no
// id, which the runner takes from the record.
func scaleRecords(t testing.TB) []store.Record {
	t.Helper()
	f := deployFlow()
	ctx := stepflow.WithClock(context.Background(), &clock{t: t0})
	run := func(d deploy) stepflow.State[deploy] {
		st := f.Start(d)
		for i := 0; i < 20 && !st.Terminal() && st.Status != stepflow.Waiting; i++ {
			st, _ = f.Apply(ctx, st)
		}
		if st.Status == stepflow.Waiting {
			st, _ = f.Signal(st, "approve", []byte("ann"))
			for i := 0; i < 20 && !st.Terminal() && st.Status != stepflow.Waiting; i++ {
				st, _ = f.Apply(ctx, st)
			}
		}
		return st
	}
	enc := codec.Msgpack[deploy](nil)
	waiting := f.Start(deploy{App: "shop", Regions: []string{"eu", "us", "ap"}})
	for waiting.Status != stepflow.Waiting {
		waiting, _ = f.Apply(ctx, waiting)
	}
	failed := run(deploy{App: "shop", Regions: []string{"eu", "us", "ap"}, Bad: "us"})
	require.Equal(t, stepflow.Failed, failed.Status)
	wb, err := enc.Encode(waiting)
	require.NoError(t, err)
	fb, err := enc.Encode(failed)
	require.NoError(t, err)

	recs := make([]store.Record, scaleN)
	for i := range recs {
		r := store.Record{ID: scaleID(i), Version: "deploy/v1", Status: stepflow.Waiting, Position: "approval", Updated: t0, Blob: wb}
		if i%10 == 0 {
			r.Status, r.Position, r.ErrorKind, r.Blob = stepflow.Failed, "regions/rollout", "error", fb
		}
		if i%1000 == 999 {
			r.Quarantine = "decode: test damage"
		}
		recs[i] = r
	}
	return recs
}

// fill stores the records with CreateMany, in batches.
func fill(t testing.TB, s store.Store, recs []store.Record) {
	t.Helper()
	for lo := 0; lo < len(recs); lo += 5000 {
		errs, err := s.CreateMany(context.Background(), recs[lo:min(lo+5000, len(recs))])
		require.NoError(t, err)
		require.Nil(t, errs)
	}
}

// scaleConsole is a console over s, whose runner hosts the deploy flow.
func scaleConsole(t testing.TB, s store.Store) *console.Console {
	t.Helper()
	r, err := runner.New(s, &runner.Options{Clock: &clock{t: t0}})
	require.NoError(t, err)
	_, err = runner.Register(r, deployFlow())
	require.NoError(t, err)
	c, err := console.New(r, nil)
	require.NoError(t, err)
	return c
}

var (
	memOnce    sync.Once
	memConsole *console.Console
)

// memoryScale is the console over a memory store of 100,000 processes,
// built once for the tests and benchmarks of the package.
func memoryScale(t testing.TB) *console.Console {
	memOnce.Do(func() {
		s := store.NewMemory()
		fill(t, s, scaleRecords(t))
		memConsole = scaleConsole(t, s)
	})
	require.NotNil(t, memConsole)
	return memConsole
}

// pgScale is the console over a PostgreSQL store of 100,000 processes in a
// schema of its own, dropped after the test; it skips without
// STEPFLOW_TEST_PG.
func pgScale(t testing.TB) *console.Console {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "stepflow_console_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	s := pgstore.New(pool, &pgstore.Options{Schema: schema})
	require.NoError(t, s.Migrate(ctx))
	t.Cleanup(func() { _ = s.Close() })
	fill(t, s, scaleRecords(t))
	_, err = pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema}.Sanitize()+".stepflow_processes")
	require.NoError(t, err)
	return scaleConsole(t, s)
}

func TestPagesOn100000Processes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a store of 100,000 processes")
	}
	t.Run("memory", func(t *testing.T) { checkScale(t, memoryScale(t)) })
	t.Run("postgres", func(t *testing.T) { checkScale(t, pgScale(t)) })
}

// checkScale checks the list and process pages on the 100,000 processes
// of scaleRecords. It asserts what they show; how long each took is
// logged, and measured by the benchmarks.
func checkScale(t *testing.T, c *console.Console) {
	timed := func(target string) response {
		start := time.Now()
		r := do(t, c, http.MethodGet, target, nil)
		t.Logf("%-60s %3d %8s", target, r.status, time.Since(start).Round(10*time.Microsecond))
		require.Equal(t, http.StatusOK, r.status, r.body)
		return r
	}
	page := timed("/").body
	assert.Equal(t, "100000", mustID(t, page, "count-total"))
	assert.Equal(t, "failed 10000", mustID(t, page, "count-failed"))
	assert.Equal(t, "waiting 89900", mustID(t, page, "count-waiting"))
	assert.Equal(t, "quarantined 100", mustID(t, page, "count-quarantined"))
	rows := rowIDs(page)
	require.Len(t, rows, console.DefaultPageSize)
	assert.Equal(t, scaleID(0), rows[0])
	assert.Equal(t, scaleID(49), rows[49])
	assert.Equal(t, "./?after=p000049", href(t, page, "next-page"))

	page = timed("/?after=p099970").body
	assert.Equal(t, []string{"p099971", "p099972", "p099973", "p099974", "p099975", "p099976", "p099977", "p099978", "p099979",
		"p099980", "p099981", "p099982", "p099983", "p099984", "p099985", "p099986", "p099987", "p099988", "p099989",
		"p099990", "p099991", "p099992", "p099993", "p099994", "p099995", "p099996", "p099997", "p099998", "p099999"}, rowIDs(page))
	_, ok := byID(page, "next-page")
	assert.False(t, ok)

	page = timed("/?flow=deploy&status=failed&position=regions/rollout").body
	rows = rowIDs(page)
	require.Len(t, rows, console.DefaultPageSize)
	assert.Equal(t, scaleID(0), rows[0])
	assert.Equal(t, scaleID(490), rows[49])

	page = timed("/?quarantined=true&after=p050000").body
	rows = rowIDs(page)
	require.Len(t, rows, 50)
	assert.Equal(t, "p050999", rows[0])
	assert.Equal(t, "p099999", rows[49])

	page = timed("/?id_prefix=p01234").body
	assert.Len(t, rowIDs(page), 10)

	counts := decode[console.CountsResponse](t, timed("/api/counts"))
	assert.Equal(t, 100000, counts.Total)
	timed("/api/processes")
	l := decode[console.ListResponse](t, timed("/api/processes?status=waiting&limit=1000"))
	require.Len(t, l.Processes, 1000)
	assert.Equal(t, "p001112", l.Next, "1000 waiting ones: 9 in 10, without p000999")

	page = timed("/processes/p050000").body
	assert.Equal(t, "failed", mustID(t, page, "process-status"))
	assert.Contains(t, mustID(t, page, "process-error"), "rollout to us refused")
	assert.Contains(t, nodeClasses(page)["regions"], "node-failed")
	page = timed("/processes/p050001").body
	assert.Equal(t, "waiting", mustID(t, page, "process-status"))
	assert.Equal(t, "p050001", mustID(t, page, "process-id"))
	assert.Contains(t, nodeClasses(page)["approval"], "current")
	d := decode[console.ProcessDetail](t, timed("/api/processes/p099999"))
	assert.Equal(t, "decode: test damage", d.Quarantine)
}

// benchPages measures GET requests of the console, as a server answers
// them (through httptest's recorder, so without the network).
func benchPages(b *testing.B, c *console.Console, targets map[string]string) {
	for name, target := range targets {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				w := httptest.NewRecorder()
				c.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", target, w.Code, w.Body)
				}
			}
		})
	}
}

var listTargets = map[string]string{
	"first":          "/",
	"deep":           "/?after=p090000",
	"failed-rollout": "/?flow=deploy&status=failed&position=regions/rollout",
	"quarantined":    "/?quarantined=true",
	"api":            "/api/processes?status=waiting",
}

var processTargets = map[string]string{
	"failed":  "/processes/p050000",
	"waiting": "/processes/p050001",
	"api":     "/api/processes/p050000",
}

// BenchmarkListPage measures list pages (50 processes, counts, the filter
// form) over 100,000 processes.
func BenchmarkListPage(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchPages(b, memoryScale(b), listTargets) })
	b.Run("postgres", func(b *testing.B) { benchPages(b, pgScale(b), listTargets) })
}

// BenchmarkProcessPage measures process pages (the record, the decoded
// state, its description and diagram) among 100,000 processes.
func BenchmarkProcessPage(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchPages(b, memoryScale(b), processTargets) })
	b.Run("postgres", func(b *testing.B) { benchPages(b, pgScale(b), processTargets) })
}
