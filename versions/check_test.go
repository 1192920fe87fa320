package versions_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lines splits a joined error into its messages.
func lines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestCheckReportsEveryPositionWithoutTarget(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"),
		combinators.Sequence("g", step("x", "x"), step("y", "y")),
		wait("monitor", 2), step("z", "z")))
	v2 := must(stepflow.New("f/v2", step("a", "a"), wait("monitorRollout", 2), step("z", "z")))

	err := versions.Check(versions.NewMigration[D]("f/v1", "f/v2"), versions.Structure(v1), versions.Structure(v2))
	require.ErrorIs(t, err, versions.ErrNoTarget)
	assert.Equal(t, []string{
		`stepflow: f/v1 -> f/v2: position "g" has no target (no node "g" in f/v2); add a Rename, Continue, Restart or Custom rule for it`,
		`stepflow: f/v1 -> f/v2: position "g/x" has no target (no node "g/x" in f/v2); add a Rename, Continue, Restart or Custom rule for it`,
		`stepflow: f/v1 -> f/v2: position "g/y" has no target (no node "g/y" in f/v2); add a Rename, Continue, Restart or Custom rule for it`,
		`stepflow: f/v1 -> f/v2: position "monitor" has no target (no node "monitor" in f/v2); add a Rename, Continue, Restart or Custom rule for it`,
	}, lines(err))
	var nt *versions.NoTargetError
	require.ErrorAs(t, err, &nt)
	assert.Equal(t, versions.NoTargetError{From: "f/v1", To: "f/v2", Path: "g", Tried: "g"}, *nt)

	// A rename that leads nowhere names the path it tried.
	err = versions.Check(versions.NewMigration[D]("f/v1", "f/v2").Rename("monitor", "monitorRollout").Rename("g", "h"),
		versions.Structure(v1), versions.Structure(v2))
	assert.Equal(t, []string{
		`stepflow: invalid migration f/v1 -> f/v2: Rename("g", "h"): "h" is not a node of f/v2`,
	}, lines(err))
	require.ErrorIs(t, err, versions.ErrInvalidMigration)

	// Complete rules: no problem.
	m := versions.NewMigration[D]("f/v1", "f/v2").Rename("monitor", "monitorRollout").Continue("g", "monitorRollout")
	require.NoError(t, versions.Check(m, versions.Structure(v1), versions.Structure(v2)))
	// The source recorded on the migration serves when none is passed.
	require.NoError(t, versions.Check(m.Source(versions.Structure(v1)), nil, versions.Structure(v2)))
	err = versions.Check(versions.NewMigration[D]("f/v1", "f/v2"), nil, versions.Structure(v2))
	assert.EqualError(t, err, "stepflow: invalid migration f/v1 -> f/v2: the structure of f/v1 is unknown: pass it, or record it with Source")
}

func TestCheckRenamedGroupWithStaleChild(t *testing.T) {
	v1 := must(stepflow.New("f/v1", combinators.Sequence("g", step("x", "x"), step("y", "y"))))
	v2 := must(stepflow.New("f/v2", combinators.Sequence("h", step("x", "x"), step("y2", "y"))))
	err := versions.Check(versions.NewMigration[D]("f/v1", "f/v2").Rename("g", "h"), versions.Structure(v1), versions.Structure(v2))
	assert.Equal(t, []string{
		`stepflow: f/v1 -> f/v2: position "g/y" has no target ("h/y" does not exist in f/v2); add a Rename, Continue, Restart or Custom rule for it`,
	}, lines(err))
}

func TestCheckRuleProblems(t *testing.T) {
	v1 := must(stepflow.New("f/v1", step("a", "a"), step("b", "b")))
	v2 := must(stepflow.New("f/v2", step("a", "a"), step("c", "c")))
	m := versions.NewMigration[D]("f/v1", "f/v2").
		Rename("b", "c").
		Rename("b", "a").
		Continue("old", "c").
		Continue("b", "nowhere").
		Restart("b").
		Custom("a", nil).
		Rename("", "c")
	err := versions.Check(m, versions.Structure(v1), versions.Structure(v2))
	assert.Equal(t, []string{
		`stepflow: invalid migration f/v1 -> f/v2: Rename("b", "a"): "b" is renamed twice`,
		`stepflow: invalid migration f/v1 -> f/v2: Continue("old", "c"): "old" is not a node of f/v1`,
		`stepflow: invalid migration f/v1 -> f/v2: Continue("b", "nowhere"): "nowhere" is not a node of f/v2`,
		`stepflow: invalid migration f/v1 -> f/v2: Restart("b"): "b" already has the rule Continue("b", "nowhere")`,
		`stepflow: invalid migration f/v1 -> f/v2: Custom("a"): nil function`,
		`stepflow: invalid migration f/v1 -> f/v2: Rename("", "c"): empty path`,
	}, lines(err))
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var me *versions.MigrationError
		require.ErrorAs(t, e, &me)
		assert.ErrorIs(t, e, versions.ErrInvalidMigration)
	}
}

func TestNewReportsAllProblemsAtOnce(t *testing.T) {
	v1, v2, v3 := threeVersions()
	other := must(stepflow.New("f/v1", step("a", "a")))
	for _, tc := range []struct {
		name       string
		flows      []*stepflow.Flow[D]
		opts       *versions.Options
		migrations []*versions.Migration[D]
		want       []string
	}{
		{
			name:  "incomplete rules in two migrations",
			flows: []*stepflow.Flow[D]{v1, v2, v3},
			migrations: []*versions.Migration[D]{
				versions.NewMigration[D]("f/v1", "f/v2"),
				versions.NewMigration[D]("f/v2", "f/v3"),
			},
			want: []string{
				`stepflow: f/v2 -> f/v3: position "b" has no target (no node "b" in f/v3); add a Rename, Continue, Restart or Custom rule for it`,
				`stepflow: f/v2 -> f/v3: position "c" has no target (no node "c" in f/v3); add a Rename, Continue, Restart or Custom rule for it`,
			},
		},
		{
			name:  "missing migration",
			flows: []*stepflow.Flow[D]{v1, v3},
			want: []string{
				`stepflow: invalid migration: no migration out of "f/v1"; add one to f/v3, or use PolicyPinned to keep it on its own version`,
			},
		},
		{
			name:  "broken chain and unknown structure",
			flows: []*stepflow.Flow[D]{v3},
			migrations: []*versions.Migration[D]{
				versions.NewMigration[D]("f/v1", "f/v2"),
				versions.NewMigration[D]("f/v0", "f/v9"),
				versions.NewMigration[D]("f/v2", "f/v3"),
			},
			want: []string{
				`stepflow: invalid migration f/v1 -> f/v2: the structure of f/v1 is unknown: keep its flow in the registry or record it with Source`,
				`stepflow: invalid migration f/v0 -> f/v9: the chain from "f/v0" does not reach the newest version "f/v3"`,
				`stepflow: invalid migration f/v2 -> f/v3: the structure of f/v2 is unknown: keep its flow in the registry or record it with Source`,
			},
		},
		{
			name:  "definition and record disagree",
			flows: []*stepflow.Flow[D]{other, v2, v3},
			migrations: []*versions.Migration[D]{
				versions.NewMigration[D]("f/v1", "f/v2").Source(versions.Structure(v1)),
				versions.NewMigration[D]("f/v2", "f/v3").Rename("b", "b2").Continue("c", "d"),
			},
			want: []string{
				`stepflow: invalid migration f/v1 -> f/v2: the structure recorded with Source (fingerprint ` + v1.Fingerprint() +
					`) differs from the definition of f/v1 (fingerprint ` + other.Fingerprint() + `)`,
			},
		},
		{
			name:  "duplicates and cycles",
			flows: []*stepflow.Flow[D]{v2, v2, v3},
			opts:  &versions.Options{Policy: 7},
			migrations: []*versions.Migration[D]{
				versions.NewMigration[D]("f/v3", "f/v2"),
				versions.NewMigration[D]("f/v2", "f/v3").Rename("b", "b2").Continue("c", "d"),
				versions.NewMigration[D]("f/v2", "f/v3"),
				versions.NewMigration[D]("f/a", "f/b"),
				versions.NewMigration[D]("f/b", "f/a"),
				nil,
			},
			want: []string{
				`stepflow: invalid migration: unknown policy 7`,
				`stepflow: invalid migration: version "f/v2" given twice`,
				`stepflow: invalid migration f/v3 -> f/v2: migrates out of the newest version "f/v3"`,
				`stepflow: invalid migration f/v2 -> f/v3: a second migration out of "f/v2"`,
				`stepflow: invalid migration: nil migration`,
				`stepflow: invalid migration f/a -> f/b: the chain from "f/a" does not reach the newest version "f/v3"`,
				`stepflow: invalid migration f/b -> f/a: the chain from "f/b" does not reach the newest version "f/v3"`,
			},
		},
		{
			name: "no flow",
			want: []string{`stepflow: invalid migration: a registry needs at least one flow, the newest last`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := versions.New(tc.flows, tc.opts, tc.migrations...)
			require.Error(t, err)
			assert.Nil(t, reg)
			assert.Equal(t, tc.want, lines(err))
			assert.True(t, errors.Is(err, versions.ErrNoTarget) || errors.Is(err, versions.ErrInvalidMigration))
		})
	}
}
