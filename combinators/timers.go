package combinators

import (
	"context"
	"fmt"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Sleep waits for d, a durable timer: the wake time is fixed when the node
// is entered and kept in the state, so a restarted process wakes on time.
func Sleep[S any](name string, d time.Duration) stepflow.Node[S] {
	return &sleepNode[S]{name: name, d: d}
}

// SleepUntil calls until once, when the node is entered, and waits until
// the time it returns (a past or zero time does not wait). The time is
// kept in the state; until is not called again.
func SleepUntil[S any](name string, until func(context.Context, *S) (time.Time, error)) stepflow.Node[S] {
	return &sleepNode[S]{name: name, until: until, dynamic: true}
}

type sleepNode[S any] struct {
	name    string
	d       time.Duration
	until   func(context.Context, *S) (time.Time, error)
	dynamic bool
}

const phaseSet = "set"

func (n *sleepNode[S]) Info() stepflow.Info {
	if n.dynamic {
		return stepflow.Info{Name: n.name, Kind: "sleep", Detail: "until computed", Leaf: true}
	}
	return stepflow.Info{Name: n.name, Kind: "sleep", Detail: n.d.String()}
}

func (n *sleepNode[S]) Children() []stepflow.Node[S] { return nil }

func (n *sleepNode[S]) Check() []string {
	switch {
	case n.dynamic && n.until == nil:
		return []string{"nil until function"}
	case !n.dynamic && n.d < 0:
		return []string{fmt.Sprintf("sleep %s must not be negative", n.d)}
	}
	return nil
}

func (n *sleepNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	now := c.Now()
	if f.Branch != phaseSet {
		if n.dynamic {
			var t time.Time
			if res, ok := call(c, func(ctx context.Context, d *S) (e error) {
				t, e = n.until(ctx, d)
				return e
			}); !ok {
				return res
			}
			f.Until = t.UTC()
		} else {
			f.Until = now.Add(n.d)
		}
		f.Since, f.Branch = now, phaseSet
	}
	if now.Before(f.Until) {
		return stepflow.WaitUntil(f.Until)
	}
	return stepflow.Complete()
}

// WaitSignal waits for the external event signal, delivered with
// Flow.Signal, and consumes it (the oldest pending one of that name). If
// into is not nil it is called with the process data and the signal's
// payload, to store what the event carries; an error from into fails the
// node and leaves the signal pending. Signals that arrive before the node
// is reached are kept and consumed when it is. The only option that
// applies is Timeout: without it the wait has no end, and the process is
// Waiting with a zero WakeAt (only a signal wakes it).
func WaitSignal[S any](name, signal string, into func(*S, []byte) error, opts ...WaitOption) stepflow.Node[S] {
	p := waitPolicy{}
	for _, o := range opts {
		o(&p)
	}
	return &signalNode[S]{name: name, signal: signal, into: into, p: p}
}

type signalNode[S any] struct {
	name, signal string
	into         func(*S, []byte) error
	p            waitPolicy
}

func (n *signalNode[S]) Info() stepflow.Info {
	d := "signal " + n.signal
	if n.p.timeout > 0 {
		d += ", timeout " + n.p.timeout.String()
	}
	return stepflow.Info{Name: n.name, Kind: "signal", Detail: d, Leaf: n.into != nil}
}

func (n *signalNode[S]) Children() []stepflow.Node[S] { return nil }

func (n *signalNode[S]) Check() []string {
	p := n.p.problems
	if n.signal == "" {
		p = append(p, "empty signal name")
	}
	return p
}

func (n *signalNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	now := c.Now()
	if f.Since.IsZero() {
		f.Since = now
	}
	for i, s := range c.Signals() {
		if s.Name != n.signal {
			continue
		}
		if n.into != nil {
			payload := s.Payload
			if res, ok := call(c, func(_ context.Context, d *S) error { return n.into(d, payload) }); !ok {
				return res
			}
		}
		c.ConsumeSignal(i)
		c.RecordFrom(f.Since, "signal", nil)
		return stepflow.Complete()
	}
	if n.p.timeout > 0 {
		deadline := f.Since.Add(n.p.timeout)
		if !now.Before(deadline) {
			err := &stepflow.TimeoutError{Path: c.Path(), Limit: n.p.timeout, Started: f.Since}
			c.RecordFrom(f.Since, "timeout", err)
			return stepflow.Fail(err)
		}
		return stepflow.WaitUntil(deadline)
	}
	return stepflow.WaitUntil(time.Time{})
}
