package stepflow

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Status is where a process stands as a whole.
//
// The numeric values are persisted by the msgpack codec and must never be
// renumbered; JSON uses the names.
type Status uint8

const (
	// Running means the next Apply has work to do now.
	Running Status = iota
	// Waiting means nothing can happen before State.WakeAt.
	Waiting
	// Done means the flow completed. Terminal.
	Done
	// Failed means a step error reached the top of the flow. Terminal.
	Failed
	// Canceled means the process was canceled. Terminal.
	Canceled
	// NeedsAttention means the engine found something it must not decide
	// alone (for example an at-most-once step whose outcome is unknown).
	// Apply leaves such a state alone until a person resolves it.
	NeedsAttention
)

var statusNames = [...]string{"running", "waiting", "done", "failed", "canceled", "needs-attention"}

// String returns the lower-case name used in JSON and in Describe output.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Terminal reports whether no Apply can change a state with this status.
func (s Status) Terminal() bool { return s == Done || s == Failed || s == Canceled }

// Valid reports whether s is one of the declared statuses.
func (s Status) Valid() bool { return int(s) < len(statusNames) }

// MarshalText encodes the status by name, so JSON states stay readable.
func (s Status) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("%w: unknown status %d", ErrInvalidState, uint8(s))
	}
	return []byte(statusNames[s]), nil
}

// UnmarshalText decodes a status name written by MarshalText.
func (s *Status) UnmarshalText(b []byte) error {
	i := slices.Index(statusNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("%w: unknown status %q", ErrInvalidState, b)
	}
	*s = Status(i)
	return nil
}

// MaxDepth is how deep frames may nest below State.Root, and how deep the
// codecs let process data nest. New refuses a flow whose frames could
// nest deeper (a ForEach counts two levels: its own and its items'), and
// the codecs refuse to encode, as well as to decode, anything deeper, so
// every state a codec writes can be read back.
const MaxDepth = 64

// State is one persisted process: everything needed to resume it, and
// nothing that lives only in memory. It is a plain value; Apply never
// modifies a State it is given, and States returned by Apply share no
// mutable memory with their input (the frame tree is copied on write).
//
// Field order and meaning are part of the stored format (see package codec).
// Its methods take a pointer: a State is a few hundred bytes.
type State[S any] struct {
	// Version names the flow version that owns this state, e.g. "deploy/v1".
	Version string `json:"version"`
	// ID identifies the process to its owner. It is optional; when set it is
	// part of every step's idempotency key.
	ID string `json:"id,omitempty"`
	// Status is the overall status.
	Status Status `json:"status"`
	// Steps counts the Apply calls that advanced this state. It only grows.
	Steps uint64 `json:"steps"`
	// WakeAt is the earliest time at which the next Apply can make progress.
	// It is zero while the state is runnable now.
	WakeAt time.Time `json:"wakeAt,omitzero"`
	// Root is the active part of the flow: one frame per active node, nested
	// like the flow itself. Positions are the paths of its leaves.
	Root Frame `json:"root"`
	// Data is the caller's typed per-process data, handed to steps as *S.
	Data S `json:"data"`
	// Err is the last error that a step or the engine recorded, nil if none.
	// It stays set after a Catch handles it, so "what went wrong last"
	// can always be answered.
	Err *Failure `json:"err,omitempty"`
	// Record lists the most recently completed steps, oldest first, bounded
	// by Options.Record. Empty when recording is off. Successive states
	// share the memory behind it: read it, but do not modify it or append
	// to it (copy it first, e.g. with slices.Clone).
	Record []Record `json:"record,omitempty"`
	// Signals holds external events delivered by Flow.Signal and not yet
	// consumed, oldest first.
	Signals []Signal `json:"signals,omitempty"`
	// Intent is the path of an at-most-once step whose intent to run is
	// recorded and whose outcome is not yet known. A caller that saved this
	// state authorizes the run with WithIntentSaved; see Flow.Apply.
	Intent string `json:"intent,omitempty"`
}

// Terminal reports whether the process has ended (done, failed or canceled).
func (s *State[S]) Terminal() bool { return s.Status.Terminal() }

// Positions returns the paths of the nodes that are active right now,
// in flow order. A sequential flow has at most one; Parallel has several.
func (s *State[S]) Positions() []string {
	var out []string
	s.Root.walkLeaves("", func(p string, _ *Frame) { out = append(out, p) })
	return out
}

// Frame is the persisted memory of one active node. Which fields a node uses
// depends on its kind; unused fields stay zero and are not encoded.
//
// Frames are identified by Name within their parent, never by index, so that
// a later flow version can map them even when siblings are inserted.
type Frame struct {
	// Name is the node's name within its parent ("" for the root).
	Name string `json:"name,omitempty"`
	// Branch records a decision: the chosen branch of a Case, the phase of
	// a Catch or Finally, and so on.
	Branch string `json:"branch,omitempty"`
	// Since is when the node was entered or started waiting.
	Since time.Time `json:"since,omitzero"`
	// Until is a deadline or next-attempt time set by the node.
	Until time.Time `json:"until,omitzero"`
	// Count is a per-node counter: polls of a wait, attempts of a retry,
	// iterations of a loop.
	Count uint32 `json:"count,omitempty"`
	// Index is a second counter for nodes that need one (ForEach position).
	Index uint32 `json:"index,omitempty"`
	// Err is an error the node holds on to: the error a Catch handler is
	// handling, or the one a Finally re-raises after its cleanup.
	Err *Failure `json:"err,omitempty"`
	// Payload holds node-owned encoded bytes (ForEach items, a signal payload).
	Payload []byte `json:"payload,omitempty"`
	// Children are the frames of the active child nodes, in flow order.
	Children []Frame `json:"children,omitempty"`
}

// Child returns the active child frame with the given name, or nil.
func (f *Frame) Child(name string) *Frame {
	for i := range f.Children {
		if f.Children[i].Name == name {
			return &f.Children[i]
		}
	}
	return nil
}

func (f *Frame) walkLeaves(prefix string, visit func(path string, f *Frame)) {
	for i := range f.Children {
		c := &f.Children[i]
		p := joinPath(prefix, c.Name)
		if len(c.Children) == 0 {
			visit(p, c)
			continue
		}
		c.walkLeaves(p, visit)
	}
}

// Walk calls visit for every frame below f (not f itself) in depth-first
// flow order, with the frame's full path.
func (f *Frame) Walk(visit func(path string, f *Frame)) {
	f.walk("", visit)
}

func (f *Frame) walk(prefix string, visit func(path string, f *Frame)) {
	for i := range f.Children {
		c := &f.Children[i]
		p := joinPath(prefix, c.Name)
		visit(p, c)
		c.walk(p, visit)
	}
}

// Clone returns a deep copy of the frame tree.
func (f Frame) Clone() Frame {
	if f.Err != nil {
		e := *f.Err
		f.Err = &e
	}
	f.Payload = slices.Clone(f.Payload)
	if f.Children != nil {
		cs := make([]Frame, len(f.Children))
		for i := range f.Children {
			cs[i] = f.Children[i].Clone()
		}
		f.Children = cs
	}
	return f
}

// Failure is a persisted error: what failed, where, and how.
type Failure struct {
	// Path is the path of the node that failed.
	Path string `json:"path"`
	// Kind classifies the failure: "error", "panic", "timeout", "canceled",
	// "permanent", "guard", "fail" (a deliberate Fail node) and so on.
	Kind string `json:"kind"`
	// Message is the error text.
	Message string `json:"message"`
	// Attempt is the attempt number at which it failed (1 for the first try).
	Attempt uint32 `json:"attempt,omitempty"`
	// At is when it happened.
	At time.Time `json:"at,omitzero"`
}

// same reports whether f and g record the same failure, whatever the
// time zone of At.
func (f *Failure) same(g *Failure) bool {
	return f.Path == g.Path && f.Kind == g.Kind && f.Message == g.Message && f.Attempt == g.Attempt && f.At.Equal(g.At)
}

func (f *Failure) String() string {
	if f == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s at %s: %s", f.Kind, f.Path, f.Detail())
}

// Detail is Message without what a text that also shows Path and Kind
// would say twice: the "stepflow: " prefix, and the `step "PATH" ` that
// the engine's own errors (a timeout, a panic) start with. A timeout at
// "deploy/rollout" gives "timed out after 6s (started ...)".
func (f *Failure) Detail() string {
	m := strings.TrimPrefix(f.Message, "stepflow: ")
	if rest, ok := strings.CutPrefix(m, "step "+strconv.Quote(f.Path)+" "); ok {
		return rest
	}
	return m
}

// Record is one completed step or decision in State.Record.
type Record struct {
	// Seq is State.Steps at the Apply that completed it.
	Seq uint64 `json:"seq"`
	// Path of the node.
	Path string `json:"path"`
	// Outcome is "ok", "true", "false", "error", "panic", "timeout" or a
	// branch name for decisions.
	Outcome string `json:"outcome"`
	// Attempt of the step (1 for the first try).
	Attempt uint32 `json:"attempt,omitempty"`
	// Start and End of the call, read from the context's clock.
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// Err is the error text for failed outcomes.
	Err string `json:"err,omitempty"`
}

// Signal is an external event waiting to be consumed by a WaitSignal node.
type Signal struct {
	Name    string    `json:"name"`
	Payload []byte    `json:"payload,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// joinPath joins path elements with "/". Names never contain "/", so paths
// are unambiguous.
func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "/" + name
}

// SplitPath splits a path into its names.
func SplitPath(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// None is the data type of flows that keep no data of their own.
type None = struct{}
