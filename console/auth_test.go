package console_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/console"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// recorder is an Authorize that allows everything and keeps what it was
// asked.
type recorder struct {
	mu  sync.Mutex
	got []console.Access
}

func (r *recorder) authorize(_ *http.Request, a console.Access) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, a)
	return nil
}

func (r *recorder) take() []console.Access {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// Authorize is asked, once per request, for what each request reads or
// changes: the action, the flow (from the filter, the version, or the
// process), and the process.
func TestAuthorizeIsAskedWhatEachRequestAsks(t *testing.T) {
	fx := newFixture(t)
	rec := &recorder{}
	c := fx.console(t, &console.Options{Actions: true, Authorize: rec.authorize})
	tests := []struct {
		method, target string
		body           any
		want           console.Access
	}{
		{"GET", "/api/processes", nil, console.Access{Action: console.ActionList}},
		{"GET", "/api/processes?flow=deploy&status=failed", nil, console.Access{Action: console.ActionList, Flow: "deploy"}},
		{"GET", "/api/processes?version=billing/v1", nil, console.Access{Action: console.ActionList, Flow: "billing"}},
		{"GET", "/api/processes?status=nonsense", nil, console.Access{Action: console.ActionList}},
		{"GET", "/api/counts", nil, console.Access{Action: console.ActionList}},
		{"GET", "/api/counts?flow=billing", nil, console.Access{Action: console.ActionList, Flow: "billing"}},
		{"GET", "/api/counts?version=billing/v1", nil, console.Access{Action: console.ActionList, Flow: "billing"}},
		{"GET", "/api/processes/" + idFailed, nil, console.Access{Action: console.ActionRead, Flow: "deploy", ID: idFailed}},
		{"GET", "/api/processes/" + idStranger, nil, console.Access{Action: console.ActionRead, Flow: "stranger", ID: idStranger}},
		{"GET", "/api/processes/nobody", nil, console.Access{Action: console.ActionRead, ID: "nobody"}},
		{"POST", "/api/processes/" + idBill + "/cancel", map[string]string{"reason": "x"}, console.Access{Action: console.ActionCancel, Flow: "billing", ID: idBill}},
		{"POST", "/api/processes/nobody/delete", nil, console.Access{Action: console.ActionDelete, ID: "nobody"}},
		{"POST", "/api/bulk", map[string]any{"action": "redrive", "filter": map[string]string{"flow": "deploy"}}, console.Access{Action: "bulk-redrive", Flow: "deploy"}},
		{"POST", "/api/bulk", map[string]any{"action": "retry", "filter": map[string]any{"quarantined": true}}, console.Access{Action: "bulk-retry"}},
		{"GET", "/", nil, console.Access{Action: console.ActionList}},
		{"GET", "/?flow=deploy", nil, console.Access{Action: console.ActionList, Flow: "deploy"}},
		{"GET", "/processes/" + idDone, nil, console.Access{Action: console.ActionRead, Flow: "deploy", ID: idDone}},
		{"POST", "/processes/" + idFailed + "/redrive", "", console.Access{Action: console.ActionRedrive, Flow: "deploy", ID: idFailed}},
		{"GET", "/bulk?action=cancel&version=deploy/v1", nil, console.Access{Action: "bulk-cancel", Flow: "deploy"}},
		{"POST", "/bulk", "action=cancel&flow=billing&expect=1", console.Access{Action: "bulk-cancel", Flow: "billing"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			do(t, c, tt.method, tt.target, tt.body)
			assert.Equal(t, []console.Access{tt.want}, rec.take())
		})
	}
}

// onlyDeploy lets a caller read the deploy flow and nothing else.
func onlyDeploy(_ *http.Request, a console.Access) error {
	if a.Flow != "deploy" {
		return errors.New("you may only see the deploy flow")
	}
	if a.Action.Changes() {
		return errors.New("you may only read")
	}
	return nil
}

// A denied request gets 403 with the error's text and nothing else: no
// process, no count, not even whether an id exists.
func TestAuthorizeDenialLeaksNothing(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, &console.Options{Actions: true, Authorize: onlyDeploy})
	secrets := []string{idBill, "billing", idStranger, idAttention, `"amount"`}
	denied := []struct {
		method, target string
		body           any
	}{
		{"GET", "/api/processes", nil},
		{"GET", "/api/processes?status=waiting", nil},
		{"GET", "/api/processes?flow=billing", nil},
		{"GET", "/api/processes?version=billing/v1", nil},
		{"GET", "/api/counts", nil},
		{"GET", "/api/processes/" + idBill, nil},
		{"GET", "/api/processes/nobody", nil},
		{"POST", "/api/processes/" + idBill + "/cancel", map[string]string{"reason": "x"}},
		{"POST", "/api/processes/" + idWaiting + "/cancel", map[string]string{"reason": "x"}},
		{"POST", "/api/bulk", map[string]any{"action": "cancel", "filter": map[string]string{"status": "waiting"}}},
		{"GET", "/", nil},
		{"GET", "/processes/" + idBill, nil},
		{"GET", "/bulk?action=cancel&status=waiting", nil},
	}
	for _, tt := range denied {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			r := do(t, c, tt.method, tt.target, tt.body)
			require.Equal(t, http.StatusForbidden, r.status, r.body)
			if strings.HasPrefix(tt.target, "/api/") {
				e := decode[console.ErrorResponse](t, r)
				assert.Equal(t, console.CodeForbidden, e.Code)
				assert.Contains(t, e.Error, "you may only")
			} else {
				assert.Contains(t, mustID(t, r.body, "error-message"), "you may only")
				_, ok := byID(r.body, "processes")
				assert.False(t, ok)
			}
			for _, s := range secrets {
				assert.NotContains(t, r.body, s)
			}
		})
	}
	// A process of another flow and an id that does not exist are
	// refused alike.
	a := do(t, c, "GET", "/api/processes/"+idBill, nil)
	b := do(t, c, "GET", "/api/processes/nobody", nil)
	assert.Equal(t, a.body, b.body)

	// What is allowed answers, with the deploy flow only.
	l := decode[console.ListResponse](t, do(t, c, "GET", "/api/processes?flow=deploy", nil))
	assert.Equal(t, []string{idDone, idFailed, idQuarantined, idWaiting}, ids(l))
	counts := decode[console.CountsResponse](t, do(t, c, "GET", "/api/counts?flow=deploy", nil))
	assert.Equal(t, 4, counts.Total)
	assert.NotContains(t, counts.ByVersion, "billing/v1")
	page := do(t, c, "GET", "/?flow=deploy", nil)
	require.Equal(t, http.StatusOK, page.status)
	for _, s := range secrets {
		assert.NotContains(t, page.body, s)
	}
	// And nothing was changed.
	st, err := fx.bills.State(t.Context(), idBill)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Waiting, st.Status)
	st2, err := fx.deploys.State(t.Context(), idWaiting)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Waiting, st2.Status)
}

// Every POST passes the cross-origin check: a browser's request from
// another site is refused, a same-origin one and a CLI's pass.
func TestCrossOriginPostsAreRefused(t *testing.T) {
	tests := []struct {
		name    string
		trusted []string
		header  []string
		allowed bool
	}{
		{"same-origin browser form", nil, []string{"Sec-Fetch-Site", "same-origin"}, true},
		{"CLI without browser headers", nil, nil, true},
		{"cross-site browser", nil, []string{"Sec-Fetch-Site", "cross-site"}, false},
		{"same-site, other origin", nil, []string{"Sec-Fetch-Site", "same-site"}, false},
		{"old browser, foreign Origin", nil, []string{"Origin", "https://evil.example"}, false},
		{"old browser, own Origin", nil, []string{"Origin", "http://example.com"}, true},
		{"trusted origin", []string{"https://ops.example"}, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://ops.example"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			c := fx.console(t, &console.Options{Actions: true, TrustedOrigins: tt.trusted})
			// httptest requests are for http://example.com.
			r := do(t, c, "POST", "/api/processes/"+idWaiting+"/cancel", map[string]string{"reason": "csrf?"}, tt.header...)
			form := do(t, c, "POST", "/processes/"+idBill+"/cancel", "reason=csrf%3F", tt.header...)
			billing, err := fx.bills.State(t.Context(), idBill)
			require.NoError(t, err)
			deploys, err := fx.deploys.State(t.Context(), idWaiting)
			require.NoError(t, err)
			if tt.allowed {
				assert.Equal(t, http.StatusOK, r.status, r.body)
				assert.Equal(t, http.StatusSeeOther, form.status, form.body)
				assert.Equal(t, stepflow.Canceled, deploys.Status)
				assert.Equal(t, stepflow.Canceled, billing.Status)
				return
			}
			assert.Equal(t, http.StatusForbidden, r.status)
			e := decode[console.ErrorResponse](t, r)
			assert.Equal(t, console.CodeForbidden, e.Code)
			assert.Contains(t, e.Error, "cross-origin")
			assert.Equal(t, http.StatusForbidden, form.status)
			assert.Contains(t, mustID(t, form.body, "error-message"), "cross-origin")
			assert.Equal(t, stepflow.Waiting, deploys.Status)
			assert.Equal(t, stepflow.Waiting, billing.Status)
		})
	}
	// Reads are never refused for their origin.
	fx := newFixture(t)
	c := fx.console(t, nil)
	r := do(t, c, "GET", "/api/processes", nil, "Sec-Fetch-Site", "cross-site")
	assert.Equal(t, http.StatusOK, r.status)
}
