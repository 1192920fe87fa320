package combinators

import (
	"fmt"
	"slices"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// The Explain methods say, for Describe and the console, what a node's
// frame means in words and for its children (stepflow.Explainer).

func (n *waitNode[S]) Explain(f *stepflow.Frame) stepflow.Explanation {
	e := stepflow.Explanation{Attempts: f.Count}
	switch {
	case f.Count == 0:
		e.Waiting = "first poll next"
	case f.Count == 1:
		e.Waiting = "poll 1 answered not yet"
	default:
		e.Waiting = fmt.Sprintf("polls 1 to %d answered not yet", f.Count)
	}
	if n.p.timeout > 0 && !f.Since.IsZero() {
		e.Waiting += "; gives up at " + f.Since.Add(n.p.timeout).Format(time.RFC3339)
	}
	return e
}

func (n *signalNode[S]) Explain(f *stepflow.Frame) stepflow.Explanation {
	e := stepflow.Explanation{Waiting: fmt.Sprintf("signal %q", n.signal)}
	if n.p.timeout > 0 && !f.Since.IsZero() {
		e.Waiting += "; gives up at " + f.Since.Add(n.p.timeout).Format(time.RFC3339)
	}
	return e
}

func (n *sleepNode[S]) Explain(f *stepflow.Frame) stepflow.Explanation {
	if f.Branch != phaseSet {
		return stepflow.Explanation{Waiting: "wake time not set yet"}
	}
	return stepflow.Explanation{Waiting: "sleeping until " + f.Until.Format(time.RFC3339)}
}

func (n *retryNode[S]) Explain(f *stepflow.Frame) stepflow.Explanation {
	most := n.p.WithDefaults().MaxAttempts
	attempt := max(f.Count, 1)
	if f.Branch == phaseBackoff {
		// Count is the attempt to come; the body runs again from its
		// start.
		e := stepflow.Explanation{Attempts: attempt - 1, Children: map[int]stepflow.NodeStatus{}}
		e.Waiting = fmt.Sprintf("attempt %d of %d failed; attempt %d next", attempt-1, most, attempt)
		for i := range n.body {
			e.Children[i] = stepflow.NodePending
		}
		return e
	}
	return stepflow.Explanation{Attempts: attempt, Waiting: fmt.Sprintf("attempt %d of %d", attempt, most)}
}

func (n *timeLimitNode[S]) Explain(f *stepflow.Frame) stepflow.Explanation {
	if f.Branch == phaseExpired {
		e := stepflow.Explanation{Waiting: "time limit reached; the body is being abandoned", Children: map[int]stepflow.NodeStatus{}}
		for i := range n.body {
			e.Children[i] = stepflow.NodeCanceled
		}
		return e
	}
	if f.Until.IsZero() {
		return stepflow.Explanation{}
	}
	return stepflow.Explanation{Waiting: "time limit ends at " + f.Until.Format(time.RFC3339)}
}

func (n *catchNode[S]) Explain(f *stepflow.Frame) stepflow.Explanation {
	if f.Branch != phaseHandler {
		return stepflow.Explanation{}
	}
	return stepflow.Explanation{Waiting: "handling the body's failure", Children: map[int]stepflow.NodeStatus{0: stepflow.NodeFailed}}
}

func (n *finallyNode[S]) Explain(f *stepflow.Frame) stepflow.Explanation {
	var e stepflow.Explanation
	switch {
	case f.Branch == phaseUnwound:
		e = stepflow.Explanation{Waiting: "cleaning up after the body was abandoned", Children: map[int]stepflow.NodeStatus{0: stepflow.NodeCanceled}}
	case f.Branch == phaseCleanup && f.Err != nil:
		e = stepflow.Explanation{Waiting: "cleaning up after the body failed", Children: map[int]stepflow.NodeStatus{0: stepflow.NodeFailed}}
	case f.Branch == phaseCleanup:
		e = stepflow.Explanation{Waiting: "cleaning up after the body succeeded", Children: map[int]stepflow.NodeStatus{0: stepflow.NodeDone}}
	default:
		return e
	}
	if len(f.Children) == 0 {
		// The cleanup has run: its frames are gone and the body's
		// failure, if any, is on its way up.
		for i := 1; i < len(n.kids); i++ {
			e.Children[i] = stepflow.NodeDone
		}
	}
	return e
}

func (n *ParallelNode[S]) Explain(f *stepflow.Frame) stepflow.Explanation {
	if f.Branch == "" {
		return stepflow.Explanation{}
	}
	var failures []stepflow.Failure
	if f.Err != nil {
		failures = append(failures, *f.Err)
	}
	failures = append(failures, itemFailuresAt(f.Payload)...)
	e := stepflow.Explanation{Children: map[int]stepflow.NodeStatus{}}
	for i, b := range n.branches {
		// A branch without a frame has ended: completed, failed, or
		// (when the parallel is failing) stopped.
		s := stepflow.NodeDone
		if f.Branch == phaseFailing {
			s = stepflow.NodeCanceled
		}
		for _, fl := range failures {
			if branchOf(fl.Path, f.Name) == b.Info().Name {
				s = stepflow.NodeFailed
			}
		}
		e.Children[i] = s
	}
	if f.Branch == phaseFailing {
		e.Waiting = "a branch failed; the others are being abandoned"
	}
	return e
}

func (n *ForEachNode[S]) Explain(f *stepflow.Frame) stepflow.Explanation {
	total := itemCount(f.Payload)
	if f.Branch == "" || total < 0 {
		return stepflow.Explanation{Waiting: "item list not made yet"}
	}
	var failed []int
	if f.Err != nil {
		failed = append(failed, itemIndexIn(f.Err.Path, f.Name))
	}
	for _, fl := range itemFailures(f.Payload) {
		failed = append(failed, itemIndexIn(fl.Path, f.Name))
	}
	e := stepflow.Explanation{Items: make([]stepflow.ItemState, total)}
	for i := range e.Items {
		s := stepflow.NodePending
		switch {
		case slices.ContainsFunc(f.Children, func(c stepflow.Frame) bool { return c.Name == stepflow.InstanceName(i) }):
			s = stepflow.NodeActive
		case slices.Contains(failed, i):
			s = stepflow.NodeFailed
		case i < int(f.Index):
			s = stepflow.NodeDone
		}
		e.Items[i] = stepflow.ItemState{Index: i, Status: s}
	}
	e.Waiting = fmt.Sprintf("%d of %d items ended", f.Count, total)
	if len(f.Children) == 0 {
		// No item in progress: the body stands as its items do.
		e.Children = map[int]stepflow.NodeStatus{}
		s := stepflow.NodePending
		if int(f.Count) >= total {
			s = stepflow.NodeDone
		}
		for i := range n.body {
			e.Children[i] = s
		}
	}
	return e
}

// branchOf returns the path segment that follows the segment named node in
// path: the branch of that node a failure at path happened in.
func branchOf(path, node string) string {
	segs := stepflow.SplitPath(path)
	for i := 0; i+1 < len(segs); i++ {
		if segs[i] == node {
			return segs[i+1]
		}
	}
	return ""
}

// itemIndexIn returns the ForEach item a failure at path happened in, or
// -1.
func itemIndexIn(path, node string) int {
	if i, ok := instanceIndex(branchOf(path, node), 1<<31-1); ok {
		return i
	}
	return -1
}

func (n *GraphNode[S]) Explain(f *stepflow.Frame) stepflow.Explanation {
	e := stepflow.Explanation{Children: map[int]stepflow.NodeStatus{}}
	if len(f.Payload) < len(n.tasks) {
		return e
	}
	var done, running, waiting int
	for i, s := range f.Payload[:len(n.tasks)] {
		switch s {
		case taskDone:
			e.Children[i] = stepflow.NodeDone
			done++
		case taskFailed:
			e.Children[i] = stepflow.NodeFailed
		case taskSkipped:
			e.Children[i] = stepflow.NodeSkipped
		case taskRunning:
			running++
		default:
			e.Children[i] = stepflow.NodePending
			waiting++
		}
	}
	e.Waiting = fmt.Sprintf("%d of %d tasks done, %d running, %d waiting for their needs", done, len(n.tasks), running, waiting)
	return e
}
