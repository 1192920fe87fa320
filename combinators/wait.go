package combinators

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// DefaultPollInterval is how often WaitFor polls when no Every or Backoff
// option is given.
const DefaultPollInterval = 10 * time.Second

// WaitOption configures WaitFor.
type WaitOption func(*waitPolicy)

type waitPolicy struct {
	interval time.Duration // first interval
	max      time.Duration // cap for growing intervals; 0 = fixed
	factor   float64
	timeout  time.Duration // 0 = none
	problems []string
}

// Every polls at a fixed interval. Zero or negative is a definition error.
func Every(d time.Duration) WaitOption {
	return func(p *waitPolicy) {
		if d <= 0 {
			p.problems = append(p.problems, fmt.Sprintf("poll interval %s must be positive", d))
		}
		p.interval, p.max, p.factor = d, 0, 0
	}
}

// Backoff polls first after initial, then doubles the interval after each
// false answer, up to max.
func Backoff(initial, max time.Duration) WaitOption {
	return func(p *waitPolicy) {
		if initial <= 0 || max < initial {
			p.problems = append(p.problems, fmt.Sprintf("backoff needs 0 < initial (%s) <= max (%s)", initial, max))
		}
		p.interval, p.max, p.factor = initial, max, 2
	}
}

// Timeout fails the wait with a *stepflow.TimeoutError once the time since
// its first poll reaches d. Zero means no timeout.
func Timeout(d time.Duration) WaitOption {
	return func(p *waitPolicy) {
		if d < 0 {
			p.problems = append(p.problems, fmt.Sprintf("timeout %s must not be negative", d))
		}
		p.timeout = d
	}
}

func (p *waitPolicy) describe() string {
	var parts []string
	if p.max > 0 {
		parts = append(parts, fmt.Sprintf("backoff %s..%s", p.interval, p.max))
	} else {
		parts = append(parts, "every "+p.interval.String())
	}
	if p.timeout > 0 {
		parts = append(parts, "timeout "+p.timeout.String())
	}
	return strings.Join(parts, ", ")
}

// delay is the interval after the given number of false polls (1-based).
func (p *waitPolicy) delay(polls uint32) time.Duration {
	if p.max <= 0 {
		return p.interval
	}
	d := p.interval
	for i := uint32(1); i < polls && d < p.max; i++ {
		d = time.Duration(float64(d) * p.factor)
	}
	return min(d, p.max)
}

// WaitFor polls pred until it returns true. Each Apply makes at most one
// poll; while pred is false the process is Waiting with WakeAt at the next
// poll. The time of the first poll and the number of polls are kept in the
// state, so a resumed process keeps its schedule and its timeout.
// An error from pred fails the wait (wrap it in Retry to tolerate errors).
func WaitFor[S any](name string, pred func(context.Context, *S) (bool, error), opts ...WaitOption) stepflow.Node[S] {
	p := waitPolicy{interval: DefaultPollInterval}
	for _, o := range opts {
		o(&p)
	}
	return &waitNode[S]{name: name, pred: pred, p: p}
}

type waitNode[S any] struct {
	name string
	pred func(context.Context, *S) (bool, error)
	p    waitPolicy
}

func (n *waitNode[S]) Info() stepflow.Info {
	return stepflow.Info{Name: n.name, Kind: "wait", Detail: n.p.describe(), Leaf: true}
}

func (n *waitNode[S]) Children() []stepflow.Node[S] { return nil }

func (n *waitNode[S]) Check() []string {
	p := n.p.problems
	if n.pred == nil {
		p = append(p, "nil predicate")
	}
	return p
}

// PollFunc lets Apply poll the wait without walking the tree to it (see
// stepflow.PollNode).
func (n *waitNode[S]) PollFunc() func(context.Context, *S) (bool, error) { return n.pred }

// PollNext says when to poll next after a false answer at now, for a frame
// that Advance would simply poll: polled before, due, not timed out.
func (n *waitNode[S]) PollNext(f *stepflow.Frame, now time.Time) (time.Time, bool) {
	if f.Since.IsZero() || f.Until.IsZero() || now.Before(f.Until) || n.p.timeout > 0 && now.Sub(f.Since) >= n.p.timeout {
		return time.Time{}, false
	}
	return n.nextPoll(f, now, f.Count+1), true
}

// nextPoll is when to poll after the polls-th poll answered false at now.
func (n *waitNode[S]) nextPoll(f *stepflow.Frame, now time.Time, polls uint32) time.Time {
	next := now.Add(n.p.delay(polls))
	if n.p.timeout > 0 {
		// Wake exactly at the deadline rather than after it.
		next = minTime(next, f.Since.Add(n.p.timeout))
	}
	return next
}

func (n *waitNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	now := c.Now()
	if !f.Until.IsZero() && now.Before(f.Until) {
		return stepflow.WaitUntil(f.Until)
	}
	if n.p.timeout > 0 && !f.Since.IsZero() && now.Sub(f.Since) >= n.p.timeout {
		err := &stepflow.TimeoutError{Path: c.Path(), Limit: n.p.timeout, Started: f.Since}
		c.RecordFrom(f.Since, "timeout", err)
		return stepflow.Fail(err)
	}
	if !c.CanRun() {
		return stepflow.Continue()
	}
	if f.Since.IsZero() {
		f.Since = now
	}
	f.Count++
	ok, res, proceed := callCond(c, n.pred)
	if !proceed {
		return res
	}
	if ok {
		c.RecordFrom(f.Since, "true", nil)
		return stepflow.Complete()
	}
	c.Record("false", nil)
	next := n.nextPoll(f, now, f.Count)
	f.Until = next
	return stepflow.WaitUntil(next)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
