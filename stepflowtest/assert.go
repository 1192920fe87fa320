package stepflowtest

import (
	"fmt"
	"strings"

	"github.com/stretchr/testify/assert"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// TestingT is what the assertions report to: *testing.T, *testing.B,
// *rapid.T and testify's own TestingT all satisfy it.
type TestingT interface {
	Errorf(format string, args ...any)
}

type helper interface{ Helper() }

func markHelper(t TestingT) {
	if h, ok := t.(helper); ok {
		h.Helper()
	}
}

// under reports whether a call at path visits the node at node: the node
// itself or one of its descendants.
func under(path, node string) bool {
	return path == node || strings.HasPrefix(path, node+"/")
}

// VisitedInOrder asserts that the run called user code at each of paths, in
// this order (other calls may come in between). A path also matches calls
// made below it, so "shouldDeploy" is visited when the case's predicate or
// one of its branch steps is called. It reports a failure to t and returns
// false otherwise, like testify's assertions.
func VisitedInOrder[S any](t TestingT, tr *Trace[S], paths ...string) bool {
	markHelper(t)
	visited := tr.Visited()
	i := 0
	for _, v := range visited {
		if i < len(paths) && under(v, paths[i]) {
			i++
		}
	}
	if i == len(paths) {
		return true
	}
	return assert.Fail(t, fmt.Sprintf("flow did not visit %q in order: %q was not visited after %v\nvisited: %v\n%s",
		paths, paths[i], paths[:i], visited, tr))
}

// NeverVisited asserts that the run made no call at any of paths or below
// them.
func NeverVisited[S any](t TestingT, tr *Trace[S], paths ...string) bool {
	markHelper(t)
	for _, c := range tr.Calls() {
		for _, p := range paths {
			if under(c.Path, p) {
				return assert.Fail(t, fmt.Sprintf("flow visited %q (call at %s attempt %d)\n%s", p, c.Path, c.Attempt, tr))
			}
		}
	}
	return true
}

// CompletesWithin asserts that the run ended Done after at most applies
// calls of Apply, crashed ones included.
func CompletesWithin[S any](t TestingT, tr *Trace[S], applies int) bool {
	markHelper(t)
	switch {
	case tr.Final.Status != stepflow.Done:
		return assert.Fail(t, fmt.Sprintf("flow ended %s, want done\n%s", tr.Final.Status, tr))
	case len(tr.Transitions) > applies:
		return assert.Fail(t, fmt.Sprintf("flow completed after %d applies, want at most %d\n%s", len(tr.Transitions), applies, tr))
	}
	return true
}

// EndsWith asserts that the run ended with one of the given statuses.
func EndsWith[S any](t TestingT, tr *Trace[S], statuses ...stepflow.Status) bool {
	markHelper(t)
	for _, s := range statuses {
		if tr.Final.Status == s {
			return true
		}
	}
	return assert.Fail(t, fmt.Sprintf("flow ended %s, want one of %v\n%s", tr.Final.Status, statuses, tr))
}
