package versions

import (
	"errors"
	"fmt"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Sentinel conditions. Every error of this package wraps one of them, so
// callers can branch with errors.Is.
var (
	// ErrNoTarget: a position of the old version has no place in the new
	// one (no path of the same name and no rule). See NoTargetError.
	ErrNoTarget = errors.New("stepflow: position has no target in the new version")
	// ErrInvalidMigration: a migration or a registry is declared wrongly
	// (a rule naming a path that does not exist, a broken chain). See
	// MigrationError.
	ErrInvalidMigration = errors.New("stepflow: invalid migration")
	// ErrOutdated: the registry refuses a state of an older version
	// (PolicyRefuse). See OutdatedError.
	ErrOutdated = errors.New("stepflow: state is on an outdated version")
	// ErrUnknownVersion: a state names a version the registry does not know.
	ErrUnknownVersion = errors.New("stepflow: unknown flow version")
	// ErrNoMigration: Migrate was given a state of a version the registry
	// knows but keeps on its own (PolicyPinned, no migration out of it).
	ErrNoMigration = errors.New("stepflow: no migration out of the version")
)

// NoTargetError names one position of the old version that a migration
// cannot place in the new version. The static check returns one per such
// position, joined with errors.Join; a migration of a state returns one per
// active position it cannot place, and leaves the state unchanged.
type NoTargetError struct {
	// From and To are the versions of the migration.
	From, To string
	// Path is the position in version From.
	Path string
	// Tried is the path it would have had in version To (after renames),
	// which does not exist there.
	Tried string
}

func (e *NoTargetError) Error() string {
	msg := fmt.Sprintf("stepflow: %s -> %s: position %q has no target", e.From, e.To, e.Path)
	if e.Tried != "" && e.Tried != e.Path {
		msg += fmt.Sprintf(" (%q does not exist in %s)", e.Tried, e.To)
	} else {
		msg += fmt.Sprintf(" (no node %q in %s)", e.Path, e.To)
	}
	return msg + "; add a Rename, Continue, Restart or Custom rule for it"
}

// Is matches ErrNoTarget.
func (e *NoTargetError) Is(target error) bool { return target == ErrNoTarget }

// MigrationError is one problem in the declaration of a migration or of a
// registry: a rule whose path exists in neither version, two rules for one
// path, a version without a definition or a recorded structure.
type MigrationError struct {
	// From and To are the versions of the migration, when the problem
	// belongs to one.
	From, To string
	// Rule is the rule at fault, e.g. `Rename("a", "b")`; empty for
	// problems of the registry.
	Rule string
	// Reason says what is wrong.
	Reason string
}

func (e *MigrationError) Error() string {
	s := "stepflow: invalid migration"
	if e.From != "" || e.To != "" {
		s += fmt.Sprintf(" %s -> %s", e.From, e.To)
	}
	if e.Rule != "" {
		s += ": " + e.Rule
	}
	return s + ": " + e.Reason
}

// Is matches ErrInvalidMigration.
func (e *MigrationError) Is(target error) bool { return target == ErrInvalidMigration }

// OutdatedError is returned by a PolicyRefuse registry for a state whose
// version is not the newest. Migrate the state explicitly
// (Registry.Migrate) to move it on.
type OutdatedError struct {
	// Version of the state, and Latest of the registry.
	Version, Latest string
}

func (e *OutdatedError) Error() string {
	return fmt.Sprintf("stepflow: state has version %q, the registry runs %q and refuses older states", e.Version, e.Latest)
}

// Is matches ErrOutdated and stepflow.ErrVersionMismatch.
func (e *OutdatedError) Is(target error) bool {
	return target == ErrOutdated || target == stepflow.ErrVersionMismatch
}

// UnknownVersionError reports a state of a version the registry has neither
// a definition nor a migration for.
type UnknownVersionError struct {
	Version string
	// Known lists the versions the registry knows, oldest first.
	Known []string
}

func (e *UnknownVersionError) Error() string {
	return fmt.Sprintf("stepflow: unknown flow version %q (known: %v)", e.Version, e.Known)
}

// Is matches ErrUnknownVersion and stepflow.ErrVersionMismatch.
func (e *UnknownVersionError) Is(target error) bool {
	return target == ErrUnknownVersion || target == stepflow.ErrVersionMismatch
}
