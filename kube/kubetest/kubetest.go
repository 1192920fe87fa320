// Package kubetest runs tests against a real API server: controller-runtime's
// envtest starts etcd and kube-apiserver, once per test package, and each
// test gets a namespace of its own and, if it wants, a manager.
//
// The binaries come from KUBEBUILDER_ASSETS or, when it is unset, from the
// cache that `make envtest-assets` (.ci/envtest-assets.sh) fills, found by
// the same formula. Without either the tests skip with a message naming
// `make envtest-assets`, except in CI (the environment variable CI
// non-empty), where they fail, so that CI cannot pass without them.
//
// A test package holds one Cluster, stops it in TestMain, and asks it for
// the API server in each test:
//
//	var cluster = kubetest.NewCluster(kubetest.Options{CRDDirectoryPaths: []string{"config/crd"}, Scheme: scheme})
//
//	func TestMain(m *testing.M) { os.Exit(cluster.Run(m)) }
//
//	func TestSomething(t *testing.T) {
//		env := cluster.Require(t) // skips (or fails in CI) without binaries
//		ns := kubetest.Namespace(t, env.Client)
//		mgr, _ := ctrl.NewManager(env.Config, kubetest.ManagerOptions(t, env, ns))
//		...
//		kubetest.StartManager(t, mgr)
//	}
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// The versions .ci/envtest-assets.sh builds. A test of this package keeps
// the two in step.
const (
	K8sVersion  = "1.37.2"
	EtcdVersion = "3.7.3"
)

// Wait bounds every wait of a test for a controller. Waits poll and end as
// soon as their condition holds, so a generous bound costs nothing when
// things work.
const Wait = 30 * time.Second

// AssetsDir returns the directory holding etcd and kube-apiserver:
// KUBEBUILDER_ASSETS, or the cache directory of .ci/envtest-assets.sh,
// ${STEPFLOW_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stepflow-envtest}/k8s-<K8sVersion>-etcd-<EtcdVersion>.
// It returns "" and the reason when neither has the binaries.
func AssetsDir() (dir, why string) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, ""
	}
	root := os.Getenv("STEPFLOW_ENVTEST_CACHE")
	if root == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", "KUBEBUILDER_ASSETS is unset and there is no home directory to find the cache in; run `make envtest-assets` at the repository root and set KUBEBUILDER_ASSETS to the directory it prints"
			}
			base = filepath.Join(home, ".cache")
		}
		root = filepath.Join(base, "stepflow-envtest")
	}
	dir = filepath.Join(root, fmt.Sprintf("k8s-%s-etcd-%s", K8sVersion, EtcdVersion))
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		if fi, err := os.Stat(filepath.Join(dir, bin)); err != nil || fi.Mode()&0o111 == 0 {
			return "", fmt.Sprintf("KUBEBUILDER_ASSETS is unset and %s has no %s; run `make envtest-assets` at the repository root to build it", dir, bin)
		}
	}
	return dir, ""
}

// Options configures a Cluster.
type Options struct {
	// CRDDirectoryPaths are directories (or files) of CustomResourceDefinitions
	// to install, relative to the test's package directory. A missing
	// path is an error.
	CRDDirectoryPaths []string
	// Scheme knows every type the tests and their controllers use. Nil
	// means client-go's scheme of the built-in types.
	Scheme *runtime.Scheme
}

// Cluster is one envtest control plane shared by the tests of a package,
// started by the first test that asks for it.
type Cluster struct {
	opts Options

	once sync.Once
	tenv *envtest.Environment
	env  *Env
	skip string
	err  error
}

// Env is a running API server, as tests use it.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client reads from and writes to the API server directly: no cache,
	// so every read sees every acknowledged write.
	Client client.Client
	// Scheme is Options.Scheme.
	Scheme *runtime.Scheme
}

// NewCluster returns a cluster that starts on first use.
func NewCluster(opts Options) *Cluster { return &Cluster{opts: opts} }

// Require returns the running API server, starting it on first use. When
// the binaries are missing, the test is skipped, or fails when the
// environment variable CI is set; when the API server does not start, the
// test fails.
func (c *Cluster) Require(t testing.TB) *Env {
	t.Helper()
	c.once.Do(c.start)
	if c.skip != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("envtest binaries missing in CI: %s", c.skip)
		}
		t.Skip(c.skip)
	}
	if c.err != nil {
		t.Fatalf("start envtest: %v", c.err)
	}
	return c.env
}

func (c *Cluster) start() {
	dir, why := AssetsDir()
	if dir == "" {
		c.skip = why
		return
	}
	scheme := c.opts.Scheme
	if scheme == nil {
		scheme = runtime.NewScheme()
		if err := corev1.AddToScheme(scheme); err != nil {
			c.err = err
			return
		}
	}
	tenv := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     c.opts.CRDDirectoryPaths,
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	// On a machine with loopback only (no default route), kube-apiserver
	// finds no address to advertise and exits; told to advertise
	// 127.0.0.1, it exits because its endpoint reconciler refuses loopback
	// addresses for the "kubernetes" Service. Tests need neither.
	tenv.ControlPlane.GetAPIServer().Configure().
		Set("advertise-address", "127.0.0.1").
		Set("endpoint-reconciler-type", "none")
	cfg, err := tenv.Start()
	if err != nil {
		c.err = errors.Join(err, tenv.Stop())
		return
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		c.err = errors.Join(err, tenv.Stop())
		return
	}
	c.tenv = tenv
	c.env = &Env{Config: cfg, Client: cl, Scheme: scheme}
}

// Stop stops the API server and etcd, if they were started.
func (c *Cluster) Stop() error {
	if c.tenv == nil {
		return nil
	}
	err := c.tenv.Stop()
	c.tenv = nil
	return err
}

// Run runs the tests of m and then stops the cluster; call it from
// TestMain and exit with its result. It also sets controller-runtime's
// global logger to discard, so that its packages do not complain that
// none was set: the managers of the tests log through their own
// (ManagerOptions).
func (c *Cluster) Run(m *testing.M) int {
	logf.SetLogger(logr.Discard())
	code := m.Run()
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop envtest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Namespace creates a namespace for the test alone, named after it, so
// that its objects and its controller's cache see nothing of the other
// tests. (Nothing deletes namespaces in envtest; they go with the
// environment.)
func Namespace(t testing.TB, c client.Client) string {
	t.Helper()
	name := strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-"))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: strings.Trim(name[:min(len(name), 40)], "-") + "-"}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// ManagerOptions are the options of a manager for one test: env's
// scheme, no metrics or probe endpoints, a cache restricted to namespace
// ns, leader election in ns with release on cancel (as a production
// manager would run), controller names that may repeat (a test that
// restarts its controller registers the name again), and Logger(t).
func ManagerOptions(t testing.TB, env *Env, ns string) ctrl.Options {
	skip := true
	return ctrl.Options{
		Scheme:                        env.Scheme,
		Logger:                        Logger(t),
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                true,
		LeaderElectionID:              "controller.kubetest.stepflow.io",
		LeaderElectionNamespace:       ns,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Controller:                    config.Controller{SkipNameValidation: &skip},
	}
}

// Manager is what a manager needs to start and stop; ctrl.Manager has it.
type Manager interface {
	Start(ctx context.Context) error
}

// StartManager starts mgr and returns a function that stops it and waits
// until it has stopped (leader lease released), failing the test if it
// does not within Wait. The manager is stopped at the end of the test
// too; stop may be called any number of times.
func StartManager(t testing.TB, mgr Manager) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("manager: %v", err)
				}
			case <-time.After(Wait):
				t.Errorf("the manager did not stop within %s", Wait)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Logger returns a logger that keeps what a manager and its reconcilers
// log, and shows it when the test fails. It does not log through t: a
// manager's event broadcaster goes on logging for a moment after the
// manager stopped, when the test may be over.
func Logger(t testing.TB) logr.Logger {
	var mu sync.Mutex
	var b strings.Builder
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("controller log:\n%s", b.String())
		}
	})
	return funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&b, "%s %s %s\n", time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: 1})
}

// Eventually polls ok every 50 milliseconds until it returns true, and
// fails the test after Wait, with what ok last said.
func Eventually(t testing.TB, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	var last string
	for time.Now().Before(deadline) {
		var done bool
		if done, last = ok(); done {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not %s after %s: %s", what, Wait, last)
}
