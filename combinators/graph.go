package combinators

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Task is a node of a Graph with the names of its siblings it needs: it
// starts once each of them is done. Make one with After.
type Task[S any] struct {
	node   stepflow.Node[S]
	needs  []string
	always bool
}

// After makes node a task of a Graph that starts once the siblings named
// by needs are done; with no needs it starts at once.
func After[S any](node stepflow.Node[S], needs ...string) Task[S] {
	return Task[S]{node: node, needs: needs}
}

// Always returns a copy of the task that starts once its needs have ended
// however they ended: done, failed or skipped. It suits a report or a
// cleanup in a Graph with WaitAll; in a fail-fast Graph, the first failure
// ends the graph, and a cleanup belongs in a Finally around it.
func (t Task[S]) Always() Task[S] {
	t.always = true
	return t
}

// Graph runs its tasks as their dependencies allow, which Parallel and
// Sequence cannot say when the dependencies are not series-parallel: "c
// needs a; d needs a and b; b is slow" starts c as soon as a is done,
// without waiting for b. Tasks whose needs are met run side by side, as
// Parallel branches do: each Apply advances every running task by at most
// one step, in flow order; a task that became ready during an Apply starts
// at the next one, which follows at once.
//
// New refuses a graph that names an unknown task, names a task twice or
// has a cycle. By default the first failure ends the graph: running tasks
// are abandoned (their Finally cleanups run), tasks not started never
// start, and the failure propagates. WaitAll lets every task that does not
// depend on a failure run; a task whose needs failed or were skipped is
// skipped (unless it is Always), and the graph then fails with every
// failure joined. The edges are part of the node's detail, so they enter
// the flow's fingerprint, and Nodes, Describe, Mermaid and the console
// show them.
func Graph[S any](name string, tasks ...Task[S]) *GraphNode[S] {
	g := &GraphNode[S]{name: name, tasks: tasks, names: make([]string, len(tasks)), needs: make([][]int, len(tasks))}
	index := map[string]int{}
	for i, t := range tasks {
		g.nodes = append(g.nodes, t.node)
		g.names[i] = t.node.Info().Name
		index[g.names[i]] = i
	}
	for i, t := range tasks {
		for _, d := range t.needs {
			j, ok := index[d]
			if !ok {
				j = -1 // refused by Check
			}
			g.needs[i] = append(g.needs[i], j)
		}
	}
	return g
}

// GraphNode is a Graph; WaitAll changes its failure policy.
type GraphNode[S any] struct {
	name    string
	tasks   []Task[S]
	nodes   []stepflow.Node[S]
	waitAll bool
	// names are the tasks' names, and needs the indexes of the tasks each
	// needs (-1 for a name that is not a task's), made once.
	names []string
	needs [][]int
}

// WaitAll returns a copy that runs every task that does not depend on a
// failure before reporting the failures, if any, together.
func (n *GraphNode[S]) WaitAll() *GraphNode[S] {
	cp := *n
	cp.waitAll = true
	return &cp
}

// Task states, one byte each in the frame's payload, followed by the JSON
// list of the failures WaitAll keeps.
const (
	taskPending byte = iota
	taskRunning
	taskDone
	taskFailed
	taskSkipped
)

func (n *GraphNode[S]) Info() stepflow.Info {
	var edges []string
	for i, t := range n.tasks {
		if len(t.needs) > 0 || t.always {
			e := n.names[i] + " after " + strings.Join(t.needs, ",")
			if t.always {
				e += " always"
			}
			edges = append(edges, e)
		}
	}
	d := "fail fast"
	if n.waitAll {
		d = "wait all"
	}
	if len(edges) > 0 {
		d += "; " + strings.Join(edges, "; ")
	}
	return stepflow.Info{Name: n.name, Kind: "graph", Detail: d}
}

func (n *GraphNode[S]) Children() []stepflow.Node[S] { return n.nodes }

// Needs names the siblings task i needs (stepflow.Dependent).
func (n *GraphNode[S]) Needs(i int) []string { return n.tasks[i].needs }

func (n *GraphNode[S]) Check() []string {
	if len(n.tasks) == 0 {
		return []string{"graph without tasks"}
	}
	var problems []string
	for i, t := range n.tasks {
		name := n.names[i]
		for k, d := range t.needs {
			switch {
			case n.needs[i][k] < 0:
				problems = append(problems, fmt.Sprintf("task %q needs %q, which is not a task of the graph", name, d))
			case d == name:
				problems = append(problems, fmt.Sprintf("task %q needs itself", name))
			case slices.Contains(t.needs[:k], d):
				problems = append(problems, fmt.Sprintf("task %q needs %q twice", name, d))
			}
		}
	}
	if len(problems) > 0 {
		return problems
	}
	if cycle := n.cycle(); cycle != nil {
		problems = append(problems, "tasks depend on each other in a cycle: "+strings.Join(cycle, " -> "))
	}
	return problems
}

// cycle returns a cycle of needs, as task names from a task back to
// itself, or nil.
func (n *GraphNode[S]) cycle() []string {
	const (
		unseen = iota
		open
		closed
	)
	mark := make([]int, len(n.tasks))
	var path []int
	var visit func(i int) []string
	visit = func(i int) []string {
		mark[i] = open
		path = append(path, i)
		for _, j := range n.needs[i] {
			switch mark[j] {
			case open:
				k := slices.Index(path, j)
				var names []string
				for _, p := range path[k:] {
					names = append(names, n.names[p])
				}
				return append(names, n.names[j])
			case unseen:
				if c := visit(j); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		mark[i] = closed
		return nil
	}
	for i := range n.tasks {
		if mark[i] == unseen {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}

// ready reports whether task i can start given the task states.
func (n *GraphNode[S]) ready(i int, states []byte) (start, skip bool) {
	t := n.tasks[i]
	for _, j := range n.needs[i] {
		switch states[j] {
		case taskDone:
		case taskFailed, taskSkipped:
			if !t.always {
				return false, true
			}
		default:
			return false, false
		}
	}
	return true, false
}

// settle marks tasks that can never start as skipped and returns the
// tasks that can start now, in flow order.
func (n *GraphNode[S]) settle(states []byte) []int {
	for changed := true; changed; {
		changed = false
		for i, s := range states[:len(n.tasks)] {
			if s != taskPending {
				continue
			}
			if _, skip := n.ready(i, states); skip {
				states[i], changed = taskSkipped, true
			}
		}
	}
	var start []int
	for i, s := range states[:len(n.tasks)] {
		if s == taskPending {
			if ok, _ := n.ready(i, states); ok {
				start = append(start, i)
			}
		}
	}
	return start
}

func (n *GraphNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	switch f.Branch {
	case "":
		f.Payload = make([]byte, len(n.tasks))
		f.Branch = phaseRunning
	case phaseFailing:
		return abandonThenFail(c)
	}
	if len(f.Payload) < len(n.tasks) {
		return c.Invalid("graph frame holds %d task states, want %d", len(f.Payload), len(n.tasks))
	}
	// The payload may be shared with the input state: work on a copy.
	states := slices.Clone(f.Payload)
	start := n.settle(states)
	for _, i := range start {
		states[i] = taskRunning
	}
	c.EnterMore(start)

	turns := share(c)
	res := stepflow.Complete()
	progressed := false
	for j := 0; j < c.NumActive(); {
		turns.give(c, false)
		r, i := c.AdvanceActive(j)
		if c.Aborted() || i < 0 {
			f.Payload = states
			return stepflow.Continue()
		}
		turns.took(c)
		switch r.Outcome {
		case stepflow.OutcomeDone:
			states[i], progressed = taskDone, true
			c.RemoveActive(j)
			continue
		case stepflow.OutcomeFail:
			c.NoteError(r.Err)
			c.RemoveActive(j)
			if n.waitAll && !errors.Is(r.Err, stepflow.ErrCanceled) {
				states[i], progressed = taskFailed, true
				states = appendTaskFailure(states, len(n.tasks), c.Failure(r.Err))
				continue
			}
			states[i] = taskFailed
			f.Payload = states
			f.Branch, f.Err = phaseFailing, c.Failure(r.Err)
			c.SetBudget(0)
			return abandonThenFail(c)
		}
		res = stepflow.Combine(res, r)
		j++
	}
	turns.done(c)
	f.Payload = states
	if progressed {
		if next := n.settle(states); len(next) > 0 || c.NumActive() > 0 {
			// Tasks that became ready start at the next Apply, which
			// follows at once.
			if len(next) > 0 {
				res = stepflow.Continue()
			}
			return res
		}
	}
	if c.NumActive() > 0 || slices.Contains(states[:len(n.tasks)], taskPending) {
		return res
	}
	if len(states) > len(n.tasks) {
		var list []stepflow.Failure
		if err := json.Unmarshal(states[len(n.tasks):], &list); err != nil {
			return c.Invalid("unreadable task failures: %v", err)
		}
		return stepflow.Fail(&stepflow.StepError{Path: c.Path(), Attempt: c.Attempt(), Err: failuresError(c, list)})
	}
	return stepflow.Complete()
}

// appendTaskFailure adds f to the failures kept after the n task states.
func appendTaskFailure(states []byte, n int, f *stepflow.Failure) []byte {
	return append(states[:n:n], appendFailure(states[n:], f)...)
}

// Redrive restarts a failed graph from its start: the tasks that failed or
// were abandoned left no frames to resume from.
func (n *GraphNode[S]) Redrive(f *stepflow.Frame) {
	*f = stepflow.Frame{Name: f.Name}
}
