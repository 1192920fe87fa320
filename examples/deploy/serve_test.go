package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/console"
)

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", url, b)
	return b
}

// TestConsoleAndMetrics runs with -http and -metrics: after the summary
// the console serves the failed deployments, an operator's redrive runs
// (the runner still runs), and the metrics describe the run.
func TestConsoleAndMetrics(t *testing.T) {
	var out bytes.Buffer
	cfg := testConfig(filepath.Join(t.TempDir(), "deploy.db"), 150, &out)
	cfg.HTTP, cfg.Metrics = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var failed console.ListResponse
	var metrics string
	cfg.Served = func(s *servers) {
		defer cancel()
		base := "http://" + s.ConsoleAddr + "/"
		require.NoError(t, json.Unmarshal(get(t, base+"api/processes?flow=deploy&status=failed&limit=100"), &failed))
		page := string(get(t, base+"?flow=deploy&status=failed"))
		assert.Contains(t, page, `id="processes"`, "the list page")
		if len(failed.Processes) > 0 {
			id := failed.Processes[0].ID
			var p console.ProcessDetail
			require.NoError(t, json.Unmarshal(get(t, base+"api/processes/"+id), &p))
			assert.Equal(t, "failed", p.Status)
			require.NotNil(t, p.Error, "a failed deployment says why")
		}
		metrics = string(get(t, "http://"+s.MetricsAddr+"/metrics"))
	}
	sum, err := run(ctx, cfg)
	require.NoError(t, err, out.String())
	assert.Contains(t, out.String(), "console: http://127.0.0.1:")
	require.Positive(t, sum.Failed, "seed 7 fails some of 150 deployments")
	assert.Len(t, failed.Processes, sum.Failed, "the console lists every failed deployment")
	for _, p := range failed.Processes {
		assert.True(t, strings.HasPrefix(p.ID, "deploy-"), p.ID)
		assert.NotEmpty(t, p.Position, "where it failed")
	}
	assert.Contains(t, metrics, `stepflow_processes{status="failed",version="deploy/v1"}`)
	assert.Contains(t, metrics, "stepflow_claim_lag_seconds_bucket")
	assert.Contains(t, metrics, `stepflow_step_duration_seconds_count{outcome="ok",path="shouldDeploy/waitMerged"`)
}
