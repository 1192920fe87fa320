// Package stepslog logs what stepflow processes do with log/slog: every
// call of user code (steps and predicates) through an interceptor, and the
// runner's events (failures, quarantines, migrations, retention, commit
// errors) through runner.Metrics hooks. Every record carries the flow
// version, the process id and, for calls, the node path and attempt, as
// attributes named by the constants of this package, so that logs of one
// process or one step are one filter away.
//
// Importing it compiles only the standard library and stepflow's own
// packages.
package stepslog

import (
	"context"
	"log/slog"
	"time"

	"github.com/stepflow-io/go-stepflow/observe"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Attribute keys (see package observe).
const (
	KeyVersion  = observe.KeyVersion
	KeyProcess  = observe.KeyProcess
	KeyPath     = observe.KeyPath
	KeyKind     = observe.KeyKind
	KeyAttempt  = observe.KeyAttempt
	KeyDuration = observe.KeyDuration
	KeyStatus   = observe.KeyStatus
	KeyFrom     = observe.KeyFrom
)

// Interceptor logs every call of user code: at Debug when it succeeds, at
// Warn when it returns an error (with the error), with its duration. Add it
// with stepflow.WithInterceptor, or in stepflow.Options.Interceptors.
func Interceptor(l *slog.Logger) stepflow.Interceptor {
	return func(ctx context.Context, call stepflow.Call, next func(context.Context) error) error {
		start := time.Now()
		err := next(ctx)
		level, msg := slog.LevelDebug, "step"
		if err != nil {
			level, msg = slog.LevelWarn, "step failed"
		}
		if !l.Enabled(ctx, level) {
			return err
		}
		attrs := []slog.Attr{
			slog.String(KeyVersion, call.Version), slog.String(KeyProcess, call.ID), slog.String(KeyPath, call.Path),
			slog.String(KeyKind, call.Kind), slog.Uint64(KeyAttempt, uint64(call.Attempt)), slog.Duration(KeyDuration, time.Since(start)),
		}
		if err != nil {
			attrs = append(attrs, slog.Any("error", err))
		}
		l.LogAttrs(ctx, level, msg, attrs...)
		return err
	}
}

// Metrics returns runner hooks that log: a process that failed or needs a
// person (Warn), one that was quarantined (Error), migrated to another
// version (Info), deleted by the retention (Info), a store transaction
// that failed (Warn), and, at Debug, every other change of status. Set it
// as runner.Options.Metrics, or copy its fields into your own hooks.
func Metrics(l *slog.Logger) *runner.Metrics {
	ctx := context.Background()
	return &runner.Metrics{
		Applied: func(t runner.Transition) {
			if t.From == t.To {
				return
			}
			level, msg := slog.LevelDebug, "process "+t.To.String()
			switch t.To {
			case stepflow.Failed:
				level, msg = slog.LevelWarn, "process failed"
			case stepflow.NeedsAttention:
				level, msg = slog.LevelWarn, "process needs attention"
			}
			if l.Enabled(ctx, level) {
				l.LogAttrs(ctx, level, msg, slog.String(KeyVersion, t.Version), slog.String(KeyProcess, t.ID),
					slog.String(KeyFrom, t.From.String()), slog.String(KeyStatus, t.To.String()))
			}
		},
		Quarantined: func(id, version string, err error) {
			l.LogAttrs(ctx, slog.LevelError, "process quarantined", slog.String(KeyVersion, version), slog.String(KeyProcess, id), slog.Any("error", err))
		},
		Migrated: func(id, from, to string) {
			l.LogAttrs(ctx, slog.LevelInfo, "process migrated", slog.String(KeyVersion, to), slog.String(KeyProcess, id), slog.String(KeyFrom, from))
		},
		Deleted: func(n int) {
			l.LogAttrs(ctx, slog.LevelInfo, "ended processes deleted", slog.Int("count", n))
		},
		Committed: func(writes, refused int, d time.Duration, err error) {
			if err != nil {
				l.LogAttrs(ctx, slog.LevelWarn, "commit failed", slog.Int("writes", writes), slog.Duration(KeyDuration, d), slog.Any("error", err))
			}
		},
	}
}
