// Command controller runs the Rollout controller: a controller-runtime
// manager with one reconciler that drives every Rollout of the cluster
// through a stepflow process kept in the Rollout's status.
//
// Install the CRD from config/crd, grant the permissions in config/rbac,
// and run it in the cluster or, for a try, outside it with a kubeconfig:
//
//	go run . --leader-elect=false
//	kubectl apply -f config/samples/rollout.yaml
//	kubectl get rollouts -w
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/examples/controller/internal/controller"
	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// config is what the command line sets.
type config struct {
	metricsAddr    string
	probeAddr      string
	leaderElect    bool
	leaderElectNS  string
	maxSteps       int
	readyTimeout   time.Duration
	zapDevelopment bool
	kubeconfig     string
}

// parseFlags reads the command line.
func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.metricsAddr, "metrics-bind-address", ":8080", `address of the Prometheus metrics endpoint; "0" turns it off`)
	fs.StringVar(&c.probeAddr, "health-probe-bind-address", ":8081", `address of the /healthz and /readyz endpoints; "0" turns them off`)
	fs.BoolVar(&c.leaderElect, "leader-elect", true, "elect a leader so that only one replica reconciles at a time")
	fs.StringVar(&c.leaderElectNS, "leader-election-namespace", "", "namespace of the leader election lease (default: the pod's own)")
	fs.IntVar(&c.maxSteps, "max-steps", controller.DefaultMaxSteps, "most flow steps one reconcile runs before it writes the status")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", controller.DefaultReadyTimeout, "how long a rollout waits for its Deployment to become available")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file to use outside a cluster (default: $KUBECONFIG, the in-cluster config, or ~/.kube/config)")
	fs.BoolVar(&c.zapDevelopment, "zap-devel", false, "human-friendly logs instead of JSON")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return c, nil
}

// newScheme knows every type the controller reads or writes.
func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// newManager builds the manager and registers the reconciler. clock is the
// controller's only source of time; main passes the real clock. metrics,
// if not nil, counts reconciles, steps and rollouts by phase.
func newManager(rc *rest.Config, c config, clock stepflow.Clock, metrics *kube.Metrics) (ctrl.Manager, error) {
	scheme, err := newScheme()
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: c.metricsAddr},
		HealthProbeBindAddress:  c.probeAddr,
		LeaderElection:          c.leaderElect,
		LeaderElectionID:        "rollout-controller.examples.stepflow.io",
		LeaderElectionNamespace: c.leaderElectNS,
		// The manager stops only after the lease is released, so a new
		// leader takes over at once instead of waiting for the lease to
		// expire. Safe here because the process exits right after.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	r, err := controller.NewRolloutReconciler(mgr.GetClient(), scheme, &controller.Options{
		Clock:        clock,
		MaxSteps:     c.maxSteps,
		ReadyTimeout: c.readyTimeout,
		Metrics:      metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("compile rollout flow: %w", err)
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("register rollout controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add ready check: %w", err)
	}
	return mgr, nil
}

// restConfig loads the API server's address and credentials.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig()
}

func run(ctx context.Context, args []string) error {
	c, err := parseFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseDevMode(c.zapDevelopment)))
	rc, err := restConfig(c.kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	// The manager serves controller-runtime's registry at
	// --metrics-bind-address; the rollout metrics join it there.
	metrics := kube.NewMetrics("")
	if err := ctrlmetrics.Registry.Register(metrics); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	mgr, err := newManager(rc, c, stepflow.ClockFunc(time.Now), metrics)
	if err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("starting manager", "leaderElection", c.leaderElect, "metrics", c.metricsAddr)
	return mgr.Start(ctx)
}

func main() {
	if err := run(ctrl.SetupSignalHandler(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
}
