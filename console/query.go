package console

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// statusNames lists the names of stepflow.Status, in their order.
func statusNames() []string {
	var out []string
	for s := stepflow.Status(0); s.Valid(); s++ {
		out = append(out, s.String())
	}
	return out
}

// storeFilter checks f and returns the store's filter for it.
func storeFilter(f Filter) (store.Filter, error) {
	sf := store.Filter{Flow: f.Flow, Version: f.Version, Quarantined: f.Quarantined, IDPrefix: f.IDPrefix,
		Position: strings.Trim(f.Position, "/"), ErrorKind: f.ErrorKind}
	if f.Status != "" {
		var s stepflow.Status
		if err := s.UnmarshalText([]byte(f.Status)); err != nil {
			return sf, badRequest("status %q: want one of %s", f.Status, strings.Join(statusNames(), ", "))
		}
		sf.Status = &s
	}
	return sf, nil
}

// accessFlow is the flow a filter restricts to, for Access: its flow, or
// the flow of its version; "" for every flow.
func accessFlow(flow, version string) string {
	if flow != "" {
		return flow
	}
	if version != "" {
		return flowOf(version)
	}
	return ""
}

// listQuery is a parsed list request.
type listQuery struct {
	Filter
	After string
	Limit int
}

func (c *Console) parseList(q url.Values) (listQuery, error) {
	f, err := FilterFromQuery(q)
	if err != nil {
		return listQuery{}, badRequest("%v", err)
	}
	lq := listQuery{Filter: f, After: q.Get("after"), Limit: c.opts.PageSize}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			return lq, badRequest("limit %q: want 1 to %d", s, MaxPageSize)
		}
		lq.Limit = n
	}
	return lq, nil
}

// list returns one page of processes, served by the store's List: one
// query, one more record than the page to know whether another follows.
func (c *Console) list(ctx context.Context, lq listQuery) (ListResponse, error) {
	sf, err := storeFilter(lq.Filter)
	if err != nil {
		return ListResponse{}, err
	}
	sf.After, sf.Limit = lq.After, lq.Limit+1
	recs, err := c.r.Store().List(ctx, sf)
	if err != nil {
		return ListResponse{}, err
	}
	resp := ListResponse{Processes: make([]ProcessSummary, 0, min(len(recs), lq.Limit))}
	for i := range recs[:min(len(recs), lq.Limit)] {
		resp.Processes = append(resp.Processes, summary(&recs[i]))
	}
	if len(recs) > lq.Limit {
		resp.Next = recs[lq.Limit-1].ID
	}
	return resp, nil
}

func summary(rec *store.Record) ProcessSummary {
	return ProcessSummary{ID: rec.ID, Flow: rec.Flow(), Version: rec.Version, Status: rec.Status.String(),
		Position: rec.Position, ErrorKind: rec.ErrorKind, Quarantine: rec.Quarantine, Due: rec.Due,
		Updated: rec.Updated, Revision: rec.Revision, Owner: rec.Owner}
}

// counts returns the store's counts, of one flow's versions when flow is
// not "", of one version when version is not "".
func (c *Console) counts(ctx context.Context, flow, version string) (CountsResponse, error) {
	sc, at, err := c.cache.get(ctx, c.r, c.opts.CountsMaxAge)
	if err != nil {
		return CountsResponse{}, err
	}
	out := CountsResponse{ByStatus: map[string]int{}, ByVersion: map[string]VersionCounts{}, AsOf: at.UTC()}
	for v, vc := range sc.ByVersion {
		if flow != "" && flowOf(v) != flow || version != "" && v != version {
			continue
		}
		c := VersionCounts{Total: vc.Total(), ByStatus: map[string]int{}, Quarantined: vc.Quarantined}
		for s, n := range vc.ByStatus {
			c.ByStatus[s.String()] += n
			out.ByStatus[s.String()] += n
		}
		out.ByVersion[v] = c
		out.Total += c.Total
		out.Quarantined += c.Quarantined
	}
	return out, nil
}

// readList asks Authorize about a list request, then reads its query.
// When it returns false it has answered the request.
func (c *Console) readList(w http.ResponseWriter, req *http.Request) (listQuery, bool) {
	q := req.URL.Query()
	if err := c.authorize(req, Access{Action: ActionList, Flow: accessFlow(q.Get("flow"), q.Get("version"))}); err != nil {
		c.fail(w, req, err)
		return listQuery{}, false
	}
	lq, err := c.parseList(q)
	if err != nil {
		c.fail(w, req, err)
		return listQuery{}, false
	}
	return lq, true
}

// apiList serves GET /api/processes.
func (c *Console) apiList(w http.ResponseWriter, req *http.Request) {
	lq, ok := c.readList(w, req)
	if !ok {
		return
	}
	resp, err := c.list(req.Context(), lq)
	if err != nil {
		c.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// apiCounts serves GET /api/counts.
func (c *Console) apiCounts(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	flow, version := q.Get("flow"), q.Get("version")
	if err := c.authorize(req, Access{Action: ActionList, Flow: accessFlow(flow, version)}); err != nil {
		c.fail(w, req, err)
		return
	}
	resp, err := c.counts(req.Context(), flow, version)
	if err != nil {
		c.fail(w, req, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// countCache keeps the store's counts for a while: a store may count by
// reading every record (pgstore's Count is a scan of its table, about
// 100 ms for 100,000 processes), which a list page must not pay at each
// request.
type countCache struct {
	mu sync.Mutex
	c  store.Counts
	at time.Time // when c was counted; zero when there is none
	// stale is set by the console's own actions: the next request counts
	// again.
	stale bool
	// counting is set while a request counts: the others meanwhile use
	// the counts at hand rather than count too.
	counting bool
}

// get returns the counts, counting again when they are older than
// maxAge (never kept when maxAge is negative).
func (cc *countCache) get(ctx context.Context, r *runner.Runner, maxAge time.Duration) (store.Counts, time.Time, error) {
	cc.mu.Lock()
	have := !cc.at.IsZero() && maxAge >= 0
	if have && (cc.counting || !cc.stale && time.Since(cc.at) < maxAge) {
		defer cc.mu.Unlock()
		return cc.c, cc.at, nil
	}
	cc.counting = true
	cc.mu.Unlock()

	at := time.Now()
	sc, err := r.Counts(ctx)

	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.counting = false
	if err != nil {
		return sc, at, err
	}
	if at.After(cc.at) {
		cc.c, cc.at, cc.stale = sc, at, false
	}
	return sc, at, nil
}

// invalidate makes the next request count again.
func (cc *countCache) invalidate() {
	cc.mu.Lock()
	cc.stale = true
	cc.mu.Unlock()
}
