package combinators

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// RetryPolicy says how often and how fast Retry tries again. The zero value
// is a sensible policy; each field states its default.
type RetryPolicy struct {
	// MaxAttempts is the total number of tries, the first one included.
	// Zero means DefaultMaxAttempts; 1 means no retry.
	MaxAttempts int
	// InitialInterval is the wait after the first failure. Zero means 1s.
	InitialInterval time.Duration
	// BackoffFactor multiplies the wait after each further failure. Zero
	// means 2; values below 1 are a definition error.
	BackoffFactor float64
	// MaxInterval caps the wait. Zero means 100 × InitialInterval.
	MaxInterval time.Duration
	// Jitter spreads waits by up to ± this fraction (0 ≤ Jitter < 1), so
	// that processes failing together do not retry together. The spread is
	// derived from the process ID, the node path and the attempt, never
	// from a random source, so Apply stays deterministic. Zero means none.
	Jitter float64
	// RetryIf decides which errors are retried. Nil retries every error
	// except those marked stepflow.Permanent, deliberate Fail nodes,
	// cancellation and unknown at-most-once outcomes; those are never
	// retried, whatever RetryIf says.
	RetryIf func(error) bool
}

// DefaultMaxAttempts is RetryPolicy.MaxAttempts when left zero.
const DefaultMaxAttempts = 3

// WithDefaults returns p with zero fields set to their defaults.
func (p RetryPolicy) WithDefaults() RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.InitialInterval == 0 {
		p.InitialInterval = time.Second
	}
	if p.BackoffFactor == 0 {
		p.BackoffFactor = 2
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = 100 * p.InitialInterval
	}
	return p
}

func (p RetryPolicy) problems() []string {
	var out []string
	if p.MaxAttempts < 0 {
		out = append(out, fmt.Sprintf("MaxAttempts %d must not be negative", p.MaxAttempts))
	}
	if p.InitialInterval < 0 || p.MaxInterval < 0 {
		out = append(out, "retry intervals must not be negative")
	}
	if p.BackoffFactor != 0 && p.BackoffFactor < 1 {
		out = append(out, fmt.Sprintf("BackoffFactor %v must be at least 1", p.BackoffFactor))
	}
	if p.Jitter < 0 || p.Jitter >= 1 {
		out = append(out, fmt.Sprintf("Jitter %v must be in [0, 1)", p.Jitter))
	}
	return out
}

// ShouldRetry reports whether a failure at attempt (1-based) is retried.
func (p RetryPolicy) ShouldRetry(err error, attempt uint32) bool {
	p = p.WithDefaults()
	switch {
	case int(attempt) >= p.MaxAttempts,
		stepflow.IsPermanent(err),
		errors.Is(err, stepflow.ErrCanceled),
		errors.Is(err, stepflow.ErrFailed),
		errors.Is(err, stepflow.ErrUnknownOutcome):
		return false
	case p.RetryIf != nil:
		return p.RetryIf(err)
	}
	return true
}

// Delay is the wait after attempt (1-based) failed. key spreads the jitter
// (Retry passes the process ID and node path). It is a pure function.
func (p RetryPolicy) Delay(attempt uint32, key string) time.Duration {
	return p.delay(attempt, key, nil)
}

// DelayFor is Delay for a failure with err: an error made with
// stepflow.RetryAfter chooses the wait itself, capped by MaxInterval and
// without jitter.
func (p RetryPolicy) DelayFor(err error, attempt uint32, key string) time.Duration {
	return p.delay(attempt, key, err)
}

func (p RetryPolicy) delay(attempt uint32, key string, err error) time.Duration {
	p = p.WithDefaults()
	if d, ok := stepflow.RetryDelay(err); ok {
		return min(d, p.MaxInterval)
	}
	d := float64(p.InitialInterval)
	for i := uint32(1); i < attempt && d < float64(p.MaxInterval); i++ {
		d *= p.BackoffFactor
	}
	d = min(d, float64(p.MaxInterval))
	if p.Jitter > 0 {
		h := fnv.New64a()
		h.Write([]byte(key))
		h.Write([]byte{0})
		h.Write([]byte(strconv.FormatUint(uint64(attempt), 10)))
		u := float64(h.Sum64()>>11) / (1 << 53) // uniform in [0, 1)
		d *= 1 + p.Jitter*(2*u-1)
	}
	return time.Duration(d)
}

func (p RetryPolicy) String() string {
	q := p.WithDefaults()
	s := fmt.Sprintf("max %d, %s×%g ≤%s", q.MaxAttempts, q.InitialInterval, q.BackoffFactor, q.MaxInterval)
	if q.Jitter > 0 {
		s += fmt.Sprintf(", jitter %g", q.Jitter)
	}
	if q.RetryIf != nil {
		s += ", filtered"
	}
	return s
}

// Retry runs body, and when a step in it fails, runs the body again from
// its start, up to the policy's attempts. Between attempts the process is
// Waiting until the backoff ends. The attempt number, the time of the next
// attempt and the last error are kept in the state; steps see the attempt
// in stepflow.CallFrom(ctx).Attempt. When attempts run out, or the error is
// not retryable, the last error propagates with its attempt number. An
// error made with stepflow.RetryAfter sets the wait itself (see DelayFor).
func Retry[S any](name string, policy RetryPolicy, body ...stepflow.Node[S]) stepflow.Node[S] {
	return &retryNode[S]{name: name, p: policy, body: body}
}

type retryNode[S any] struct {
	name string
	p    RetryPolicy
	body []stepflow.Node[S]
}

const phaseBackoff = "backoff"

func (n *retryNode[S]) Info() stepflow.Info {
	return stepflow.Info{Name: n.name, Kind: "retry", Detail: n.p.String()}
}

func (n *retryNode[S]) Children() []stepflow.Node[S] { return n.body }

func (n *retryNode[S]) Check() []string {
	p := n.p.problems()
	if len(n.body) == 0 {
		p = append(p, "retry with an empty body")
	}
	return p
}

func (n *retryNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Peek()
	if f.Branch == phaseBackoff {
		if c.Now().Before(f.Until) {
			return stepflow.WaitUntil(f.Until)
		}
		f = c.Frame()
		f.Branch, f.Until = "", time.Time{}
	}
	attempt := max(f.Count, 1)
	if f.Count != attempt {
		c.Frame().Count = attempt
	}
	c.SetAttempt(attempt)
	r := c.Sequence(0, len(n.body))
	if r.Outcome != stepflow.OutcomeFail || !n.p.ShouldRetry(r.Err, attempt) {
		return r
	}
	f = c.Frame()
	f.Err = c.Failure(r.Err)
	c.NoteError(r.Err)
	f.Count = attempt + 1
	f.Branch = phaseBackoff
	f.Until = c.Now().Add(n.p.DelayFor(r.Err, attempt, c.ProcessID()+"|"+c.Path()))
	c.ClearChildren()
	return stepflow.WaitUntil(f.Until)
}

// Redrive gives a redriven retry its full attempts again.
func (n *retryNode[S]) Redrive(f *stepflow.Frame) {
	*f = stepflow.Frame{Name: f.Name, Children: f.Children}
}

// detail joins non-empty parts for Info.Detail.
func detail(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}
