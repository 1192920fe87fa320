package console_test

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/console"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

func ids(l console.ListResponse) []string {
	var out []string
	for _, p := range l.Processes {
		out = append(out, p.ID)
	}
	return out
}

func TestListFilters(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, nil)
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{idBill, idDone, idFailed, idQuarantined, idWaiting, idAttention, idStranger}},
		{"flow=deploy", []string{idDone, idFailed, idQuarantined, idWaiting}},
		{"version=billing/v1", []string{idBill}},
		{"status=waiting", []string{idBill, idWaiting, idStranger}}, // quarantined ones are not "waiting"
		{"status=failed", []string{idFailed}},
		{"status=done", []string{idDone}},
		{"status=needs-attention", []string{idAttention}},
		{"status=canceled", nil},
		{"quarantined=true", []string{idQuarantined}},
		{"id_prefix=deploy-w", []string{idWaiting}},
		{"position=regions", []string{idFailed}}, // below it: regions/rollout
		{"position=regions/rollout", []string{idFailed}},
		{"position=approval", []string{idQuarantined, idWaiting}},
		{"position=approv", nil}, // a path, not a string prefix
		{"error_kind=error", []string{idFailed}},
		{"error_kind=unknown-outcome", []string{idAttention}},
		{"flow=deploy&status=waiting&position=approval", []string{idWaiting}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := do(t, c, http.MethodGet, "/api/processes?"+tt.query, nil)
			require.Equal(t, http.StatusOK, r.status, r.body)
			assert.Equal(t, "application/json; charset=utf-8", r.header.Get("Content-Type"))
			l := decode[console.ListResponse](t, r)
			assert.Equal(t, tt.want, ids(l))
			assert.Empty(t, l.Next)
		})
	}
}

func TestListSummaryFields(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, nil)
	l := decode[console.ListResponse](t, do(t, c, http.MethodGet, "/api/processes?id_prefix=deploy-",
		nil))
	byID := map[string]console.ProcessSummary{}
	for _, p := range l.Processes {
		byID[p.ID] = p
	}
	f := byID[idFailed]
	assert.Equal(t, console.ProcessSummary{ID: idFailed, Flow: "deploy", Version: "deploy/v1", Status: "failed",
		Position: "regions/rollout", ErrorKind: "error", Updated: t0, Revision: f.Revision}, f)
	assert.Positive(t, f.Revision)
	q := byID[idQuarantined]
	assert.Equal(t, "decode: test damage", q.Quarantine)
	assert.Equal(t, "waiting", q.Status)
	assert.True(t, q.Due.IsZero(), "a quarantined process is never due")
	// The raw JSON names every field as documented.
	r := do(t, c, http.MethodGet, "/api/processes?id_prefix="+idFailed, nil)
	for _, k := range []string{`"id"`, `"flow"`, `"version"`, `"status"`, `"position"`, `"error_kind"`, `"quarantine"`, `"updated"`, `"revision"`, `"owner"`, `"next"`} {
		assert.Contains(t, r.body, k)
	}
}

func TestListPaging(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, &console.Options{PageSize: 3})
	var all []string
	after := ""
	for page := 0; ; page++ {
		require.Less(t, page, 10, "paging does not end")
		r := do(t, c, http.MethodGet, "/api/processes?after="+url.QueryEscape(after), nil)
		require.Equal(t, http.StatusOK, r.status, r.body)
		l := decode[console.ListResponse](t, r)
		require.LessOrEqual(t, len(l.Processes), 3)
		all = append(all, ids(l)...)
		if l.Next == "" {
			break
		}
		assert.Equal(t, l.Processes[len(l.Processes)-1].ID, l.Next)
		after = l.Next
	}
	assert.Equal(t, []string{idBill, idDone, idFailed, idQuarantined, idWaiting, idAttention, idStranger}, all)
	assert.True(t, slices.IsSorted(all))

	// limit overrides the page size; a page that ends exactly at the last
	// process says there is no next one.
	l := decode[console.ListResponse](t, do(t, c, http.MethodGet, "/api/processes?flow=deploy&limit=4", nil))
	assert.Len(t, l.Processes, 4)
	assert.Empty(t, l.Next)
	l = decode[console.ListResponse](t, do(t, c, http.MethodGet, "/api/processes?flow=deploy&limit=2", nil))
	assert.Equal(t, idFailed, l.Next)
}

func TestListBadRequests(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, nil)
	for _, q := range []string{"status=sleeping", "limit=0", "limit=1001", "limit=x", "quarantined=perhaps"} {
		t.Run(q, func(t *testing.T) {
			r := do(t, c, http.MethodGet, "/api/processes?"+q, nil)
			assert.Equal(t, http.StatusBadRequest, r.status)
			e := decode[console.ErrorResponse](t, r)
			assert.Equal(t, console.CodeBadRequest, e.Code)
			assert.NotEmpty(t, e.Error)
		})
	}
}

func TestCounts(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, nil)
	all := decode[console.CountsResponse](t, do(t, c, http.MethodGet, "/api/counts", nil))
	assert.Equal(t, 7, all.Total)
	assert.Equal(t, map[string]int{"waiting": 3, "done": 1, "failed": 1, "needs-attention": 1}, all.ByStatus)
	assert.Equal(t, 1, all.Quarantined)
	assert.Equal(t, console.VersionCounts{Total: 4, Quarantined: 1, ByStatus: map[string]int{"waiting": 1, "done": 1, "failed": 1}},
		all.ByVersion["deploy/v1"])
	assert.Equal(t, 1, all.ByVersion["stranger/v1"].Total, "versions no runner hosts count too")

	deploys := decode[console.CountsResponse](t, do(t, c, http.MethodGet, "/api/counts?flow=deploy", nil))
	assert.Equal(t, 4, deploys.Total)
	assert.Equal(t, []string{"deploy/v1"}, slices.Collect(maps.Keys(deploys.ByVersion)))
	assert.Equal(t, 1, deploys.ByStatus["waiting"])

	pays := decode[console.CountsResponse](t, do(t, c, http.MethodGet, "/api/counts?version=pay/v1&status=done", nil))
	assert.Equal(t, 1, pays.Total, "by version; the status is no filter of counts")
	assert.Equal(t, map[string]int{"needs-attention": 1}, pays.ByStatus)
}

func nodeOf(t *testing.T, d console.ProcessDetail, path string) console.Node {
	t.Helper()
	require.NotNil(t, d.Description)
	for _, n := range d.Description.Nodes {
		if n.Path == path {
			return n
		}
	}
	t.Fatalf("no node %s", path)
	return console.Node{}
}

func TestProcessDetail(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, &console.Options{Actions: true})
	require.NoError(t, fx.deploys.Signal(t.Context(), idWaiting, "nudge", []byte("not json")))
	tests := []struct {
		id    string
		check func(t *testing.T, d console.ProcessDetail)
	}{
		{idDone, func(t *testing.T, d console.ProcessDetail) {
			assert.Equal(t, "done", d.Status)
			assert.Equal(t, "the flow completed", d.Why)
			assert.Nil(t, d.Error)
			assert.JSONEq(t, `{"app":"shop","regions":["eu","us","ap"],"approver":"ann"}`, string(d.Data))
			assert.NotEmpty(t, d.History)
			n := nodeOf(t, d, "build")
			assert.Equal(t, "done", n.Status)
			assert.Equal(t, "build the image", n.Description)
			assert.Equal(t, []string{"ci"}, n.Tags)
			assert.Equal(t, 1, n.Calls)
			assert.False(t, n.FirstStart.IsZero())
			assert.Equal(t, []console.Action{console.ActionDelete}, d.Actions)
		}},
		{idFailed, func(t *testing.T, d console.ProcessDetail) {
			assert.Equal(t, "failed", d.Status)
			require.NotNil(t, d.Error)
			assert.Equal(t, "rollout to us refused", d.Error.Message)
			assert.Equal(t, "regions/[1]/rollout", d.Error.Path)
			assert.Contains(t, d.Why, "failed at regions/[1]/rollout")
			regions := nodeOf(t, d, "regions")
			assert.Equal(t, "failed", regions.Status)
			require.Len(t, regions.Items, 3)
			assert.Equal(t, []string{"done", "failed", "pending"}, []string{regions.Items[0].Status, regions.Items[1].Status, regions.Items[2].Status})
			assert.NotNil(t, nodeOf(t, d, "regions/rollout").LastError)
			assert.Equal(t, []console.Action{console.ActionRedrive, console.ActionDelete}, d.Actions)
			last := d.History[len(d.History)-1]
			assert.Equal(t, console.HistoryEntry{Seq: last.Seq, Path: "regions/rollout", Outcome: "error", Attempt: 1,
				Start: t0, End: t0, Error: "rollout to us refused"}, last)
		}},
		{idWaiting, func(t *testing.T, d console.ProcessDetail) {
			assert.Equal(t, "running", d.Status, "a signal makes it runnable")
			assert.Equal(t, []string{"approval"}, d.Positions)
			assert.Equal(t, "active", nodeOf(t, d, "approval").Status, "runnable: the signal is to be looked at")
			assert.Equal(t, "pending", nodeOf(t, d, "notify").Status)
			require.Len(t, d.Signals, 1)
			assert.Equal(t, "nudge", d.Signals[0].Name)
			assert.Nil(t, d.Signals[0].Payload)
			assert.Equal(t, []byte("not json"), d.Signals[0].PayloadBase64)
			assert.Equal(t, []console.Action{console.ActionSignal, console.ActionCancel, console.ActionDelete}, d.Actions)
		}},
		{idQuarantined, func(t *testing.T, d console.ProcessDetail) {
			assert.Equal(t, "decode: test damage", d.Quarantine)
			assert.Contains(t, d.Why, "quarantined: decode: test damage")
			assert.NotNil(t, d.Description, "its bytes still decode")
			assert.JSONEq(t, `{"app":"auth","regions":["eu","us","ap"]}`, string(d.Data))
			assert.Equal(t, []console.Action{console.ActionRetry, console.ActionMigrate, console.ActionDelete}, d.Actions)
		}},
		{idAttention, func(t *testing.T, d console.ProcessDetail) {
			assert.Equal(t, "needs-attention", d.Status)
			assert.Equal(t, "charge", d.Intent)
			assert.Equal(t, []console.Action{console.ActionResolve, console.ActionCancel, console.ActionDelete}, d.Actions)
		}},
		{idStranger, func(t *testing.T, d console.ProcessDetail) {
			assert.Equal(t, "stranger/v1", d.Version)
			assert.Contains(t, d.Problem, `flow "stranger" is not registered`)
			assert.Nil(t, d.Description)
			assert.Nil(t, d.Data)
			assert.Equal(t, []console.Action{console.ActionDelete}, d.Actions)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			r := do(t, c, http.MethodGet, "/api/processes/"+tt.id, nil)
			require.Equal(t, http.StatusOK, r.status, r.body)
			d := decode[console.ProcessDetail](t, r)
			assert.Equal(t, tt.id, d.ID)
			tt.check(t, d)
		})
	}
	r := do(t, c, http.MethodGet, "/api/processes/nobody", nil)
	assert.Equal(t, http.StatusNotFound, r.status)
	assert.Equal(t, console.CodeNotFound, decode[console.ErrorResponse](t, r).Code)
}

// Undecodable bytes are shown as a problem, with the record.
func TestProcessDetailOfUnreadableBytes(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, nil)
	require.NoError(t, fx.s.Create(t.Context(), recordOf("garbage", "deploy/v1", "bad bytes")))
	d := decode[console.ProcessDetail](t, do(t, c, http.MethodGet, "/api/processes/garbage", nil))
	assert.Equal(t, "bad bytes", d.Quarantine)
	assert.NotEmpty(t, d.Problem)
	assert.Nil(t, d.Description)
	assert.Empty(t, d.Actions, "actions are off")
}

func TestActions(t *testing.T) {
	ctx := t.Context()
	tests := []struct {
		name   string
		id     string
		action string
		body   any
		check  func(t *testing.T, fx *fixture)
	}{
		{"signal", idWaiting, "signal", map[string]any{"name": "approve", "payload": map[string]string{"by": "bob"}},
			func(t *testing.T, fx *fixture) {
				fx.drain(t)
				st, err := fx.deploys.State(ctx, idWaiting)
				require.NoError(t, err)
				assert.Equal(t, stepflow.Done, st.Status)
				assert.Equal(t, `{"by":"bob"}`, st.Data.Approver, "the payload's JSON bytes, as sent")
			}},
		{"cancel", idWaiting, "cancel", map[string]any{"reason": "release withdrawn"},
			func(t *testing.T, fx *fixture) {
				st, err := fx.deploys.State(ctx, idWaiting)
				require.NoError(t, err)
				assert.Equal(t, stepflow.Canceled, st.Status)
				assert.Equal(t, "release withdrawn", st.Err.Message)
			}},
		{"redrive", idFailed, "redrive", nil,
			func(t *testing.T, fx *fixture) {
				st, err := fx.deploys.State(ctx, idFailed)
				require.NoError(t, err)
				assert.Equal(t, stepflow.Running, st.Status)
			}},
		{"resolve", idAttention, "resolve", map[string]any{"how": "succeeded"},
			func(t *testing.T, fx *fixture) {
				fx.drain(t)
				st, err := fx.pays.State(ctx, idAttention)
				require.NoError(t, err)
				assert.Equal(t, stepflow.Done, st.Status)
			}},
		{"retry", idQuarantined, "retry", nil,
			func(t *testing.T, fx *fixture) {
				rec, err := fx.s.Load(ctx, idQuarantined)
				require.NoError(t, err)
				assert.Empty(t, rec.Quarantine)
			}},
		{"migrate", idQuarantined, "migrate", nil,
			func(t *testing.T, fx *fixture) {
				rec, err := fx.s.Load(ctx, idQuarantined)
				require.NoError(t, err)
				assert.Empty(t, rec.Quarantine)
			}},
		{"delete", idDone, "delete", nil,
			func(t *testing.T, fx *fixture) {
				_, err := fx.s.Load(ctx, idDone)
				assert.Error(t, err)
			}},
		{"delete a process of a flow not hosted", idStranger, "delete", nil,
			func(t *testing.T, fx *fixture) {
				_, err := fx.s.Load(ctx, idStranger)
				assert.Error(t, err)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			c := fx.console(t, &console.Options{Actions: true})
			r := do(t, c, http.MethodPost, "/api/processes/"+tt.id+"/"+tt.action, tt.body)
			require.Equal(t, http.StatusOK, r.status, r.body)
			assert.Equal(t, console.ActionResponse{OK: true}, decode[console.ActionResponse](t, r))
			tt.check(t, fx)
		})
	}
}

func TestActionErrors(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, &console.Options{Actions: true})
	tests := []struct {
		name   string
		path   string
		body   any
		status int
		code   string
	}{
		{"no such process", "/api/processes/nobody/cancel", nil, http.StatusNotFound, console.CodeNotFound},
		{"redrive a waiting process", "/api/processes/" + idWaiting + "/redrive", nil, http.StatusConflict, console.CodeConflict},
		{"signal a done process", "/api/processes/" + idDone + "/signal", map[string]string{"name": "x"}, http.StatusConflict, console.CodeConflict},
		{"retry a healthy process", "/api/processes/" + idWaiting + "/retry", nil, http.StatusConflict, console.CodeConflict},
		{"signal a quarantined process", "/api/processes/" + idQuarantined + "/signal", map[string]string{"name": "x"}, http.StatusConflict, console.CodeQuarantined},
		{"cancel a process of a flow not hosted", "/api/processes/" + idStranger + "/cancel", nil, http.StatusUnprocessableEntity, console.CodeUnknownFlow},
		{"signal without a name", "/api/processes/" + idWaiting + "/signal", map[string]string{}, http.StatusBadRequest, console.CodeBadRequest},
		{"resolve without how", "/api/processes/" + idAttention + "/resolve", map[string]string{"how": "maybe"}, http.StatusBadRequest, console.CodeBadRequest},
		{"unknown field", "/api/processes/" + idWaiting + "/cancel", map[string]string{"why": "x"}, http.StatusBadRequest, console.CodeBadRequest},
		{"not JSON", "/api/processes/" + idWaiting + "/cancel", "reason=x", http.StatusBadRequest, console.CodeBadRequest},
		{"no such action", "/api/processes/" + idWaiting + "/explode", nil, http.StatusNotFound, console.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, http.MethodPost, tt.path, tt.body)
			assert.Equal(t, tt.status, r.status, r.body)
			e := decode[console.ErrorResponse](t, r)
			assert.Equal(t, tt.code, e.Code)
			assert.NotEmpty(t, e.Error)
		})
	}
	// None of them changed anything.
	st, err := fx.deploys.State(t.Context(), idWaiting)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Waiting, st.Status)
}

func TestActionsOffRefuseEveryPost(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, nil)
	posts := []struct {
		path string
		body any
	}{
		{"/api/processes/" + idWaiting + "/cancel", map[string]string{"reason": "x"}},
		{"/api/processes/" + idFailed + "/redrive", nil},
		{"/api/processes/" + idDone + "/delete", nil},
		{"/api/processes/nobody/delete", nil},
		{"/api/bulk", map[string]any{"action": "cancel", "filter": map[string]string{"flow": "deploy"}}},
		{"/api/processes/" + idWaiting + "/explode", nil},
		{"/api/nowhere", nil},
	}
	for _, p := range posts {
		r := do(t, c, http.MethodPost, p.path, p.body)
		assert.Equal(t, http.StatusForbidden, r.status, p.path)
		e := decode[console.ErrorResponse](t, r)
		assert.Equal(t, console.CodeActionsDisabled, e.Code, p.path)
		assert.Contains(t, e.Error, "actions are disabled")
	}
	for _, p := range []string{"/processes/" + idWaiting + "/cancel", "/bulk"} {
		r := do(t, c, http.MethodPost, p, "reason=x&action=cancel&expect=1&confirm=yes")
		assert.Equal(t, http.StatusForbidden, r.status, p)
		assert.Contains(t, mustID(t, r.body, "error-message"), "actions are disabled")
	}
	// Nothing changed, and the pages offer no action.
	st, err := fx.deploys.State(t.Context(), idWaiting)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Waiting, st.Status)
	_, err = fx.s.Load(t.Context(), idDone)
	require.NoError(t, err)
	page := do(t, c, http.MethodGet, "/processes/"+idWaiting, nil).body
	_, ok := byID(page, "actions")
	assert.False(t, ok, "no action forms")
	assert.Empty(t, decode[console.ProcessDetail](t, do(t, c, http.MethodGet, "/api/processes/"+idWaiting, nil)).Actions)
}

func TestNewRefusesBadOptions(t *testing.T) {
	fx := newFixture(t)
	for _, o := range []console.Options{{PageSize: -1}, {PageSize: 5000}, {BulkBatch: -1}, {BulkLimit: -2}, {TrustedOrigins: []string{"not an origin"}}} {
		_, err := console.New(fx.r, &o)
		assert.Error(t, err, "%+v", o)
	}
	_, err := console.New(nil, nil)
	assert.Error(t, err)
}

// Counts are kept for Options.CountsMaxAge, and counted again after the
// console's own actions.
func TestCountsAreKept(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, &console.Options{Actions: true, CountsMaxAge: time.Hour})
	first := decode[console.CountsResponse](t, do(t, c, http.MethodGet, "/api/counts", nil))
	assert.Equal(t, 3, first.ByStatus["waiting"])
	assert.False(t, first.AsOf.IsZero())

	// A change made elsewhere shows only once the counts are old...
	require.NoError(t, fx.deploys.Cancel(t.Context(), idWaiting, "elsewhere"))
	kept := decode[console.CountsResponse](t, do(t, c, http.MethodGet, "/api/counts?flow=deploy", nil))
	assert.Equal(t, 1, kept.ByStatus["waiting"], "the kept counts")
	assert.Equal(t, first.AsOf, kept.AsOf)
	page := do(t, c, http.MethodGet, "/", nil).body
	assert.Equal(t, "waiting 3", mustID(t, page, "count-waiting"))
	assert.Equal(t, first.AsOf.Format(time.RFC3339), mustID(t, page, "counts-as-of"))

	// ... or once the console itself has acted.
	require.Equal(t, http.StatusOK, do(t, c, http.MethodPost, "/api/processes/"+idBill+"/cancel", map[string]string{"reason": "x"}).status)
	after := decode[console.CountsResponse](t, do(t, c, http.MethodGet, "/api/counts", nil))
	assert.Equal(t, 1, after.ByStatus["waiting"], "both cancellations counted")
	assert.Equal(t, 2, after.ByStatus["canceled"])

	// A negative age counts at every request.
	fresh := fx.console(t, &console.Options{CountsMaxAge: -1})
	decode[console.CountsResponse](t, do(t, fresh, http.MethodGet, "/api/counts", nil))
	require.NoError(t, fx.deploys.Redrive(t.Context(), idFailed))
	assert.Zero(t, decode[console.CountsResponse](t, do(t, fresh, http.MethodGet, "/api/counts", nil)).ByStatus["failed"])
}
