package stepflow

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Root frame branches: the process is being canceled, or is ending early
// because a Succeed node was reached.
const (
	rootCancel = "cancel"
	rootExit   = "exit"
)

var zeroTime time.Time

// Signal records an external event (an approval, a webhook) in the state,
// for a WaitSignal node to consume. It is pure: it returns a new state
// and leaves st alone. A signal that arrives before its wait is reached is
// kept in order; at most Options.MaxSignals are buffered, beyond which
// Signal returns ErrSignalOverflow and st unchanged. A waiting process
// becomes runnable, so that a caller applies it promptly.
func (f *Flow[S]) Signal(st State[S], name string, payload []byte) (State[S], error) {
	if err := f.check(&st); err != nil {
		return st, err
	}
	if st.Terminal() {
		return st, fmt.Errorf("%w: cannot signal %q to a %s process", ErrEnded, name, st.Status)
	}
	if len(st.Signals) >= f.opts.MaxSignals {
		return st, fmt.Errorf("%w: %d pending, limit %d", ErrSignalOverflow, len(st.Signals), f.opts.MaxSignals)
	}
	next := st
	next.Signals = append(slices.Clip(st.Signals), Signal{Name: name, Payload: slices.Clone(payload)})
	if next.Status == Waiting {
		next.Status, next.WakeAt = Running, zeroTime
	}
	return next, nil
}

// Cancel moves a process towards Canceled. Cleanups of every active
// Finally node run first, so when cleanups exist the returned state is
// still running and reaches Canceled after a few more Apply calls; when
// none exist it is Canceled at once. Cancel runs no user code itself. A
// process that has already ended is returned unchanged with ErrEnded.
func (f *Flow[S]) Cancel(st State[S], reason string) (State[S], error) {
	if err := f.check(&st); err != nil {
		return st, err
	}
	if st.Terminal() {
		return st, fmt.Errorf("%w: cannot cancel a %s process", ErrEnded, st.Status)
	}
	if st.Root.Branch == rootCancel {
		return st, nil
	}
	next := st
	next.Status, next.WakeAt = Running, zeroTime
	next.Root.Branch = rootCancel
	// The failure names where the process stood, for Describe.
	var at string
	if pos := st.Positions(); len(pos) > 0 {
		at = pos[0]
	}
	next.Root.Err = &Failure{Path: at, Kind: KindCanceled, Message: reason}
	next.Intent = ""
	var out State[S]
	err := f.apply(context.Background(), &next, 0, &out)
	if err != nil && out.Status != Canceled {
		return st, err
	}
	return out, nil
}

// Canceling reports whether Cancel was called on a process that is still
// running its cleanups.
func (s *State[S]) Canceling() bool { return s.Root.Branch == rootCancel }

// Redriver is implemented by nodes whose frame must be reset when a failed
// process is redriven (Retry resets its attempts). Frames of leaf nodes
// are reset to a fresh start by default.
type Redriver interface {
	Redrive(f *Frame)
}

// Redrive resumes a Failed process at the step that failed, as AWS Step
// Functions' RedriveExecution does: the failed steps start afresh (their
// polls, attempts and deadlines reset), everything that completed stays
// completed, and the history (Steps, Record, Err) is kept. It returns
// ErrNotFailed for a state that has not failed.
func (f *Flow[S]) Redrive(st State[S]) (State[S], error) {
	if err := f.check(&st); err != nil {
		return st, err
	}
	if st.Status != Failed {
		return st, fmt.Errorf("%w: status is %s", ErrNotFailed, st.Status)
	}
	if err := f.Validate(st); err != nil {
		return st, err
	}
	next := st
	next.Status, next.WakeAt = Running, zeroTime
	next.Root = st.Root.Clone()
	var reset func(c *compiled[S], fr *Frame, inInstance bool)
	reset = func(c *compiled[S], fr *Frame, inInstance bool) {
		for i := range fr.Children {
			ch := &fr.Children[i]
			if c.info.Instances && !inInstance {
				reset(c, ch, true)
				continue
			}
			k := c.children[mustIndex(c, ch.Name)]
			reset(k, ch, false)
			if r, ok := k.node.(Redriver); ok {
				r.Redrive(ch)
			} else if len(ch.Children) == 0 {
				*ch = Frame{Name: ch.Name}
			}
		}
	}
	reset(f.root, &next.Root, false)
	if len(next.Root.Children) == 0 {
		// The failure left nothing active (it escaped through cleanups):
		// start the flow again from its first node.
		return next, fmt.Errorf("%w: nothing to resume", ErrInvalidState)
	}
	return next, nil
}

func mustIndex[S any](c *compiled[S], name string) int {
	i, _ := c.childIndex(name)
	return i
}

// Resolution tells Resolve what became of an at-most-once step whose
// outcome was unknown.
type Resolution uint8

const (
	// ResolveSucceeded: the step's effect happened; continue after it.
	ResolveSucceeded Resolution = iota + 1
	// ResolveFailed: the step did not take effect and must not be retried;
	// the step fails (enclosing handlers apply).
	ResolveFailed
	// ResolveRetry: the step did not take effect; run it again (a new
	// intent is recorded first).
	ResolveRetry
)

// Frame branches of at-most-once steps, persisted.
const (
	IntentRecorded = "intent"
	IntentResolved = "resolved"
	IntentFailed   = "resolved-failed"
)

// Resolve answers a NeedsAttention state: a person has found out what the
// at-most-once step at st.Intent did, and says so. The returned state is
// running again.
func (f *Flow[S]) Resolve(st State[S], r Resolution) (State[S], error) {
	if err := f.check(&st); err != nil {
		return st, err
	}
	if st.Status != NeedsAttention || st.Intent == "" {
		return st, fmt.Errorf("%w: nothing to resolve (status %s)", ErrInvalidState, st.Status)
	}
	next := st
	next.Root = st.Root.Clone()
	var target *Frame
	next.Root.Walk(func(p string, fr *Frame) {
		if p == st.Intent || stripInstances(p) == stripInstances(st.Intent) && fr.Branch == IntentRecorded {
			target = fr
		}
	})
	if target == nil {
		return st, &StateError{Path: st.Intent, Reason: "no recorded intent at this path"}
	}
	switch r {
	case ResolveSucceeded:
		target.Branch = IntentResolved
	case ResolveFailed:
		target.Branch = IntentFailed
	case ResolveRetry:
		target.Branch = ""
	default:
		return st, fmt.Errorf("%w: unknown resolution %d", ErrInvalidState, r)
	}
	next.Status, next.Intent, next.WakeAt = Running, "", zeroTime
	return next, nil
}

type intentKey struct{}

type intentToken struct {
	version, id, path string
	steps             uint64
}

// WithIntentSaved authorizes Apply to run the at-most-once step whose
// intent st records: call it with the state you have just saved durably,
// then Apply that same state. An Apply that finds an intent without this
// authorization (a state reloaded after a crash, or applied twice) follows
// the step's policy instead: run it again, or stop in NeedsAttention.
func WithIntentSaved[S any](ctx context.Context, st State[S]) context.Context {
	return context.WithValue(ctx, intentKey{}, intentToken{st.Version, st.ID, st.Intent, st.Steps})
}

// RecordIntent marks this node's frame as about to run, and the state as
// holding an intent, without calling anything: the caller must save it
// before the next Apply may run the step.
func (c *Cursor[S]) RecordIntent() {
	c.Frame().Branch = IntentRecorded
	c.x.intent = c.n.path
	c.x.budget = 0
}

// IntentAuthorized reports whether the caller saved the intent this node
// recorded (see WithIntentSaved), and clears the state's intent.
func (c *Cursor[S]) IntentAuthorized() bool {
	tok, _ := c.x.parent.Value(intentKey{}).(intentToken)
	x := c.x
	return tok.path != "" && tok.path == x.intent && tok.version == x.flow.version && tok.id == x.id &&
		tok.steps == x.steps && x.intent == c.n.path
}

// ClearIntent forgets the state's recorded intent once its outcome is known.
func (c *Cursor[S]) ClearIntent() { c.x.intent = "" }

// NeedsAttention stops the process in NeedsAttention with err recorded.
// Apply returns such a state unchanged until Resolve is called.
func (c *Cursor[S]) NeedsAttention(err error) {
	c.x.attention = c.Failure(err)
}

// Exit ends the whole process as Done once the current Apply finishes,
// after the cleanups of enclosing Finally nodes (Succeed uses it).
func (c *Cursor[S]) Exit() { c.x.exit = rootExit }

// NodePath returns the path of the node at path: path without its ForEach
// instance segments ("regions/[3]/deploy" is at node "regions/deploy").
func NodePath(path string) string { return stripInstances(path) }

// stripInstances removes ForEach instance segments ("[3]") from a path.
func stripInstances(p string) string {
	parts := SplitPath(p)
	out := parts[:0]
	for _, s := range parts {
		if isInstance(s) {
			continue
		}
		out = append(out, s)
	}
	return joinAll(out)
}

func joinAll(parts []string) string {
	p := ""
	for _, s := range parts {
		p = joinPath(p, s)
	}
	return p
}
