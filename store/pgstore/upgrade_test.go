package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/pgstore"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

// oldSchema creates a schema holding the table as the previous release's
// Migrate created it, with the id column in collation idCollation when it
// is not "" (a database whose default collation is not bytewise), and
// returns the schema's name and the table's quoted name. The schema is
// dropped after the test.
func oldSchema(t *testing.T, idCollation string) (string, string) {
	t.Helper()
	pool := testPool(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "stepflow_test_" + hex.EncodeToString(b[:])
	table := pgx.Identifier{schema, "stepflow_processes"}.Sanitize()
	collate := ""
	if idCollation != "" {
		collate = " COLLATE " + pgx.Identifier{idCollation}.Sanitize()
	}
	for _, q := range []string{
		`CREATE SCHEMA ` + pgx.Identifier{schema}.Sanitize(),
		`CREATE TABLE ` + table + ` (
			id         text` + collate + ` PRIMARY KEY,
			revision   bigint NOT NULL,
			status     smallint NOT NULL,
			due        bigint,
			owner      text NOT NULL DEFAULT '',
			lease_until bigint NOT NULL DEFAULT 0,
			quarantine text NOT NULL DEFAULT '',
			blob       bytea NOT NULL) WITH (fillfactor = 70)`,
		`CREATE INDEX stepflow_processes_due ON ` + table + ` (due, id) WHERE due IS NOT NULL`,
	} {
		_, err := pool.Exec(t.Context(), q)
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	return schema, table
}

// oldRow is a row as the previous release wrote it.
type oldRow struct {
	id         string
	revision   int64
	status     stepflow.Status
	due        *int64
	owner      string
	leaseUntil int64
	quarantine string
	blob       []byte
}

func insertOld(t *testing.T, table string, rows ...oldRow) {
	t.Helper()
	for _, r := range rows {
		_, err := testPool(t).Exec(t.Context(), `INSERT INTO `+table+
			` (id, revision, status, due, owner, lease_until, quarantine, blob) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			r.id, r.revision, int16(r.status), r.due, r.owner, r.leaseUntil, r.quarantine, r.blob)
		require.NoError(t, err)
	}
}

func msgpackState(t testing.TB, version string, st stepflow.Status) []byte {
	t.Helper()
	b, err := codec.Msgpack[stepflow.None](nil).Encode(stepflow.State[stepflow.None]{Version: version, Status: st})
	require.NoError(t, err)
	return b
}

func ns(t time.Time) *int64 {
	n := t.UnixNano()
	return &n
}

// TestMigrateUpgradesPreviousRelease upgrades a table written by the
// previous release, from two processes at once and then once more: every
// row is kept byte for byte, versions are read from the blobs (over
// several batches), a row whose version cannot be read is quarantined with
// its bytes, and the upgraded table serves the new calls.
func TestMigrateUpgradesPreviousRelease(t *testing.T) {
	schema, table := oldSchema(t, "")
	ctx := t.Context()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	v1Running := msgpackState(t, "deploy/v1", stepflow.Running)
	v2Waiting := msgpackState(t, "deploy/v2", stepflow.Waiting)
	v1Done := msgpackState(t, "deploy/v1", stepflow.Done)
	jsonFailed, err := codec.JSON[stepflow.None](nil).Encode(stepflow.State[stepflow.None]{Version: "report/v4", Status: stepflow.Failed})
	require.NoError(t, err)
	old := []oldRow{
		{id: "deploy-1", revision: 3, status: stepflow.Running, due: ns(t0), blob: v1Running},
		{id: "deploy-2", revision: 5, status: stepflow.Waiting, due: ns(t0.Add(time.Hour)), owner: "old-runner",
			leaseUntil: t0.Add(time.Minute).UnixNano(), blob: v2Waiting},
		{id: "deploy-3", revision: 9, status: stepflow.Done, blob: v1Done},
		{id: "report-1", revision: 2, status: stepflow.Failed, blob: jsonFailed},
		{id: "garbage", revision: 2, status: stepflow.Running, due: ns(t0), owner: "old-runner",
			leaseUntil: t0.Add(time.Minute).UnixNano(), blob: []byte("not a state")},
		{id: "old-quarantine", revision: 4, status: stepflow.Running, quarantine: "decode: corrupt", blob: []byte{0xc1, 0x00}},
		{id: "quarantined-v1", revision: 6, status: stepflow.Running, quarantine: "unknown version", blob: v1Running},
	}
	insertOld(t, table, old...)
	// Enough ended rows for several batches of the upgrade.
	const bulk = 2500
	bulkIDs := make([]string, bulk)
	for i := range bulkIDs {
		bulkIDs[i] = fmt.Sprintf("bulk-%05d", i)
	}
	_, err = testPool(t).Exec(ctx, `INSERT INTO `+table+` (id, revision, status, blob) SELECT id, 1, $2, $3 FROM unnest($1::text[]) AS id`,
		bulkIDs, int16(stepflow.Done), msgpackState(t, "bulk/v1", stepflow.Done))
	require.NoError(t, err)
	before := time.Now()

	// Two processes migrate at once, then one again.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() {
			s := pgstore.New(testPool(t), &pgstore.Options{Schema: schema})
			defer s.Close()
			errs[i] = s.Migrate(ctx)
		})
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	var unread int
	require.NoError(t, testPool(t).QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE version = ''`).Scan(&unread))
	assert.Equal(t, 2, unread, "after the first Migrate every row has its version, but for the 2 unreadable ones")
	s := pgstore.New(testPool(t), &pgstore.Options{Schema: schema})
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Migrate(ctx))

	// Every row is kept, byte for byte, with its version.
	want := map[string]string{"deploy-1": "deploy/v1", "deploy-2": "deploy/v2", "deploy-3": "deploy/v1",
		"report-1": "report/v4", "garbage": "", "old-quarantine": "", "quarantined-v1": "deploy/v1"}
	for _, o := range old {
		r, err := s.Load(ctx, o.id)
		require.NoError(t, err, o.id)
		assert.Equal(t, o.blob, r.Blob, "%s: bytes kept", o.id)
		assert.Equal(t, want[o.id], r.Version, o.id)
		assert.Equal(t, o.status, r.Status, o.id)
		assert.WithinRange(t, r.Updated, before.Add(-time.Minute), time.Now().Add(time.Minute), "%s: updated at the upgrade", o.id)
	}
	all, err := s.List(ctx, store.Filter{Limit: 10 * bulk})
	require.NoError(t, err)
	assert.Len(t, all, len(old)+bulk, "no row lost")
	for _, r := range all[:bulk] {
		require.Equal(t, "bulk/v1", r.Version, "%s: filled in a later batch", r.ID)
	}

	r, err := s.Load(ctx, "deploy-2")
	require.NoError(t, err)
	assert.Equal(t, uint64(5), r.Revision)
	assert.Equal(t, "old-runner", r.Owner, "a lease of the old release is kept")
	assert.True(t, r.Due.Equal(t0.Add(time.Minute)), "due at the lease's end: %v", r.Due)
	assert.Equal(t, "deploy", r.Flow())

	g, err := s.Load(ctx, "garbage")
	require.NoError(t, err)
	assert.Contains(t, g.Quarantine, "no readable flow version", "the reason says why")
	assert.Equal(t, uint64(3), g.Revision, "the quarantine is a write: the old runner's write is refused")
	assert.True(t, g.Due.IsZero())
	assert.Empty(t, g.Owner)
	q, err := s.Load(ctx, "old-quarantine")
	require.NoError(t, err)
	assert.Equal(t, "decode: corrupt", q.Quarantine, "an earlier reason is kept")
	assert.Equal(t, uint64(4), q.Revision)
	q, err = s.Load(ctx, "quarantined-v1")
	require.NoError(t, err)
	assert.Equal(t, "unknown version", q.Quarantine)

	// The indexes exist, and ids compare bytewise.
	var nIdx int
	require.NoError(t, testPool(t).QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'stepflow_processes'`,
		schema).Scan(&nIdx))
	assert.Equal(t, 9, nIdx, "primary key and eight indexes")

	// The new calls work on the upgraded rows.
	c, err := s.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(old)+bulk, c.Total())
	assert.Equal(t, map[stepflow.Status]int{stepflow.Running: 1, stepflow.Done: 1}, c.ByVersion["deploy/v1"].ByStatus)
	assert.Equal(t, 1, c.ByVersion["deploy/v1"].Quarantined)
	assert.Equal(t, 2, c.ByVersion[""].Quarantined, "the records whose version is unknown")
	assert.Equal(t, bulk, c.ByVersion["bulk/v1"].ByStatus[stepflow.Done])

	got, err := s.Claim(ctx, store.Claim{Owner: "new", Now: t0.Add(2 * time.Minute), Limit: 10, Lease: time.Minute, Versions: []string{"deploy/v1"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"deploy-1"}, ids(got), "only deploy/v1; never a quarantined row")
	got, err = s.Claim(ctx, store.Claim{Owner: "new", Now: t0.Add(2 * time.Hour), Limit: 10, Lease: time.Minute, Versions: []string{"deploy/v2"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"deploy-2"}, ids(got), "the old runner's expired lease is taken over")

	flows, err := s.List(ctx, store.Filter{Flow: "deploy"})
	require.NoError(t, err)
	assert.Equal(t, []string{"deploy-1", "deploy-2", "deploy-3", "quarantined-v1"}, ids(flows))
	failed := stepflow.Failed
	rep, err := s.List(ctx, store.Filter{Status: &failed})
	require.NoError(t, err)
	assert.Equal(t, []string{"report-1"}, ids(rep))

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	endedCh := s.WatchEnded(wctx)
	drainCh(endedCh)
	werrs, err := s.Commit(ctx, "new", []store.Write{{ID: "deploy-1", Revision: 3, Status: stepflow.Done, Blob: v1Done}})
	require.NoError(t, err)
	require.Nil(t, werrs)
	waitWake(t, endedCh, "an end on the upgraded table")

	// Retention goes by the upgrade's time for the old rows.
	n, err := s.DeleteEnded(ctx, before.Add(-time.Hour), 10*bulk)
	require.NoError(t, err)
	assert.Zero(t, n, "the old rows were updated at the upgrade")
	n, err = s.DeleteEnded(ctx, time.Now().Add(time.Hour), 10*bulk)
	require.NoError(t, err)
	assert.Equal(t, bulk+3, n, "bulk, deploy-1, deploy-3 and report-1")
}

// TestMigrateMakesIDsBytewise: a table created in a database whose default
// collation is linguistic pages through ids in that collation's order;
// after the upgrade List and its id prefixes follow Go's order, as
// store.Match does.
func TestMigrateMakesIDsBytewise(t *testing.T) {
	var ok bool
	require.NoError(t, testPool(t).QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')`).Scan(&ok))
	if !ok {
		t.Skip("this PostgreSQL has no ICU collation")
	}
	schema, table := oldSchema(t, "und-x-icu")
	ctx := t.Context()
	blob := msgpackState(t, "deploy/v1", stepflow.Running)
	for _, id := range []string{"a1", "B1", "b1", "B-2"} {
		insertOld(t, table, oldRow{id: id, revision: 1, status: stepflow.Running, blob: blob})
	}
	var icu []string
	rows, err := testPool(t).Query(ctx, `SELECT id FROM `+table+` ORDER BY id`)
	require.NoError(t, err)
	icu, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"a1", "B-2", "b1", "B1"}, icu, "the old table's order is not Go's")

	s := pgstore.New(testPool(t), &pgstore.Options{Schema: schema})
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Migrate(ctx))
	for _, tc := range []struct {
		f    store.Filter
		want []string
	}{
		{store.Filter{}, []string{"B-2", "B1", "a1", "b1"}},
		{store.Filter{After: "B1"}, []string{"a1", "b1"}},
		{store.Filter{IDPrefix: "B"}, []string{"B-2", "B1"}},
		{store.Filter{IDPrefix: "b"}, []string{"b1"}},
	} {
		got, err := s.List(ctx, tc.f)
		require.NoError(t, err)
		assert.Equal(t, tc.want, ids(got), "%+v", tc.f)
	}
}

// TestConformanceOnUpgradedTable runs the whole suite on tables that the
// previous release created and this one upgraded.
func TestConformanceOnUpgradedTable(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		schema, _ := oldSchema(t, "")
		s := pgstore.New(testPool(t), &pgstore.Options{Schema: schema})
		require.NoError(t, s.Migrate(t.Context()))
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func ids(rs []store.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// drainCh empties a watch channel of the wake-ups already pending.
func drainCh(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
