package stepflow_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCoreStaysLight keeps the promise that importing the core packages
// compiles neither Kubernetes, pgx, OpenTelemetry nor bbolt: only the
// standard library and msgpack.
func TestCoreStaysLight(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command; skipped with -short")
	}
	out, err := exec.Command("go", "list", "-deps",
		"github.com/stepflow-io/go-stepflow/stepflow",
		"github.com/stepflow-io/go-stepflow/combinators",
		"github.com/stepflow-io/go-stepflow/codec").CombinedOutput()
	require.NoError(t, err, string(out))
	for _, dep := range strings.Fields(string(out)) {
		first := strings.SplitN(dep, "/", 2)[0]
		if !strings.Contains(first, ".") {
			continue // standard library
		}
		ok := strings.HasPrefix(dep, "github.com/stepflow-io/go-stepflow/") ||
			strings.HasPrefix(dep, "github.com/vmihailenco/")
		require.True(t, ok, "core packages must not depend on %s", dep)
	}
}
