package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stepflow-io/go-stepflow/store"
)

// The slots of limited resources (store.Limiter) are rows of a second
// table, named after the processes table with "_limits": one row per
// holder and per waiter of each resource, with when it came (since) and
// when it last asked (seen). A third, "_limit_grants", keeps the times of
// recent grants of resources with a rate. Acquire takes a transaction
// advisory lock on the resource's name, so that the decisions about one
// resource are made one at a time across every runner process, and
// decisions about different resources never wait for each other.

var _ store.Limiter = (*Store)(nil)

// limitTables returns the DDL of the limit tables.
func (s *Store) limitTables() []string {
	lt, gt := s.limitsTable(), s.grantsTable()
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + lt + ` (resource text COLLATE "C" NOT NULL, holder text COLLATE "C" NOT NULL,
			holding boolean NOT NULL, since bigint NOT NULL, seen bigint NOT NULL, PRIMARY KEY (resource, holder))`,
		`CREATE INDEX IF NOT EXISTS ` + pgx.Identifier{truncate(s.tableRaw, 63-len("_limits_holder")) + "_limits_holder"}.Sanitize() +
			` ON ` + lt + ` (holder)`,
		`CREATE TABLE IF NOT EXISTS ` + gt + ` (resource text COLLATE "C" NOT NULL, at bigint NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + pgx.Identifier{truncate(s.tableRaw, 63-len("_limit_grants_at")) + "_limit_grants_at"}.Sanitize() +
			` ON ` + gt + ` (resource, at)`,
	}
}

func (s *Store) limitsTable() string {
	return pgx.Identifier{s.schema, truncate(s.tableRaw, 63-len("_limits")) + "_limits"}.Sanitize()
}

func (s *Store) grantsTable() string {
	return pgx.Identifier{s.schema, truncate(s.tableRaw, 63-len("_limit_grants")) + "_limit_grants"}.Sanitize()
}

// Acquire implements store.Limiter.
func (s *Store) Acquire(ctx context.Context, req store.LimitRequest) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	lt, gt := s.limitsTable(), s.grantsTable()
	now := req.Now.UnixNano()
	var granted bool
	err := retry(ctx, func() error {
		granted = false
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 7))`, "stepflow limit "+req.Resource); err != nil {
				return err
			}
			var holding bool
			var since int64
			err := tx.QueryRow(ctx, `INSERT INTO `+lt+` AS l (resource, holder, holding, since, seen) VALUES ($1, $2, false, $3, $3)
				ON CONFLICT (resource, holder) DO UPDATE SET seen = CASE WHEN l.holding THEN l.seen ELSE $3 END
				RETURNING holding, since`, req.Resource, req.Holder, now).Scan(&holding, &since)
			if err != nil || holding {
				granted = holding
				return err
			}
			stale := int64(-1) << 62
			if req.Stale > 0 {
				stale = now - req.Stale.Nanoseconds()
			}
			var holders, ahead, recent int
			if err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE holding),
					count(*) FILTER (WHERE NOT holding AND seen >= $4 AND (since, holder) < ($2, $3))
				FROM `+lt+` WHERE resource = $1`, req.Resource, since, req.Holder, stale).Scan(&holders, &ahead); err != nil {
				return err
			}
			if req.Rate > 0 && req.Per > 0 {
				cut := now - req.Per.Nanoseconds()
				if _, err := tx.Exec(ctx, `DELETE FROM `+gt+` WHERE resource = $1 AND at <= $2`, req.Resource, cut); err != nil {
					return err
				}
				if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+gt+` WHERE resource = $1`, req.Resource).Scan(&recent); err != nil {
					return err
				}
			}
			if ahead >= store.Free(req, holders, recent) {
				return nil
			}
			if _, err := tx.Exec(ctx, `UPDATE `+lt+` SET holding = true, since = $3, seen = $3 WHERE resource = $1 AND holder = $2`,
				req.Resource, req.Holder, now); err != nil {
				return err
			}
			if req.Rate > 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO `+gt+` (resource, at) VALUES ($1, $2)`, req.Resource, now); err != nil {
					return err
				}
			}
			granted = true
			return nil
		})
	})
	if err != nil {
		return false, fmt.Errorf("stepflow/pgstore: acquire %q for %q: %w", req.Resource, req.Holder, err)
	}
	return granted, nil
}

// ReleaseSlots implements store.Limiter.
func (s *Store) ReleaseSlots(ctx context.Context, holder string) error {
	if err := s.check(); err != nil {
		return err
	}
	err := retry(ctx, func() error {
		_, err := s.pool.Exec(ctx, `DELETE FROM `+s.limitsTable()+` WHERE holder = $1`, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("stepflow/pgstore: release slots of %q: %w", holder, err)
	}
	return nil
}

// ReleaseSlotsPrefix implements store.Limiter.
func (s *Store) ReleaseSlotsPrefix(ctx context.Context, prefix string) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var n int64
	err := retry(ctx, func() error {
		tag, err := s.pool.Exec(ctx, `DELETE FROM `+s.limitsTable()+` WHERE starts_with(holder, $1)`, prefix)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("stepflow/pgstore: release slots of %q...: %w", prefix, err)
	}
	return int(n), nil
}

// SlotHolders implements store.Limiter.
func (s *Store) SlotHolders(ctx context.Context, afterResource, afterHolder string, limit int) ([]store.LimitHolder, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	rows, err := s.pool.Query(ctx, `SELECT resource, holder, since FROM `+s.limitsTable()+`
		WHERE holding AND (resource, holder) > ($1, $2) ORDER BY resource, holder LIMIT $3`, afterResource, afterHolder, limit)
	if err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: list slot holders: %w", err)
	}
	var out []store.LimitHolder
	for rows.Next() {
		var h store.LimitHolder
		var since int64
		if err := rows.Scan(&h.Resource, &h.Holder, &since); err != nil {
			rows.Close()
			return nil, err
		}
		h.Since = time.Unix(0, since).UTC()
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stepflow/pgstore: list slot holders: %w", err)
	}
	return out, nil
}
