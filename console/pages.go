package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The pages and their style sheet are embedded: the console fetches
// nothing from the network and runs no script.
//
//go:embed assets
var assets embed.FS

// pages holds the parsed templates.
type pages struct {
	t   map[string]*template.Template
	csp string
}

func newPages() (*pages, error) {
	css, err := assets.ReadFile("assets/console.css")
	if err != nil {
		return nil, err
	}
	// The style sheet is inlined in every page, so that no request but
	// the page itself is needed (and authorized); the Content Security
	// Policy allows exactly that sheet and nothing else.
	sum := sha256.Sum256(css)
	p := &pages{t: map[string]*template.Template{},
		csp: "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
			"img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"}
	funcs := template.FuncMap{
		"css":        func() template.CSS { return template.CSS(css) },
		"time":       fmtTime,
		"pathEscape": url.PathEscape,
		"statusText": http.StatusText,
		"has":        func(as []Action, a Action) bool { return slices.Contains(as, a) },
	}
	base, err := template.New("layout").Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/filter.html", "assets/diagram.html")
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"list", "process", "bulk", "error"} {
		t, err := base.Clone()
		if err == nil {
			_, err = t.ParseFS(assets, "assets/"+name+".html")
		}
		if err != nil {
			return nil, fmt.Errorf("stepflow/console: template %s: %w", name, err)
		}
		p.t[name] = t
	}
	return p, nil
}

// render writes a page. It renders into a buffer first, so that a
// template error gives a clean 500 rather than half a page.
func (p *pages) render(w http.ResponseWriter, req *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := p.t[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		http.Error(w, "stepflow/console: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", p.csp)
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	if req.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// page is what every page has.
type page struct {
	Title   string
	Console string
	// Root is the console's root relative to the page ("./", "../"):
	// every link is relative, so the console works wherever it is
	// mounted.
	Root      string
	ActionsOn bool
}

func (c *Console) page(req *http.Request, title string) page {
	return page{Title: title, Console: c.opts.Title, Root: rootOf(req), ActionsOn: c.opts.Actions}
}

// rootOf returns the relative path from the page of req to the console's
// root, by the path the browser sees (escaped, so that an id holding
// "%2F" counts as one segment).
func rootOf(req *http.Request) string {
	n := strings.Count(req.URL.EscapedPath(), "/") - 1
	if n <= 0 {
		return "./"
	}
	return strings.Repeat("../", n)
}

// redirect answers with 303 See Other to a location relative to the
// request's URL. http.Redirect would make it absolute from the path the
// console sees, which under http.StripPrefix is not the browser's.
func redirect(w http.ResponseWriter, location string) {
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusSeeOther)
}

type errorPage struct {
	page
	Status  int
	Code    string
	Message string
}

// countLink is one count of the list page, linking to its processes.
type countLink struct {
	Key     string // status name, or "quarantined"
	N       int
	Href    string
	Current bool
}

type listPage struct {
	page
	Filter     Filter
	Limit      int
	Statuses   []string
	Flows      []string
	Versions   []string
	Counts     CountsResponse
	CountLinks []countLink
	AllHref    string
	List       ListResponse
	NextHref   string
	FirstHref  string
	BulkHref   string
	Deleted    string
}

// listPage serves GET /: the filter form, the counts, one page of
// processes.
func (c *Console) listPage(w http.ResponseWriter, req *http.Request) {
	lq, ok := c.readList(w, req)
	if !ok {
		return
	}
	ctx := req.Context()
	counts, err := c.counts(ctx, lq.Flow, lq.Version)
	if err != nil {
		c.fail(w, req, err)
		return
	}
	list, err := c.list(ctx, lq)
	if err != nil {
		c.fail(w, req, err)
		return
	}
	d := listPage{page: c.page(req, "Processes"), Filter: lq.Filter, Limit: lq.Limit, Statuses: statusNames(),
		Counts: counts, List: list, Deleted: req.URL.Query().Get("deleted")}
	d.Flows, d.Versions = c.flowNames(accessFlow(lq.Flow, lq.Version))
	href := func(f Filter, extra url.Values) string {
		v := f.Query()
		if lq.Limit != c.opts.PageSize {
			v.Set("limit", strconv.Itoa(lq.Limit))
		}
		for k, vs := range extra {
			v[k] = vs
		}
		if len(v) == 0 {
			return d.Root
		}
		return d.Root + "?" + v.Encode()
	}
	// The counts are of the flow filtered on; each links to its
	// processes of that flow.
	scope := Filter{Flow: lq.Flow, Version: lq.Version}
	d.AllHref = href(scope, nil)
	for _, s := range d.Statuses {
		f := scope
		f.Status = s
		d.CountLinks = append(d.CountLinks, countLink{Key: s, N: counts.ByStatus[s], Href: href(f, nil),
			Current: lq.Status == s && !lq.Quarantined})
	}
	qf := scope
	qf.Quarantined = true
	d.CountLinks = append(d.CountLinks, countLink{Key: "quarantined", N: counts.Quarantined, Href: href(qf, nil),
		Current: lq.Quarantined && lq.Status == ""})
	if list.Next != "" {
		d.NextHref = href(lq.Filter, url.Values{"after": {list.Next}})
	}
	if lq.After != "" {
		d.FirstHref = href(lq.Filter, nil)
	}
	d.BulkHref = d.Root + "bulk"
	if v := lq.Filter.Query().Encode(); v != "" {
		d.BulkHref += "?" + v
	}
	c.pages.render(w, req, http.StatusOK, "list", d)
}

// flowNames lists the flows and versions the runner hosts, for the
// filter form: those of flow only when the page is about one flow, so
// that a caller allowed one flow is not shown the others.
func (c *Console) flowNames(flow string) (flows, versions []string) {
	for f, vs := range c.r.Flows() {
		if flow != "" && f != flow {
			continue
		}
		flows = append(flows, f)
		versions = append(versions, vs...)
	}
	slices.Sort(flows)
	slices.Sort(versions)
	return flows, versions
}

type processPage struct {
	page
	P ProcessDetail
	// Href is the process page's own URL, relative; forms post below it.
	Href        string
	DataPretty  string
	Diagram     []*diagNode
	Legend      []string
	Resolutions []string
	Flash       string
	ActionError string
}

// processPage serves GET /processes/{id}.
func (c *Console) processPage(w http.ResponseWriter, req *http.Request) {
	pi, ok := c.readProcess(w, req)
	if !ok {
		return
	}
	flash := ""
	if a := Action(req.URL.Query().Get("done")); isChange(a) {
		flash = "Done: " + string(a) + "."
	}
	c.renderProcess(w, req, http.StatusOK, pi, flash, "")
}

func (c *Console) renderProcess(w http.ResponseWriter, req *http.Request, status int, pi inspection, flash, actionErr string) {
	d := c.detail(pi)
	p := processPage{page: c.page(req, "Process "+d.ID), P: d, Legend: nodeStatuses(),
		Resolutions: []string{ResolveSucceeded, ResolveFailed, ResolveRetry}, Flash: flash, ActionError: actionErr}
	p.Href = p.Root + "processes/" + url.PathEscape(d.ID)
	if len(d.Data) > 0 {
		var buf bytes.Buffer
		if json.Indent(&buf, d.Data, "", "  ") == nil {
			p.DataPretty = buf.String()
		}
	}
	if desc := &pi.in.Description; pi.in.Decoded && desc.Version != "" {
		p.Diagram = diagram(desc)
	}
	c.pages.render(w, req, status, "process", p)
}

// actionForm serves POST /processes/{id}/{action}, the action forms of
// the process page: it acts, then sends the browser back to the page.
func (c *Console) actionForm(w http.ResponseWriter, req *http.Request) {
	action := Action(req.PathValue("action"))
	rec, err := c.prepare(req, action)
	if err != nil {
		c.fail(w, req, err)
		return
	}
	if err := req.ParseForm(); err != nil {
		c.fail(w, req, badRequest("form: %v", err))
		return
	}
	form := req.PostForm
	var payload []byte
	if s := form.Get("payload"); s != "" {
		payload = []byte(s)
	}
	ch, err := newChange(action, form.Get("name"), payload, form.Get("reason"), form.Get("how"))
	if err == nil && action == ActionDelete && form.Get("confirm") != "yes" {
		err = badRequest("tick the box to confirm the deletion")
	}
	if err == nil {
		err = c.act(req.Context(), &rec, ch)
	}
	if err != nil {
		// Show the process again, with what went wrong.
		pi, _, ierr := c.inspect(req.Context(), rec.ID)
		if ierr != nil {
			c.fail(w, req, err)
			return
		}
		e := classify(err)
		c.renderProcess(w, req, e.status, pi, "", e.msg)
		return
	}
	if action == ActionDelete {
		redirect(w, "../../?deleted="+url.QueryEscape(rec.ID))
		return
	}
	redirect(w, "../"+url.PathEscape(rec.ID)+"?done="+string(action))
}

type bulkPage struct {
	page
	Filter      Filter
	Action      Action
	Reason      string
	Name        string
	Payload     string
	How         string
	Choices     []Action
	Statuses    []string
	Resolutions []string
	Flows       []string
	Versions    []string
	// Counted is set once the filter was counted: Matched processes.
	Counted bool
	Matched int
	// ListHref lists the matching processes.
	ListHref string
	Result   *BulkResponse
	Error    string
}

// bulkRequest reads a bulk request from form or query values.
func bulkRequest(v url.Values) (BulkRequest, error) {
	f, err := FilterFromQuery(v)
	b := BulkRequest{Action: Action(v.Get("action")).Single(), Filter: f, Reason: v.Get("reason"), Name: v.Get("name"), How: v.Get("how")}
	if s := v.Get("payload"); s != "" {
		b.Payload = []byte(s)
	}
	if err != nil {
		return b, badRequest("%v", err)
	}
	if s := v.Get("expect"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return b, badRequest("expect %q: want a count", s)
		}
		b.Expect = &n
	}
	return b, nil
}

func (c *Console) bulkData(req *http.Request, b *BulkRequest) bulkPage {
	d := bulkPage{page: c.page(req, "Bulk action"), Filter: b.Filter, Action: b.Action, Reason: b.Reason, Name: b.Name,
		Payload: string(b.Payload), How: b.How, Choices: slices.Clone(ChangeActions), Statuses: statusNames(),
		Resolutions: []string{ResolveSucceeded, ResolveFailed, ResolveRetry}}
	d.Flows, d.Versions = c.flowNames(accessFlow(b.Filter.Flow, b.Filter.Version))
	d.ListHref = d.Root
	if v := b.Filter.Query().Encode(); v != "" {
		d.ListHref += "?" + v
	}
	return d
}

// bulkPage serves GET /bulk: the form, and once an action is chosen, the
// count of the processes it would touch with a button to confirm.
func (c *Console) bulkPage(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	b, perr := bulkRequest(q)
	access := Access{Action: ActionList, Flow: accessFlow(b.Filter.Flow, b.Filter.Version)}
	if b.Action != "" {
		access.Action = b.Action.Bulk()
	}
	if err := c.authorize(req, access); err != nil {
		c.fail(w, req, err)
		return
	}
	d := c.bulkData(req, &b)
	status := http.StatusOK
	if b.Action != "" || perr != nil {
		b.Expect, b.DryRun = nil, true
		resp, err := c.bulk(req.Context(), &b)
		if perr != nil {
			err = perr
		}
		if err != nil {
			e := classify(err)
			status, d.Error = e.status, e.msg
		} else {
			d.Counted, d.Matched = true, resp.Matched
		}
	}
	c.pages.render(w, req, status, "bulk", d)
}

// bulkForm serves POST /bulk, the confirmation of the bulk page: it acts
// if the filter still matches the count the operator confirmed.
func (c *Console) bulkForm(w http.ResponseWriter, req *http.Request) {
	perr := req.ParseForm()
	b, err := bulkRequest(req.PostForm)
	if aerr := c.authorize(req, Access{Action: b.Action.Bulk(), Flow: accessFlow(b.Filter.Flow, b.Filter.Version)}); aerr != nil {
		c.fail(w, req, aerr)
		return
	}
	switch {
	case perr != nil:
		err = badRequest("form: %v", perr)
	case err == nil && b.Expect == nil:
		err = badRequest("expect: the count confirmed is missing")
	}
	d := c.bulkData(req, &b)
	var resp BulkResponse
	if err == nil {
		resp, err = c.bulk(req.Context(), &b)
	}
	if err != nil {
		e := classify(err)
		d.Error = e.msg
		if e.code == CodeCountChanged {
			// Offer the new count for confirmation.
			d.Counted, d.Matched = true, *e.matched
		}
		c.pages.render(w, req, e.status, "bulk", d)
		return
	}
	d.Result = &resp
	c.pages.render(w, req, http.StatusOK, "bulk", d)
}
