package stepflow

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel conditions. Every error the engine returns wraps exactly one of
// these, so callers can branch with errors.Is without parsing messages.
var (
	// ErrInvalidFlow: New was given a flow definition that cannot run.
	ErrInvalidFlow = errors.New("stepflow: invalid flow")
	// ErrVersionMismatch: a state belongs to another flow version.
	ErrVersionMismatch = errors.New("stepflow: version mismatch")
	// ErrInvalidState: a state is structurally wrong for its flow (an unknown
	// path, a frame the node cannot interpret, an unknown status).
	ErrInvalidState = errors.New("stepflow: invalid state")
	// ErrStep: a step or predicate returned an error (see StepError).
	ErrStep = errors.New("stepflow: step failed")
	// ErrPanic: a step or predicate panicked (see PanicError).
	ErrPanic = errors.New("stepflow: step panicked")
	// ErrTimeout: a wait or Timeout node ran out of time (see TimeoutError).
	ErrTimeout = errors.New("stepflow: timed out")
	// ErrCanceled: the process was canceled with Flow.Cancel.
	ErrCanceled = errors.New("stepflow: canceled")
	// ErrGuard: a loop exceeded its iteration guard.
	ErrGuard = errors.New("stepflow: loop guard exceeded")
	// ErrNotFailed: Redrive was given a state that has not failed.
	ErrNotFailed = errors.New("stepflow: state is not failed")
	// ErrEnded: the operation needs a process that has not ended.
	ErrEnded = errors.New("stepflow: process has ended")
	// ErrFailed: a Fail node ended the process deliberately.
	ErrFailed = errors.New("stepflow: failed deliberately")
	// ErrUnknownOutcome: an at-most-once step's intent was found without
	// its outcome (the process crashed while the step ran, or the state was
	// applied twice), and its policy asks for a person.
	ErrUnknownOutcome = errors.New("stepflow: outcome of an at-most-once step is unknown")
	// ErrSignalOverflow: a state already buffers Options.MaxSignals signals.
	ErrSignalOverflow = errors.New("stepflow: too many pending signals")
)

// StepError is returned by Apply when a failure reached the top of the flow
// and the process is now Failed. It wraps the step's own error, so
// errors.Is/As reach it, and also matches ErrStep.
type StepError struct {
	// Path of the node that failed.
	Path string
	// Attempt at which it failed.
	Attempt uint32
	// Err is the original error.
	Err error
}

// Error names the path once and carries one "stepflow:" prefix: an error
// of the engine's own that already says what happened at this path (a
// timeout, a panic) stands alone, and the prefix of an inner error is
// dropped.
func (e *StepError) Error() string {
	switch in := e.Err.(type) {
	case *TimeoutError:
		if in.Path == e.Path {
			return in.Error()
		}
	case *PanicError:
		if in.Path == e.Path {
			return in.Error()
		}
	case *failureError:
		if strings.HasPrefix(in.f.Message, fmt.Sprintf("stepflow: step %q ", e.Path)) {
			return in.f.Message
		}
	}
	return fmt.Sprintf("stepflow: step %q failed: %s", e.Path, Unprefixed(e.Err))
}

// Unprefixed returns err's text without a leading "stepflow: ", for
// messages that carry the prefix once, ahead of it.
func Unprefixed(err error) string {
	return strings.TrimPrefix(err.Error(), "stepflow: ")
}

// Unwrap returns the step's own error and ErrStep.
func (e *StepError) Unwrap() []error { return []error{e.Err, ErrStep} }

// PanicError is the error recorded when a step panics. The panic is
// recovered; the caller of Apply is never crashed by a step.
type PanicError struct {
	Path  string
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("stepflow: step %q panicked: %v", e.Path, e.Value)
}

// Is matches ErrPanic.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// TimeoutError reports a wait or Timeout node that exceeded its limit.
type TimeoutError struct {
	Path    string
	Limit   time.Duration
	Started time.Time
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("stepflow: step %q timed out after %s (started %s)", e.Path, e.Limit, e.Started.Format(time.RFC3339))
}

// Is matches ErrTimeout.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// VersionError reports a state of another flow version.
type VersionError struct {
	Want, Got string
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("stepflow: state has version %q, flow is %q", e.Got, e.Want)
}

// Is matches ErrVersionMismatch.
func (e *VersionError) Is(target error) bool { return target == ErrVersionMismatch }

// StateError reports a state that does not fit its flow, naming the path.
type StateError struct {
	Path   string
	Reason string
}

func (e *StateError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("stepflow: invalid state: %s", e.Reason)
	}
	return fmt.Sprintf("stepflow: invalid state at %q: %s", e.Path, e.Reason)
}

// Is matches ErrInvalidState.
func (e *StateError) Is(target error) bool { return target == ErrInvalidState }

// DefinitionError is one problem in a flow definition. New returns all of
// them joined with errors.Join.
type DefinitionError struct {
	Path   string
	Reason string
}

func (e *DefinitionError) Error() string {
	if e.Path == "" {
		return "stepflow: invalid flow: " + e.Reason
	}
	return fmt.Sprintf("stepflow: invalid flow at %q: %s", e.Path, e.Reason)
}

// Is matches ErrInvalidFlow.
func (e *DefinitionError) Is(target error) bool { return target == ErrInvalidFlow }

// permanentError marks an error that retry policies must not retry.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: Retry nodes let it through at
// once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError asks Retry to wait a given delay before the next attempt.
type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err as asking to be retried no sooner than d from now:
// an HTTP 429 or 503 with a Retry-After header, a rate limit's reset time,
// a dependency that said when it will be back. An enclosing Retry waits d
// instead of its backoff (capped by its policy's MaxInterval) if it retries
// the error at all; everything else treats err as err. RetryAfter(nil, d)
// is nil, and d is never taken below zero.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, delay: max(d, 0)}
}

// RetryDelay returns the delay asked for by the outermost RetryAfter in
// err's chain.
func RetryDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.delay, true
	}
	return 0, false
}

// failureError turns a persisted Failure back into an error value, used when
// a failure recorded in an earlier Apply must propagate in a later one.
type failureError struct{ f Failure }

func (e *failureError) Error() string { return e.f.Message }

// Is lets reconstructed failures keep their class across a save and load.
func (e *failureError) Is(target error) bool {
	switch e.f.Kind {
	case KindPanic:
		return target == ErrPanic
	case KindTimeout:
		return target == ErrTimeout
	case KindCanceled:
		return target == ErrCanceled
	case KindGuard:
		return target == ErrGuard
	case KindFail:
		return target == ErrFailed
	case KindUnknown:
		return target == ErrUnknownOutcome
	}
	return false
}

// Failure kinds recorded in Failure.Kind.
const (
	KindError     = "error"
	KindPanic     = "panic"
	KindTimeout   = "timeout"
	KindCanceled  = "canceled"
	KindPermanent = "permanent"
	KindGuard     = "guard"
	KindFail      = "fail"
	KindUnknown   = "unknown-outcome"
)

// kindOf classifies an error for Failure.Kind.
func kindOf(err error) string {
	switch {
	case errors.Is(err, ErrPanic):
		return KindPanic
	case errors.Is(err, ErrTimeout):
		return KindTimeout
	case errors.Is(err, ErrCanceled):
		return KindCanceled
	case errors.Is(err, ErrGuard):
		return KindGuard
	case errors.Is(err, ErrFailed):
		return KindFail
	case errors.Is(err, ErrUnknownOutcome):
		return KindUnknown
	case IsPermanent(err):
		return KindPermanent
	}
	var f *failureError
	if errors.As(err, &f) {
		return f.f.Kind
	}
	return KindError
}
