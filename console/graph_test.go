package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/console"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// A graph's edges reach the API and the diagram.
func TestGraphEdgesAreShown(t *testing.T) {
	ok := func(context.Context, *struct{}) error { return nil }
	f := stepflow.Must(stepflow.New("pipeline/v1", combinators.Graph("jobs",
		combinators.After(combinators.Do("build", ok)),
		combinators.After(combinators.Do("lint", ok)),
		combinators.After(combinators.Do("ship", ok), "build", "lint"),
	)))
	r, err := runner.New(store.NewMemory(), nil)
	require.NoError(t, err)
	p, err := runner.Register(r, f)
	require.NoError(t, err)
	require.NoError(t, p.Start(t.Context(), "p1", struct{}{}))
	c, err := console.New(r, nil)
	require.NoError(t, err)
	srv := httptest.NewServer(c)
	defer srv.Close()

	get := func(path string) []byte {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		return b
	}
	var d console.ProcessDetail
	require.NoError(t, json.Unmarshal(get("/api/processes/p1"), &d))
	require.NotNil(t, d.Description)
	needs := map[string][]string{}
	for _, n := range d.Description.Nodes {
		needs[n.Path] = n.Needs
	}
	assert.Equal(t, []string{"build", "lint"}, needs["jobs/ship"])
	assert.Empty(t, needs["jobs/build"])
	page := string(get("/processes/p1"))
	assert.Contains(t, page, `<span class="needs">after <code>build</code>, <code>lint</code></span>`)
}
