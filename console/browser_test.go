package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/console"
)

// The pages as a real browser parses them: Chromium, headless, loads them
// from a server where the console is mounted under a prefix, and the
// elements the package documents are in the document it builds. Skipped
// where no Chromium is installed.
func TestPagesInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	var browser string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("no Chromium installed")
	}
	fx := newFixture(t)
	c := fx.console(t, &console.Options{Actions: true})
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", c))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	dom := func(path string) string {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu",
			"--user-data-dir="+t.TempDir(), "--dump-dom", srv.URL+path).Output()
		require.NoError(t, err)
		return string(out)
	}
	list := dom("/ops/?flow=deploy")
	assert.Equal(t, []string{idDone, idFailed, idQuarantined, idWaiting}, rowIDs(list))
	assert.Equal(t, "4", mustID(t, list, "count-total"))

	page := dom("/ops/processes/" + idFailed)
	assert.Equal(t, "failed", mustID(t, page, "process-status"))
	nodes := nodeClasses(page)
	assert.Contains(t, nodes["regions"], "node-failed")
	assert.Contains(t, nodes["checks/lint"], "node-done", "a node inside a folded subtree is in the document")
	mustID(t, page, "action-redrive")
}
