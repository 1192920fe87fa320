package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/console"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// addFailed starts n more deploy processes that fail at regions/rollout.
func (fx *fixture) addFailed(t *testing.T, n int) []string {
	t.Helper()
	var ps []runner.NewProcess[deploy]
	var out []string
	for i := range n {
		id := fmt.Sprintf("deploy-f%02d", i)
		out = append(out, id)
		ps = append(ps, runner.NewProcess[deploy]{ID: id, Data: deploy{Regions: []string{"eu"}, Bad: "eu"}})
	}
	_, err := fx.deploys.StartMany(t.Context(), ps)
	require.NoError(t, err)
	fx.drain(t)
	for _, id := range out {
		require.NoError(t, fx.deploys.Signal(t.Context(), id, "approve", nil))
	}
	fx.drain(t)
	return out
}

func expect(n int) *int { return &n }

func (fx *fixture) status(t *testing.T, id string) stepflow.Status {
	t.Helper()
	rec, err := fx.s.Load(t.Context(), id)
	require.NoError(t, err)
	return rec.Status
}

func TestBulkDryRunCounts(t *testing.T) {
	fx := newFixture(t)
	fx.addFailed(t, 3)
	c := fx.console(t, &console.Options{Actions: true, BulkBatch: 2})
	tests := []struct {
		name string
		req  console.BulkRequest
		want int
	}{
		{"redrive every deploy process that failed at regions/rollout",
			console.BulkRequest{Action: "redrive", Filter: console.Filter{Flow: "deploy", Status: "failed", Position: "regions/rollout"}}, 4},
		{"cancel every waiting process of deploy/v1",
			console.BulkRequest{Action: "cancel", Filter: console.Filter{Version: "deploy/v1", Status: "waiting"}, Reason: "x"}, 1},
		{"retry every quarantined process",
			console.BulkRequest{Action: "retry", Filter: console.Filter{Quarantined: true}}, 1},
		{"expect with dry_run counts only",
			console.BulkRequest{Action: "delete", Filter: console.Filter{Flow: "deploy"}, Expect: expect(3), DryRun: true}, 7},
		{"nothing matches", console.BulkRequest{Action: "delete", Filter: console.Filter{IDPrefix: "zzz"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, http.MethodPost, "/api/bulk", tt.req)
			require.Equal(t, http.StatusOK, r.status, r.body)
			resp := decode[console.BulkResponse](t, r)
			assert.True(t, resp.DryRun)
			assert.Equal(t, tt.want, resp.Matched)
			assert.Zero(t, resp.Succeeded)
			assert.Empty(t, resp.Failed)
		})
	}
	// Nothing was done.
	assert.Equal(t, stepflow.Failed, fx.status(t, idFailed))
	_, err := fx.s.Load(t.Context(), idDone)
	require.NoError(t, err)
}

// A bulk action acts in batches on every process matched, and reports
// each one it failed on; processes it takes out of the filter do not
// shift its pages.
func TestBulkRunReportsPartialFailures(t *testing.T) {
	fx := newFixture(t)
	failed := append(fx.addFailed(t, 5), idFailed)
	c := fx.console(t, &console.Options{Actions: true, BulkBatch: 2})
	// Redrive every deploy process: the failed ones can be, the others
	// cannot.
	req := console.BulkRequest{Action: "redrive", Filter: console.Filter{Flow: "deploy"}}
	dry := decode[console.BulkResponse](t, do(t, c, http.MethodPost, "/api/bulk", req))
	require.Equal(t, 9, dry.Matched)
	req.Expect = expect(dry.Matched)
	r := do(t, c, http.MethodPost, "/api/bulk", req)
	require.Equal(t, http.StatusOK, r.status, r.body)
	resp := decode[console.BulkResponse](t, r)
	assert.False(t, resp.DryRun)
	assert.Equal(t, 9, resp.Matched)
	assert.Equal(t, 6, resp.Succeeded)
	codes := map[string]string{}
	for _, f := range resp.Failed {
		codes[f.ID] = f.Code
		assert.NotEmpty(t, f.Error)
	}
	assert.Equal(t, map[string]string{idDone: console.CodeConflict, idWaiting: console.CodeConflict, idQuarantined: console.CodeQuarantined}, codes)
	for _, id := range failed {
		assert.Equal(t, stepflow.Running, fx.status(t, id), id)
	}

	// The same on a filter the action empties: every failed process is
	// redriven, none skipped.
	fx2 := newFixture(t)
	failed = append(fx2.addFailed(t, 5), idFailed)
	c2 := fx2.console(t, &console.Options{Actions: true, BulkBatch: 2})
	resp = decode[console.BulkResponse](t, do(t, c2, http.MethodPost, "/api/bulk",
		console.BulkRequest{Action: "redrive", Filter: console.Filter{Status: "failed"}, Expect: expect(6)}))
	assert.Equal(t, 6, resp.Succeeded)
	assert.Empty(t, resp.Failed)
	for _, id := range failed {
		assert.Equal(t, stepflow.Running, fx2.status(t, id), id)
	}
}

func TestBulkActions(t *testing.T) {
	tests := []struct {
		name  string
		req   console.BulkRequest
		check func(t *testing.T, fx *fixture)
	}{
		{"cancel with a reason", console.BulkRequest{Action: "cancel", Filter: console.Filter{Version: "deploy/v1", Status: "waiting"}, Reason: "freeze"},
			func(t *testing.T, fx *fixture) {
				st, err := fx.deploys.State(t.Context(), idWaiting)
				require.NoError(t, err)
				assert.Equal(t, stepflow.Canceled, st.Status)
				assert.Equal(t, "freeze", st.Err.Message)
				assert.Equal(t, stepflow.Waiting, fx.status(t, idBill), "another flow")
			}},
		{"signal with a payload", console.BulkRequest{Action: "signal", Filter: console.Filter{Flow: "deploy", Status: "waiting"}, Name: "approve", Payload: []byte(`"ops"`)},
			func(t *testing.T, fx *fixture) {
				fx.drain(t)
				st, err := fx.deploys.State(t.Context(), idWaiting)
				require.NoError(t, err)
				assert.Equal(t, `"ops"`, st.Data.Approver)
			}},
		{"retry every quarantined process", console.BulkRequest{Action: "retry", Filter: console.Filter{Quarantined: true}},
			func(t *testing.T, fx *fixture) {
				rec, err := fx.s.Load(t.Context(), idQuarantined)
				require.NoError(t, err)
				assert.Empty(t, rec.Quarantine)
			}},
		{"resolve", console.BulkRequest{Action: "resolve", Filter: console.Filter{Status: "needs-attention"}, How: "retry"},
			func(t *testing.T, fx *fixture) {
				assert.Equal(t, stepflow.Running, fx.status(t, idAttention))
			}},
		{"delete ended processes", console.BulkRequest{Action: "bulk-delete", Filter: console.Filter{Flow: "deploy", Status: "done"}},
			func(t *testing.T, fx *fixture) {
				_, err := fx.s.Load(t.Context(), idDone)
				assert.Error(t, err)
				assert.Equal(t, stepflow.Failed, fx.status(t, idFailed))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			c := fx.console(t, &console.Options{Actions: true})
			dry := decode[console.BulkResponse](t, do(t, c, http.MethodPost, "/api/bulk", tt.req))
			require.Equal(t, 1, dry.Matched)
			tt.req.Expect = expect(1)
			resp := decode[console.BulkResponse](t, do(t, c, http.MethodPost, "/api/bulk", tt.req))
			require.Equal(t, 1, resp.Succeeded, "%+v", resp)
			tt.check(t, fx)
		})
	}
}

func TestBulkRefusals(t *testing.T) {
	fx := newFixture(t)
	fx.addFailed(t, 3)
	c := fx.console(t, &console.Options{Actions: true, BulkLimit: 5})
	tests := []struct {
		name    string
		req     console.BulkRequest
		status  int
		code    string
		matched *int
	}{
		{"the count changed", console.BulkRequest{Action: "redrive", Filter: console.Filter{Status: "failed"}, Expect: expect(3)},
			http.StatusConflict, console.CodeCountChanged, expect(4)},
		{"too many", console.BulkRequest{Action: "delete", Filter: console.Filter{Flow: "deploy"}},
			http.StatusUnprocessableEntity, console.CodeTooMany, expect(6)},
		{"no such action", console.BulkRequest{Action: "explode"}, http.StatusBadRequest, console.CodeBadRequest, nil},
		{"signal without a name", console.BulkRequest{Action: "signal"}, http.StatusBadRequest, console.CodeBadRequest, nil},
		{"resolve without how", console.BulkRequest{Action: "resolve"}, http.StatusBadRequest, console.CodeBadRequest, nil},
		{"bad status", console.BulkRequest{Action: "retry", Filter: console.Filter{Status: "asleep"}}, http.StatusBadRequest, console.CodeBadRequest, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, http.MethodPost, "/api/bulk", tt.req)
			assert.Equal(t, tt.status, r.status, r.body)
			e := decode[console.ErrorResponse](t, r)
			assert.Equal(t, tt.code, e.Code)
			assert.Equal(t, tt.matched, e.Matched)
		})
	}
	assert.Equal(t, stepflow.Failed, fx.status(t, idFailed), "nothing was done")
	r := do(t, c, http.MethodPost, "/api/bulk", `{"action":"retry","filter":{},"surprise":1}`, "Content-Type", "application/json")
	assert.Equal(t, http.StatusBadRequest, r.status)
}

// hidden returns the hidden fields of the form with the given id.
func hidden(t *testing.T, page, formID string) url.Values {
	t.Helper()
	m := regexp.MustCompile(`(?s)<form id="` + formID + `".*?</form>`).FindString(page)
	require.NotEmpty(t, m, "no form #%s", formID)
	v := url.Values{}
	for _, f := range regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`).FindAllStringSubmatch(m, -1) {
		v.Add(f[1], htmlUnescape(f[2]))
	}
	return v
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">", "&#43;", "+").Replace(s)
}

// The bulk pages: filter, count, confirm with the count, result.
func TestBulkPages(t *testing.T) {
	fx := newFixture(t)
	fx.addFailed(t, 2)
	c := fx.console(t, &console.Options{Actions: true})

	// The list page links to the bulk page with its filter.
	list := do(t, c, http.MethodGet, "/?flow=deploy&status=failed", nil).body
	assert.Contains(t, list, `id="bulk-link" href="./bulk?flow=deploy&amp;status=failed"`)

	count := do(t, c, http.MethodGet, "/bulk?action=redrive&flow=deploy&status=failed&position=regions", nil)
	require.Equal(t, http.StatusOK, count.status, count.body)
	assert.Equal(t, "3", mustID(t, count.body, "bulk-matched"))
	form := hidden(t, count.body, "bulk-confirm")
	assert.Equal(t, url.Values{"action": {"redrive"}, "flow": {"deploy"}, "status": {"failed"}, "position": {"regions"}, "expect": {"3"}}, form)
	assert.Equal(t, stepflow.Failed, fx.status(t, idFailed), "counting does nothing")

	// Someone redrives one meanwhile: the confirmation is refused, and
	// the new count offered.
	require.NoError(t, fx.r.Redrive(t.Context(), "deploy-f00"))
	stale := do(t, c, http.MethodPost, "/bulk", form.Encode())
	assert.Equal(t, http.StatusConflict, stale.status)
	assert.Contains(t, mustID(t, stale.body, "bulk-error"), "now matches 2 processes, not the 3 expected")
	assert.Equal(t, "2", hidden(t, stale.body, "bulk-confirm").Get("expect"))
	assert.Equal(t, stepflow.Failed, fx.status(t, idFailed), "nothing was done")

	// Confirmed with the right count, it acts and reports.
	done := do(t, c, http.MethodPost, "/bulk", hidden(t, stale.body, "bulk-confirm").Encode())
	require.Equal(t, http.StatusOK, done.status, done.body)
	assert.Equal(t, "2", mustID(t, done.body, "bulk-succeeded"))
	assert.Equal(t, "0", mustID(t, done.body, "bulk-failed"))
	assert.Equal(t, stepflow.Running, fx.status(t, idFailed))

	// Failures are listed with their reasons.
	form = hidden(t, do(t, c, http.MethodGet, "/bulk?action=redrive&flow=deploy&id_prefix=deploy-w", nil).body, "bulk-confirm")
	partial := do(t, c, http.MethodPost, "/bulk", form.Encode())
	require.Equal(t, http.StatusOK, partial.status)
	assert.Equal(t, "0", mustID(t, partial.body, "bulk-succeeded"))
	assert.Contains(t, mustID(t, partial.body, "bulk-failures"), idWaiting+" conflict")
	assert.Contains(t, mustID(t, partial.body, "bulk-failures"), "not failed")

	// A confirmation without its count is refused.
	r := do(t, c, http.MethodPost, "/bulk", "action=cancel&flow=deploy")
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.True(t, slices.Contains([]string{"expect: the count confirmed is missing"}, mustID(t, r.body, "bulk-error")))
}

// listThenChange is a store whose first List of limit pages is followed,
// before anything else, by a change to one of the processes it listed:
// an operator redriving a failed process while a bulk delete of the
// failed ones runs, between the page's listing and the deletes.
type listThenChange struct {
	store.Store
	limit  int
	change func()
}

func (s *listThenChange) List(ctx context.Context, f store.Filter) ([]store.Record, error) {
	recs, err := s.Store.List(ctx, f)
	if f.Limit == s.limit && s.change != nil {
		s.change()
		s.change = nil
	}
	return recs, err
}

func (s *listThenChange) DeleteRevisions(ctx context.Context, ds []store.Deletion) ([]error, error) {
	return s.Store.(store.RevisionDeleter).DeleteRevisions(ctx, ds)
}

// TestBulkDeleteSparesWhatChanged: a bulk delete removes a listed process
// only if it has not changed since it was listed; the one redriven in
// between is kept, running, and reported as a conflict.
func TestBulkDeleteSparesWhatChanged(t *testing.T) {
	fx := newFixture(t)
	failed := append(fx.addFailed(t, 3), idFailed)
	slices.Sort(failed)
	racy := &listThenChange{Store: fx.s, limit: 7} // the bulk pages, not the count's
	r, err := runner.New(racy, &runner.Options{Clock: &clock{t: t0}})
	require.NoError(t, err)
	_, err = runner.Register(r, deployFlow())
	require.NoError(t, err)
	c, err := console.New(r, &console.Options{Actions: true, BulkBatch: 7})
	require.NoError(t, err)
	redriven := failed[1]
	racy.change = func() { require.NoError(t, fx.deploys.Redrive(t.Context(), redriven)) }

	req := console.BulkRequest{Action: "bulk-delete", Filter: console.Filter{Flow: "deploy", Status: "failed"}, Expect: expect(len(failed))}
	resp := decode[console.BulkResponse](t, do(t, c, http.MethodPost, "/api/bulk", req))
	assert.Equal(t, len(failed)-1, resp.Succeeded)
	require.Len(t, resp.Failed, 1)
	assert.Equal(t, redriven, resp.Failed[0].ID)
	assert.Equal(t, console.CodeConflict, resp.Failed[0].Code)
	assert.Equal(t, stepflow.Running, fx.status(t, redriven), "redriven after the listing: kept")
	for _, id := range failed {
		if id == redriven {
			continue
		}
		_, err := fx.s.Load(t.Context(), id)
		assert.ErrorIs(t, err, store.ErrNotFound, id)
	}
}
