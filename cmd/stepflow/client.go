package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/stepflow-io/go-stepflow/console"
)

// client calls a console's JSON API.
type client struct {
	base *url.URL // the console's address, ending in '/'
	http *http.Client
}

func newClient(addr string, hc *http.Client) (*client, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, usageErrorf("-addr %q is not a console address (e.g. http://localhost:8080/stepflow/)", addr)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return &client{base: u, http: hc}, nil
}

// apiError is an answer of the console that is not a success.
type apiError struct {
	status int
	resp   console.ErrorResponse
}

func (e *apiError) Error() string {
	if e.resp.Error == "" {
		return fmt.Sprintf("console answered %d %s", e.status, http.StatusText(e.status))
	}
	return e.resp.Error
}

// unreachableError is a console that could not be asked or gave no
// answer of its API.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// do sends a request to the API path (relative to the console) with an
// optional JSON body, and decodes the JSON answer into out.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u := c.base.JoinPath(path)
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &unreachableError{err}
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &unreachableError{fmt.Errorf("reading the answer of %s: %w", u.Redacted(), err)}
	}
	if resp.StatusCode >= 300 {
		e := &apiError{status: resp.StatusCode}
		if json.Unmarshal(data, &e.resp) != nil || e.resp.Code == "" {
			if resp.StatusCode == http.StatusNotFound {
				return &unreachableError{fmt.Errorf("%s is not a stepflow console (404 for %s)", c.base.Redacted(), u.Path)}
			}
			e.resp = console.ErrorResponse{Error: fmt.Sprintf("console answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))}
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &unreachableError{fmt.Errorf("%s did not answer as a stepflow console: %w", u.Redacted(), err)}
	}
	return nil
}

func (c *client) list(ctx context.Context, f console.Filter, after string, limit int) (console.ListResponse, error) {
	q := f.Query()
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var out console.ListResponse
	err := c.do(ctx, http.MethodGet, "api/processes", q, nil, &out)
	return out, err
}

func (c *client) counts(ctx context.Context, f console.Filter) (console.CountsResponse, error) {
	var out console.CountsResponse
	err := c.do(ctx, http.MethodGet, "api/counts", f.Query(), nil, &out)
	return out, err
}

func (c *client) process(ctx context.Context, id string) (console.ProcessDetail, error) {
	var out console.ProcessDetail
	err := c.do(ctx, http.MethodGet, "api/processes/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

func (c *client) act(ctx context.Context, id string, a console.Action, body any) error {
	return c.do(ctx, http.MethodPost, "api/processes/"+url.PathEscape(id)+"/"+string(a), nil, body, &console.ActionResponse{})
}

func (c *client) bulk(ctx context.Context, req console.BulkRequest) (console.BulkResponse, error) {
	var out console.BulkResponse
	err := c.do(ctx, http.MethodPost, "api/bulk", nil, req, &out)
	return out, err
}

// exitCode maps an error of a command to the process's exit status.
func exitCode(err error) int {
	var (
		u  *usageError
		ur *unreachableError
		ae *apiError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &u):
		return exitUsage
	case errors.As(err, &ur):
		return exitUnreachable
	case errors.As(err, &ae):
		switch ae.resp.Code {
		case console.CodeNotFound:
			return exitNotFound
		case console.CodeForbidden, console.CodeActionsDisabled:
			return exitForbidden
		case console.CodeInternal:
			return exitUnreachable
		}
		if ae.status >= 500 {
			return exitUnreachable
		}
		return exitFailed
	}
	return exitFailed
}
