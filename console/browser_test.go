package console_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/console"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// The browser test drives the console's pages in a real browser: Debian's
// chromium, through the DevTools protocol (chromedp). CI installs chromium
// (.ci/run); elsewhere the test skips when it is missing. With
// STEPFLOW_SCREENSHOTS=DIR it saves a screenshot of each page it visits
// into DIR (the ones in docs/ come from there).

// chromiumPath finds the browser, or skips the test (fails it in CI).
func chromiumPath(t *testing.T) string {
	for _, name := range []string{os.Getenv("STEPFLOW_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium: CI must install it (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH: install it (apt-get install chromium) or set STEPFLOW_CHROMIUM to run the browser test")
	return ""
}

// release is the data of the browser test's flow.
type release struct {
	App      string   `json:"app"`
	Regions  []string `json:"regions"`
	Bad      string   `json:"bad,omitempty"`
	Approver string   `json:"approver,omitempty"`
}

func releaseFlow() *stepflow.Flow[release] {
	ok := func(context.Context, *release) error { return nil }
	return stepflow.Must(stepflow.NewWithOptions("release/v1", &stepflow.Options{Record: stepflow.DefaultRecord},
		stepflow.Annotate(combinators.Do("build", ok), stepflow.Meta{Description: "build and push the image", Tags: []string{"ci"}}),
		combinators.Parallel("checks", combinators.Do("lint", ok), combinators.Do("test", ok), combinators.Do("scan", ok)),
		combinators.Case("needsApproval", func(_ context.Context, r *release) (bool, error) { return r.App != "docs", nil },
			combinators.WaitSignal("approval", "approve", func(r *release, who []byte) error { r.Approver = string(who); return nil },
				combinators.Timeout(24*time.Hour)),
		),
		combinators.ForEach("regions", func(_ context.Context, r *release) ([]string, error) { return r.Regions, nil },
			combinators.Do("rollout", func(ctx context.Context, r *release) error {
				region, err := combinators.Item[string](ctx)
				if err != nil {
					return err
				}
				if region == r.Bad {
					return errors.New("rollout to " + region + " refused: quota exceeded")
				}
				return nil
			})),
		combinators.Do("notify", ok),
	))
}

// browserWorld serves a console over a running runner with releases in
// every state: shop-* done, api-* failed in eu-west, web-* waiting for
// approval.
func browserWorld(t *testing.T) (*httptest.Server, *runner.Processes[release]) {
	t.Helper()
	r, err := runner.New(store.NewMemory(), nil)
	require.NoError(t, err)
	releases, err := runner.Register(r, releaseFlow())
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	regions := []string{"us-east", "eu-west", "ap-south"}
	var procs []runner.NewProcess[release]
	for i := range 4 {
		procs = append(procs, runner.NewProcess[release]{ID: fmt.Sprintf("shop-%d", i), Data: release{App: "docs", Regions: regions}})
	}
	for i := range 3 {
		procs = append(procs, runner.NewProcess[release]{ID: fmt.Sprintf("api-%d", i), Data: release{App: "docs", Regions: regions, Bad: "eu-west"}})
	}
	for i := range 2 {
		procs = append(procs, runner.NewProcess[release]{ID: fmt.Sprintf("web-%d", i), Data: release{App: "web", Regions: regions}})
	}
	errs, err := releases.StartMany(t.Context(), procs)
	require.NoError(t, err)
	require.Nil(t, errs)
	require.Eventually(t, func() bool {
		n, err := r.Counts(t.Context())
		return err == nil && n.ByStatus[stepflow.Done] == 4 && n.ByStatus[stepflow.Failed] == 3 && n.ByStatus[stepflow.Waiting] == 2
	}, 10*time.Second, 10*time.Millisecond)
	c, err := console.New(r, &console.Options{Actions: true, Title: "releases"})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", c))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, releases
}

func TestConsoleInBrowser(t *testing.T) {
	exe := chromiumPath(t)
	srv, releases := browserWorld(t)
	base := srv.URL + "/ops/"

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	ctx, cancelTime := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTime()

	shots := os.Getenv("STEPFLOW_SCREENSHOTS")
	shot := func(name string) {
		if shots == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(shots, name), png, 0o644))
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err, sel)
		return strings.TrimSpace(s)
	}
	count := func(sel string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
		require.NoError(t, err, sel)
		return n
	}

	// The list: every process, with counts per status.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("processes"))))
	assert.Equal(t, 9, count("#processes tr.process"))
	assert.Equal(t, "9", text("#count-total"))
	shot("console-list.png")

	// Filter the failed ones by their count's link.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("count-failed")), chromedp.WaitVisible(chromedp.CSS("#count-failed.current"))))
	require.Equal(t, 3, count("#processes tr.process"))
	for i := range 3 {
		row := fmt.Sprintf("#processes tr.process:nth-of-type(%d)", i+1)
		assert.Equal(t, "failed", text(row+" td.status"))
		assert.Equal(t, fmt.Sprintf("api-%d", i), text(row+" td.id"))
		assert.Contains(t, text(row+" td.position"), "regions")
	}
	shot("console-failed.png")

	// Open one: its error and its diagram.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#processes tr.process td.id a")), chromedp.WaitVisible(chromedp.ID("process-status"))))
	assert.Equal(t, "api-0", text("#process-id"))
	assert.Equal(t, "failed", text("#process-status"))
	assert.Contains(t, text("#process-error"), "rollout to eu-west refused: quota exceeded")
	assert.Equal(t, 1, count(`#diagram li.node.node-failed[data-path="regions"]`), "the ForEach failed")
	assert.Equal(t, 1, count(`#diagram li.node.node-done[data-path="build"]`))
	assert.Equal(t, 1, count(`#diagram li.node.node-skipped[data-path="needsApproval/approval"]`), "the branch not taken")
	assert.Equal(t, 1, count(`#diagram li.node.node-pending[data-path="notify"]`), "what a redrive would run")
	assert.Positive(t, count("#history tr.entry"))
	shot("console-process-failed.png")

	// A waiting process: cancel it from its page and see it canceled.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"processes/web-1"), chromedp.WaitVisible(chromedp.ID("process-status"))))
	assert.Equal(t, "waiting", text("#process-status"))
	assert.Equal(t, 1, count(`#diagram li.node.node-waiting.current[data-path="needsApproval/approval"]`), "where it waits")
	shot("console-process-waiting.png")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#action-cancel [name="reason"]`), "release withdrawn"),
		chromedp.Submit(chromedp.CSS(`#action-cancel`)),
		chromedp.WaitVisible(chromedp.ID("flash")),
	))
	require.Eventually(t, func() bool {
		require.NoError(t, chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("process-status"))))
		return text("#process-status") == "canceled"
	}, 10*time.Second, 50*time.Millisecond)
	assert.Contains(t, text("#process-error"), "release withdrawn")
	shot("console-process-canceled.png")
	st, err := releases.State(t.Context(), "web-1")
	require.NoError(t, err)
	assert.Equal(t, stepflow.Canceled, st.Status, "the store agrees")

	// Bulk: redrive every failed release after the quota was raised; the
	// count is shown and confirmed first.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"bulk?status=failed&action=redrive"), chromedp.WaitVisible(chromedp.ID("bulk-confirm"))))
	assert.Equal(t, "3", text("#bulk-matched"))
	shot("console-bulk.png")
	require.NoError(t, chromedp.Do(ctx, chromedp.Submit(chromedp.CSS("#bulk-confirm")), chromedp.WaitVisible(chromedp.ID("bulk-result"))))
	assert.Equal(t, "3", text("#bulk-succeeded"))
	assert.Equal(t, "0", text("#bulk-failed"))
	shot("console-bulk-result.png")
	for _, id := range []string{"api-0", "api-1", "api-2"} {
		assert.Eventually(t, func() bool {
			st, err := releases.State(t.Context(), id)
			return err == nil && st.Steps > 6
		}, 10*time.Second, 10*time.Millisecond, "%s was redriven and ran again", id)
	}
}
