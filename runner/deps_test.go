package runner_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNoHeavyDependencies keeps pgx, OpenTelemetry, Prometheus and
// Kubernetes out of the core, the runner, the store interface and the
// embedded store: only programs that choose pgstore compile pgx, and only
// those that choose an adapter compile its library.
func TestNoHeavyDependencies(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, pkg := range []string{
		"github.com/stepflow-io/go-stepflow/stepflow",
		"github.com/stepflow-io/go-stepflow/combinators",
		"github.com/stepflow-io/go-stepflow/codec",
		"github.com/stepflow-io/go-stepflow/observe",
		"github.com/stepflow-io/go-stepflow/runner",
		"github.com/stepflow-io/go-stepflow/store",
		"github.com/stepflow-io/go-stepflow/store/boltstore",
	} {
		out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
		require.NoError(t, err, string(out))
		deps := string(out)
		assert.Contains(t, deps, pkg, "the listing is real")
		for _, banned := range []string{"github.com/jackc/", "go.opentelemetry.io/", "github.com/prometheus/", "k8s.io/"} {
			assert.False(t, strings.Contains(deps, banned), "%s depends on %s", pkg, banned)
		}
	}
}
