package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// This file holds the Runner's methods for callers that know a process by
// its id only, such as an operator console: each loads the record, finds
// the registered flow of its version (store.Record.Flow) and hands the
// call to that flow's Processes, so that the typed code is the only code.

// ErrUnknownFlow: a method that takes a process by its id alone (Inspect,
// Signal, Cancel...) found a process of a flow the runner does not host.
// Register the flow, or use a runner that hosts it.
var ErrUnknownFlow = errors.New("stepflow/runner: flow not registered")

// Inspection is everything a person may want to see of one process,
// without knowing its data type: what Runner.Inspect returns.
type Inspection struct {
	// Record is the stored record, as loaded: status, position, error
	// kind, quarantine reason, revision, lease owner, due time, bytes.
	Record store.Record
	// Decoded is true when the stored bytes were read as a state of the
	// flow. The fields below are set only then; Problem says why not.
	Decoded bool
	// Description explains the state by the definition of its own
	// version (Processes.Describe): every node's status (Nodes), why it
	// is where it is, its error. Zero when the state could not be
	// described (Problem says why).
	Description stepflow.Description
	// Data is the state's data, encoded with encoding/json from the
	// flow's data type. When that fails, Data is nil and DataError says
	// why.
	Data      []byte
	DataError string
	// History is the state's record of completed steps, oldest first;
	// empty when the flow keeps none (stepflow.Options.Record).
	History []stepflow.Record
	// Signals are the signals delivered and not yet consumed.
	Signals []stepflow.Signal
	// Err is the state's last failure, nil if none (see
	// stepflow.State.Err); Description.Err is the one that matters now.
	Err *stepflow.Failure
	// WakeAt is when a waiting process next does something.
	WakeAt time.Time
	// Steps counts the Apply calls that advanced the state.
	Steps uint64
	// Intent is the path of an at-most-once step whose outcome is not
	// known, for a process that needs attention.
	Intent string
	// Problem says why the state could not be read or described: bytes
	// that do not decode, a version its flow does not know. "" when
	// there was none. A quarantined process keeps its reason in
	// Record.Quarantine.
	Problem string
}

// Inspect reads a process of any flow the runner hosts, by id: its record
// and, when its bytes can be read, its decoded state, description and
// data. A quarantined process is inspected too: Record.Quarantine holds
// the reason, and the state is described when its bytes still decode;
// what could not be read is in Problem, not in the error. Inspect fails
// with an error matching store.ErrNotFound for an unknown id, and
// ErrUnknownFlow (with the record in the Inspection) for a process of a
// flow the runner does not host.
func (r *Runner) Inspect(ctx context.Context, id string) (Inspection, error) {
	rec, err := r.store.Load(ctx, id)
	if err != nil {
		return Inspection{}, fmt.Errorf("stepflow/runner: inspect %q: %w", id, err)
	}
	h, err := r.hostOfRecord("inspect", &rec)
	if err != nil {
		return Inspection{Record: rec}, err
	}
	return h.examine(rec), nil
}

// Signal delivers a signal to a process of any flow the runner hosts (see
// Processes.Signal). A process of a flow it does not host gives an error
// matching ErrUnknownFlow.
func (r *Runner) Signal(ctx context.Context, id, name string, payload []byte) error {
	h, err := r.hostOfID(ctx, "signal", id)
	if err != nil {
		return err
	}
	return h.Signal(ctx, id, name, payload)
}

// Cancel cancels a process of any flow the runner hosts (see
// Processes.Cancel).
func (r *Runner) Cancel(ctx context.Context, id, reason string) error {
	h, err := r.hostOfID(ctx, "cancel", id)
	if err != nil {
		return err
	}
	return h.Cancel(ctx, id, reason)
}

// Redrive resumes a failed process of any flow the runner hosts at the
// step that failed (see Processes.Redrive).
func (r *Runner) Redrive(ctx context.Context, id string) error {
	h, err := r.hostOfID(ctx, "redrive", id)
	if err != nil {
		return err
	}
	return h.Redrive(ctx, id)
}

// Resolve tells a process of any flow the runner hosts, which needs
// attention, what became of its at-most-once step (see Processes.Resolve).
func (r *Runner) Resolve(ctx context.Context, id string, how stepflow.Resolution) error {
	h, err := r.hostOfID(ctx, "resolve", id)
	if err != nil {
		return err
	}
	return h.Resolve(ctx, id, how)
}

// Migrate moves a process of any flow the runner hosts to its flow's
// latest version now, and puts a quarantined one back in service (see
// Processes.Migrate).
func (r *Runner) Migrate(ctx context.Context, id string) error {
	h, err := r.hostOfID(ctx, "migrate", id)
	if err != nil {
		return err
	}
	return h.Migrate(ctx, id)
}

// hostOfID loads a process and returns the flow that hosts it. The typed
// method it is for loads the process again, with the revision check of
// its write: a process written in between is judged as it is then.
func (r *Runner) hostOfID(ctx context.Context, op, id string) (host, error) {
	rec, err := r.store.Load(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("stepflow/runner: %s %q: %w", op, id, err)
	}
	return r.hostOfRecord(op, &rec)
}

// hostOfRecord returns the registered flow of the record's flow name,
// whatever its version: the flow judges the version itself.
func (r *Runner) hostOfRecord(op string, rec *store.Record) (host, error) {
	r.hostMu.RLock()
	h := r.byName[rec.Flow()]
	r.hostMu.RUnlock()
	if h == nil {
		return nil, fmt.Errorf("stepflow/runner: %s %q: %w: %q (version %s)", op, rec.ID, ErrUnknownFlow, rec.Flow(), rec.Version)
	}
	return h, nil
}

// examine implements host (see Runner.Inspect).
func (p *Processes[S]) examine(rec store.Record) Inspection {
	in := Inspection{Record: rec}
	st, err := p.decode(&rec)
	if _, quarantined := errors.AsType[*QuarantineError](err); quarantined && st.Version != "" {
		// Set aside, but the bytes still decode: show what they hold.
		err = nil
	}
	if err != nil {
		in.Problem = err.Error()
		return in
	}
	in.Decoded = true
	in.History, in.Signals, in.Err = st.Record, st.Signals, st.Err
	in.WakeAt, in.Steps, in.Intent = st.WakeAt, st.Steps, st.Intent
	if b, err := json.Marshal(st.Data); err != nil {
		in.DataError = err.Error()
	} else {
		in.Data = b
	}
	if st.ID == "" {
		st.ID = rec.ID
	}
	d, err := p.eng.describe(st)
	if err != nil {
		in.Problem = err.Error()
		return in
	}
	in.Description = d
	return in
}
