package runner_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/versions"
)

// order is the data of the shop flow of these tests.
type order struct {
	Items    int    `json:"items"`
	Broken   bool   `json:"broken,omitempty"`
	Picked   bool   `json:"picked,omitempty"`
	Approver string `json:"approver,omitempty"`
}

// opaque is data that encoding/json refuses; the runner's codec does not
// mind.
type opaque struct{ N int }

func (opaque) MarshalJSON() ([]byte, error) { return nil, errors.New("opaque data") }

// byIDFixture is a runner hosting three flows by id, and a store holding
// processes in every situation Inspect and the actions meet.
type byIDFixture struct {
	r     *runner.Runner
	s     *store.Memory
	shop  *runner.Processes[order]
	pay   *runner.Processes[counter]
	docs  *runner.Processes[counter]
	clock *fakeClock
}

func shopFlow() *stepflow.Flow[order] {
	return stepflow.Must(stepflow.NewWithOptions("shop/v1", &stepflow.Options{Record: stepflow.DefaultRecord},
		combinators.Do("pick", func(_ context.Context, o *order) error {
			if o.Broken {
				return errors.New("shelf empty")
			}
			o.Picked = true
			return nil
		}),
		combinators.WaitSignal("approval", "approve", func(o *order, who []byte) error { o.Approver = string(who); return nil }),
		combinators.Do("ship", func(context.Context, *order) error { return nil }),
	))
}

func payFlow() *stepflow.Flow[counter] {
	return stepflow.Must(stepflow.New("pay/v1",
		combinators.Do("charge", func(context.Context, *counter) error { return nil }, combinators.AtMostOnce(combinators.AskPerson))))
}

func docFlows() (v1, v2 *stepflow.Flow[counter]) {
	wait := combinators.WaitSignal[counter]("review", "reviewed", nil)
	v1 = stepflow.Must(stepflow.New("doc/v1", wait))
	v2 = stepflow.Must(stepflow.New("doc/v2", wait, combinators.Do("publish", func(context.Context, *counter) error { return nil })))
	return v1, v2
}

func newByIDFixture(t *testing.T) *byIDFixture {
	t.Helper()
	ctx := t.Context()
	fx := &byIDFixture{s: store.NewMemory(), clock: newClock()}
	opts := &runner.Options{Clock: fx.clock}

	// Processes that need another runner to reach their state: a doc/v1
	// process under a release that knows doc/v1 only, and a payment whose
	// intent was saved by a runner that then went away.
	old, err := runner.New(fx.s, opts)
	require.NoError(t, err)
	v1, v2 := docFlows()
	oldDocs, err := runner.Register(old, v1)
	require.NoError(t, err)
	oldPay, err := runner.Register(old, payFlow())
	require.NoError(t, err)
	others, err := runner.Register(old, stepflow.Must(stepflow.New("other/v1", combinators.WaitSignal[counter]("w", "go", nil))))
	require.NoError(t, err)
	require.NoError(t, oldDocs.Start(ctx, "doc-1", counter{}))
	require.NoError(t, oldPay.Start(ctx, "pay-1", counter{}))
	require.NoError(t, others.Start(ctx, "other-1", counter{}))
	// One step each: doc-1 waits for its review, and pay-1 holds an
	// intent this runner saved; the runner then goes away, and no other
	// runner may run the step without a person.
	n, err := old.Step(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	fx.r, err = runner.New(fx.s, opts)
	require.NoError(t, err)
	fx.shop, err = runner.Register(fx.r, shopFlow())
	require.NoError(t, err)
	fx.pay, err = runner.Register(fx.r, payFlow())
	require.NoError(t, err)
	reg, err := versions.New([]*stepflow.Flow[counter]{v1, v2}, &versions.Options{Policy: versions.PolicyPinned},
		versions.NewMigration[counter]("doc/v1", "doc/v2"))
	require.NoError(t, err)
	fx.docs, err = runner.RegisterVersions(fx.r, reg)
	require.NoError(t, err)

	for _, p := range []runner.NewProcess[order]{
		{ID: "done", Data: order{Items: 2}},
		{ID: "failed", Data: order{Items: 1, Broken: true}},
		{ID: "waiting", Data: order{Items: 3}},
		{ID: "quarantined", Data: order{Items: 4}},
	} {
		require.NoError(t, fx.shop.Start(ctx, p.ID, p.Data))
	}
	drain(t, fx.r)
	require.NoError(t, fx.shop.Signal(ctx, "done", "approve", []byte("ann")))
	drain(t, fx.r)
	fx.quarantine(t, "quarantined")
	// Bytes that are no state at all, set aside.
	require.NoError(t, fx.s.Create(ctx, store.Record{ID: "garbage", Version: "shop/v1", Status: stepflow.Waiting,
		Blob: []byte("not a state"), Quarantine: "codec: corrupt"}))
	return fx
}

// quarantine sets a process aside as a runner does, bytes kept.
func (fx *byIDFixture) quarantine(t *testing.T, id string) {
	t.Helper()
	rec, err := fx.s.Load(t.Context(), id)
	require.NoError(t, err)
	errs, err := fx.s.Commit(t.Context(), "", []store.Write{{ID: id, Revision: rec.Revision, Status: rec.Status, Quarantine: "decode: bad luck"}})
	require.NoError(t, err)
	require.Nil(t, errs)
}

func TestInspect(t *testing.T) {
	fx := newByIDFixture(t)
	ctx := t.Context()
	nodeStatus := func(in runner.Inspection, path string) stepflow.NodeStatus {
		for _, n := range in.Description.Nodes {
			if n.Path == path {
				return n.Status
			}
		}
		t.Fatalf("no node %s", path)
		return 0
	}
	tests := []struct {
		name  string
		id    string
		setup func(t *testing.T)
		check func(t *testing.T, in runner.Inspection, err error)
	}{
		{name: "done", id: "done", check: func(t *testing.T, in runner.Inspection, err error) {
			require.NoError(t, err)
			assert.Equal(t, stepflow.Done, in.Record.Status)
			assert.True(t, in.Decoded)
			assert.Equal(t, stepflow.Done, in.Description.Status)
			assert.Equal(t, "done", in.Description.ID)
			assert.Equal(t, stepflow.NodeDone, nodeStatus(in, "ship"))
			assert.JSONEq(t, `{"items":2,"picked":true,"approver":"ann"}`, string(in.Data))
			require.NotEmpty(t, in.History, "the flow keeps a record")
			assert.Equal(t, "pick", in.History[0].Path)
			assert.Empty(t, in.Problem)
			assert.NotEmpty(t, in.Record.Blob)
		}},
		{name: "failed", id: "failed", check: func(t *testing.T, in runner.Inspection, err error) {
			require.NoError(t, err)
			require.NotNil(t, in.Err)
			assert.Equal(t, "pick", in.Err.Path)
			assert.Contains(t, in.Err.Message, "shelf empty")
			assert.Equal(t, stepflow.NodeFailed, nodeStatus(in, "pick"))
			assert.Contains(t, in.Description.Why, "failed at pick")
			assert.Equal(t, "pick", in.Record.Position)
		}},
		{name: "waiting with a pending signal", id: "waiting",
			setup: func(t *testing.T) { require.NoError(t, fx.shop.Signal(ctx, "waiting", "nudge", []byte(`{"n":1}`))) },
			check: func(t *testing.T, in runner.Inspection, err error) {
				require.NoError(t, err)
				require.Len(t, in.Signals, 1)
				assert.Equal(t, "nudge", in.Signals[0].Name)
				assert.Equal(t, `{"n":1}`, string(in.Signals[0].Payload))
				assert.Equal(t, stepflow.NodeDone, nodeStatus(in, "pick"))
			}},
		{name: "needs attention", id: "pay-1", check: func(t *testing.T, in runner.Inspection, err error) {
			require.NoError(t, err)
			assert.Equal(t, stepflow.NeedsAttention, in.Description.Status)
			assert.Equal(t, "charge", in.Intent)
		}},
		{name: "older version of a registry", id: "doc-1", check: func(t *testing.T, in runner.Inspection, err error) {
			require.NoError(t, err)
			assert.Equal(t, "doc/v1", in.Description.Version)
			assert.Len(t, in.Description.Nodes, 1, "described by its own version")
		}},
		{name: "quarantined, bytes readable", id: "quarantined", check: func(t *testing.T, in runner.Inspection, err error) {
			require.NoError(t, err)
			assert.Equal(t, "decode: bad luck", in.Record.Quarantine)
			assert.True(t, in.Decoded)
			assert.JSONEq(t, `{"items":4,"picked":true}`, string(in.Data))
			assert.Equal(t, stepflow.Waiting, in.Description.Status)
		}},
		{name: "quarantined, bytes unreadable", id: "garbage", check: func(t *testing.T, in runner.Inspection, err error) {
			require.NoError(t, err)
			assert.Equal(t, "codec: corrupt", in.Record.Quarantine)
			assert.False(t, in.Decoded)
			assert.NotEmpty(t, in.Problem)
			assert.Nil(t, in.Data)
			assert.Empty(t, in.Description.Nodes)
		}},
		{name: "flow not hosted", id: "other-1", check: func(t *testing.T, in runner.Inspection, err error) {
			require.ErrorIs(t, err, runner.ErrUnknownFlow)
			assert.Equal(t, "other-1", in.Record.ID, "the record still comes back")
			assert.Equal(t, "other/v1", in.Record.Version)
		}},
		{name: "no such process", id: "nobody", check: func(t *testing.T, in runner.Inspection, err error) {
			require.ErrorIs(t, err, store.ErrNotFound)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup(t)
			}
			in, err := fx.r.Inspect(ctx, tt.id)
			tt.check(t, in, err)
		})
	}
}

// Data that encoding/json refuses is reported, not fatal.
func TestInspectDataThatIsNotJSON(t *testing.T) {
	ctx := t.Context()
	r, err := runner.New(store.NewMemory(), &runner.Options{Clock: newClock()})
	require.NoError(t, err)
	ps, err := runner.Register(r, stepflow.Must(stepflow.New("opaque/v1", combinators.WaitSignal[opaque]("w", "go", nil))))
	require.NoError(t, err)
	require.NoError(t, ps.Start(ctx, "o", opaque{N: 1}))
	drain(t, r)
	in, err := r.Inspect(ctx, "o")
	require.NoError(t, err)
	assert.Nil(t, in.Data)
	assert.Contains(t, in.DataError, "opaque data")
	assert.Equal(t, stepflow.Waiting, in.Description.Status, "the rest is there")
}

func TestActionsByID(t *testing.T) {
	ctx := t.Context()
	tests := []struct {
		name  string
		id    string
		act   func(r *runner.Runner, id string) error
		check func(t *testing.T, fx *byIDFixture)
	}{
		{name: "signal", id: "waiting",
			act: func(r *runner.Runner, id string) error { return r.Signal(ctx, id, "approve", []byte("bob")) },
			check: func(t *testing.T, fx *byIDFixture) {
				drain(t, fx.r)
				st, err := fx.shop.State(ctx, "waiting")
				require.NoError(t, err)
				assert.Equal(t, stepflow.Done, st.Status)
				assert.Equal(t, "bob", st.Data.Approver)
			}},
		{name: "cancel", id: "waiting",
			act: func(r *runner.Runner, id string) error { return r.Cancel(ctx, id, "withdrawn") },
			check: func(t *testing.T, fx *byIDFixture) {
				st, err := fx.shop.State(ctx, "waiting")
				require.NoError(t, err)
				assert.Equal(t, stepflow.Canceled, st.Status)
				assert.Equal(t, "withdrawn", st.Err.Message)
			}},
		{name: "redrive", id: "failed",
			act: func(r *runner.Runner, id string) error { return r.Redrive(ctx, id) },
			check: func(t *testing.T, fx *byIDFixture) {
				st, err := fx.shop.State(ctx, "failed")
				require.NoError(t, err)
				assert.Equal(t, stepflow.Running, st.Status)
			}},
		{name: "resolve", id: "pay-1",
			act: func(r *runner.Runner, id string) error { return r.Resolve(ctx, id, stepflow.ResolveSucceeded) },
			check: func(t *testing.T, fx *byIDFixture) {
				st, err := fx.pay.State(ctx, "pay-1")
				require.NoError(t, err)
				assert.Equal(t, stepflow.Running, st.Status)
				assert.Empty(t, st.Intent)
				drain(t, fx.r)
				st, err = fx.pay.State(ctx, "pay-1")
				require.NoError(t, err)
				assert.Equal(t, stepflow.Done, st.Status)
			}},
		{name: "migrate", id: "doc-1",
			act: func(r *runner.Runner, id string) error { return r.Migrate(ctx, id) },
			check: func(t *testing.T, fx *byIDFixture) {
				rec, err := fx.s.Load(ctx, "doc-1")
				require.NoError(t, err)
				assert.Equal(t, "doc/v2", rec.Version)
			}},
		{name: "migrate puts a quarantined process back", id: "quarantined",
			act: func(r *runner.Runner, id string) error { return r.Migrate(ctx, id) },
			check: func(t *testing.T, fx *byIDFixture) {
				rec, err := fx.s.Load(ctx, "quarantined")
				require.NoError(t, err)
				assert.Empty(t, rec.Quarantine)
				assert.Equal(t, stepflow.Waiting, rec.Status)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newByIDFixture(t)
			require.NoError(t, tt.act(fx.r, tt.id))
			tt.check(t, fx)
		})
	}
}

// Every action by id refuses a process of a flow the runner does not host
// and an id that does not exist, with errors callers can tell apart, and
// passes on the typed method's own refusals.
func TestActionsByIDErrors(t *testing.T) {
	ctx := t.Context()
	fx := newByIDFixture(t)
	actions := map[string]func(id string) error{
		"signal":  func(id string) error { return fx.r.Signal(ctx, id, "go", nil) },
		"cancel":  func(id string) error { return fx.r.Cancel(ctx, id, "no") },
		"redrive": func(id string) error { return fx.r.Redrive(ctx, id) },
		"resolve": func(id string) error { return fx.r.Resolve(ctx, id, stepflow.ResolveRetry) },
		"migrate": func(id string) error { return fx.r.Migrate(ctx, id) },
	}
	for name, act := range actions {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, act("other-1"), runner.ErrUnknownFlow)
			require.ErrorIs(t, act("nobody"), store.ErrNotFound)
		})
	}
	// The typed refusals come through.
	require.ErrorIs(t, fx.r.Redrive(ctx, "waiting"), stepflow.ErrNotFailed)
	require.ErrorIs(t, fx.r.Signal(ctx, "done", "approve", nil), stepflow.ErrEnded)
	require.ErrorIs(t, fx.r.Signal(ctx, "quarantined", "approve", nil), runner.ErrQuarantined)
	// The other runner's process is untouched.
	rec, err := fx.s.Load(ctx, "other-1")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), rec.Revision)
}
