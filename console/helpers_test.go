package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/console"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// deploy is the data of the deploy flow of these tests.
type deploy struct {
	App     string   `json:"app"`
	Regions []string `json:"regions"`
	// Bad is a region whose rollout fails.
	Bad      string `json:"bad,omitempty"`
	Approver string `json:"approver,omitempty"`
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// deployFlow builds, checks in parallel, waits for approval, rolls out to
// each region, and notifies.
func deployFlow() *stepflow.Flow[deploy] {
	ok := func(context.Context, *deploy) error { return nil }
	return stepflow.Must(stepflow.NewWithOptions("deploy/v1", &stepflow.Options{Record: stepflow.DefaultRecord},
		stepflow.Annotate(combinators.Do("build", ok), stepflow.Meta{Description: "build the image", Tags: []string{"ci"}}),
		combinators.Parallel("checks", combinators.Do("lint", ok), combinators.Do("test", ok)),
		combinators.WaitSignal("approval", "approve", func(d *deploy, who []byte) error { d.Approver = string(who); return nil }),
		combinators.ForEach("regions", func(_ context.Context, d *deploy) ([]string, error) { return d.Regions, nil },
			combinators.Do("rollout", func(ctx context.Context, d *deploy) error {
				region, err := combinators.Item[string](ctx)
				if err != nil {
					return err
				}
				if region == d.Bad {
					return errors.New("rollout to " + region + " refused")
				}
				return nil
			})),
		combinators.Do("notify", ok),
	))
}

type bill struct {
	Amount int `json:"amount"`
}

func billingFlow() *stepflow.Flow[bill] {
	return stepflow.Must(stepflow.New("billing/v1", combinators.WaitSignal[bill]("invoice", "send", nil, combinators.Timeout(24*time.Hour))))
}

func payFlow() *stepflow.Flow[bill] {
	return stepflow.Must(stepflow.New("pay/v1",
		combinators.Do("charge", func(context.Context, *bill) error { return nil }, combinators.AtMostOnce(combinators.AskPerson))))
}

// fixture is a runner over a memory store holding processes of every
// kind the console shows.
type fixture struct {
	r       *runner.Runner
	s       *store.Memory
	deploys *runner.Processes[deploy]
	bills   *runner.Processes[bill]
	pays    *runner.Processes[bill]
}

// Ids of the fixture's processes.
const (
	idDone        = "deploy-done"
	idFailed      = "deploy-failed"
	idWaiting     = "deploy-waiting"
	idQuarantined = "deploy-quarantined"
	idAttention   = "pay-attention"
	idBill        = "bill-1"
	idStranger    = "stranger-1"
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	fx := &fixture{s: store.NewMemory()}
	opts := &runner.Options{Clock: &clock{t: t0}}

	// A payment whose intent was saved by a runner that went away, and a
	// process of a flow the console's runner does not host.
	gone, err := runner.New(fx.s, opts)
	require.NoError(t, err)
	gonePays, err := runner.Register(gone, payFlow())
	require.NoError(t, err)
	strangers, err := runner.Register(gone, stepflow.Must(stepflow.New("stranger/v1", combinators.WaitSignal[bill]("w", "go", nil))))
	require.NoError(t, err)
	require.NoError(t, gonePays.Start(ctx, idAttention, bill{Amount: 5}))
	require.NoError(t, strangers.Start(ctx, idStranger, bill{}))
	_, err = gone.Step(ctx)
	require.NoError(t, err)

	fx.r, err = runner.New(fx.s, opts)
	require.NoError(t, err)
	fx.deploys, err = runner.Register(fx.r, deployFlow())
	require.NoError(t, err)
	fx.bills, err = runner.Register(fx.r, billingFlow())
	require.NoError(t, err)
	fx.pays, err = runner.Register(fx.r, payFlow())
	require.NoError(t, err)

	regions := []string{"eu", "us", "ap"}
	_, err = fx.deploys.StartMany(ctx, []runner.NewProcess[deploy]{
		{ID: idDone, Data: deploy{App: "shop", Regions: regions}},
		{ID: idFailed, Data: deploy{App: "shop", Regions: regions, Bad: "us"}},
		{ID: idWaiting, Data: deploy{App: "cart", Regions: regions}},
		{ID: idQuarantined, Data: deploy{App: "auth", Regions: regions}},
	})
	require.NoError(t, err)
	require.NoError(t, fx.bills.Start(ctx, idBill, bill{Amount: 12}))
	fx.drain(t)
	for _, id := range []string{idDone, idFailed} {
		require.NoError(t, fx.deploys.Signal(ctx, id, "approve", []byte("ann")))
	}
	fx.drain(t)
	fx.quarantine(t, idQuarantined)
	return fx
}

func (fx *fixture) drain(t *testing.T) {
	t.Helper()
	for {
		n, err := fx.r.Step(t.Context())
		require.NoError(t, err)
		if n == 0 {
			return
		}
	}
}

// quarantine sets a process aside as a runner does, bytes kept.
func (fx *fixture) quarantine(t *testing.T, id string) {
	t.Helper()
	rec, err := fx.s.Load(t.Context(), id)
	require.NoError(t, err)
	errs, err := fx.s.Commit(t.Context(), "", []store.Write{{ID: id, Revision: rec.Revision, Status: rec.Status, Quarantine: "decode: test damage"}})
	require.NoError(t, err)
	require.Nil(t, errs)
}

func (fx *fixture) console(t testing.TB, opts *console.Options) *console.Console {
	t.Helper()
	c, err := console.New(fx.r, opts)
	require.NoError(t, err)
	return c
}

// response is what a handler answered.
type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request to h. A body that is not a string is sent as JSON.
func do(t testing.TB, h http.Handler, method, target string, body any, header ...string) response {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		require.NoError(t, err)
		r = bytes.NewReader(buf)
	}
	req := httptest.NewRequest(method, target, r)
	if _, ok := body.(string); ok && method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return response{status: w.Code, header: w.Header(), body: w.Body.String()}
}

// decode reads a JSON answer into v and returns v.
func decode[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(r.body), &v), r.body)
	return v
}

// byID returns the text inside the element with the given id, tags
// stripped, spaces collapsed and entities decoded; ok is false when
// there is no such element.
func byID(page, id string) (text string, ok bool) {
	re := regexp.MustCompile(`<(\w+)[^>]*\bid="` + regexp.QuoteMeta(id) + `"[^>]*>`)
	loc := re.FindStringSubmatchIndex(page)
	if loc == nil {
		return "", false
	}
	tag := page[loc[2]:loc[3]]
	rest := page[loc[1]:]
	// The element ends at the first closing tag of its kind at the same
	// depth.
	depth, i := 1, 0
	open := regexp.MustCompile(`<(/?)` + tag + `\b[^>]*>`)
	for depth > 0 {
		m := open.FindStringSubmatchIndex(rest[i:])
		if m == nil {
			i = len(rest)
			break
		}
		if rest[i+m[2]:i+m[3]] == "/" {
			depth--
		} else {
			depth++
		}
		if depth == 0 {
			rest = rest[:i+m[0]]
			break
		}
		i += m[1]
	}
	inner := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(rest, " ")
	return strings.Join(strings.Fields(html.UnescapeString(inner)), " "), true
}

// mustID is byID for an element that must be there.
func mustID(t testing.TB, page, id string) string {
	t.Helper()
	s, ok := byID(page, id)
	require.True(t, ok, "no element #%s in:\n%s", id, page)
	return s
}

// rowIDs lists the data-id of the rows of table#processes, in order.
func rowIDs(page string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<tr class="process[^"]*" data-id="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		out = append(out, html.UnescapeString(m[1]))
	}
	return out
}

// nodeClasses maps each diagram node's data-path to its class attribute.
func nodeClasses(page string) map[string]string {
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`<li class="(node [^"]*)" data-path="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		out[m[2]] = m[1]
	}
	return out
}

// recordOf is a quarantined record whose bytes are no state.
func recordOf(id, version, reason string) store.Record {
	return store.Record{ID: id, Version: version, Status: stepflow.Waiting, Blob: []byte("not a state"), Quarantine: reason}
}
