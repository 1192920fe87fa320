package kubetest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The binaries the tests look for are the ones the script builds.
func TestVersionsMatchScript(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", ".ci", "envtest-assets.sh"))
	require.NoError(t, err)
	for name, want := range map[string]string{"K8S_VERSION": K8sVersion, "ETCD_VERSION": EtcdVersion} {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(b)
		require.NotNil(t, m, "%s not set in .ci/envtest-assets.sh", name)
		assert.Equal(t, want, string(m[1]), name)
	}
}

// AssetsDir takes KUBEBUILDER_ASSETS as it is, and otherwise looks where
// .ci/envtest-assets.sh puts the binaries.
func TestAssetsDir(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", "/opt/assets")
	dir, why := AssetsDir()
	assert.Equal(t, "/opt/assets", dir)
	assert.Empty(t, why)

	t.Setenv("KUBEBUILDER_ASSETS", "")
	cache := t.TempDir()
	t.Setenv("STEPFLOW_ENVTEST_CACHE", cache)
	dir, why = AssetsDir()
	assert.Empty(t, dir)
	assert.Contains(t, why, "make envtest-assets")

	want := filepath.Join(cache, "k8s-"+K8sVersion+"-etcd-"+EtcdVersion)
	require.NoError(t, os.MkdirAll(want, 0o755))
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		require.NoError(t, os.WriteFile(filepath.Join(want, bin), []byte("#!/bin/sh\n"), 0o755))
	}
	dir, why = AssetsDir()
	assert.Equal(t, want, dir, why)

	t.Setenv("STEPFLOW_ENVTEST_CACHE", "")
	xdg := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", xdg)
	_, why = AssetsDir()
	assert.Contains(t, why, filepath.Join(xdg, "stepflow-envtest"))
}

// recorder is a testing.TB that records Skip and Fatal instead of ending
// the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skip(args ...any)                  { r.skipped = strings.TrimSpace(sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = format }

func sprint(args ...any) string {
	var b strings.Builder
	for _, a := range args {
		if s, ok := a.(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}

// Without binaries a test skips, naming make envtest-assets; in CI it
// fails instead.
func TestRequireWithoutBinaries(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", "")
	t.Setenv("STEPFLOW_ENVTEST_CACHE", t.TempDir())

	t.Setenv("CI", "")
	r := &recorder{TB: t}
	NewCluster(Options{}).Require(r)
	assert.Contains(t, r.skipped, "make envtest-assets")
	assert.Empty(t, r.failed)

	t.Setenv("CI", "true")
	r = &recorder{TB: t}
	NewCluster(Options{}).Require(r)
	assert.Contains(t, r.failed, "missing in CI")
}
