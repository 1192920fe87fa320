package stepflowtest

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

func TestCrashScript(t *testing.T) {
	// Three applies: the first calls a, the second calls a and b (as a
	// Parallel would) and crashed, the third calls a and b again.
	tr := &Trace[stepflow.None]{Transitions: []Transition[stepflow.None]{
		{Calls: []Call{{Path: "a", Outcome: Fail}}},
		{Calls: []Call{{Path: "a", Outcome: Crash}, {Path: "b", Outcome: False}}, Crashed: true},
		{Calls: []Call{{Path: "a", Outcome: FailAfter}, {Path: "b", Outcome: False}}},
	}}
	base := Script{"a": Calls(Fail, Crash, FailAfter, Panic), "b": Always(False)}
	got := crashScript(base, tr, 2)
	assert.Equal(t, Script{
		// a's calls 0 and 1 (the crashed one) counted; call 2 crashes now,
		// and its re-run gets what call 2 had.
		"a": {Outcomes: []Outcome{Fail, Crash, Crash, FailAfter, Panic}},
		"b": Always(False),
	}, got)
	assert.Equal(t, Calls(Fail, Crash, FailAfter, Panic), base["a"], "the base script is not modified")

	got = crashScript(nil, tr, 0)
	assert.Equal(t, Script{"a": {Outcomes: []Outcome{Crash, Normal}}}, got)
}

func TestKept(t *testing.T) {
	rec := func(seq uint64, path string) stepflow.Record { return stepflow.Record{Seq: seq, Path: path} }
	st := func(steps uint64, r ...stepflow.Record) stepflow.State[stepflow.None] {
		return stepflow.State[stepflow.None]{Steps: steps, Record: r}
	}
	tests := []struct {
		name       string
		prev, next stepflow.State[stepflow.None]
		limit      int
		ok         bool
	}{
		{"append", st(1, rec(1, "a")), st(2, rec(1, "a"), rec(2, "b")), 4, true},
		{"trim to the limit", st(2, rec(1, "a"), rec(2, "b")), st(3, rec(2, "b"), rec(3, "c")), 2, true},
		{"no recording", st(1), st(2), 0, true},
		{"nothing new", st(1, rec(1, "a")), st(2, rec(1, "a")), 4, true},
		{"steps jump", st(1), st(3), 0, false},
		{"steps go back", st(2), st(1), 0, false},
		{"a record lost", st(2, rec(1, "a"), rec(2, "b")), st(3, rec(2, "b"), rec(3, "c")), 4, false},
		{"a record rewritten", st(1, rec(1, "a")), st(2, rec(1, "x"), rec(2, "b")), 4, false},
		{"a record from the past", st(1, rec(1, "a")), st(2, rec(1, "a"), rec(1, "b")), 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "nothing new" {
				assert.NoError(t, kept(tt.prev, stepflow.State[stepflow.None]{Steps: 1, Record: tt.prev.Record}, tt.limit, false),
					"a signal keeps Steps")
				assert.Error(t, kept(tt.prev, stepflow.State[stepflow.None]{Steps: 0, Record: tt.prev.Record}, tt.limit, false),
					"nothing makes Steps go back")
			}
			err := kept(tt.prev, tt.next, tt.limit, true)
			assert.Equal(t, tt.ok, err == nil, "%v", err)
		})
	}
}
