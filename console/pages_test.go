package console_test

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/console"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// href returns the unescaped href of the element with the given id.
func href(t testing.TB, page, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*href="([^"]*)"`).FindStringSubmatch(page)
	require.NotNil(t, m, "no link #%s", id)
	return html.UnescapeString(m[1])
}

// resolve resolves a relative link found on the page at base.
func resolve(t testing.TB, base, ref string) string {
	t.Helper()
	b, err := url.Parse(base)
	require.NoError(t, err)
	r, err := url.Parse(ref)
	require.NoError(t, err)
	return b.ResolveReference(r).String()
}

func TestListPage(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, &console.Options{PageSize: 2})
	r := do(t, c, http.MethodGet, "/?flow=deploy", nil)
	require.Equal(t, http.StatusOK, r.status, r.body)
	assert.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"))
	page := r.body

	// Counts of the flow, each a link to its processes.
	assert.Equal(t, "4", mustID(t, page, "count-total"))
	assert.Equal(t, "failed 1", mustID(t, page, "count-failed"))
	assert.Equal(t, "waiting 1", mustID(t, page, "count-waiting"))
	assert.Equal(t, "quarantined 1", mustID(t, page, "count-quarantined"))
	assert.Equal(t, "./?flow=deploy&status=failed", href(t, page, "count-failed"))
	assert.Equal(t, "./?flow=deploy&quarantined=true", href(t, page, "count-quarantined"))

	// The first page, and a link to the next.
	assert.Equal(t, []string{idDone, idFailed}, rowIDs(page))
	assert.Contains(t, page, `<a href="./processes/deploy-done">deploy-done</a>`)
	next := href(t, page, "next-page")
	assert.Equal(t, "./?after=deploy-failed&flow=deploy", next)
	_, ok := byID(page, "first-page")
	assert.False(t, ok)
	page2 := do(t, c, http.MethodGet, resolve(t, "/?flow=deploy", next), nil).body
	assert.Equal(t, []string{idQuarantined, idWaiting}, rowIDs(page2))
	assert.Equal(t, "./?flow=deploy", href(t, page2, "first-page"))
	_, ok = byID(page2, "next-page")
	assert.False(t, ok, "the last page")
	assert.Contains(t, page2, `<span class="badge quarantined" title="decode: test damage">quarantined</span>`)
	// A limit other than the page size is kept by every link.
	page3 := do(t, c, http.MethodGet, "/?flow=deploy&limit=3", nil).body
	assert.Len(t, rowIDs(page3), 3)
	assert.Equal(t, "./?after=deploy-quarantined&flow=deploy&limit=3", href(t, page3, "next-page"))
	assert.Equal(t, "./?flow=deploy&limit=3&status=done", href(t, page3, "count-done"))

	// Each filter of the form, kept in the form.
	filtered := do(t, c, http.MethodGet, "/?status=failed&position=regions&error_kind=error", nil).body
	assert.Equal(t, []string{idFailed}, rowIDs(filtered))
	assert.Contains(t, filtered, `<option value="failed" selected>failed</option>`)
	assert.Contains(t, filtered, `name="position" value="regions"`)
	assert.Contains(t, mustID(t, filtered, "count-failed"), "failed 1")
	assert.Contains(t, filtered, `id="count-failed" class="count count-failed current"`)
	for q, want := range map[string][]string{
		"id_prefix=deploy-q": {idQuarantined},
		"quarantined=true":   {idQuarantined},
		"version=pay/v1":     {idAttention},
		"status=canceled":    nil,
	} {
		assert.Equal(t, want, rowIDs(do(t, c, http.MethodGet, "/?"+q, nil).body), q)
	}
	empty := do(t, c, http.MethodGet, "/?status=canceled", nil).body
	assert.Equal(t, "No process matches.", mustID(t, empty, "no-processes"))

	bad := do(t, c, http.MethodGet, "/?status=asleep", nil)
	assert.Equal(t, http.StatusBadRequest, bad.status)
	assert.Contains(t, mustID(t, bad.body, "error-message"), `status "asleep"`)
}

func TestProcessPages(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, &console.Options{Actions: true})
	tests := []struct {
		id    string
		check func(t *testing.T, page string)
	}{
		{idDone, func(t *testing.T, page string) {
			assert.Equal(t, "done", mustID(t, page, "process-status"))
			assert.Equal(t, "the flow completed", mustID(t, page, "process-why"))
			_, hasErr := byID(page, "process-error")
			assert.False(t, hasErr)
			nodes := nodeClasses(page)
			assert.Contains(t, nodes["build"], "node-done")
			assert.Contains(t, nodes["notify"], "node-done")
			assert.Contains(t, mustID(t, page, "history"), "regions/rollout ok")
			assert.Contains(t, mustID(t, page, "process-data"), `"approver": "ann"`, "pretty JSON")
			assert.Equal(t, []string{"action-delete"}, forms(page))
		}},
		{idFailed, func(t *testing.T, page string) {
			assert.Equal(t, "failed", mustID(t, page, "process-status"))
			assert.Equal(t, "error at regions/[1]/rollout : rollout to us refused (attempt 1), 2030-01-02T03:04:05Z", mustID(t, page, "process-error"))
			nodes := nodeClasses(page)
			assert.Equal(t, "node node-failed kind-foreach current foreach", nodes["regions"], "failed and where it stopped")
			assert.Equal(t, "node node-done kind-parallel parallel", nodes["checks"])
			assert.Equal(t, "node node-pending kind-do", nodes["notify"])
			// ForEach items, parallel branches side by side, done subtrees folded.
			assert.Contains(t, page, `<span class="item item-failed" title="item 1: failed"></span>`)
			assert.Regexp(t, `data-path="checks"[^>]*>\s*<details>\s*<summary>`, page, "a done subtree is folded")
			assert.Regexp(t, `data-path="regions"[^>]*>\s*<details open>`, page, "a failed one is open")
			assert.Regexp(t, `(?s)data-path="checks".*?<ul class="branches">`, page)
			assert.Contains(t, mustID(t, page, "legend"), "failed")
			assert.Equal(t, []string{"action-redrive", "action-delete"}, forms(page))
		}},
		{idWaiting, func(t *testing.T, page string) {
			assert.Equal(t, "waiting", mustID(t, page, "process-status"))
			assert.Equal(t, `waiting for approval (signal "approve")`, mustID(t, page, "process-why"))
			assert.Equal(t, "node node-waiting kind-signal current", nodeClasses(page)["approval"])
			assert.Equal(t, []string{"action-signal", "action-cancel", "action-delete"}, forms(page))
		}},
		{idBill, func(t *testing.T, page string) {
			assert.Equal(t, "2030-01-03T03:04:05Z", mustID(t, page, "process-wake"), "a wait with a timeout")
			assert.Contains(t, mustID(t, page, "process-data"), `"amount": 12`)
			assert.Equal(t, "none", mustID(t, page, "signals")[len("name payload at "):])
		}},
		{idQuarantined, func(t *testing.T, page string) {
			assert.Equal(t, "decode: test damage", mustID(t, page, "process-quarantine"))
			assert.Contains(t, mustID(t, page, "process-why"), "quarantined")
			mustID(t, page, "diagram")
			assert.Equal(t, []string{"action-retry", "action-migrate", "action-delete"}, forms(page))
		}},
		{idAttention, func(t *testing.T, page string) {
			assert.Equal(t, "needs-attention", mustID(t, page, "process-status"))
			assert.Equal(t, "charge : its outcome is unknown", mustID(t, page, "process-intent"))
			assert.Equal(t, []string{"action-cancel", "action-resolve", "action-delete"}, forms(page))
		}},
		{idStranger, func(t *testing.T, page string) {
			assert.Contains(t, mustID(t, page, "process-problem"), "not registered")
			mustID(t, page, "no-diagram")
			assert.Equal(t, []string{"action-delete"}, forms(page))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			r := do(t, c, http.MethodGet, "/processes/"+tt.id, nil)
			require.Equal(t, http.StatusOK, r.status, r.body)
			assert.Equal(t, tt.id, mustID(t, r.body, "process-id"))
			tt.check(t, r.body)
		})
	}
	r := do(t, c, http.MethodGet, "/processes/nobody", nil)
	assert.Equal(t, http.StatusNotFound, r.status)
	assert.Equal(t, "404 Not Found", mustID(t, r.body, "error-status"))
}

// forms lists the ids of the action forms of a process page.
func forms(page string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<form id="(action-[a-z]+)"`).FindAllStringSubmatch(page, -1) {
		out = append(out, m[1])
	}
	return out
}

// The action forms post, then send the browser back to the page, which
// says what was done; a refused action shows why.
func TestActionForms(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, &console.Options{Actions: true})
	ctx := t.Context()

	r := do(t, c, http.MethodPost, "/processes/"+idWaiting+"/signal", "name=approve&payload=carol")
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	assert.Equal(t, "../deploy-waiting?done=signal", r.header.Get("Location"))
	page := do(t, c, http.MethodGet, resolve(t, "/processes/"+idWaiting+"/signal", r.header.Get("Location")), nil).body
	assert.Equal(t, "Done: signal.", mustID(t, page, "flash"))
	fx.drain(t)
	st, err := fx.deploys.State(ctx, idWaiting)
	require.NoError(t, err)
	assert.Equal(t, "carol", st.Data.Approver, "the payload as typed")

	r = do(t, c, http.MethodPost, "/processes/"+idBill+"/cancel", "reason=duplicate")
	require.Equal(t, http.StatusSeeOther, r.status)
	bill, err := fx.bills.State(ctx, idBill)
	require.NoError(t, err)
	assert.Equal(t, stepflow.Canceled, bill.Status)

	r = do(t, c, http.MethodPost, "/processes/"+idAttention+"/resolve", "how=failed")
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	fx.drain(t)
	assert.Equal(t, stepflow.Failed, fx.status(t, idAttention))

	r = do(t, c, http.MethodPost, "/processes/"+idFailed+"/redrive", "")
	require.Equal(t, http.StatusSeeOther, r.status)
	assert.Equal(t, stepflow.Running, fx.status(t, idFailed))

	// Refused: the page again, with the reason and a fitting status.
	r = do(t, c, http.MethodPost, "/processes/"+idDone+"/redrive", "")
	assert.Equal(t, http.StatusConflict, r.status)
	assert.Contains(t, mustID(t, r.body, "action-error"), "not failed")
	assert.Equal(t, "done", mustID(t, r.body, "process-status"))
	assert.Contains(t, r.body, `action="../../processes/deploy-done/delete"`, "forms are relative to the page posted to")

	// Deleting asks for the box to be ticked, then goes back to the list.
	r = do(t, c, http.MethodPost, "/processes/"+idDone+"/delete", "")
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.Contains(t, mustID(t, r.body, "action-error"), "tick the box")
	r = do(t, c, http.MethodPost, "/processes/"+idDone+"/delete", "confirm=yes")
	require.Equal(t, http.StatusSeeOther, r.status)
	assert.Equal(t, "../../?deleted=deploy-done", r.header.Get("Location"))
	list := do(t, c, http.MethodGet, "/?deleted=deploy-done", nil).body
	assert.Equal(t, "Deleted deploy-done.", mustID(t, list, "flash"))
	assert.NotContains(t, rowIDs(list), idDone)

	r = do(t, c, http.MethodPost, "/processes/nobody/cancel", "reason=x")
	assert.Equal(t, http.StatusNotFound, r.status)
}

// The console works at the root of a server and under a prefix, through a
// real server: every link and form of its pages leads where it should,
// ids with a slash included.
func TestMountedUnderAPrefix(t *testing.T) {
	fx := newFixture(t)
	_, err := fx.deploys.StartMany(t.Context(), []runner.NewProcess[deploy]{{ID: "team/a b", Data: deploy{App: "x"}}})
	require.NoError(t, err)
	fx.drain(t)
	c := fx.console(t, &console.Options{Actions: true})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	mounts := map[string]func() http.Handler{
		"": func() http.Handler { return c },
		"/ops/console/": func() http.Handler {
			m := http.NewServeMux()
			m.Handle("/ops/console/", http.StripPrefix("/ops/console", c))
			return m
		},
		"/ops/": func() http.Handler {
			m := http.NewServeMux()
			m.Handle("/ops/", http.StripPrefix("/ops/", c))
			return m
		},
	}
	for prefix, handler := range mounts {
		t.Run("at "+prefix, func(t *testing.T) {
			srv := httptest.NewServer(handler())
			defer srv.Close()
			base := srv.URL + prefix
			if prefix == "" {
				base += "/"
			}
			get := func(u string) (int, string) {
				resp, err := noRedirect.Get(u)
				require.NoError(t, err)
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				return resp.StatusCode, string(b)
			}
			status, list := get(base + "?id_prefix=team")
			require.Equal(t, http.StatusOK, status, list)
			link := regexp.MustCompile(`<td class="id"><a href="([^"]*)">`).FindStringSubmatch(list)
			require.NotNil(t, link)
			procURL := resolve(t, base, html.UnescapeString(link[1]))
			assert.Equal(t, base+"processes/team%2Fa%20b", procURL)
			status, page := get(procURL)
			require.Equal(t, http.StatusOK, status, page)
			assert.Equal(t, "team/a b", mustID(t, page, "process-id"))
			assert.Equal(t, base, resolve(t, procURL, href(t, page, "home")))

			// Its cancel form, posted as a browser on the same origin does.
			action := regexp.MustCompile(`<form id="action-cancel" method="post" action="([^"]*)"`).FindStringSubmatch(page)
			require.NotNil(t, action)
			postURL := resolve(t, procURL, html.UnescapeString(action[1]))
			assert.Equal(t, base+"processes/team%2Fa%20b/cancel", postURL)
			req, err := http.NewRequest(http.MethodPost, postURL, strings.NewReader("reason=moved"))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			resp, err := noRedirect.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			assert.Equal(t, procURL+"?done=cancel", resolve(t, postURL, resp.Header.Get("Location")))
			status, page = get(procURL + "?done=cancel")
			require.Equal(t, http.StatusOK, status)
			assert.Equal(t, "canceled", mustID(t, page, "process-status"))

			// The JSON API under the same mount.
			status, body := get(base + "api/processes/team%2Fa%20b")
			require.Equal(t, http.StatusOK, status, body)
			assert.Contains(t, body, `"id":"team/a b"`)

			// Start it again for the next mount.
			_, err = fx.r.Delete(t.Context(), "team/a b")
			require.NoError(t, err)
			_, err = fx.deploys.StartMany(t.Context(), []runner.NewProcess[deploy]{{ID: "team/a b", Data: deploy{App: "x"}}})
			require.NoError(t, err)
			fx.drain(t)
		})
	}
}

// Pages load nothing from elsewhere and run no script; unknown paths are
// 404 in the form the client expects.
func TestPagesAreSelfContained(t *testing.T) {
	fx := newFixture(t)
	c := fx.console(t, &console.Options{Actions: true, Title: "deploys"})
	for _, p := range []string{"/", "/processes/" + idFailed, "/bulk?action=retry&quarantined=true", "/nope"} {
		r := do(t, c, http.MethodGet, p, nil)
		assert.NotContains(t, r.body, "<script", p)
		assert.NotRegexp(t, `(src|href)="(https?:)?//`, r.body, p)
		assert.Contains(t, r.header.Get("Content-Security-Policy"), "default-src 'none'", p)
		assert.Contains(t, r.body, "<title>", p)
		assert.Contains(t, r.body, "· deploys</title>", p)
		assert.Equal(t, "no-store", r.header.Get("Cache-Control"))
	}
	r := do(t, c, http.MethodGet, "/nope", nil)
	assert.Equal(t, http.StatusNotFound, r.status)
	r = do(t, c, http.MethodGet, "/api/nope", nil)
	assert.Equal(t, http.StatusNotFound, r.status)
	assert.Equal(t, console.CodeNotFound, decode[console.ErrorResponse](t, r).Code)
}

// A flow of hundreds of nodes stays readable: every node is drawn, and
// only the path to where the process stands is unfolded.
func TestDiagramOfALargeFlow(t *testing.T) {
	ctx := t.Context()
	ok := func(context.Context, *bill) error { return nil }
	var stages []stepflow.Node[bill]
	for i := range 40 {
		var steps []stepflow.Node[bill]
		for j := range 8 {
			steps = append(steps, combinators.Do(fmt.Sprintf("s%d", j), ok))
		}
		if i == 25 {
			steps = append(steps, combinators.WaitSignal[bill]("gate", "open", nil))
		}
		stages = append(stages, combinators.Sequence(fmt.Sprintf("stage%02d", i), steps...))
	}
	flow := stepflow.Must(stepflow.New("big/v1", stages...))
	require.Greater(t, len(flow.Nodes()), 350)
	r, err := runner.New(store.NewMemory(), &runner.Options{Clock: &clock{t: t0}})
	require.NoError(t, err)
	ps, err := runner.Register(r, flow)
	require.NoError(t, err)
	require.NoError(t, ps.Start(ctx, "big", bill{}))
	for n := 1; n > 0; {
		n, err = r.Step(ctx)
		require.NoError(t, err)
	}
	c, err := console.New(r, nil)
	require.NoError(t, err)
	start := time.Now()
	page := do(t, c, http.MethodGet, "/processes/big", nil).body
	t.Logf("page of %d nodes: %d bytes in %s", len(flow.Nodes()), len(page), time.Since(start))
	nodes := nodeClasses(page)
	assert.Len(t, nodes, len(flow.Nodes()), "every node is drawn")
	assert.Equal(t, "node node-waiting kind-signal current", nodes["stage25/gate"])
	assert.Contains(t, nodes["stage03"], "node-done")
	assert.Contains(t, nodes["stage30/s1"], "node-pending")
	assert.Equal(t, 1, strings.Count(page, "<details open>"), "only the stage holding the position is unfolded")
	assert.Equal(t, 40, strings.Count(page, "<details"))
}
