package runner_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/pgstore"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

// TestPostgresRunnerWithSmallPool: a runner with as many workers as its
// pool has connections makes progress (watching for notifications must
// not take the connections that claims and commits need).
func TestPostgresRunnerWithSmallPool(t *testing.T) {
	for _, tc := range []struct{ workers, conns int }{{4, 4}, {2, 2}} {
		t.Run(fmt.Sprintf("workers=%d,conns=%d", tc.workers, tc.conns), func(t *testing.T) {
			schema := newSchema(t)
			cfg, err := pgxpool.ParseConfig(storetest.PostgresDSN(t))
			require.NoError(t, err)
			cfg.MaxConns = int32(tc.conns)
			small, err := pgxpool.NewWithConfig(context.Background(), cfg)
			require.NoError(t, err)
			defer small.Close()
			s := pgstore.New(small, &pgstore.Options{Schema: schema})
			defer s.Close()
			require.NoError(t, s.Migrate(t.Context()))
			// The test reads through a store of its own on another pool,
			// so that what it sees does not depend on the small pool.
			reader := newPG(t, schema)

			var reported atomic.Int64
			r, ps, err := newRunner(countingFlow(t, 3, nil), s, &runner.Options{
				Workers: tc.workers, Batch: 4, Lease: 5 * time.Second,
				OnError: func(error) { reported.Add(1) },
			})
			require.NoError(t, err)
			const procs = 20
			for i := range procs {
				err := ps.Start(t.Context(), fmt.Sprintf("p%02d", i), counter{})
				require.NoError(t, err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			finished := func() int {
				c, err := reader.Count(t.Context())
				require.NoError(t, err)
				return c.ByStatus[stepflow.Done]
			}
			assert.Eventually(t, func() bool { return finished() == procs }, 15*time.Second, 20*time.Millisecond,
				"every process finishes")
			cancel()
			require.NoError(t, <-done)
			assert.Equal(t, procs, finished(), "processes done (errors reported: %d)", reported.Load())
		})
	}
}

// stuckStore never answers claims, like a store whose connections are
// all taken: the call waits until its context ends.
type stuckStore struct{ store.Store }

func (stuckStore) Claim(ctx context.Context, _ store.Claim) ([]store.Record, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestRunReportsStall: a runner whose claims never return says so through
// OnError, with an error matching runner.ErrStalled, instead of waiting
// silently.
func TestRunReportsStall(t *testing.T) {
	reports := make(chan error, 100)
	r, _, err := newRunner(countingFlow(t, 1, nil), stuckStore{store.NewMemory()}, &runner.Options{
		Lease: 300 * time.Millisecond,
		OnError: func(err error) {
			select {
			case reports <- err:
			default:
			}
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var stall *runner.StallError
	deadline := time.After(5 * time.Second)
	for stall == nil {
		select {
		case err := <-reports:
			assert.ErrorIs(t, err, context.DeadlineExceeded, "a claim that takes too long is an error")
			errors.As(err, &stall)
		case <-deadline:
			t.Fatal("no stall reported within 5s")
		}
	}
	assert.ErrorIs(t, stall, runner.ErrStalled)
	assert.GreaterOrEqual(t, stall.For, 300*time.Millisecond)
	cancel()
	require.NoError(t, <-done, "a stall does not end Run")
}

// TestLeaseFromInSteps: a step finds the lease of its process in its
// context, with the revision it was loaded at, which grows with every
// commit, also when the processes of one batch are at different revisions.
func TestLeaseFromInSteps(t *testing.T) {
	ctx := t.Context()
	clock := newClock()
	var mu sync.Mutex
	seen := map[string][]runner.Lease{}
	record := func(ctx context.Context, _ *counter) error {
		l, ok := runner.LeaseFrom(ctx)
		if !ok {
			return errors.New("no lease in the step's context")
		}
		call, _ := stepflow.CallFrom(ctx)
		mu.Lock()
		seen[call.ID] = append(seen[call.ID], l)
		mu.Unlock()
		return nil
	}
	f := stepflow.Must(stepflow.New("lease/v1",
		combinators.Do("s0", record), combinators.Do("s1", record), combinators.Do("s2", record)))
	r, ps, err := newRunner(f, store.NewMemory(), &runner.Options{Owner: "runner-a", Clock: clock, Lease: time.Minute})
	require.NoError(t, err)
	err = ps.Start(ctx, "p", counter{})
	require.NoError(t, err)
	_, err = r.Step(ctx) // p is at revision 2 now
	require.NoError(t, err)
	err = ps.Start(ctx, "q", counter{}) // q at revision 1: one batch holds both
	require.NoError(t, err)
	drain(t, r)

	for _, id := range []string{"p", "q"} {
		require.Len(t, seen[id], 3, id)
		for i, l := range seen[id] {
			assert.Equal(t, "runner-a", l.Owner, "%s step %d", id, i)
			assert.Equal(t, uint64(i+1), l.Revision, "%s step %d: revisions grow with each commit", id, i)
			assert.True(t, clock.Now().Add(time.Minute).Equal(l.Until), "%s step %d: until %s", id, i, l.Until)
		}
	}
	_, ok := runner.LeaseFrom(ctx)
	assert.False(t, ok, "no lease outside a runner")
}

// storeKind makes a fresh store of one kind for a test.
type storeKind struct {
	name string
	make func(t *testing.T) store.Store
}

func allStores() []storeKind {
	return []storeKind{
		{"memory", func(*testing.T) store.Store { return store.NewMemory() }},
		{"bolt", func(t *testing.T) store.Store { return newBolt(t, "") }},
		{"postgres", func(t *testing.T) store.Store { return newPG(t, newSchema(t)) }},
	}
}

// TestVerify: the verification pass quarantines the records a claim
// would quarantine and the damaged records of ended processes a claim
// never sees, keeps their bytes, and leaves everything else alone.
func TestVerify(t *testing.T) {
	for _, kind := range allStores() {
		t.Run(kind.name, func(t *testing.T) {
			ctx := t.Context()
			s := kind.make(t)
			clock := newClock()
			flow := countingFlow(t, 2, nil)
			r, ps, err := newRunner(flow, s, &runner.Options{Clock: clock})
			require.NoError(t, err)

			// 230 ended processes (more than one page of List) and 20
			// still running.
			for i := range 230 {
				err := ps.Start(ctx, fmt.Sprintf("done%03d", i), counter{})
				require.NoError(t, err)
			}
			drain(t, r)
			for i := range 20 {
				err := ps.Start(ctx, fmt.Sprintf("run%02d", i), counter{})
				require.NoError(t, err)
			}
			// Damage.
			garbage := []byte{0xF5, 'm', 1, 0xc1, 0xc1}
			require.NoError(t, s.Create(ctx, store.Record{ID: "bad-garbage", Version: flow.Version(), Status: stepflow.Done, Blob: garbage}))
			enc := codec.Msgpack[counter](nil)
			st := flow.Start(counter{N: 1})
			st.ID = "someone-else"
			b, err := enc.Encode(st)
			require.NoError(t, err)
			require.NoError(t, s.Create(ctx, store.Record{ID: "bad-id", Status: st.Status, Blob: b}))
			// Processes of another flow version, which this runner does
			// not apply: they are left alone, running or ended.
			old := countingFlowVersion(t, "count/v0")
			st = old.Start(counter{})
			st.ID = "old-running"
			b, err = enc.Encode(st)
			require.NoError(t, err)
			require.NoError(t, s.Create(ctx, store.Record{ID: "old-running", Status: st.Status, Blob: b}))
			st.ID = "old-done"
			for !st.Terminal() {
				st, err = old.Apply(ctx, st)
				require.NoError(t, err)
			}
			b, err = enc.Encode(st)
			require.NoError(t, err)
			require.NoError(t, s.Create(ctx, store.Record{ID: "old-done", Status: st.Status, Blob: b}))
			require.NoError(t, s.Create(ctx, store.Record{ID: "quarantined-before", Version: flow.Version(), Status: stepflow.Running,
				Quarantine: "earlier trouble", Blob: []byte("x")}))

			rep, err := r.Verify(ctx)
			require.NoError(t, err)
			assert.Equal(t, 230+20+5, rep.Checked)
			assert.Equal(t, 250, rep.OK)
			assert.Equal(t, 1, rep.AlreadyQuarantined)
			assert.Equal(t, 2, rep.OtherVersion)
			assert.Empty(t, rep.Skipped)
			reasons := map[string]string{}
			for _, p := range rep.Quarantined {
				reasons[p.ID] = p.Reason
			}
			require.Len(t, reasons, 2, "%+v", rep.Quarantined)
			assert.Contains(t, reasons["bad-garbage"], "decode")
			assert.Contains(t, reasons["bad-id"], "someone-else")

			rec, err := s.Load(ctx, "bad-garbage")
			require.NoError(t, err)
			assert.Equal(t, garbage, rec.Blob, "the bytes are kept")
			assert.Equal(t, reasons["bad-garbage"], rec.Quarantine)
			_, err = ps.State(ctx, "bad-garbage")
			assert.ErrorIs(t, err, runner.ErrQuarantined)
			for _, id := range []string{"old-done", "old-running"} {
				rec, err = s.Load(ctx, id)
				require.NoError(t, err)
				assert.Empty(t, rec.Quarantine, "%s: a process of another version is left alone", id)
			}

			// A second pass finds nothing new, and the runner carries on.
			rep, err = r.Verify(ctx)
			require.NoError(t, err)
			assert.Empty(t, rep.Quarantined)
			assert.Equal(t, 3, rep.AlreadyQuarantined)
			assert.Equal(t, 250, rep.OK)
			assert.Equal(t, 40, drain(t, r))
			c, err := r.Counts(ctx)
			require.NoError(t, err)
			assert.Equal(t, 3, c.Quarantined)
			assert.Equal(t, 251, c.ByStatus[stepflow.Done])
			assert.Equal(t, 1, c.ByVersion["count/v0"].ByStatus[stepflow.Running], "the other version's process waits for its runner")
		})
	}
}

// repairingStore repairs a record just before the first quarantine write
// for it arrives, as an operator might while Verify runs.
type repairingStore struct {
	store.Store
	id   string
	blob []byte
	once sync.Once
}

func (s *repairingStore) Commit(ctx context.Context, owner string, ws []store.Write) ([]error, error) {
	if len(ws) == 1 && ws[0].ID == s.id && ws[0].Quarantine != "" {
		s.once.Do(func() {
			rec, err := s.Store.Load(ctx, s.id)
			if err == nil {
				_, _ = s.Store.Commit(ctx, "", []store.Write{{ID: s.id, Revision: rec.Revision, Status: stepflow.Running, Blob: s.blob}})
			}
		})
	}
	return s.Store.Commit(ctx, owner, ws)
}

// TestVerifyRechecksChangedRecord: a record that changed between its read
// and its quarantine write is read again and judged by what it is now.
func TestVerifyRechecksChangedRecord(t *testing.T) {
	ctx := t.Context()
	flow := countingFlow(t, 1, nil)
	st := flow.Start(counter{})
	st.ID = "p"
	good, err := codec.Msgpack[counter](nil).Encode(st)
	require.NoError(t, err)
	mem := store.NewMemory()
	require.NoError(t, mem.Create(ctx, store.Record{ID: "p", Version: flow.Version(), Status: stepflow.Running, Blob: []byte("garbage")}))
	r, _, err := newRunner(flow, &repairingStore{Store: mem, id: "p", blob: good}, nil)
	require.NoError(t, err)
	rep, err := r.Verify(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Checked)
	assert.Equal(t, 1, rep.OK, "%+v", rep)
	assert.Empty(t, rep.Quarantined)
	rec, err := mem.Load(ctx, "p")
	require.NoError(t, err)
	assert.Empty(t, rec.Quarantine)
}

// countingFlowVersion is a one-step flow with the given version.
func countingFlowVersion(t testing.TB, version string) *stepflow.Flow[counter] {
	return stepflow.Must(stepflow.New(version, combinators.Do("x", func(_ context.Context, d *counter) error { d.N++; return nil })))
}

// TestKeptLeasesOnPostgres: on a store that keeps leases, a runner applies
// a running process again without claiming it, and gives the kept lease
// back when it stops, so that another runner continues at once rather
// than after the lease.
func TestKeptLeasesOnPostgres(t *testing.T) {
	s := newPG(t, newSchema(t))
	var steps []stepflow.Node[counter]
	for i := range 200 {
		steps = append(steps, combinators.Do(fmt.Sprintf("s%d", i), func(_ context.Context, d *counter) error {
			time.Sleep(time.Millisecond)
			d.N++
			return nil
		}))
	}
	f := stepflow.Must(stepflow.New("long/v1", steps...))
	first, ps, err := newRunner(f, s, &runner.Options{Owner: "first", Lease: time.Hour})
	require.NoError(t, err)
	require.NoError(t, ps.Start(t.Context(), "p", counter{}))
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	require.Eventually(t, func() bool {
		st, err := ps.State(t.Context(), "p")
		return err == nil && st.Data.N >= 20
	}, 30*time.Second, time.Millisecond)
	stop()
	require.NoError(t, <-done)
	rec, err := s.Load(t.Context(), "p")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Running, rec.Status)
	assert.Empty(t, rec.Owner, "the kept lease was given back")

	second, ps2, err := newRunner(f, s, &runner.Options{Owner: "second", Lease: time.Hour})
	require.NoError(t, err)
	ctx2, stop2 := context.WithTimeout(t.Context(), 30*time.Second) // far less than the lease
	defer stop2()
	go func() { _ = second.Run(ctx2) }()
	st, err := ps2.Wait(ctx2, "p")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, 200, st.Data.N, "every step once: none lost or repeated across the hand-over")
}

// claimCounter is a store that counts the processes its claims hand out,
// keeping leases as the store it wraps does.
type claimCounter struct {
	store.Store
	claimed atomic.Int64
}

func (c *claimCounter) Claim(ctx context.Context, cl store.Claim) ([]store.Record, error) {
	recs, err := c.Store.Claim(ctx, cl)
	c.claimed.Add(int64(len(recs)))
	return recs, err
}

func (c *claimCounter) KeepsLeases() bool { return c.Store.(store.LeaseKeeper).KeepsLeases() }

// TestKeptLeasesUnderLoad: with more runnable processes than a batch holds,
// a worker applies the processes it holds again without claiming them, and
// still gives the queue its turn: a process never keeps its lease for more
// than 16 steps in a row, so the processes behind the first batch start
// before the first batch ends. No step is lost or repeated.
func TestKeptLeasesUnderLoad(t *testing.T) {
	const procs, steps, batch = 12, 40, 4
	s := &claimCounter{Store: newPG(t, newSchema(t))}
	var nodes []stepflow.Node[counter]
	for i := range steps {
		nodes = append(nodes, combinators.Do(fmt.Sprintf("s%d", i), func(_ context.Context, d *counter) error {
			d.N++
			return nil
		}))
	}
	f := stepflow.Must(stepflow.New("long/v1", nodes...))
	var mu sync.Mutex
	var order []runner.Transition
	all := make(chan struct{})
	r, ps, err := newRunner(f, s, &runner.Options{Workers: 1, Batch: batch, Lease: time.Hour,
		Metrics: &runner.Metrics{Applied: func(tr runner.Transition) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, tr)
			if len(order) == procs*steps {
				close(all)
			}
		}}})
	require.NoError(t, err)
	batchOf := make([]runner.NewProcess[counter], procs)
	for i := range batchOf {
		batchOf[i].ID = fmt.Sprintf("p%02d", i)
	}
	_, err = ps.StartMany(t.Context(), batchOf)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		t.Fatal("the processes did not end")
	}
	stop()
	require.NoError(t, <-done)

	for _, b := range batchOf {
		st, err := ps.State(t.Context(), b.ID)
		require.NoError(t, err)
		assert.Equal(t, stepflow.Done, st.Status, b.ID)
		assert.Equal(t, steps, st.Data.N, "%s: every step once", b.ID)
	}
	assert.Less(t, s.claimed.Load(), int64(procs*steps/4), "most steps applied a kept lease, not a claim")
	first, last := map[string]int{}, map[string]int{}
	for i, tr := range order {
		if _, ok := first[tr.ID]; !ok {
			first[tr.ID] = i
		}
		last[tr.ID] = i
	}
	assert.Less(t, first["p11"], last["p00"], "the last process started before the first one ended")
}

// TestAnOutsideWriteEndsAKeptLease: a signal written while a worker keeps
// the lease of a process takes the lease, so the next claim hands the
// process out again; the worker then applies the claimed record, not the
// one it carried, and no step runs twice.
func TestAnOutsideWriteEndsAKeptLease(t *testing.T) {
	const steps = 30
	s := newPG(t, newSchema(t))
	var mu sync.Mutex
	calls := map[string]int{}
	var nodes []stepflow.Node[counter]
	for i := range steps {
		nodes = append(nodes, combinators.Do(fmt.Sprintf("s%d", i), func(ctx context.Context, d *counter) error {
			c, _ := stepflow.CallFrom(ctx)
			mu.Lock()
			calls[c.Path]++
			mu.Unlock()
			d.N++
			return nil
		}))
	}
	f := stepflow.Must(stepflow.New("signaled/v1", nodes...))
	var ps *runner.Processes[counter]
	signaled := false
	r, ps, err := newRunner(f, s, &runner.Options{Lease: time.Hour, Metrics: &runner.Metrics{
		Committed: func(int, int, time.Duration, error) {
			mu.Lock()
			due := !signaled && calls["s5"] > 0
			signaled = signaled || due
			mu.Unlock()
			if due {
				// Between this commit, which kept the lease, and the
				// worker's next step; then time for the notification.
				assert.NoError(t, ps.Signal(t.Context(), "p", "ping", nil))
				time.Sleep(200 * time.Millisecond)
			}
		}}})
	require.NoError(t, err)
	require.NoError(t, ps.Start(t.Context(), "p", counter{}))
	ctx, stop := context.WithTimeout(t.Context(), 30*time.Second)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	st, err := ps.Wait(ctx, "p")
	stop()
	require.NoError(t, <-done)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, steps, st.Data.N)
	require.True(t, signaled)
	for i := range steps {
		assert.Equal(t, 1, calls[fmt.Sprintf("s%d", i)], "s%d", i)
	}
}
