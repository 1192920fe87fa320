package pgstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// maxAttempts bounds how many times a statement runs when PostgreSQL keeps
// aborting it as a deadlock victim or for a serialization failure.
const maxAttempts = 5

// retryable reports whether err is a failure that running the same
// transaction again may not meet: a deadlock (SQLSTATE 40P01), whose
// victim PostgreSQL picks among transactions that would each succeed on
// their own, or a serialization failure (40001).
func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return pe.Code == "40P01" || pe.Code == "40001"
}

// retry calls f, which runs one transaction, until it succeeds, fails
// with an error retryable does not accept, or has run maxAttempts times;
// it returns f's last error. The pauses between attempts grow from about
// 10ms, with jitter so that the transactions that collided do not meet
// again, and end early when ctx is done.
func retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := range maxAttempts {
		if attempt > 0 {
			d := 10 * time.Millisecond << (attempt - 1)
			d += rand.N(d)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
		}
		if err = f(); !retryable(err) {
			return err
		}
	}
	return err
}
