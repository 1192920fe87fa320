package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stepflow-io/go-stepflow/codec"
)

// migrationLock is the advisory lock key that serializes Migrate calls
// across processes ("stepflow" in ASCII). Earlier releases take the same
// key (as a transaction lock), so that an old and a new Migrate never run
// at once either.
const migrationLock = 0x73746570666c6f77

// upgradeBatch is how many rows an upgrade reads and writes per
// transaction.
const upgradeBatch = 1000

// column is a column added after the first release, with its definition.
type column struct{ name, def string }

// addedColumns are the columns an upgrade adds. The defaults serve rows
// written by earlier releases: rows already there get the time of the
// upgrade as updated (PostgreSQL evaluates a default that is not
// volatile once, when the column is added, without rewriting the table),
// and rows an earlier release inserts later get their own time and an
// empty version, which the next Migrate fills in.
var addedColumns = []column{
	{"version", `text COLLATE "C" NOT NULL DEFAULT ''`},
	{"flow", `text COLLATE "C" NOT NULL DEFAULT ''`},
	{"position", `text COLLATE "C" NOT NULL DEFAULT ''`},
	{"error_kind", `text COLLATE "C" NOT NULL DEFAULT ''`},
	{"updated", `bigint NOT NULL DEFAULT ` + nowNanos},
}

// index is one of the table's indexes: its name and what follows ON table
// in its definition.
type index struct{ name, def string }

// indexes are the table's indexes besides its primary key (see the package
// documentation). The table name in their names is cut so that every
// name fits PostgreSQL's 63 bytes and they stay distinct.
func (s *Store) indexes() []index {
	t := truncate(s.tableRaw, 63-len("_version_due"))
	return []index{
		// Named as the first release named it, so that an upgrade finds it.
		{truncate(s.tableRaw+"_due", 63), `(due, id) WHERE due IS NOT NULL`},
		{t + "_version_due", `(version, due, id) WHERE due IS NOT NULL`},
		{t + "_flow", `(flow, version, id)`},
		{t + "_status", `(status, id) WHERE quarantine = ''`},
		{t + "_position", `(position, id) WHERE position <> ''`},
		{t + "_error_kind", `(error_kind, id) WHERE error_kind <> ''`},
		{t + "_quarantined", `(id) WHERE quarantine <> ''`},
		{t + "_ended", `(updated, id) WHERE ` + ended},
	}
}

// tableState is what Migrate finds in the catalog.
type tableState struct {
	exists  bool
	columns []string
	// idBytewise is true when the id column's collation is "C" (or its
	// synonym "POSIX").
	idBytewise bool
	indexes    []string
}

// Migrate creates the schema, table and indexes if they do not exist, and
// upgrades a table written by an earlier release in place (see the package
// documentation). It is idempotent and may run concurrently from several
// processes: it holds an advisory lock throughout, on a connection of the
// pool, and changes only what is missing.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("stepflow/pgstore: migrate: %w", err)
	}
	defer func() {
		// The lock belongs to the session: give it back, or close the
		// session, which gives it back too, when that fails.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := c.Exec(uctx, `SELECT pg_advisory_unlock($1)`, int64(migrationLock)); err != nil {
			_ = c.Conn().Close(uctx)
		}
		c.Release()
	}()
	if err := s.migrate(ctx, c.Conn()); err != nil {
		return fmt.Errorf("stepflow/pgstore: migrate: %w", err)
	}
	return nil
}

func (s *Store) migrate(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLock)); err != nil {
		return err
	}
	st, err := s.inspect(ctx, conn)
	if err != nil {
		return err
	}
	r := strings.NewReplacer("{s}", pgx.Identifier{s.schema}.Sanitize(), "{t}", s.table)

	// 1. The table and its columns.
	var ddl []string
	if !st.exists {
		defs := []string{`id text COLLATE "C" PRIMARY KEY`, `revision bigint NOT NULL`, `status smallint NOT NULL`,
			`due bigint`, `owner text NOT NULL DEFAULT ''`, `lease_until bigint NOT NULL DEFAULT 0`,
			`quarantine text NOT NULL DEFAULT ''`, `blob bytea NOT NULL`}
		for _, c := range addedColumns {
			defs = append(defs, c.name+" "+c.def)
		}
		ddl = append(ddl, `CREATE SCHEMA IF NOT EXISTS {s}`,
			`CREATE TABLE IF NOT EXISTS {t} (`+strings.Join(defs, ", ")+`) WITH (fillfactor = 70)`)
	} else {
		for _, c := range addedColumns {
			if !slices.Contains(st.columns, c.name) {
				ddl = append(ddl, `ALTER TABLE {t} ADD COLUMN IF NOT EXISTS `+c.name+" "+c.def)
			}
		}
		if !st.idBytewise {
			// Rebuilds the indexes on id; the rows stay where they are.
			ddl = append(ddl, `ALTER TABLE {t} ALTER COLUMN id TYPE text COLLATE "C"`)
		}
	}
	if err := execAll(ctx, conn, r, ddl); err != nil {
		return err
	}

	// 2. The versions of rows written by an earlier release.
	if st.exists {
		n, err := s.fillVersions(ctx, conn)
		if err != nil {
			return err
		}
		if n > 0 {
			// Give the planner statistics on the new columns now rather
			// than when autovacuum gets to it.
			if _, err := conn.Exec(ctx, r.Replace(`ANALYZE {t}`)); err != nil {
				return err
			}
		}
	}

	// 3. The indexes, built after the rows are filled in, and the tables
	// of limited resources.
	ddl = ddl[:0]
	for _, ix := range s.indexes() {
		if !slices.Contains(st.indexes, ix.name) {
			ddl = append(ddl, `CREATE INDEX IF NOT EXISTS `+pgx.Identifier{ix.name}.Sanitize()+` ON {t} `+ix.def)
		}
	}
	ddl = append(ddl, s.limitTables()...)
	return execAll(ctx, conn, r, ddl)
}

// inspect reads the table's columns and indexes from the catalog.
func (s *Store) inspect(ctx context.Context, conn *pgx.Conn) (tableState, error) {
	var st tableState
	err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL,
		COALESCE((SELECT array_agg(attname::text) FROM pg_attribute
			WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped), '{}'),
		COALESCE((SELECT co.collname IN ('C', 'POSIX') FROM pg_attribute a JOIN pg_collation co ON co.oid = a.attcollation
			WHERE a.attrelid = to_regclass($1) AND a.attname = 'id'), false),
		COALESCE((SELECT array_agg(c.relname::text) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE i.indrelid = to_regclass($1)), '{}')`, s.table).
		Scan(&st.exists, &st.columns, &st.idBytewise, &st.indexes)
	return st, err
}

// execAll runs statements in one transaction.
func execAll(ctx context.Context, conn *pgx.Conn, r *strings.Replacer, stmts []string) error {
	if len(stmts) == 0 {
		return nil
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, r.Replace(q)); err != nil {
				return err
			}
		}
		return nil
	})
}

// fillVersions reads the flow version of every row that has none from its
// blob, upgradeBatch rows per transaction in id order, and quarantines the
// rows whose version cannot be read (those already quarantined keep their
// reason). It returns how many rows it changed.
func (s *Store) fillVersions(ctx context.Context, conn *pgx.Conn) (int, error) {
	r := strings.NewReplacer("{t}", s.table, "{now}", nowNanos)
	// A row without a version has no flow either: on an upgraded table
	// the _flow index finds the few such rows in id order.
	read := r.Replace(`SELECT id, blob, quarantine <> '' FROM {t} WHERE flow = '' AND version = '' AND id > $1
		ORDER BY id LIMIT $2 FOR UPDATE`)
	fill := r.Replace(`UPDATE {t} AS p SET version = u.version, flow = u.flow
		FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, version, flow) WHERE p.id = u.id`)
	// A quarantine is a write: the revision moves on, so that a runner of
	// the earlier release still holding the row has its write refused.
	quarantine := r.Replace(`UPDATE {t} AS p SET quarantine = u.reason, due = NULL, owner = '', lease_until = 0,
			revision = p.revision + 1, updated = {now}
		FROM unnest($1::text[], $2::text[]) AS u(id, reason) WHERE p.id = u.id`)
	type row struct {
		id          string
		blob        []byte
		quarantined bool
	}
	changed := 0
	for after := ""; ; {
		var got []row
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, read, after, upgradeBatch)
			if err != nil {
				return err
			}
			got, err = pgx.CollectRows(rows, func(rs pgx.CollectableRow) (row, error) {
				var x row
				err := rs.Scan(&x.id, &x.blob, &x.quarantined)
				return x, err
			})
			if err != nil {
				return err
			}
			var ids, vers, flows, qids, reasons []string
			for _, x := range got {
				v, err := codec.PeekVersion(x.blob)
				switch {
				case err == nil:
					ids, vers, flows = append(ids, x.id), append(vers, v), append(flows, codec.FlowName(v))
				case !x.quarantined:
					qids, reasons = append(qids, x.id), append(reasons, fmt.Sprintf("upgrade: no readable flow version: %v", err))
				}
			}
			if len(ids) > 0 {
				if _, err := tx.Exec(ctx, fill, ids, vers, flows); err != nil {
					return err
				}
			}
			if len(qids) > 0 {
				if _, err := tx.Exec(ctx, quarantine, qids, reasons); err != nil {
					return err
				}
			}
			changed += len(ids) + len(qids)
			return nil
		})
		if err != nil {
			return changed, err
		}
		if len(got) < upgradeBatch {
			return changed, nil
		}
		after = got[len(got)-1].id
	}
}
