package console

// This file holds the types of the console's JSON API, for the console's
// own pages and for other clients (a CLI) that import them. It imports the
// standard library only: a client compiles neither the runner nor a store.

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Action names what a request asks: to list or read processes, or to
// change them. The actions that change one process are also the last
// segment of POST /api/processes/{id}/{action}, and the "action" of a
// bulk request.
type Action string

// The actions. Bulk runs of the changing ones are asked for as "bulk-"
// followed by the action (see Action.Bulk).
const (
	ActionList    Action = "list"    // list processes, or count them
	ActionRead    Action = "read"    // read one process
	ActionSignal  Action = "signal"  // deliver a signal
	ActionCancel  Action = "cancel"  // cancel
	ActionRedrive Action = "redrive" // resume a failed process at its failed step
	ActionResolve Action = "resolve" // say what an at-most-once step did
	ActionRetry   Action = "retry"   // put a quarantined process back in service
	ActionMigrate Action = "migrate" // move to the latest version now
	ActionDelete  Action = "delete"  // remove
)

// BulkPrefix starts the name of a bulk action: "bulk-cancel".
const BulkPrefix = "bulk-"

// ChangeActions lists the actions that change processes, in the order
// pages show them.
var ChangeActions = []Action{ActionSignal, ActionCancel, ActionRedrive, ActionResolve, ActionRetry, ActionMigrate, ActionDelete}

// Bulk returns the bulk form of a changing action: "cancel" gives
// "bulk-cancel".
func (a Action) Bulk() Action { return BulkPrefix + a }

// IsBulk reports whether a is a bulk action.
func (a Action) IsBulk() bool { return len(a) > len(BulkPrefix) && a[:len(BulkPrefix)] == BulkPrefix }

// Single returns the action a bulk action runs on each process, and a
// itself for the others.
func (a Action) Single() Action {
	if a.IsBulk() {
		return a[len(BulkPrefix):]
	}
	return a
}

// Changes reports whether the action changes processes, alone or in
// bulk: everything but list and read.
func (a Action) Changes() bool {
	s := a.Single()
	return s != ActionList && s != ActionRead && s != ""
}

// Resolutions of POST /api/processes/{id}/resolve: what became of the
// at-most-once step of a process that needs attention.
const (
	ResolveSucceeded = "succeeded" // its effect happened: continue after it
	ResolveFailed    = "failed"    // it did not happen and must not be retried: the step fails
	ResolveRetry     = "retry"     // it did not happen: run it again
)

// Error codes of ErrorResponse.Code.
const (
	CodeBadRequest      = "bad_request"      // 400: a malformed request
	CodeForbidden       = "forbidden"        // 403: Options.Authorize refused, or a cross-origin POST
	CodeActionsDisabled = "actions_disabled" // 403: the console was mounted without Options.Actions
	CodeNotFound        = "not_found"        // 404: no such process (or page)
	CodeConflict        = "conflict"         // 409: the process's state does not allow the action
	CodeQuarantined     = "quarantined"      // 409: the process is quarantined; retry, migrate or delete it
	CodeCountChanged    = "count_changed"    // 409: a bulk action's filter no longer matches the expected count
	CodeUnknownFlow     = "unknown_flow"     // 422: the process's flow is not registered with the runner
	CodeTooMany         = "too_many"         // 422: a bulk filter matches more processes than Options.BulkLimit
	CodeInternal        = "internal"         // 500: the store failed, or something unexpected
)

// ErrorResponse is the body of every error of the JSON API.
type ErrorResponse struct {
	// Error says what went wrong, for people.
	Error string `json:"error"`
	// Code classifies it, for programs: one of the Code constants.
	Code string `json:"code"`
	// Matched is, for CodeCountChanged, how many processes the filter
	// matches now; for CodeTooMany, Options.BulkLimit plus one (it
	// matches at least that many).
	Matched *int `json:"matched,omitempty"`
}

// Filter selects processes: the query parameters of GET /api/processes
// (with after and limit), and the filter of a bulk request. Its
// conditions all apply; an empty field does not filter.
type Filter struct {
	// Flow keeps processes of this flow (any version), Version those of
	// this exact version ("deploy/v2").
	Flow    string `json:"flow,omitempty"`
	Version string `json:"version,omitempty"`
	// Status keeps healthy processes with this status: running, waiting,
	// done, failed, canceled or needs-attention.
	Status string `json:"status,omitempty"`
	// Quarantined keeps only quarantined processes.
	Quarantined bool `json:"quarantined,omitempty"`
	// IDPrefix keeps processes whose id starts with it.
	IDPrefix string `json:"id_prefix,omitempty"`
	// Position keeps processes standing at this node path or below it
	// ("shouldDeploy" matches "shouldDeploy/rollout"): where a failed
	// process failed, where a waiting one waits.
	Position string `json:"position,omitempty"`
	// ErrorKind keeps processes whose failure has this kind ("error",
	// "timeout", "panic"...).
	ErrorKind string `json:"error_kind,omitempty"`
}

// Query returns the filter as the query parameters of GET
// /api/processes (and of the list and bulk pages).
func (f Filter) Query() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("flow", f.Flow)
	set("version", f.Version)
	set("status", f.Status)
	if f.Quarantined {
		q.Set("quarantined", "true")
	}
	set("id_prefix", f.IDPrefix)
	set("position", f.Position)
	set("error_kind", f.ErrorKind)
	return q
}

// FilterFromQuery reads a filter from query parameters, as Query writes
// them. It does not check the status name (the console does).
func FilterFromQuery(q url.Values) (Filter, error) {
	f := Filter{
		Flow: q.Get("flow"), Version: q.Get("version"), Status: q.Get("status"),
		IDPrefix: q.Get("id_prefix"), Position: q.Get("position"), ErrorKind: q.Get("error_kind"),
	}
	if s := q.Get("quarantined"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return f, fmt.Errorf("quarantined=%q: want true or false", s)
		}
		f.Quarantined = b
	}
	return f, nil
}

// ProcessSummary is one process in a list: its stored record, without
// its state.
type ProcessSummary struct {
	ID string `json:"id"`
	// Flow is the part of Version before '/'.
	Flow    string `json:"flow"`
	Version string `json:"version"`
	// Status is the stored status; a quarantined process keeps the one
	// it had.
	Status string `json:"status"`
	// Position is where a failed process failed, or where a waiting one
	// waits (a node path); "" for running and ended ones.
	Position string `json:"position"`
	// ErrorKind is the kind of a failed process's failure.
	ErrorKind string `json:"error_kind"`
	// Quarantine is why the process was set aside; "" for a healthy one.
	Quarantine string `json:"quarantine"`
	// Due is when the process next runs (the end of its lease while a
	// runner holds it); absent when it never does.
	Due time.Time `json:"due,omitzero"`
	// Updated is when the record was last written.
	Updated time.Time `json:"updated"`
	// Revision counts the record's writes.
	Revision uint64 `json:"revision"`
	// Owner is the runner holding its lease, "" when none does.
	Owner string `json:"owner"`
}

// ListResponse is the body of GET /api/processes: one page of processes,
// ordered by id.
type ListResponse struct {
	Processes []ProcessSummary `json:"processes"`
	// Next is the cursor of the next page (its "after" parameter), ""
	// on the last page.
	Next string `json:"next"`
}

// CountsResponse is the body of GET /api/counts: how many processes the
// store holds, of the flow and version asked for (query parameters flow
// and version; the other parameters of a Filter are ignored).
type CountsResponse struct {
	// Total counts every process, quarantined ones included.
	Total int `json:"total"`
	// ByStatus counts healthy processes by status name.
	ByStatus map[string]int `json:"by_status"`
	// Quarantined counts quarantined processes, whatever their status.
	Quarantined int `json:"quarantined"`
	// ByVersion has the same counts per flow version.
	ByVersion map[string]VersionCounts `json:"by_version"`
	// AsOf is when the store counted them: the console keeps counts for
	// up to Options.CountsMaxAge (counting is a scan of the whole store
	// on some stores), and counts again after its own actions.
	AsOf time.Time `json:"as_of"`
}

// VersionCounts counts the processes of one flow version.
type VersionCounts struct {
	Total       int            `json:"total"`
	ByStatus    map[string]int `json:"by_status"`
	Quarantined int            `json:"quarantined"`
}

// ProcessDetail is the body of GET /api/processes/{id}: the record and
// what its state holds.
type ProcessDetail struct {
	ProcessSummary
	// Steps counts the Apply calls that advanced the process.
	Steps uint64 `json:"steps"`
	// Why explains in one sentence why the process is where it is.
	Why string `json:"why"`
	// Error is the failure that matters now (a failed, canceled or stuck
	// process's, or one a node is handling), null if none.
	Error *Failure `json:"error"`
	// WakeAt is when a waiting process next does something.
	WakeAt time.Time `json:"wake_at,omitzero"`
	// Positions are the paths of the nodes active now.
	Positions []string `json:"positions"`
	// Intent is the path of an at-most-once step whose outcome is not
	// known (a process that needs attention).
	Intent string `json:"intent,omitempty"`
	// Data is the process's data as JSON. DataError says why it is
	// missing when the data cannot be written as JSON.
	Data      json.RawMessage `json:"data,omitempty"`
	DataError string          `json:"data_error,omitempty"`
	// History lists the most recent completed steps, oldest first
	// (empty unless the flow keeps a record).
	History []HistoryEntry `json:"history"`
	// Signals are signals delivered and not yet consumed.
	Signals []PendingSignal `json:"signals"`
	// Description is the flow with each node's status in this process;
	// absent when the state could not be read (see Problem).
	Description *Description `json:"description,omitempty"`
	// Problem says why the state could not be read or described: bytes
	// that do not decode, a flow or version the runner does not know.
	Problem string `json:"problem,omitempty"`
	// Actions lists the actions that apply to the process now and that
	// the console allows (empty when Options.Actions is off).
	Actions []Action `json:"actions"`
}

// Failure is a recorded error: what failed, where, and how.
type Failure struct {
	// Path of the node that failed.
	Path string `json:"path"`
	// Kind classifies it: "error", "panic", "timeout", "canceled"...
	Kind string `json:"kind"`
	// Message says what went wrong, without repeating the path
	// (stepflow.Failure.Detail).
	Message string `json:"message"`
	// Attempt at which it failed (1 for the first try), 0 if unknown.
	Attempt uint32    `json:"attempt,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// HistoryEntry is one completed step or decision.
type HistoryEntry struct {
	// Seq is the process's step count when it completed.
	Seq  uint64 `json:"seq"`
	Path string `json:"path"`
	// Outcome is "ok", "true", "false", "error", "panic", "timeout" or a
	// branch name.
	Outcome string    `json:"outcome"`
	Attempt uint32    `json:"attempt,omitempty"`
	Start   time.Time `json:"start,omitzero"`
	End     time.Time `json:"end,omitzero"`
	Error   string    `json:"error,omitempty"`
}

// PendingSignal is a signal delivered and not yet consumed. Its payload
// is Payload when the bytes are JSON, PayloadBase64 otherwise.
type PendingSignal struct {
	Name          string          `json:"name"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 []byte          `json:"payload_base64,omitempty"`
	At            time.Time       `json:"at,omitzero"`
}

// Description is a flow as one process sees it: every node, in flow
// order (depth first), with where it stands.
type Description struct {
	Version string `json:"version"`
	Status  string `json:"status"`
	// Positions are the paths of the nodes active now.
	Positions []string `json:"positions"`
	Nodes     []Node   `json:"nodes"`
	// Tree is the same as indented text.
	Tree string `json:"tree"`
}

// Node is one node of a flow in one process.
type Node struct {
	// Path is the node's path ("rollout/canary"); Name its last segment.
	Path  string `json:"path"`
	Name  string `json:"name"`
	Depth int    `json:"depth"`
	// Kind is the combinator ("do", "sequence", "parallel", "foreach",
	// "wait"...), Detail its policy in words.
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
	// Status: pending, active, waiting, done, skipped, failed or
	// canceled.
	Status string `json:"status"`
	// Attempts counts the node's tries or rounds; Calls its entries in
	// the history.
	Attempts   uint32    `json:"attempts,omitempty"`
	Calls      int       `json:"calls,omitempty"`
	FirstStart time.Time `json:"first_start,omitzero"`
	LastEnd    time.Time `json:"last_end,omitzero"`
	LastError  *Failure  `json:"last_error,omitempty"`
	// WakeAt is when a waiting node next does something.
	WakeAt time.Time `json:"wake_at,omitzero"`
	// Waiting says what an active or waiting node waits for or does.
	Waiting string `json:"waiting,omitempty"`
	// Branch is the branch of its parent (a case or switch) the node
	// belongs to; Chosen the branch a case or switch took.
	Branch string `json:"branch,omitempty"`
	Chosen string `json:"chosen,omitempty"`
	// Needs names the siblings the node starts after, when its parent
	// runs its children by their dependencies (a graph).
	Needs []string `json:"needs,omitempty"`
	// Items are a ForEach's items, once it has its list.
	Items []Item `json:"items,omitempty"`
	// Description and Tags are what the flow's author attached to the
	// node.
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
}

// Item is one item of a ForEach.
type Item struct {
	Index  int    `json:"index"`
	Status string `json:"status"`
}

// SignalRequest is the body of POST /api/processes/{id}/signal.
type SignalRequest struct {
	Name string `json:"name"`
	// Payload is any JSON value; its bytes, as sent, are the signal's
	// payload.
	Payload json.RawMessage `json:"payload,omitempty"`
}

// CancelRequest is the body of POST /api/processes/{id}/cancel.
type CancelRequest struct {
	Reason string `json:"reason"`
}

// ResolveRequest is the body of POST /api/processes/{id}/resolve.
type ResolveRequest struct {
	// How: ResolveSucceeded, ResolveFailed or ResolveRetry.
	How string `json:"how"`
}

// ActionResponse is the body of a successful action on one process.
type ActionResponse struct {
	OK bool `json:"ok"`
}

// BulkRequest is the body of POST /api/bulk: one action on every
// process a filter matches.
type BulkRequest struct {
	// Action is one of ChangeActions.
	Action Action `json:"action"`
	Filter Filter `json:"filter"`
	// Reason of a cancel; Name and Payload of a signal; How of a
	// resolve.
	Reason  string          `json:"reason,omitempty"`
	Name    string          `json:"name,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
	How     string          `json:"how,omitempty"`
	// Expect is the number of processes the caller saw matching (the
	// Matched of a dry run). Without it, or with DryRun, the console only
	// counts; with it, the console acts if the filter still matches
	// exactly that many processes, and refuses with CodeCountChanged
	// otherwise.
	Expect *int `json:"expect,omitempty"`
	DryRun bool `json:"dry_run,omitempty"`
}

// BulkResponse is the body of a successful POST /api/bulk.
type BulkResponse struct {
	Action Action `json:"action"`
	// DryRun is true when nothing was done: only Matched is set.
	DryRun bool `json:"dry_run"`
	// Matched is how many processes the filter matched.
	Matched int `json:"matched"`
	// Succeeded counts the processes the action succeeded on; Failed
	// lists the others, with why.
	Succeeded int           `json:"succeeded"`
	Failed    []BulkFailure `json:"failed"`
}

// BulkFailure is one process a bulk action failed on.
type BulkFailure struct {
	ID    string `json:"id"`
	Error string `json:"error"`
	Code  string `json:"code"`
}
