package combinators

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Parallel runs its branches side by side until all complete. Each Apply
// advances every branch that can run now by at most one step (one after
// the other, in flow order, so the result never depends on timing); the
// node waits until the earliest wake time among waiting branches. Each
// branch is one node: use Sequence for a branch of several steps.
//
// By default the first failure stops the others: they are abandoned (their
// Finally cleanups run) and the failure propagates. WaitAll lets every
// branch finish and then reports every failure, joined.
func Parallel[S any](name string, branches ...stepflow.Node[S]) *ParallelNode[S] {
	return &ParallelNode[S]{name: name, branches: branches}
}

// ParallelNode is a Parallel; WaitAll changes its failure policy,
// Goroutines runs its branches' calls at the same time.
type ParallelNode[S any] struct {
	name     string
	branches []stepflow.Node[S]
	waitAll  bool
	conc     concurrent[S]
}

// Goroutines returns a copy whose branches' calls of one Apply run at the
// same time, in up to limit goroutines, instead of one after the other:
// three 40 ms steps then take 40 ms, not 120. Each branch works on its
// own copy of the data (S's Clone method, or a deep copy), and the copies
// are merged back in branch order, whatever order the calls finished in:
// by merge(dst, src) when given, else field by field (a field a branch
// changed is copied, a later branch winning over an earlier one). The
// same inputs give the same next state, byte for byte. See
// docs/semantics.md.
func (n *ParallelNode[S]) Goroutines(limit int, merge func(dst, src *S)) *ParallelNode[S] {
	cp := *n
	cp.conc = concurrent[S]{limit: limit, merge: merge}
	return &cp
}

// WaitAll returns a copy that lets every branch run to its end before
// reporting the failures, if any, together.
func (n *ParallelNode[S]) WaitAll() *ParallelNode[S] {
	cp := *n
	cp.waitAll = true
	return &cp
}

const (
	phaseRunning = "running"
	phaseFailing = "failing"
)

func (n *ParallelNode[S]) Info() stepflow.Info {
	d := "fail fast"
	if n.waitAll {
		d = "wait all"
	}
	return stepflow.Info{Name: n.name, Kind: "parallel", Detail: n.conc.detail(d)}
}

func (n *ParallelNode[S]) Children() []stepflow.Node[S] { return n.branches }

func (n *ParallelNode[S]) Check() []string {
	if len(n.branches) == 0 {
		return []string{"parallel without branches"}
	}
	return n.conc.check()
}

func (n *ParallelNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	switch f.Branch {
	case "":
		all := make([]int, len(n.branches))
		for i := range all {
			all[i] = i
		}
		c.EnterAll(all)
		f.Branch = phaseRunning
	case phaseFailing:
		return abandonThenFail(c)
	}
	turns := share(c)
	res := stepflow.Complete()
	// With Goroutines, every branch takes its turn at once, and the loop
	// below reads the results in branch order.
	var pre []stepflow.Result
	if n.conc.on() && c.NumActive() > 1 {
		var calls int
		pre, calls = n.conc.run(c, turns.budget, c.NumActive(), func(fk *stepflow.Cursor[S], j int) stepflow.Result {
			r, _ := fk.AdvanceActive(j)
			return r
		})
		if c.Aborted() {
			return stepflow.Continue()
		}
		turns.ran = turns.ran || calls > 0
	}
	for j, k := 0, 0; j < c.NumActive(); k++ {
		var r stepflow.Result
		if pre != nil {
			r = pre[k]
		} else {
			turns.give(c, false)
			r, _ = c.AdvanceActive(j)
			if c.Aborted() {
				return stepflow.Continue()
			}
			turns.took(c)
		}
		switch r.Outcome {
		case stepflow.OutcomeDone:
			c.RemoveActive(j)
			continue
		case stepflow.OutcomeFail:
			c.NoteError(r.Err)
			c.RemoveActive(j)
			if n.waitAll && !errors.Is(r.Err, stepflow.ErrCanceled) {
				f.Payload = appendFailure(f.Payload, c.Failure(r.Err))
				continue
			}
			f.Branch, f.Err = phaseFailing, c.Failure(r.Err)
			c.SetBudget(0)
			return abandonThenFail(c)
		}
		res = stepflow.Combine(res, r)
		j++
	}
	turns.done(c)
	if res.Outcome == stepflow.OutcomeDone && len(f.Payload) > 0 {
		// One error naming the parallel node and wrapping every branch's.
		var list []stepflow.Failure
		if err := json.Unmarshal(f.Payload, &list); err != nil {
			return c.Invalid("unreadable branch failures: %v", err)
		}
		return stepflow.Fail(&stepflow.StepError{Path: c.Path(), Attempt: c.Attempt(), Err: failuresError(c, list)})
	}
	return res
}

// Redrive restarts a failed parallel from its start: the branches that
// failed or were abandoned left no frames to resume from, so every branch
// runs again.
func (n *ParallelNode[S]) Redrive(f *stepflow.Frame) {
	*f = stepflow.Frame{Name: f.Name}
}

// Branch failures collected by WaitAll are kept in the frame's payload as
// a JSON list, so they survive a save and a restart.
func appendFailure(payload []byte, f *stepflow.Failure) []byte {
	var list []stepflow.Failure
	_ = json.Unmarshal(payload, &list)
	list = append(list, *f)
	b, _ := json.Marshal(list)
	return b
}

// failuresError joins the errors of the failures a WaitAll node kept.
func failuresError[S any](c *stepflow.Cursor[S], list []stepflow.Failure) error {
	errs := make(failures, len(list))
	for i := range list {
		errs[i] = c.Raise(&list[i])
	}
	return errs
}

// failures is the joined failures of a WaitAll node. Its text lists them
// on one line, each without the "stepflow:" prefix that the error holding
// them carries.
type failures []error

func (fs failures) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d failed: ", len(fs))
	for i, e := range fs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(stepflow.Unprefixed(e))
	}
	return b.String()
}

func (fs failures) Unwrap() []error { return fs }
