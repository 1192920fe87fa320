package versions_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Three versions: v2 inserts "check", v3 renames "b" and removes "c".
func threeVersions() (v1, v2, v3 *stepflow.Flow[D]) {
	v1 = must(stepflow.New("f/v1", step("a", "a"), step("b", "b"), step("c", "c"), step("d", "d")))
	v2 = must(stepflow.New("f/v2", step("a", "a"), step("check", "check"), step("b", "b"), step("c", "c"), step("d", "d")))
	v3 = must(stepflow.New("f/v3", step("a", "a"), step("check", "check"), step("b2", "b"), step("d", "d")))
	return
}

func TestChainWithDeletedDefinitions(t *testing.T) {
	v1, v2, v3 := threeVersions()
	// Only v3's code is kept; v1 and v2 are known by their recorded
	// structures.
	reg, err := versions.New([]*stepflow.Flow[D]{v3}, nil,
		versions.NewMigration[D]("f/v1", "f/v2").Source(versions.Structure(v1)),
		versions.NewMigration[D]("f/v2", "f/v3").Source(versions.Structure(v2)).Rename("b", "b2").Continue("c", "d"))
	require.NoError(t, err)
	assert.Equal(t, []string{"f/v1", "f/v2", "f/v3"}, reg.Versions())
	assert.Same(t, v3, reg.Latest())
	_, ok := reg.Flow("f/v1")
	assert.False(t, ok, "v1 is known by its structure only")
	f, ok := reg.Flow("f/v3")
	assert.True(t, ok)
	assert.Same(t, v3, f)
	m := versions.NewMigration[D]("f/v1", "f/v2")
	assert.Equal(t, "f/v1", m.From())
	assert.Equal(t, "f/v2", m.To())

	ctx, c := newCtx()
	for _, tc := range []struct {
		at, want string
		ran      []string
	}{
		{"a", "a", []string{"a", "check", "b", "d"}},
		{"b", "b2", []string{"a", "b", "d"}},
		{"c", "d", []string{"a", "b", "d"}},
		{"d", "d", []string{"a", "b", "c", "d"}},
	} {
		st := until(t, ctx, c, v1, v1.Start(D{}), tc.at)
		moved, err := reg.Migrate(st)
		require.NoError(t, err, tc.at)
		assert.Equal(t, "f/v3", moved.Version)
		assert.Equal(t, []string{tc.want}, moved.Positions(), tc.at)
		assert.Equal(t, tc.ran, finish(t, ctx, c, reg, moved).Data.Ran, tc.at)
	}
	// A state of v2 needs only the second migration.
	st := until(t, ctx, c, v2, v2.Start(D{}), "c")
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, []string{"d"}, moved.Positions())
	// Validate works for versions known only by their structure.
	require.NoError(t, reg.Validate(st))
	bad := st
	bad.Root = stepflow.Frame{Children: []stepflow.Frame{{Name: "zzz"}}}
	require.ErrorIs(t, reg.Validate(bad), stepflow.ErrInvalidState)
}

func TestPolicies(t *testing.T) {
	v1, v2, v3 := threeVersions()
	m12 := versions.NewMigration[D]("f/v1", "f/v2")
	m23 := versions.NewMigration[D]("f/v2", "f/v3").Rename("b", "b2").Continue("c", "d")
	ctx, c := newCtx()
	st := until(t, ctx, c, v1, v1.Start(D{}), "b")

	t.Run("lazy", func(t *testing.T) {
		reg, err := versions.New([]*stepflow.Flow[D]{v1, v2, v3}, nil, m12, m23)
		require.NoError(t, err)
		assert.Equal(t, versions.PolicyLazy, reg.Policy())
		next, err := reg.Apply(ctx, st)
		require.NoError(t, err)
		assert.Equal(t, "f/v3", next.Version)
		assert.Equal(t, []string{"d"}, next.Positions(), "b2 ran on v3")
		assert.Equal(t, "f/v1", st.Version, "the input is unchanged")
	})
	t.Run("pinned", func(t *testing.T) {
		reg, err := versions.New([]*stepflow.Flow[D]{v1, v2, v3}, &versions.Options{Policy: versions.PolicyPinned}, m12, m23)
		require.NoError(t, err)
		done := finish(t, ctx, c, reg, st)
		assert.Equal(t, "f/v1", done.Version, "the process finished on its own version")
		assert.Equal(t, []string{"a", "b", "c", "d"}, done.Data.Ran)
		fresh := reg.Start(D{})
		assert.Equal(t, "f/v3", fresh.Version, "new processes start on the newest version")

		// Without v1's code, its states go to the nearest version there is
		// code for, and stay there.
		reg, err = versions.New([]*stepflow.Flow[D]{v2, v3}, &versions.Options{Policy: versions.PolicyPinned},
			m12.Source(versions.Structure(v1)), m23)
		require.NoError(t, err)
		next, err := reg.Apply(ctx, st)
		require.NoError(t, err)
		assert.Equal(t, "f/v2", next.Version)
		assert.Equal(t, "f/v2", finish(t, ctx, c, reg, next).Version)
	})
	t.Run("pinned without migrations", func(t *testing.T) {
		reg, err := versions.New([]*stepflow.Flow[D]{v1, v3}, &versions.Options{Policy: versions.PolicyPinned})
		require.NoError(t, err)
		assert.Equal(t, "f/v1", finish(t, ctx, c, reg, st).Version)
		_, err = reg.Migrate(st)
		require.ErrorIs(t, err, versions.ErrNoMigration, "f/v1 is known, and kept on its own version")
		assert.EqualError(t, err, `stepflow: no migration out of the version "f/v1": it is pinned; the newest version is "f/v3"`)
	})
	t.Run("refuse", func(t *testing.T) {
		reg, err := versions.New([]*stepflow.Flow[D]{v1, v2, v3}, &versions.Options{Policy: versions.PolicyRefuse}, m12, m23)
		require.NoError(t, err)
		got, err := reg.Apply(ctx, st)
		var oe *versions.OutdatedError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, versions.OutdatedError{Version: "f/v1", Latest: "f/v3"}, *oe)
		assert.ErrorIs(t, err, versions.ErrOutdated)
		assert.ErrorIs(t, err, stepflow.ErrVersionMismatch)
		assert.EqualError(t, err, `stepflow: state has version "f/v1", the registry runs "f/v3" and refuses older states`)
		assert.Equal(t, st, got)
		// Explicit migration is always possible.
		moved, err := reg.Migrate(st)
		require.NoError(t, err)
		_, err = reg.Apply(ctx, moved)
		require.NoError(t, err)
	})
	t.Run("unknown version", func(t *testing.T) {
		reg, err := versions.New([]*stepflow.Flow[D]{v2, v3}, nil, m23)
		require.NoError(t, err)
		_, err = reg.Apply(ctx, st)
		var ue *versions.UnknownVersionError
		require.ErrorAs(t, err, &ue)
		assert.ErrorIs(t, err, stepflow.ErrVersionMismatch)
		assert.EqualError(t, err, `stepflow: unknown flow version "f/v1" (known: [f/v2 f/v3])`)
		_, err = reg.Migrate(st)
		assert.ErrorIs(t, err, versions.ErrUnknownVersion)
		assert.ErrorIs(t, reg.Validate(st), versions.ErrUnknownVersion)
	})
	t.Run("terminal states are left alone", func(t *testing.T) {
		reg, err := versions.New([]*stepflow.Flow[D]{v3}, &versions.Options{Policy: versions.PolicyRefuse},
			m12.Source(versions.Structure(v1)), m23.Source(versions.Structure(v2)))
		require.NoError(t, err)
		done := finish(t, ctx, c, v1, st)
		got, err := reg.Apply(ctx, done)
		require.NoError(t, err)
		assert.Equal(t, done, got)
	})
}

func TestApplyKeepsInputOnEngineErrors(t *testing.T) {
	v1, v2, v3 := threeVersions()
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2, v3}, nil,
		versions.NewMigration[D]("f/v1", "f/v2"),
		versions.NewMigration[D]("f/v2", "f/v3").Rename("b", "b2").Continue("c", "d"))
	require.NoError(t, err)
	ctx, c := newCtx()
	st := until(t, ctx, c, v1, v1.Start(D{}), "b")
	canceled, cancel := contextWithCancel(ctx)
	cancel()
	got, err := reg.Apply(canceled, st)
	require.Error(t, err)
	assert.Equal(t, st, got, "Apply returned its input, so the registry returns the old state")

	// A failing step: the failed state of the newest version comes back.
	v3b := must(stepflow.New("f/v3", step("a", "a"), step("check", "check"),
		combinators.Do("b2", func(_ contextT, d *D) error { return errors.New("down") }), step("d", "d")))
	reg, err = versions.New([]*stepflow.Flow[D]{v1, v2, v3b}, nil,
		versions.NewMigration[D]("f/v1", "f/v2"),
		versions.NewMigration[D]("f/v2", "f/v3").Rename("b", "b2").Continue("c", "d"))
	require.NoError(t, err)
	got, err = reg.Apply(ctx, st)
	require.ErrorIs(t, err, stepflow.ErrStep)
	assert.Equal(t, stepflow.Failed, got.Status)
	assert.Equal(t, "f/v3", got.Version)
}

func TestRecordedStructureRoundTripsThroughJSON(t *testing.T) {
	v1, _, v3 := threeVersions()
	b, err := json.Marshal(versions.Structure(v1))
	require.NoError(t, err)
	var loaded []stepflow.NodeInfo
	require.NoError(t, json.Unmarshal(b, &loaded))
	assert.Equal(t, v1.Fingerprint(), versions.Fingerprint(loaded))
	_, err = versions.New([]*stepflow.Flow[D]{v3}, nil,
		versions.NewMigration[D]("f/v1", "f/v3").Source(loaded).Continue("c", "d").Rename("b", "b2"))
	require.NoError(t, err)
}

func TestMigrateNewestIsIdentity(t *testing.T) {
	v1, v2, v3 := threeVersions()
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2, v3}, nil,
		versions.NewMigration[D]("f/v1", "f/v2"),
		versions.NewMigration[D]("f/v2", "f/v3").Rename("b", "b2").Continue("c", "d"))
	require.NoError(t, err)
	ctx, c := newCtx()
	st := until(t, ctx, c, v3, v3.Start(D{}), "b2")
	got, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, st, got)
	bad := st
	bad.Root = stepflow.Frame{Children: []stepflow.Frame{{Name: "nope"}}}
	_, err = reg.Migrate(bad)
	require.ErrorIs(t, err, stepflow.ErrInvalidState)
}

func TestPaths(t *testing.T) {
	got := versions.Paths("a", "g", "g/x", "g/y")
	require.Len(t, got, 4)
	assert.Equal(t, []string{"x", "y"}, got[1].Children)
	assert.Equal(t, 2, got[2].Depth)
	assert.Equal(t, "y", got[3].Name)
	assert.Empty(t, got[0].Kind)
}

func TestPolicyString(t *testing.T) {
	assert.Equal(t, "lazy", versions.PolicyLazy.String())
	assert.Equal(t, "refuse", versions.PolicyRefuse.String())
	assert.Equal(t, "policy(9)", versions.Policy(9).String())
}

func TestRegistryControls(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"),
		combinators.Do("b", func(context.Context, *D) error { return errors.New("down") }), step("c", "c")))
	v2 := must(stepflow.New("f/v2", step("a", "a"), step("b2", "b"), step("c", "c")))
	m := versions.NewMigration[D]("f/v1", "f/v2").Rename("b", "b2")
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m)
	require.NoError(t, err)
	ctx, c := newCtx()
	st := until(t, ctx, c, v1, v1.Start(D{}), "b")

	// Describe uses the state's own version when the registry has it.
	d, err := reg.Describe(st)
	require.NoError(t, err)
	assert.Equal(t, "f/v1", d.Version)
	assert.Equal(t, []string{"b"}, d.Positions)

	// A process that failed on v1 is redriven on v2, where b is fixed.
	failed, err := v1.Apply(ctx, st)
	require.ErrorIs(t, err, stepflow.ErrStep)
	require.Equal(t, stepflow.Failed, failed.Status)
	redriven, err := reg.Redrive(failed)
	require.NoError(t, err)
	assert.Equal(t, "f/v2", redriven.Version)
	assert.Equal(t, []string{"a", "b", "c"}, finish(t, ctx, c, reg, redriven).Data.Ran)

	canceled, err := reg.Cancel(st, "no longer needed")
	require.NoError(t, err)
	assert.Equal(t, "f/v2", canceled.Version)
	canceled = finish(t, ctx, c, reg, canceled)
	assert.Equal(t, stepflow.Canceled, canceled.Status)

	// Refused and unknown versions leave the state alone.
	refuse, err := versions.New([]*stepflow.Flow[D]{v1, v2}, &versions.Options{Policy: versions.PolicyRefuse}, m)
	require.NoError(t, err)
	for _, call := range []func() (stepflow.State[D], error){
		func() (stepflow.State[D], error) { return refuse.Cancel(st, "x") },
		func() (stepflow.State[D], error) { return refuse.Signal(st, "x", nil) },
		func() (stepflow.State[D], error) { return refuse.Redrive(failed) },
	} {
		_, err := call()
		assert.ErrorIs(t, err, versions.ErrOutdated)
	}
	other := st
	other.Version = "f/v0"
	_, err = reg.Describe(other)
	assert.ErrorIs(t, err, versions.ErrUnknownVersion)

	// Without v1's code, Describe shows the state as v2 would run it.
	reg, err = versions.New([]*stepflow.Flow[D]{v2}, nil, m.Source(versions.Structure(v1)))
	require.NoError(t, err)
	d, err = reg.Describe(st)
	require.NoError(t, err)
	assert.Equal(t, "f/v2", d.Version)
	assert.Equal(t, []string{"b2"}, d.Positions)
}

func TestAtMostOnceIntentAcrossMigration(t *testing.T) {
	charge := func(name string) stepflow.Node[D] {
		return combinators.Do(name, func(_ context.Context, d *D) error {
			d.Ran = append(d.Ran, "charge")
			return nil
		}, combinators.AtMostOnce(combinators.AskPerson))
	}
	v1 := must(stepflow.New("f/v1", step("a", "a"), charge("charge"), step("b", "b")))
	v2 := must(stepflow.New("f/v2", step("a", "a"), charge("chargeCard"), step("b", "b")))
	m := versions.NewMigration[D]("f/v1", "f/v2").Rename("charge", "chargeCard")
	reg, err := versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m)
	require.NoError(t, err)
	ctx, c := newCtx()
	st := until(t, ctx, c, v1, v1.Start(D{}), "charge")
	st = advance(t, ctx, c, v1, st, 1) // records the intent
	require.Equal(t, "charge", st.Intent)

	// Migrate maps the intent with its step.
	moved, err := reg.Migrate(st)
	require.NoError(t, err)
	assert.Equal(t, "chargeCard", moved.Intent)
	assert.Equal(t, stepflow.IntentRecorded, moved.Root.Child("chargeCard").Branch)

	// Apply runs the authorized step on its own version, then migrates.
	next, err := reg.Apply(stepflow.WithIntentSaved(ctx, st), st)
	require.NoError(t, err)
	assert.Equal(t, "f/v1", next.Version)
	assert.Equal(t, []string{"a", "charge"}, next.Data.Ran)
	next, err = reg.Apply(ctx, next)
	require.NoError(t, err)
	assert.Equal(t, "f/v2", next.Version)
	assert.Equal(t, []string{"a", "charge", "b"}, next.Data.Ran)

	// A rule that does not keep the step's frame would lose the intent.
	m = versions.NewMigration[D]("f/v1", "f/v2").Continue("charge", "b")
	reg, err = versions.New([]*stepflow.Flow[D]{v1, v2}, nil, m)
	require.NoError(t, err)
	_, err = reg.Migrate(st)
	require.ErrorIs(t, err, versions.ErrInvalidMigration)
	assert.EqualError(t, err, `stepflow: invalid migration f/v1 -> f/v2: the at-most-once step "charge" has a recorded intent `+
		`and its rule does not keep its frame; let the process get past the step (or Resolve it) before migrating`)
}
