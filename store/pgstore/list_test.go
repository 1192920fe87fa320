package pgstore_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// TestListMatchesFilter compares List with store.Match, the contract's
// naive oracle, on random records and random filters. Ids and positions
// are drawn from characters that sort just before and after '/' (which
// Filter.Position treats apart), from upper and lower case (which
// linguistic collations order differently from bytes) and from multibyte
// ones, the last code point included.
func TestListMatchesFilter(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	alphabet := []string{"a", "B", "b", "/", ".", "0", "-", "é", "\U0010FFFF"}
	versions := []string{"a/v1", "a/v2", "b/v1", "a", "ab/v1"}
	kinds := []string{"", stepflow.KindTimeout, stepflow.KindError}
	rnd := rand.New(rand.NewPCG(1, 2))
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(alphabet[rnd.IntN(len(alphabet))])
		}
		return b.String()
	}
	var all []store.Record
	seen := map[string]bool{}
	for len(all) < 400 {
		r := store.Record{ID: word(1 + rnd.IntN(4)), Version: versions[rnd.IntN(len(versions))],
			Status: stepflow.Status(rnd.IntN(6)), Position: word(rnd.IntN(5)), ErrorKind: kinds[rnd.IntN(len(kinds))],
			Blob: []byte("x")}
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		if rnd.IntN(10) == 0 {
			r.Quarantine = "bad"
		}
		all = append(all, r)
	}
	errs, err := s.CreateMany(ctx, all)
	require.NoError(t, err)
	require.Nil(t, errs)
	slices.SortFunc(all, func(a, b store.Record) int { return strings.Compare(a.ID, b.ID) })

	pick := func(rt *rapid.T, label string, from []string) string {
		return rapid.SampledFrom(from).Draw(rt, label)
	}
	gen := func(rt *rapid.T, label string, n int) string {
		var b strings.Builder
		for i := range rapid.IntRange(0, n).Draw(rt, label+"Len") {
			b.WriteString(alphabet[rapid.IntRange(0, len(alphabet)-1).Draw(rt, label+string(rune('0'+i)))])
		}
		return b.String()
	}
	rapid.Check(t, func(rt *rapid.T) {
		var f store.Filter
		if rapid.IntRange(0, 3).Draw(rt, "hasStatus") == 0 {
			st := stepflow.Status(rapid.IntRange(0, 5).Draw(rt, "status"))
			f.Status = &st
		}
		f.Quarantined = rapid.IntRange(0, 5).Draw(rt, "quarantined") == 0
		if rapid.Bool().Draw(rt, "hasFlow") {
			f.Flow = pick(rt, "flow", []string{"a", "b", "ab", "nope"})
		}
		if rapid.IntRange(0, 3).Draw(rt, "hasVersion") == 0 {
			f.Version = pick(rt, "version", append(versions, "a/v9"))
		}
		f.IDPrefix = gen(rt, "idPrefix", 2)
		if rapid.Bool().Draw(rt, "hasPosition") {
			f.Position = gen(rt, "position", 2)
		}
		f.ErrorKind = pick(rt, "kind", kinds)
		if rapid.Bool().Draw(rt, "hasAfter") {
			f.After = gen(rt, "after", 3)
		}
		f.Limit = rapid.IntRange(0, 30).Draw(rt, "limit")

		want := []string{}
		limit := f.Limit
		if limit == 0 {
			limit = store.DefaultListLimit
		}
		for i := range all {
			if len(want) < limit && store.Match(&all[i], f) {
				want = append(want, all[i].ID)
			}
		}
		got, err := s.List(ctx, f)
		require.NoError(rt, err)
		require.Equal(rt, want, ids(got), "%+v", f)
	})
}

// TestListOn100kRecords lists 100,000 processes with each kind of filter,
// against the store's own indexes: every page answers within 50ms (the
// best of 3 tries, so that a busy machine does not fail it), and holds
// what store.Match keeps. Some values are common, some rare, and the rare
// ones sit at the end of the id order, where reading the table in id
// order would find them last.
func TestListOn100kRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 100,000 records")
	}
	s, schema := newStoreSchema(t)
	ctx := t.Context()
	rnd := rand.New(rand.NewPCG(3, 4))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	blob := []byte(strings.Repeat("x", 120))
	const n = 100_000
	all := make([]store.Record, 0, n)
	for i := range n {
		r := store.Record{Blob: blob, Updated: now.Add(-time.Duration(rnd.IntN(30*24)) * time.Hour)}
		switch x := rnd.IntN(100); {
		case x < 60:
			r.ID, r.Version = fmt.Sprintf("deploy-%06d", i), []string{"deploy/v1", "deploy/v2", "deploy/v2"}[rnd.IntN(3)]
		case x < 90:
			r.ID, r.Version = fmt.Sprintf("rollback-%06d", i), "rollback/v1"
		default:
			r.ID, r.Version = fmt.Sprintf("report-%06d", i), "report/v3"
		}
		switch y := rnd.IntN(100); {
		case y < 70:
			r.Status = stepflow.Done
		case y < 75:
			r.Status, r.Position, r.Due = stepflow.Running, "build", now
		case y < 90:
			r.Status, r.Position, r.Due = stepflow.Waiting, []string{"approve", "shouldDeploy/rollout/wait"}[rnd.IntN(2)], now.Add(time.Hour)
		case y < 98:
			r.Status, r.Position = stepflow.Failed, []string{"shouldDeploy/rollout", "build"}[rnd.IntN(2)]
			r.ErrorKind = []string{stepflow.KindTimeout, stepflow.KindError}[rnd.IntN(2)]
		case y < 99:
			r.Status = stepflow.Canceled
		default:
			r.Status, r.Position, r.ErrorKind = stepflow.NeedsAttention, "charge", stepflow.KindError
		}
		if rnd.IntN(1000) == 0 {
			r.Quarantine = "bad"
		}
		if i >= n-50 {
			r.ID, r.Version, r.Status, r.Position, r.ErrorKind = fmt.Sprintf("zzz-%06d", i), "zeta/v1", stepflow.NeedsAttention, "rare/step", "odd"
		}
		all = append(all, r)
	}
	for i := 0; i < n; i += 1000 {
		errs, err := s.CreateMany(ctx, all[i:i+1000])
		require.NoError(t, err)
		require.Nil(t, errs)
	}
	_, err := s.Pool().Exec(ctx, `ANALYZE `+pgx.Identifier{schema, "stepflow_processes"}.Sanitize())
	require.NoError(t, err)
	slices.SortFunc(all, func(a, b store.Record) int { return strings.Compare(a.ID, b.ID) })

	failed, waiting, attention := stepflow.Failed, stepflow.Waiting, stepflow.NeedsAttention
	// A rare value is found through an index whatever the size of the
	// table: it must answer in well under the 50ms. Before it, the same
	// filter runs with common values, several times, which would make
	// PostgreSQL settle on one plan for any value if the statement were
	// prepared, a plan that suits the common values.
	rare := func(f store.Filter) bool {
		return f.Flow == "zeta" || f.Version == "zeta/v1" || f.Position == "rare" || f.ErrorKind == "odd"
	}
	for _, f := range []store.Filter{
		{},
		{After: "report-050000"},
		{Status: &failed},
		{Status: &attention, After: "report-050000"},
		{Quarantined: true},
		{Flow: "report"},
		{Flow: "report", Status: &failed},
		{Flow: "deploy", Status: &waiting, After: "deploy-050000"},
		{Flow: "deploy"}, {Flow: "rollback"}, {Flow: "deploy"}, {Flow: "rollback"}, {Flow: "deploy"}, {Flow: "zeta"},
		{Version: "deploy/v1"},
		{Version: "deploy/v1", After: "deploy-080000"},
		{Version: "deploy/v2"}, {Version: "rollback/v1"}, {Version: "deploy/v2"}, {Version: "rollback/v1"}, {Version: "zeta/v1"},
		{Version: "deploy/v9"},
		{IDPrefix: "deploy-0999"},
		{IDPrefix: "rollback-"},
		{Position: "charge"},
		{Position: "shouldDeploy"},
		{Position: "shouldDeploy", After: "rollback-050000"},
		{Position: "build"}, {Position: "approve"}, {Position: "build"}, {Position: "approve"}, {Position: "build"}, {Position: "rare"},
		{ErrorKind: stepflow.KindTimeout, Flow: "report"},
		{ErrorKind: stepflow.KindError}, {ErrorKind: stepflow.KindTimeout}, {ErrorKind: stepflow.KindError}, {ErrorKind: stepflow.KindTimeout},
		{ErrorKind: stepflow.KindError}, {ErrorKind: "odd"},
	} {
		best := time.Hour
		var got []store.Record
		for range 3 {
			start := time.Now()
			got, err = s.List(ctx, f)
			require.NoError(t, err)
			best = min(best, time.Since(start))
		}
		want := []string{}
		for i := range all {
			if len(want) < store.DefaultListLimit && store.Match(&all[i], f) {
				want = append(want, all[i].ID)
			}
		}
		require.Equal(t, want, ids(got), "%+v", f)
		assert.Less(t, best, 50*time.Millisecond, "%+v", f)
		if rare(f) {
			assert.Less(t, best, 10*time.Millisecond, "a rare value: %+v", f)
		}
		t.Logf("%6.2fms %3d records  %+v", float64(best.Microseconds())/1000, len(got), f)
	}
}
