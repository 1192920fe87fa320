package runner

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// ChildResult is how a child process ended, as its parent sees it.
type ChildResult[C any] struct {
	// ID of the child process.
	ID string
	// Status is Done, Failed or Canceled.
	Status stepflow.Status
	// Data is the child's data at its end.
	Data C
	// Err is the child's failure when it failed or was canceled.
	Err *stepflow.Failure
}

// ChildError is the failure of a Child node whose child did not end well
// and that has no into function to judge it.
type ChildError struct {
	ID     string
	Status stepflow.Status
	Err    *stepflow.Failure
}

func (e *ChildError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("child %q %s", e.ID, e.Status)
	}
	return fmt.Sprintf("child %q %s: %s", e.ID, e.Status, e.Err.Message)
}

// DefaultChildPoll is how a Child node looks at its child unless told
// otherwise: after a second, then backing off to every 30 seconds.
var DefaultChildPoll = combinators.Backoff(time.Second, 30*time.Second)

// Child is a node that starts a process of another flow the runner hosts
// (children, the handle Register returned for it) and waits durably for
// its end: the parent's child flow, as Temporal's child workflows or Step
// Functions' nested executions.
//
// The child's id is derived from the parent's: the parent's id, "/", the
// node's path, and for a node inside loops or ForEach the iteration
// numbers (".2"), so that a step that runs again after a crash finds the
// child it started and never starts a second one. data gives the child's
// initial data from the parent's; into, when not nil, receives how the
// child ended, and its error fails the node. Without into, a child that
// failed or was canceled fails the node with a *ChildError.
//
// The node is a sequence of two: "start" (a step) and "wait" (a WaitFor
// that reads the child's record, every second at first and then less
// often: DefaultChildPoll; pass WaitOptions such as combinators.Timeout
// or combinators.Every to change it). A quarantined child is waited for,
// since a person can put it back; a child that was deleted fails the node.
// Canceling the parent (Processes.Cancel, Runner.Cancel) cancels its
// children, and theirs, too.
func Child[S, C any](name string, children *Processes[C], data func(*S) (C, error), into func(*S, ChildResult[C]) error, opts ...combinators.WaitOption) stepflow.Node[S] {
	start := func(ctx context.Context, s *S) error {
		id, err := childID(ctx, "start")
		if err != nil {
			return err
		}
		d, err := data(s)
		if err != nil {
			return err
		}
		if err := children.Start(ctx, id, d); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
		return nil
	}
	wait := func(ctx context.Context, s *S) (bool, error) {
		id, err := childID(ctx, "wait")
		if err != nil {
			return false, err
		}
		st, err := children.State(ctx, id)
		var q *QuarantineError
		switch {
		case errors.As(err, &q):
			return false, nil
		case err != nil:
			return false, err
		case !st.Terminal():
			return false, nil
		}
		res := ChildResult[C]{ID: id, Status: st.Status, Data: st.Data, Err: st.Err}
		if into != nil {
			return true, into(s, res)
		}
		if st.Status != stepflow.Done {
			return false, &ChildError{ID: id, Status: st.Status, Err: st.Err}
		}
		return true, nil
	}
	return combinators.Sequence(name,
		combinators.Do("start", start),
		combinators.WaitFor("wait", wait, append([]combinators.WaitOption{DefaultChildPoll}, opts...)...),
	)
}

// childID derives the id of the child of the Child node whose part
// (start or wait) is calling.
func childID(ctx context.Context, part string) (string, error) {
	call, ok := stepflow.CallFrom(ctx)
	if !ok || call.ID == "" {
		return "", errors.New("stepflow/runner: a Child node runs only in a process with an id (run it with a runner)")
	}
	return nodeKey(call, '/', "/"+part), nil
}

// nodeKey names the node of a composite runner node (Child, Limited) in
// the process making call: the process id, sep, the call's path without
// suffix (the part of the node that calls), and the iterations of the
// loops around it (".2"), so that a call made again after a crash gives
// the same name.
func nodeKey(call stepflow.Call, sep byte, suffix string) string {
	var b strings.Builder
	b.WriteString(call.ID)
	b.WriteByte(sep)
	b.WriteString(strings.TrimSuffix(call.Path, suffix))
	for _, it := range call.Iterations {
		b.WriteByte('.')
		b.WriteString(strconv.FormatUint(uint64(it), 10))
	}
	return b.String()
}

// cancelChildren cancels the processes started by Child nodes of process
// id (and theirs): those whose id starts with id + "/", of flows the runner
// hosts. The children's errors are joined.
func (r *Runner) cancelChildren(ctx context.Context, id, reason string) error {
	var errs []error
	f := store.Filter{IDPrefix: id + "/", Limit: 500}
	for {
		recs, err := r.store.List(ctx, f)
		if err != nil {
			return err
		}
		for i := range recs {
			rec := &recs[i]
			if rec.Status.Terminal() || rec.Quarantine != "" {
				continue
			}
			h := r.hostOf(rec.Version)
			if h == nil {
				continue
			}
			if err := h.cancelOne(ctx, rec.ID, "parent "+id+" canceled: "+reason); err != nil && !errors.Is(err, store.ErrNotFound) {
				errs = append(errs, err)
			}
		}
		if len(recs) < f.Limit {
			return errors.Join(errs...)
		}
		f.After = recs[len(recs)-1].ID
	}
}
