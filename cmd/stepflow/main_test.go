package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// job is the data of the test flow.
type job struct {
	Fail   bool   `json:"fail"`
	Answer string `json:"answer"`
}

// world is a console over a runner with processes in every state: j-0..
// j-4 done, f-0..f-2 failed at "work", w-0 and w-1 waiting for the
// "answer" signal.
type world struct {
	r    *runner.Runner
	jobs *runner.Processes[job]
	srv  *httptest.Server
}

func newWorld(t *testing.T, opts *console.Options) *world {
	t.Helper()
	f := stepflow.Must(stepflow.NewWithOptions("job/v1", &stepflow.Options{Record: 16},
		combinators.Do("work", func(_ context.Context, j *job) error {
			if j.Fail {
				return errors.New("disk full")
			}
			return nil
		}),
		combinators.Case("asks", func(_ context.Context, j *job) (bool, error) { return j.Answer == "?", nil },
			combinators.WaitSignal("answer", "answer", func(j *job, p []byte) error { j.Answer = string(p); return nil }, combinators.Timeout(time.Hour)),
		),
	))
	r, err := runner.New(store.NewMemory(), nil)
	require.NoError(t, err)
	jobs, err := runner.Register(r, f)
	require.NoError(t, err)
	ctx := t.Context()
	for i := range 5 {
		require.NoError(t, jobs.Start(ctx, fmt.Sprintf("j-%d", i), job{}))
	}
	for i := range 3 {
		require.NoError(t, jobs.Start(ctx, fmt.Sprintf("f-%d", i), job{Fail: true}))
	}
	for i := range 2 {
		require.NoError(t, jobs.Start(ctx, fmt.Sprintf("w-%d", i), job{Answer: "?"}))
	}
	drain(t, r)
	c, err := console.New(r, opts)
	require.NoError(t, err)
	srv := httptest.NewServer(http.StripPrefix("/ops", c))
	t.Cleanup(srv.Close)
	return &world{r: r, jobs: jobs, srv: srv}
}

func drain(t *testing.T, r *runner.Runner) {
	t.Helper()
	for n := 1; n > 0; {
		var err error
		n, err = r.Step(t.Context())
		require.NoError(t, err)
	}
}

// cli runs the command line against w and returns its exit status and
// output.
func (w *world) cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = w.run(t, &out, &errOut, args)
	return code, out.String(), errOut.String()
}

// cliTo is cli with the output going to stdout.
func (w *world) cliTo(t *testing.T, stdout io.Writer, args ...string) int {
	return w.run(t, stdout, io.Discard, args)
}

func (w *world) run(t *testing.T, stdout, stderr io.Writer, args []string) int {
	e := &env{stdin: strings.NewReader(""), stdout: stdout, stderr: stderr, http: w.srv.Client(), interval: time.Millisecond,
		getenv: func(k string) string {
			if k == "STEPFLOW_ADDR" {
				return w.srv.URL + "/ops"
			}
			return ""
		}}
	return run(t.Context(), args, e)
}

func TestListFiltersAndPages(t *testing.T) {
	w := newWorld(t, nil)
	code, out, _ := w.cli(t, "list", "-status", "failed")
	require.Equal(t, exitOK, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	assert.Regexp(t, `^ID\s+VERSION\s+STATUS\s+POSITION`, lines[0])
	for i, l := range lines[1:] {
		assert.Regexp(t, fmt.Sprintf(`^f-%d\s+job/v1\s+failed\s+work\s+error\s`, i), l)
	}

	code, out, errOut := w.cli(t, "list", "-limit", "4")
	require.Equal(t, exitOK, code)
	assert.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 5, "a header and one page")
	assert.Contains(t, errOut, "-after j-0", "the cursor of the next page (f-0, f-1, f-2, j-0)")
	code, out, _ = w.cli(t, "list", "-limit", "4", "-all", "-json")
	require.Equal(t, exitOK, code)
	var all console.ListResponse
	require.NoError(t, json.Unmarshal([]byte(out), &all))
	assert.Len(t, all.Processes, 10, "every page")

	code, out, _ = w.cli(t, "-json", "list", "-status", "waiting", "-position", "asks")
	require.Equal(t, exitOK, code)
	var waiting console.ListResponse
	require.NoError(t, json.Unmarshal([]byte(out), &waiting))
	require.Len(t, waiting.Processes, 2)
	assert.Equal(t, "w-0", waiting.Processes[0].ID)
	assert.Equal(t, "job/v1", waiting.Processes[0].Version)
}

func TestCounts(t *testing.T) {
	w := newWorld(t, nil)
	code, out, _ := w.cli(t, "counts")
	require.Equal(t, exitOK, code)
	assert.Regexp(t, `job/v1\s+done\s+5`, out)
	assert.Regexp(t, `job/v1\s+failed\s+3`, out)
	assert.Regexp(t, `job/v1\s+waiting\s+2`, out)
	assert.Regexp(t, `all\s+all\s+10`, out)
}

func TestDescribeAndHistory(t *testing.T) {
	w := newWorld(t, nil)
	code, out, _ := w.cli(t, "describe", "f-1")
	require.Equal(t, exitOK, code)
	assert.Regexp(t, `status:\s+failed`, out)
	assert.Regexp(t, `error:\s+error at work: disk full`, out)
	assert.Contains(t, out, `"fail":true`, "the data as JSON")
	assert.Contains(t, out, "work", "the flow's tree")

	code, out, _ = w.cli(t, "history", "j-0")
	require.Equal(t, exitOK, code)
	assert.Regexp(t, `\bwork\s+ok\b`, out)

	code, _, errOut := w.cli(t, "describe", "nope")
	assert.Equal(t, exitNotFound, code, errOut)
	code, _, _ = w.cli(t, "describe")
	assert.Equal(t, exitUsage, code)
}

func TestSignalOneProcess(t *testing.T) {
	w := newWorld(t, &console.Options{Actions: true})
	code, out, errOut := w.cli(t, "signal", "-name", "answer", "-payload", `"yes"`, "w-0")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "signal: 1 succeeded, 0 failed")
	drain(t, w.r)
	st, err := w.jobs.State(t.Context(), "w-0")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Done, st.Status)
	assert.Equal(t, `"yes"`, st.Data.Answer, "the payload's bytes")

	code, _, _ = w.cli(t, "signal", "-payload", "{", "w-1")
	assert.Equal(t, exitUsage, code, "no name, and a payload that is not JSON")
}

func TestBulkRedriveNeedsConfirmation(t *testing.T) {
	w := newWorld(t, &console.Options{Actions: true})
	code, _, errOut := w.cli(t, "redrive", "-status", "failed", "-position", "work")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "redrive 3 processes matching")
	assert.Contains(t, errOut, "add -yes")
	n, err := w.r.Counts(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 3, n.ByStatus[stepflow.Failed], "nothing done without confirmation")

	code, out, errOut := w.cli(t, "redrive", "-status", "failed", "-position", "work", "-yes")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "redrive: 3 succeeded, 0 failed")
	n, err = w.r.Counts(t.Context())
	require.NoError(t, err)
	assert.Zero(t, n.ByStatus[stepflow.Failed], "redriven")
}

func TestBulkPartialFailure(t *testing.T) {
	w := newWorld(t, &console.Options{Actions: true})
	// An unknown id fails; the waiting processes are canceled.
	code, out, errOut := w.cli(t, "cancel", "-reason", "cleanup", "-json", "nope", "w-0", "w-1")
	assert.Equal(t, exitFailed, code, errOut)
	var res console.BulkResponse
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	assert.Equal(t, 2, res.Succeeded)
	require.Len(t, res.Failed, 1)
	assert.Equal(t, "nope", res.Failed[0].ID)
	assert.Equal(t, console.CodeNotFound, res.Failed[0].Code)
	st, err := w.jobs.State(t.Context(), "w-1")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Canceled, st.Status)
}

func TestWatchEndsWithTheProcess(t *testing.T) {
	w := newWorld(t, &console.Options{Actions: true})
	code, out, _ := w.cli(t, "watch", "j-0")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "j-0 done")
	code, out, _ = w.cli(t, "watch", "-status", "failed")
	assert.Equal(t, exitFailed, code, "failed processes end badly")
	assert.Equal(t, 3, strings.Count(out, " failed at work"))

	// A waiting process: the watch goes on until a signal ends it.
	var watchOut syncBuffer
	done := make(chan int)
	go func() { done <- w.cliTo(t, &watchOut, "watch", "w-1") }()
	for !strings.Contains(watchOut.String(), "w-1 waiting at asks/answer") {
		time.Sleep(time.Millisecond)
	}
	require.NoError(t, w.jobs.Signal(t.Context(), "w-1", "answer", []byte("ok")))
	drain(t, w.r)
	assert.Equal(t, exitOK, <-done)
	assert.Contains(t, watchOut.String(), "w-1 done")
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestExitCodes(t *testing.T) {
	w := newWorld(t, &console.Options{Authorize: func(_ *http.Request, a console.Access) error {
		if a.ID == "f-0" {
			return errors.New("not yours")
		}
		return nil
	}})
	code, _, errOut := w.cli(t, "cancel", "w-0")
	assert.Equal(t, exitForbidden, code, "actions are off")
	assert.NotEmpty(t, errOut)
	code, _, errOut = w.cli(t, "describe", "f-0")
	assert.Equal(t, exitForbidden, code)
	assert.Contains(t, errOut, "not yours")
	code, _, _ = w.cli(t, "frobnicate")
	assert.Equal(t, exitUsage, code)
	code, _, _ = w.cli(t, "-addr", "http://127.0.0.1:1/", "list")
	assert.Equal(t, exitUnreachable, code)
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	code, _, errOut = w.cli(t, "-addr", other.URL, "list")
	assert.Equal(t, exitUnreachable, code)
	assert.Contains(t, errOut, "is not a stepflow console")
}
