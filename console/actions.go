package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// change is one action with its arguments, however it was asked for.
type change struct {
	action  Action
	name    string // signal
	payload []byte // signal
	reason  string // cancel
	how     stepflow.Resolution
}

// newChange checks an action's arguments.
func newChange(action Action, name string, payload []byte, reason, how string) (change, error) {
	ch := change{action: action, name: name, payload: payload, reason: reason}
	switch action {
	case ActionSignal:
		if name == "" {
			return ch, badRequest("signal: a name is required")
		}
	case ActionResolve:
		r, err := resolution(how)
		if err != nil {
			return ch, err
		}
		ch.how = r
	case ActionCancel, ActionRedrive, ActionRetry, ActionMigrate, ActionDelete:
	default:
		return ch, badRequest("no such action %q: want one of %s", action, joinActions(ChangeActions))
	}
	return ch, nil
}

// isChange reports whether a names an action on one process.
func isChange(a Action) bool {
	switch a {
	case ActionSignal, ActionCancel, ActionRedrive, ActionResolve, ActionRetry, ActionMigrate, ActionDelete:
		return true
	}
	return false
}

func resolution(how string) (stepflow.Resolution, error) {
	switch how {
	case ResolveSucceeded:
		return stepflow.ResolveSucceeded, nil
	case ResolveFailed:
		return stepflow.ResolveFailed, nil
	case ResolveRetry:
		return stepflow.ResolveRetry, nil
	}
	return 0, badRequest("resolve: how %q: want %s, %s or %s", how, ResolveSucceeded, ResolveFailed, ResolveRetry)
}

func joinActions(as []Action) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// act runs a change on a process, through the runner's methods by id.
func (c *Console) act(ctx context.Context, rec *store.Record, ch change) error {
	// Whatever happens, the counts may have changed.
	defer c.cache.invalidate()
	// A process of a flow the runner does not host is refused by the
	// runner's methods (runner.ErrUnknownFlow); a delete is not.
	id := rec.ID
	switch ch.action {
	case ActionSignal:
		return c.r.Signal(ctx, id, ch.name, ch.payload)
	case ActionCancel:
		return c.r.Cancel(ctx, id, ch.reason)
	case ActionRedrive:
		return c.r.Redrive(ctx, id)
	case ActionResolve:
		return c.r.Resolve(ctx, id, ch.how)
	case ActionRetry:
		return c.r.Retry(ctx, id)
	case ActionMigrate:
		return c.r.Migrate(ctx, id)
	case ActionDelete:
		// Only at the revision shown or listed: a process that changed
		// since (a bulk delete of failed processes while one of them
		// is redriven) is kept.
		errs, err := c.r.DeleteRevisions(ctx, store.Deletion{ID: id, Revision: rec.Revision})
		if errors.Is(err, errors.ErrUnsupported) {
			var n int
			if n, err = c.r.Delete(ctx, id); err == nil && n == 0 {
				err = fmt.Errorf("delete %q: %w", id, store.ErrNotFound)
			}
		}
		if err == nil && errs != nil {
			err = errs[0]
		}
		return err
	}
	return badRequest("no such action %q", ch.action)
}

// prepare loads the process an action by id is about and asks Authorize;
// the record's flow is "" when it does not exist.
func (c *Console) prepare(req *http.Request, action Action) (store.Record, error) {
	if !isChange(action) {
		return store.Record{}, c.unknown(req, fmt.Sprintf("no such action %q: want one of %s", action, joinActions(ChangeActions)))
	}
	id := req.PathValue("id")
	rec, lerr := c.r.Store().Load(req.Context(), id)
	flow := ""
	if lerr == nil {
		flow = rec.Flow()
	}
	if err := c.authorize(req, Access{Action: action, Flow: flow, ID: id}); err != nil {
		return rec, err
	}
	return rec, lerr
}

// apiAction serves POST /api/processes/{id}/{action}.
func (c *Console) apiAction(w http.ResponseWriter, req *http.Request) {
	action := Action(req.PathValue("action"))
	rec, err := c.prepare(req, action)
	if err != nil {
		c.fail(w, req, err)
		return
	}
	var body struct {
		SignalRequest
		CancelRequest
		ResolveRequest
	}
	if err := readJSON(req, &body); err != nil {
		c.fail(w, req, err)
		return
	}
	ch, err := newChange(action, body.Name, payloadOf(body.Payload), body.Reason, body.How)
	if err == nil {
		err = c.act(req.Context(), &rec, ch)
	}
	if err != nil {
		c.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, ActionResponse{OK: true})
}

// countPage is how many records a bulk count lists at a time.
const countPage = 1000

// count counts the records sf matches, up to limit+1.
func (c *Console) count(ctx context.Context, sf store.Filter, limit int) (int, error) {
	n := 0
	sf.After, sf.Limit = "", min(countPage, limit+1)
	for {
		page, err := c.r.Store().List(ctx, sf)
		if err != nil {
			return n, err
		}
		n += len(page)
		if len(page) < sf.Limit || n > limit {
			return n, nil
		}
		sf.After = page[len(page)-1].ID
	}
}

// checkBulk checks a bulk request and returns its change and filter.
func checkBulk(b *BulkRequest) (change, store.Filter, error) {
	ch, err := newChange(b.Action, b.Name, payloadOf(b.Payload), b.Reason, b.How)
	if err != nil {
		return ch, store.Filter{}, err
	}
	sf, err := storeFilter(b.Filter)
	return ch, sf, err
}

// bulk counts the processes a bulk request matches and, when the request
// expects that count, runs its action on them, in batches of
// Options.BulkBatch listed from the store by id. Listing goes on from
// the last id acted on, so a process the action takes out of the filter
// (a redriven process is no longer failed) does not shift the pages;
// it stops after the expected count, so that a process matching only
// since the count is not touched.
func (c *Console) bulk(ctx context.Context, b *BulkRequest) (BulkResponse, error) {
	ch, sf, err := checkBulk(b)
	if err != nil {
		return BulkResponse{}, err
	}
	matched, err := c.count(ctx, sf, c.opts.BulkLimit)
	if err != nil {
		return BulkResponse{}, err
	}
	if matched > c.opts.BulkLimit {
		return BulkResponse{}, &apiError{status: http.StatusUnprocessableEntity, code: CodeTooMany, matched: &matched,
			msg: fmt.Sprintf("the filter matches more than %d processes, the most one bulk action may touch: narrow it", c.opts.BulkLimit)}
	}
	resp := BulkResponse{Action: b.Action, Matched: matched, Failed: []BulkFailure{}}
	if b.Expect == nil || b.DryRun {
		resp.DryRun = true
		return resp, nil
	}
	if *b.Expect != matched {
		return resp, &apiError{status: http.StatusConflict, code: CodeCountChanged, matched: &matched,
			msg: fmt.Sprintf("the filter now matches %d processes, not the %d expected: nothing was done; look again and confirm", matched, *b.Expect)}
	}
	done := 0
	sf.After, sf.Limit = "", c.opts.BulkBatch
	for done < matched {
		page, err := c.r.Store().List(ctx, sf)
		if err != nil {
			return resp, fmt.Errorf("bulk %s stopped after %d of %d processes: %w", b.Action, done, matched, err)
		}
		for i := range page {
			if done == matched {
				break
			}
			done++
			if err := c.act(ctx, &page[i], ch); err != nil {
				resp.Failed = append(resp.Failed, BulkFailure{ID: page[i].ID, Error: err.Error(), Code: classify(err).code})
			} else {
				resp.Succeeded++
			}
		}
		if len(page) < sf.Limit {
			break
		}
		sf.After = page[len(page)-1].ID
	}
	return resp, nil
}

// apiBulk serves POST /api/bulk.
func (c *Console) apiBulk(w http.ResponseWriter, req *http.Request) {
	var b BulkRequest
	err := readJSON(req, &b)
	b.Action = b.Action.Single()
	// Authorize hears of the bulk action asked for even when the body is
	// malformed: it is told of every request.
	if aerr := c.authorize(req, Access{Action: b.Action.Bulk(), Flow: accessFlow(b.Filter.Flow, b.Filter.Version)}); aerr != nil {
		c.fail(w, req, aerr)
		return
	}
	if err != nil {
		c.fail(w, req, err)
		return
	}
	resp, err := c.bulk(req.Context(), &b)
	if err != nil {
		c.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// payloadOf returns the bytes of a JSON payload; JSON null or nothing
// gives none.
func payloadOf(raw json.RawMessage) []byte {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}
