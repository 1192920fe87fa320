package versions

import (
	"fmt"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Migration declares how states of version From become states of version To,
// two consecutive versions of one flow. Build one with NewMigration and add
// rules with its methods; each method returns the migration, for chaining.
// A Migration is read by New (or Check) and must not be changed afterwards.
//
// Positions map automatically when their path exists in version To; a path
// inside a renamed node follows the rename. Rules cover the rest. For a
// position the most specific rule wins: a Continue, Restart or Custom rule
// at the position or at the nearest enclosing node, then the path mapping
// (Rename rules and paths that exist as they are).
type Migration[S any] struct {
	from, to string
	rules    []rule[S]
	source   []stepflow.NodeInfo
	fix      func(from stepflow.State[S], to *stepflow.State[S]) error
}

// NewMigration starts the declaration of a migration from version from to
// version to.
func NewMigration[S any](from, to string) *Migration[S] {
	return &Migration[S]{from: from, to: to}
}

// From returns the version the migration reads.
func (m *Migration[S]) From() string { return m.from }

// To returns the version the migration produces.
func (m *Migration[S]) To() string { return m.to }

// Rename declares that the node at path from (in version From) is the node
// at path to (in version To): same node, new name or new place. Positions at
// from and below it move along, and each frame keeps its memory (counters,
// times, branch) when its node keeps its kind. Renaming a node also renames
// the paths of its children; a child renamed as well needs its own rule.
//
// Moving a node into a new enclosing node (wrapping a step in a Retry, a
// Case or a Sequence) is a Rename too: Rename("step", "retry/step"). The new
// enclosing node gets a fresh frame, as if it had just been entered.
func (m *Migration[S]) Rename(from, to string) *Migration[S] {
	m.rules = append(m.rules, rule[S]{kind: ruleRename, from: from, to: to})
	return m
}

// Continue declares where a process continues when it is at path from, or
// anywhere below it, and from has no place in version To (typically a
// removed step or group): at path to, which is entered fresh, as if the
// process had just reached it. Enclosing nodes that exist in both versions
// keep their memory.
//
// Steps completed before from are not run again, and neither are steps of
// version To that lie before to: a Continue says where the process stands.
func (m *Migration[S]) Continue(from, to string) *Migration[S] {
	m.rules = append(m.rules, rule[S]{kind: ruleContinue, from: from, to: to})
	return m
}

// Restart declares that a process anywhere inside the group at path group
// (in version From) starts that group again from its beginning in version
// To (the group's path after renames), with a fresh frame: its counters are
// reset and its steps run again, including those the process had completed.
// Use it when version To inserts steps inside a group that in-flight
// processes must not skip, or when a group changed too much to map.
func (m *Migration[S]) Restart(group string) *Migration[S] {
	m.rules = append(m.rules, rule[S]{kind: ruleRestart, from: group})
	return m
}

// Drop declares that a branch of a Parallel was removed: a process with a
// position in that branch (at branch or below it) treats the branch as
// completed, while the Parallel and its other branches go on. branch must
// be a direct child of a Parallel that exists in both versions. (Anywhere
// else, dropping a position would make its enclosing node start again; use
// Continue there.)
func (m *Migration[S]) Drop(branch string) *Migration[S] {
	m.rules = append(m.rules, rule[S]{kind: ruleDrop, from: branch})
	return m
}

// Custom declares a function that decides, process by process, where a
// process at path at (or below it) goes. It receives a Decision describing
// the position and the data, and must call Decision.MoveTo or
// Decision.ContinueAt; returning without a decision is a *NoTargetError,
// returning an error fails the migration of that state with the error.
// It may change the data.
func (m *Migration[S]) Custom(at string, fn func(d *Decision[S]) error) *Migration[S] {
	m.rules = append(m.rules, rule[S]{kind: ruleCustom, from: at, fn: fn})
	return m
}

// Fix sets a hook that runs once per migrated state, after the positions
// were mapped and before the result is validated. from is the state in
// version From (read it, do not change it); to is the new state, whose Data
// the hook may fix up: fill a field added in version To, convert a unit.
// It may also adjust frames, at its own risk. An error fails the migration
// of that state.
func (m *Migration[S]) Fix(fn func(from stepflow.State[S], to *stepflow.State[S]) error) *Migration[S] {
	m.fix = fn
	return m
}

// Source records the structure of version From (Structure of its flow,
// kept as data) so that its definition can be deleted from the code base.
// With it, a registry checks the migration at start-up and tells which
// nodes changed their kind. When version From's flow is still given to the
// registry, Source is optional; if both are present they must agree.
func (m *Migration[S]) Source(nodes []stepflow.NodeInfo) *Migration[S] {
	m.source = nodes
	return m
}

// Decision is what a Custom rule decides about one position.
type Decision[S any] struct {
	// Path is the position in version From, as a node path: inside a
	// ForEach it has no instance segment ("each/step", not
	// "each/[3]/step"); the process stays in its instance.
	Path string
	// Frame is the position's frame in version From. Read it only.
	Frame stepflow.Frame
	// Data is the data of the state being migrated; the function may change
	// it.
	Data *S

	target string
	fresh  bool
	set    bool
}

// MoveTo places the position at path (in version To), keeping the frame's
// memory as a Rename does.
func (d *Decision[S]) MoveTo(path string) { d.target, d.fresh, d.set = path, false, true }

// ContinueAt places the process at path (in version To), entered fresh, as a
// Continue rule does. Continuing at a group restarts the group.
func (d *Decision[S]) ContinueAt(path string) { d.target, d.fresh, d.set = path, true, true }

type ruleKind uint8

const (
	ruleRename ruleKind = iota
	ruleContinue
	ruleRestart
	ruleCustom
	ruleDrop
)

type rule[S any] struct {
	kind     ruleKind
	from, to string
	fn       func(*Decision[S]) error
}

func (r rule[S]) String() string {
	switch r.kind {
	case ruleRename:
		return fmt.Sprintf("Rename(%q, %q)", r.from, r.to)
	case ruleContinue:
		return fmt.Sprintf("Continue(%q, %q)", r.from, r.to)
	case ruleRestart:
		return fmt.Sprintf("Restart(%q)", r.from)
	case ruleDrop:
		return fmt.Sprintf("Drop(%q)", r.from)
	}
	return fmt.Sprintf("Custom(%q)", r.from)
}
