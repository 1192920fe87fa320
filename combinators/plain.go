package combinators

import (
	"context"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Dataless builds nodes from functions that take no process data, the
// signatures func(ctx) error and func(ctx) (bool, error). Its zero value is
// ready to use; S is the data type of the flow the nodes go into, so plain
// steps mix freely with typed ones:
//
//	var d combinators.Dataless[Deploy]
//	combinators.Do("render", render)   // func(ctx, *Deploy) error
//	d.Do("notify", notify)             // func(ctx) error
type Dataless[S any] struct{}

// Plain builds nodes for flows that keep no data of their own
// (stepflow.None).
var Plain Dataless[stepflow.None]

// Do is Do for a step without data.
func (Dataless[S]) Do(name string, fn func(context.Context) error) stepflow.Node[S] {
	n := &doNode[S]{name: name}
	if fn != nil {
		n.fn = func(ctx context.Context, _ *S) error { return fn(ctx) }
	}
	return n
}

// WaitFor is WaitFor for a predicate without data.
func (Dataless[S]) WaitFor(name string, pred func(context.Context) (bool, error), opts ...WaitOption) stepflow.Node[S] {
	return WaitFor(name, adaptCond[S](pred), opts...)
}

// Case is Case for a predicate without data.
func (Dataless[S]) Case(name string, pred func(context.Context) (bool, error), then ...stepflow.Node[S]) *CaseNode[S] {
	return Case(name, adaptCond[S](pred), then...)
}

func adaptCond[S any](pred func(context.Context) (bool, error)) func(context.Context, *S) (bool, error) {
	if pred == nil {
		return nil
	}
	return func(ctx context.Context, _ *S) (bool, error) { return pred(ctx) }
}
