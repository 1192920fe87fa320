package pgstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"deadlock", &pgconn.PgError{Code: "40P01"}, true},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, true},
		{"wrapped deadlock", fmt.Errorf("commit: %w", &pgconn.PgError{Code: "40P01"}), true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"query canceled", &pgconn.PgError{Code: "57014"}, false},
		{"context canceled", context.Canceled, false},
		{"deadline", context.DeadlineExceeded, false},
		{"other", errors.New("connection refused"), false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, retryable(tc.err))
		})
	}
}

func TestRetryLoop(t *testing.T) {
	deadlock := &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}

	t.Run("succeeds after transient failures", func(t *testing.T) {
		calls := 0
		err := retry(t.Context(), func() error {
			calls++
			if calls < 3 {
				return deadlock
			}
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, 3, calls)
	})

	t.Run("gives up after a bounded number of attempts", func(t *testing.T) {
		calls := 0
		start := time.Now()
		err := retry(t.Context(), func() error { calls++; return deadlock })
		assert.ErrorIs(t, err, deadlock, "the last error is returned")
		assert.Equal(t, maxAttempts, calls)
		assert.Less(t, time.Since(start), 5*time.Second, "the backoff stays small")
	})

	t.Run("other errors are not retried", func(t *testing.T) {
		calls := 0
		boom := errors.New("boom")
		err := retry(t.Context(), func() error { calls++; return boom })
		assert.ErrorIs(t, err, boom)
		assert.Equal(t, 1, calls)
	})

	t.Run("stops waiting when the context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		err := retry(ctx, func() error { calls++; cancel(); return deadlock })
		assert.ErrorIs(t, err, deadlock)
		assert.Equal(t, 1, calls)
	})
}
