package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// inspection is one process as the console reads it.
type inspection struct {
	in     runner.Inspection
	hosted bool // its flow is registered with the runner
}

// inspect reads a process. The flow it returns is "" when the process
// does not exist: what Authorize is asked about before anything is said.
func (c *Console) inspect(ctx context.Context, id string) (inspection, string, error) {
	in, err := c.r.Inspect(ctx, id)
	switch {
	case errors.Is(err, runner.ErrUnknownFlow):
		return inspection{in: in}, in.Record.Flow(), nil
	case err != nil:
		return inspection{}, "", err
	}
	return inspection{in: in, hosted: true}, in.Record.Flow(), nil
}

// readProcess reads the process a request names by its id, for reading.
// Authorize hears of the process's flow before anything about the
// process, even that it does not exist, is answered. When it returns false
// it has answered the request.
func (c *Console) readProcess(w http.ResponseWriter, req *http.Request) (inspection, bool) {
	id := req.PathValue("id")
	pi, flow, err := c.inspect(req.Context(), id)
	if aerr := c.authorize(req, Access{Action: ActionRead, Flow: flow, ID: id}); aerr != nil {
		c.fail(w, req, aerr)
		return inspection{}, false
	}
	if err != nil {
		c.fail(w, req, err)
		return inspection{}, false
	}
	return pi, true
}

// apiProcess serves GET /api/processes/{id}.
func (c *Console) apiProcess(w http.ResponseWriter, req *http.Request) {
	pi, ok := c.readProcess(w, req)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, c.detail(pi))
}

// detail is the API's view of an inspected process.
func (c *Console) detail(pi inspection) ProcessDetail {
	in := &pi.in
	rec := &in.Record
	d := ProcessDetail{ProcessSummary: summary(rec), Positions: []string{}, History: []HistoryEntry{},
		Signals: []PendingSignal{}, Actions: c.applicable(rec, pi.hosted), Problem: in.Problem}
	if !pi.hosted {
		d.Problem = fmt.Sprintf("flow %q is not registered with this console's runner: its processes can be listed and deleted, not read or changed", rec.Flow())
	}
	if in.Decoded {
		d.Steps, d.WakeAt, d.Intent = in.Steps, in.WakeAt, in.Intent
		d.Data, d.DataError = in.Data, in.DataError
		for _, h := range in.History {
			d.History = append(d.History, HistoryEntry{Seq: h.Seq, Path: h.Path, Outcome: h.Outcome, Attempt: h.Attempt,
				Start: h.Start, End: h.End, Error: h.Err})
		}
		for _, s := range in.Signals {
			ps := PendingSignal{Name: s.Name, At: s.At}
			if json.Valid(s.Payload) {
				ps.Payload = s.Payload
			} else {
				ps.PayloadBase64 = s.Payload
			}
			d.Signals = append(d.Signals, ps)
		}
		d.Error = failure(in.Err)
		if desc := &in.Description; desc.Version != "" {
			d.Description = description(desc)
			d.Why, d.Error, d.Positions = desc.Why, failure(desc.Err), append(d.Positions, desc.Positions...)
		}
	}
	if rec.Quarantine != "" {
		d.Why = "quarantined: " + rec.Quarantine + " (no runner takes it until it is retried or migrated)"
	}
	return d
}

// applicable lists the actions that apply to a process now.
func (c *Console) applicable(rec *store.Record, hosted bool) []Action {
	switch {
	case !c.opts.Actions:
		return []Action{}
	case !hosted:
		return []Action{ActionDelete}
	case rec.Quarantine != "":
		return []Action{ActionRetry, ActionMigrate, ActionDelete}
	}
	var out []Action
	switch rec.Status {
	case stepflow.Running, stepflow.Waiting:
		out = []Action{ActionSignal, ActionCancel}
	case stepflow.Failed:
		out = []Action{ActionRedrive}
	case stepflow.NeedsAttention:
		out = []Action{ActionResolve, ActionCancel}
	}
	if !rec.Status.Terminal() || rec.Status == stepflow.Failed {
		if len(c.r.Flows()[rec.Flow()]) > 1 {
			out = append(out, ActionMigrate)
		}
	}
	return append(out, ActionDelete)
}

func failure(f *stepflow.Failure) *Failure {
	if f == nil {
		return nil
	}
	return &Failure{Path: f.Path, Kind: f.Kind, Message: f.Detail(), Attempt: f.Attempt, At: f.At}
}

func description(d *stepflow.Description) *Description {
	out := &Description{Version: d.Version, Status: d.Status.String(), Positions: append([]string{}, d.Positions...),
		Nodes: make([]Node, len(d.Nodes)), Tree: d.Tree}
	for i := range d.Nodes {
		out.Nodes[i] = node(&d.Nodes[i])
	}
	return out
}

func node(n *stepflow.NodeState) Node {
	out := Node{Path: n.Path, Name: n.Name, Depth: n.Depth, Kind: n.Kind, Detail: n.Detail, Status: n.Status.String(),
		Attempts: n.Attempts, Calls: n.Calls, FirstStart: n.FirstStart, LastEnd: n.LastEnd, LastError: failure(n.LastError),
		WakeAt: n.WakeAt, Waiting: n.Waiting, Branch: n.Branch, Needs: n.Needs, Chosen: n.Chosen,
		Description: n.Meta.Description, Tags: n.Meta.Tags}
	for _, it := range n.Items {
		out.Items = append(out.Items, Item{Index: it.Index, Status: it.Status.String()})
	}
	return out
}
