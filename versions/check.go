package versions

import (
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Check is the static check of one migration: it lists every node of the
// old version (every position a process can be at) that has no target in
// the new version, and every rule that does not fit the two structures.
// It returns nil or all problems at once, joined with errors.Join: each is a
// *NoTargetError (errors.Is ErrNoTarget) naming the old path, or a
// *MigrationError (ErrInvalidMigration) naming the rule.
//
// source is the structure of version From: Structure of its flow, or a
// recorded copy; nil means the structure given to m.Source. target is the
// structure of version To. New runs this check for every migration of a
// registry, so a deploy whose rules are incomplete fails when the program
// starts.
func Check[S any](m *Migration[S], source, target []stepflow.NodeInfo) error {
	if source == nil {
		source = m.source
	}
	if source == nil {
		return &MigrationError{From: m.from, To: m.to, Reason: "the structure of " + m.from + " is unknown: pass it, or record it with Source"}
	}
	p, err := compile(m, newShape(m.from, source), newShape(m.to, target))
	if err != nil {
		return err
	}
	return p.check()
}

// problems flattens an error made by errors.Join.
func problems(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
