package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/versions"
)

// Options configures a Console. The zero value (or a nil *Options) gives
// a read-only console that lets every request through: mount it behind
// your own authentication, or set Authorize. Each field states its
// default.
type Options struct {
	// Actions enables what changes processes: the POST endpoints and the
	// action forms of the pages. Default false: the console only reads,
	// and every POST is refused with 403 (code actions_disabled).
	Actions bool
	// Authorize is called for every request the console serves, before
	// it reads or changes anything, with what the request asks (see
	// Access). A non-nil error refuses the request with 403 and the
	// error's text. Default nil: everything is allowed.
	Authorize func(*http.Request, Access) error
	// PageSize is how many processes a list page shows when the request
	// gives no limit. Default 50. A request's limit is capped at
	// MaxPageSize.
	PageSize int
	// BulkBatch is how many processes a bulk action lists from the store,
	// and then acts on, at a time. Default 100.
	BulkBatch int
	// BulkLimit is the most processes one bulk action may touch: a
	// filter matching more is refused (code too_many), and should be
	// narrowed. It also bounds the cost of counting the matches. Default
	// 10,000.
	BulkLimit int
	// TrustedOrigins are origins ("https://ops.example.com") whose
	// browsers may POST to the console from another origin (see
	// http.CrossOriginProtection.AddTrustedOrigin). Default none: only
	// same-origin browser requests and non-browser clients may POST.
	TrustedOrigins []string
	// CountsMaxAge is how long the console keeps the store's counts (of
	// the list page and GET /api/counts) before it asks the store again;
	// its own actions make it ask at the next request. Counting reads
	// every record on some stores (PostgreSQL), so that a list page
	// would otherwise cost a scan of the whole store. Default 5s;
	// negative counts at every request.
	CountsMaxAge time.Duration
	// Title names the console in its pages. Default "stepflow".
	Title string
}

// Defaults for Options.
const (
	DefaultPageSize  = 50
	MaxPageSize      = 1000
	DefaultBulkBatch = 100
	DefaultBulkLimit = 10000
	DefaultCountsAge = 5 * time.Second
)

// maxBody bounds the body of a POST.
const maxBody = 1 << 20

// Access is what a request asks of the console, for Options.Authorize.
type Access struct {
	// Action is what the request does: list (which counting is too),
	// read, one of the changing actions, or a bulk action ("bulk-cancel").
	Action Action
	// Flow is the flow whose processes are asked for: the flow of the
	// process read or changed, or the flow a list or bulk filter names
	// (by flow or by version). "" means every flow: a list, count or
	// bulk action without a flow in its filter, or a process that does
	// not exist.
	Flow string
	// ID is the process asked for, "" for lists and bulk actions.
	ID string
}

// Console is the operator console over a runner: an http.Handler serving
// a JSON API and HTML pages (see the package documentation). Create it
// with New; its methods are safe for concurrent use.
type Console struct {
	r     *runner.Runner
	opts  Options
	h     http.Handler
	pages *pages
	cache countCache
}

// New returns a console over r, which must have its flows registered:
// the console reads and changes processes of every flow r hosts, and
// lists those of other flows too. opts may be nil. It fails for an
// invalid option (a negative size, a malformed trusted origin).
func New(r *runner.Runner, opts *Options) (*Console, error) {
	if r == nil {
		return nil, errors.New("stepflow/console: nil runner")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case o.PageSize < 0 || o.PageSize > MaxPageSize:
		return nil, fmt.Errorf("stepflow/console: page size %d: want 0 to %d", o.PageSize, MaxPageSize)
	case o.BulkBatch < 0:
		return nil, fmt.Errorf("stepflow/console: bulk batch %d: want 0 or more", o.BulkBatch)
	case o.BulkLimit < 0:
		return nil, fmt.Errorf("stepflow/console: bulk limit %d: want 0 or more", o.BulkLimit)
	}
	if o.PageSize == 0 {
		o.PageSize = DefaultPageSize
	}
	if o.BulkBatch == 0 {
		o.BulkBatch = DefaultBulkBatch
	}
	if o.BulkLimit == 0 {
		o.BulkLimit = DefaultBulkLimit
	}
	if o.CountsMaxAge == 0 {
		o.CountsMaxAge = DefaultCountsAge
	}
	if o.Title == "" {
		o.Title = "stepflow"
	}
	c := &Console{r: r, opts: o}
	p, err := newPages()
	if err != nil {
		return nil, err
	}
	c.pages = p

	// Every POST passes the cross-origin check first: a browser on
	// another site cannot make an operator's browser act, while
	// same-origin forms and programs that send no browser headers (a
	// CLI) pass.
	cop := http.NewCrossOriginProtection()
	for _, origin := range o.TrustedOrigins {
		if err := cop.AddTrustedOrigin(origin); err != nil {
			return nil, fmt.Errorf("stepflow/console: trusted origin: %w", err)
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c.fail(w, req, &apiError{status: http.StatusForbidden, code: CodeForbidden,
			msg: "cross-origin request refused: post from the console's own pages, or from a program that sends no Origin or Sec-Fetch-Site header"})
	}))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.listPage)
	mux.HandleFunc("GET /processes/{id}", c.processPage)
	mux.HandleFunc("POST /processes/{id}/{action}", c.actionForm)
	mux.HandleFunc("GET /bulk", c.bulkPage)
	mux.HandleFunc("POST /bulk", c.bulkForm)
	mux.HandleFunc("GET /api/processes", c.apiList)
	mux.HandleFunc("GET /api/counts", c.apiCounts)
	mux.HandleFunc("GET /api/processes/{id}", c.apiProcess)
	mux.HandleFunc("POST /api/processes/{id}/{action}", c.apiAction)
	mux.HandleFunc("POST /api/bulk", c.apiBulk)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		c.fail(w, req, c.unknown(req, "no such page: "+req.Method+" "+req.URL.Path))
	})
	c.h = cop.Handler(mux)
	return c, nil
}

// ServeHTTP implements http.Handler. Mount the console at the root of a
// server, or under a prefix with http.StripPrefix:
//
//	mux.Handle("/console/", http.StripPrefix("/console", c))
func (c *Console) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !strings.HasPrefix(req.URL.Path, "/") {
		// StripPrefix with a trailing slash leaves "processes/x": put the
		// slash back rather than let the mux redirect outside the prefix.
		req = req.Clone(req.Context())
		req.URL.Path = "/" + req.URL.Path
		if req.URL.RawPath != "" {
			req.URL.RawPath = "/" + req.URL.RawPath
		}
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	if req.Body != nil {
		req.Body = http.MaxBytesReader(w, req.Body, maxBody)
	}
	c.h.ServeHTTP(w, req)
}

// apiError is an error with its HTTP status and API code.
type apiError struct {
	status  int
	code    string
	msg     string
	matched *int
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: CodeBadRequest, msg: fmt.Sprintf(format, args...)}
}

// classify turns an error of the runner or the store into the API's.
func classify(err error) *apiError {
	if ae, ok := errors.AsType[*apiError](err); ok {
		return ae
	}
	e := &apiError{status: http.StatusInternalServerError, code: CodeInternal, msg: err.Error()}
	switch {
	case errors.Is(err, store.ErrNotFound):
		e.status, e.code = http.StatusNotFound, CodeNotFound
	case errors.Is(err, runner.ErrUnknownFlow):
		e.status, e.code = http.StatusUnprocessableEntity, CodeUnknownFlow
	case errors.Is(err, runner.ErrQuarantined):
		e.status, e.code = http.StatusConflict, CodeQuarantined
	case errors.Is(err, store.ErrConflict), errors.Is(err, runner.ErrNotQuarantined), errors.Is(err, runner.ErrOtherFlow),
		errors.Is(err, stepflow.ErrNotFailed), errors.Is(err, stepflow.ErrEnded), errors.Is(err, stepflow.ErrSignalOverflow),
		errors.Is(err, stepflow.ErrInvalidState), errors.Is(err, stepflow.ErrVersionMismatch),
		errors.Is(err, versions.ErrNoTarget), errors.Is(err, versions.ErrOutdated), errors.Is(err, versions.ErrUnknownVersion),
		errors.Is(err, versions.ErrNoMigration),
		isCodecError(err):
		// The process's state does not allow the action (or its bytes
		// cannot be read): nothing the console or the store did wrong.
		e.status, e.code = http.StatusConflict, CodeConflict
	case errors.Is(err, store.ErrInvalid):
		e.status, e.code = http.StatusBadRequest, CodeBadRequest
	}
	return e
}

func isCodecError(err error) bool {
	for _, s := range []error{codec.ErrTruncated, codec.ErrNotState, codec.ErrUnsupportedFormat, codec.ErrTooLarge,
		codec.ErrCorrupt, codec.ErrWrongEncoding, codec.ErrTooDeep} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// authorize asks Options.Authorize about a, and refuses changes when
// actions are off.
func (c *Console) authorize(req *http.Request, a Access) error {
	if c.opts.Authorize != nil {
		if err := c.opts.Authorize(req, a); err != nil {
			return &apiError{status: http.StatusForbidden, code: CodeForbidden, msg: err.Error()}
		}
	}
	if a.Action.Changes() && !c.opts.Actions {
		return actionsDisabled
	}
	return nil
}

// unknown is the error for a request of no route: 404, except that with
// actions off every POST is refused as such.
func (c *Console) unknown(req *http.Request, msg string) *apiError {
	if !c.opts.Actions && req.Method != http.MethodGet && req.Method != http.MethodHead {
		return actionsDisabled
	}
	return &apiError{status: http.StatusNotFound, code: CodeNotFound, msg: msg}
}

var actionsDisabled = &apiError{status: http.StatusForbidden, code: CodeActionsDisabled,
	msg: "actions are disabled: this console only reads (enable them with console.Options.Actions)"}

// isAPI reports whether the request is one of the JSON API.
func isAPI(req *http.Request) bool {
	return req.URL.Path == "/api" || strings.HasPrefix(req.URL.Path, "/api/")
}

// fail answers a request with err: a JSON ErrorResponse for the API, an
// error page otherwise.
func (c *Console) fail(w http.ResponseWriter, req *http.Request, err error) {
	e := classify(err)
	if isAPI(req) {
		writeJSON(w, e.status, ErrorResponse{Error: e.msg, Code: e.code, Matched: e.matched})
		return
	}
	c.pages.render(w, req, e.status, "error", errorPage{page: c.page(req, "Error"), Status: e.status, Code: e.code, Message: e.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorResponse{Error: err.Error(), Code: CodeInternal})
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// readJSON decodes a request body into v; an empty body leaves v as it
// is.
func readJSON(req *http.Request, v any) error {
	dec := json.NewDecoder(req.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &apiError{status: http.StatusRequestEntityTooLarge, code: CodeBadRequest, msg: err.Error()}
		}
		return badRequest("request body: %v", err)
	}
	if dec.More() {
		return badRequest("request body: more than one JSON value")
	}
	return nil
}

// flowOf is the flow of a version: its part before '/'.
func flowOf(version string) string { return codec.FlowName(version) }
