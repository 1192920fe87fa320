package runner_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/versions"
)

type note struct{ Text string }

// approvalFlow waits for the signal "ok" at step "wait", then fails when
// the signal's payload says "fail".
func approvalFlow(version string) *stepflow.Flow[note] {
	return stepflow.Must(stepflow.New(version,
		combinators.WaitSignal("wait", "ok", func(n *note, payload []byte) error { n.Text = string(payload); return nil }),
		combinators.Do("finish", func(_ context.Context, n *note) error {
			if n.Text == "fail" {
				return errors.New("asked to fail")
			}
			n.Text += "!"
			return nil
		})))
}

func runUntilIdle(t *testing.T, r *runner.Runner) {
	t.Helper()
	for range 1000 {
		n, err := r.Step(t.Context())
		require.NoError(t, err)
		if n == 0 {
			return
		}
	}
	t.Fatal("still busy after 1000 steps")
}

// Two flows share one store and one runner: each handle sees its own
// processes only, with its own data type, and neither flow's processes
// are ever quarantined by the other's.
func TestTwoFlowsOneStore(t *testing.T) {
	for _, kind := range allStores() {
		t.Run(kind.name, func(t *testing.T) {
			ctx := t.Context()
			s := kind.make(t)
			r, err := runner.New(s, nil)
			require.NoError(t, err)
			counters, err := runner.Register(r, countingFlow(t, 2, nil))
			require.NoError(t, err)
			notes, err := runner.Register(r, approvalFlow("approval/v1"))
			require.NoError(t, err)
			_, err = runner.Register(r, countingFlowVersion(t, "count/v9"))
			assert.ErrorIs(t, err, runner.ErrDuplicateFlow)
			assert.Equal(t, map[string][]string{"count": {"count/v1"}, "approval": {"approval/v1"}}, r.Flows())

			require.NoError(t, counters.Start(ctx, "c1", counter{}))
			require.NoError(t, notes.Start(ctx, "n1", note{}))
			err = notes.Start(ctx, "c1", note{})
			assert.ErrorIs(t, err, store.ErrExists, "ids are shared by every flow of a store")
			runUntilIdle(t, r)

			c, err := counters.State(ctx, "c1")
			require.NoError(t, err)
			assert.Equal(t, stepflow.Done, c.Status)
			assert.Equal(t, 2, c.Data.N)
			n, err := notes.State(ctx, "n1")
			require.NoError(t, err)
			assert.Equal(t, stepflow.Waiting, n.Status)
			_, err = notes.State(ctx, "c1")
			assert.ErrorIs(t, err, runner.ErrOtherFlow)
			assert.ErrorIs(t, notes.Signal(ctx, "c1", "ok", nil), runner.ErrOtherFlow)

			require.NoError(t, notes.Signal(ctx, "n1", "ok", []byte("hi")))
			runUntilIdle(t, r)
			n, err = notes.State(ctx, "n1")
			require.NoError(t, err)
			assert.Equal(t, "hi!", n.Data.Text)
			cnt, err := r.Counts(ctx)
			require.NoError(t, err)
			assert.Zero(t, cnt.Quarantined)
			assert.Equal(t, 1, cnt.ByVersion["approval/v1"].ByStatus[stepflow.Done])
			assert.Equal(t, 1, cnt.ByVersion["count/v1"].ByStatus[stepflow.Done])
		})
	}
}

// A runner that does not know a version never claims its processes: they
// wait untouched, counted per version, until a runner that knows it runs.
func TestUnknownVersionWaitsForItsRunner(t *testing.T) {
	for _, kind := range allStores() {
		t.Run(kind.name, func(t *testing.T) {
			ctx := t.Context()
			s := kind.make(t)
			newer, err := runner.New(s, nil)
			require.NoError(t, err)
			reg, err := versions.New([]*stepflow.Flow[note]{approvalFlow("approval/v1"), approvalFlow("approval/v2")}, nil,
				versions.NewMigration[note]("approval/v1", "approval/v2"))
			require.NoError(t, err)
			v2, err := runner.RegisterVersions(newer, reg)
			require.NoError(t, err)
			require.NoError(t, v2.Start(ctx, "p", note{}))
			rec, err := s.Load(ctx, "p")
			require.NoError(t, err)
			assert.Equal(t, "approval/v2", rec.Version)

			older, err := runner.New(s, nil)
			require.NoError(t, err)
			v1, err := runner.Register(older, approvalFlow("approval/v1"))
			require.NoError(t, err)
			n, err := older.Step(ctx)
			require.NoError(t, err)
			assert.Zero(t, n, "the old runner claims nothing of approval/v2")
			c, err := older.Counts(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, c.ByVersion["approval/v2"].ByStatus[stepflow.Running])
			assert.Zero(t, c.Quarantined)
			assert.Equal(t, "approval/v2", v2.Latest())
			_, err = v1.State(ctx, "p")
			assert.NoError(t, err, "the old handle can read it all the same")

			runUntilIdle(t, newer)
			st, err := v2.State(ctx, "p")
			require.NoError(t, err)
			assert.Equal(t, stepflow.Waiting, st.Status)
		})
	}
}

// The lifecycle calls, on every store: StartMany with per-id results,
// Wait woken by the end, Redrive of a failed process, Delete, Resolve,
// retention of ended processes.
func TestLifecycle(t *testing.T) {
	for _, kind := range allStores() {
		t.Run(kind.name, func(t *testing.T) {
			ctx := t.Context()
			s := kind.make(t)
			clock := newClock()
			var deleted atomic.Int64
			r, err := runner.New(s, &runner.Options{Clock: clock, MaxIdle: time.Minute, Retention: time.Hour, RetentionEvery: 10 * time.Millisecond,
				RetentionBatch: 2, Metrics: &runner.Metrics{Deleted: func(n int) { deleted.Add(int64(n)) }}})
			require.NoError(t, err)
			notes, err := runner.Register(r, approvalFlow("approval/v1"))
			require.NoError(t, err)

			errs, err := notes.StartMany(ctx, []runner.NewProcess[note]{{ID: "a"}, {ID: "b"}, {ID: ""}, {ID: "c"}, {ID: "d"}, {ID: "e"}})
			require.NoError(t, err)
			require.Len(t, errs, 6)
			assert.ErrorIs(t, errs[2], store.ErrInvalid)
			errs, err = notes.StartMany(ctx, []runner.NewProcess[note]{{ID: "a"}, {ID: "f"}})
			require.NoError(t, err)
			assert.ErrorIs(t, errs[0], store.ErrExists)
			assert.NoError(t, errs[1])
			runUntilIdle(t, r)

			// Wait returns once the process ends, woken by the store.
			got := make(chan stepflow.State[note], 1)
			go func() {
				st, err := notes.Wait(context.Background(), "a")
				assert.NoError(t, err)
				got <- st
			}()
			time.Sleep(20 * time.Millisecond)
			require.NoError(t, notes.Signal(ctx, "a", "ok", []byte("go")))
			runUntilIdle(t, r)
			select {
			case st := <-got:
				assert.Equal(t, stepflow.Done, st.Status)
				assert.Equal(t, "go!", st.Data.Text)
			case <-time.After(10 * time.Second):
				t.Fatal("Wait was not woken by the end (MaxIdle is a minute)")
			}
			wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_, err = notes.Wait(wctx, "b")
			cancel()
			assert.ErrorIs(t, err, context.DeadlineExceeded)

			// A failed process is redriven at the failed step.
			require.NoError(t, notes.Signal(ctx, "b", "ok", []byte("fail")))
			runUntilIdle(t, r)
			st, err := notes.State(ctx, "b")
			require.NoError(t, err)
			require.Equal(t, stepflow.Failed, st.Status)
			rec, err := s.Load(ctx, "b")
			require.NoError(t, err)
			assert.Equal(t, "finish", rec.Position, "the store knows where it failed")
			assert.Equal(t, stepflow.KindError, rec.ErrorKind)
			failed := stepflow.Failed
			list, err := s.List(ctx, store.Filter{Status: &failed, Position: "finish", Flow: "approval"})
			require.NoError(t, err)
			assert.Equal(t, []string{"b"}, recordIDs(list))
			assert.ErrorIs(t, notes.Redrive(ctx, "c"), stepflow.ErrNotFailed)
			require.NoError(t, notes.Redrive(ctx, "b"))
			st, err = notes.State(ctx, "b")
			require.NoError(t, err)
			assert.Equal(t, stepflow.Running, st.Status)

			// Cancel, then Delete.
			require.NoError(t, notes.Cancel(ctx, "c", "not needed"))
			runUntilIdle(t, r)
			st, err = notes.State(ctx, "c")
			require.NoError(t, err)
			assert.Equal(t, stepflow.Canceled, st.Status)
			n, err := r.Delete(ctx, "d", "nope")
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			_, err = notes.State(ctx, "d")
			assert.ErrorIs(t, err, store.ErrNotFound)

			// Delete at a revision: refused for a process that changed
			// since, done for one that did not.
			require.NoError(t, notes.Start(ctx, "g", note{}))
			g, err := s.Load(ctx, "g")
			require.NoError(t, err)
			errs, err = r.DeleteRevisions(ctx, store.Deletion{ID: "g", Revision: g.Revision + 1}, store.Deletion{ID: "nope", Revision: 1})
			require.NoError(t, err)
			require.Len(t, errs, 2)
			assert.ErrorIs(t, errs[0], store.ErrConflict)
			assert.ErrorIs(t, errs[1], store.ErrNotFound)
			errs, err = r.DeleteRevisions(ctx, store.Deletion{ID: "g", Revision: g.Revision})
			require.NoError(t, err)
			assert.Nil(t, errs)
			_, err = s.Load(ctx, "g")
			assert.ErrorIs(t, err, store.ErrNotFound)
			plain, err := runner.New(struct{ store.Store }{s}, nil)
			require.NoError(t, err)
			_, err = plain.DeleteRevisions(ctx, store.Deletion{ID: "e", Revision: 1})
			assert.ErrorIs(t, err, errors.ErrUnsupported, "a store without RevisionDeleter")

			// Retention: what ended more than an hour ago goes, in
			// batches; what is still running stays.
			clock.Advance(2 * time.Hour)
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- r.Run(rctx) }()
			require.Eventually(t, func() bool {
				_, errA := s.Load(ctx, "a")
				_, errC := s.Load(ctx, "c")
				return errors.Is(errA, store.ErrNotFound) && errors.Is(errC, store.ErrNotFound)
			}, 10*time.Second, 10*time.Millisecond)
			stop()
			require.NoError(t, <-done)
			assert.GreaterOrEqual(t, deleted.Load(), int64(2))
			for _, id := range []string{"e", "f"} {
				_, err := s.Load(ctx, id)
				assert.NoError(t, err, "%s still waits: kept", id)
			}
		})
	}
}

// A quarantined process comes back with Retry once the code can read it,
// and Migrate moves a quarantined process of an old version forward.
func TestQuarantineIsReversible(t *testing.T) {
	for _, kind := range allStores() {
		t.Run(kind.name, func(t *testing.T) {
			ctx := t.Context()
			s := kind.make(t)
			// A state stored under approval/v1 whose bytes name
			// approval/v1 but whose frames name a node that version does
			// not have: the claim quarantines it.
			st := approvalFlow("approval/v1").Start(note{})
			st.ID = "p"
			st.Root.Children = []stepflow.Frame{{Name: "renamed"}}
			b, err := codec.Msgpack[note](nil).Encode(st)
			require.NoError(t, err)
			require.NoError(t, s.Create(ctx, store.Record{ID: "p", Version: "approval/v1", Status: stepflow.Running, Blob: b}))

			r1, err := runner.New(s, nil)
			require.NoError(t, err)
			_, err = runner.Register(r1, approvalFlow("approval/v1"))
			require.NoError(t, err)
			runUntilIdle(t, r1)
			q, err := r1.Quarantined(ctx, "", 0)
			require.NoError(t, err)
			require.Len(t, q, 1)
			assert.Contains(t, q[0].Quarantine, "renamed")
			var qe *runner.QuarantineError
			require.ErrorAs(t, r1.Retry(ctx, "p"), &qe, "the same code cannot read it")

			// The next release renamed "wait" to "renamed" in approval/v2;
			// a registry with a migration takes the process forward.
			v2 := stepflow.Must(stepflow.New("approval/v2",
				combinators.WaitSignal("renamed", "ok", func(n *note, payload []byte) error { n.Text = string(payload); return nil }),
				combinators.Do("finish", func(_ context.Context, n *note) error { n.Text += "!"; return nil })))
			// v1 as it was stored: with a node "renamed" (a hotfix that
			// was never released), which the migration maps.
			v1fixed := stepflow.Must(stepflow.New("approval/v1",
				combinators.WaitSignal("renamed", "ok", func(n *note, payload []byte) error { n.Text = string(payload); return nil }),
				combinators.Do("finish", func(_ context.Context, n *note) error { n.Text += "!"; return nil })))
			reg, err := versions.New([]*stepflow.Flow[note]{v1fixed, v2}, nil, versions.NewMigration[note]("approval/v1", "approval/v2"))
			require.NoError(t, err)
			r2, err := runner.New(s, nil)
			require.NoError(t, err)
			notes, err := runner.RegisterVersions(r2, reg)
			require.NoError(t, err)
			require.NoError(t, notes.Migrate(ctx, "p"))
			rec, err := s.Load(ctx, "p")
			require.NoError(t, err)
			assert.Empty(t, rec.Quarantine, "back in service")
			assert.Equal(t, "approval/v2", rec.Version)
			require.NoError(t, notes.Signal(ctx, "p", "ok", []byte("x")))
			runUntilIdle(t, r2)
			got, err := notes.State(ctx, "p")
			require.NoError(t, err)
			assert.Equal(t, stepflow.Done, got.Status)

			// Retry puts back a process whose bytes the code can read now.
			st = v1fixed.Start(note{})
			st.ID = "q"
			b, err = codec.Msgpack[note](nil).Encode(st)
			require.NoError(t, err)
			require.NoError(t, s.Create(ctx, store.Record{ID: "q", Version: "approval/v1", Status: stepflow.Running, Quarantine: "was unreadable", Blob: b}))
			require.NoError(t, r2.Retry(ctx, "q"))
			rec, err = s.Load(ctx, "q")
			require.NoError(t, err)
			assert.Empty(t, rec.Quarantine)
			assert.Equal(t, b, rec.Blob, "bytes unchanged")
			runUntilIdle(t, r2)
			got, err = notes.State(ctx, "q")
			require.NoError(t, err)
			assert.Equal(t, "approval/v2", got.Version, "migrated at its next step")
			assert.ErrorIs(t, r2.Retry(ctx, "q"), runner.ErrNotQuarantined)
		})
	}
}

func recordIDs(rs []store.Record) []string {
	out := make([]string, len(rs))
	for i := range rs {
		out[i] = rs[i].ID
	}
	return out
}

var _ = fmt.Sprint
