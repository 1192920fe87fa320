package kube

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
)

// Outcomes of a reconcile, the "outcome" label of the reconciles metric.
const (
	// OutcomeAdvanced: the process ran at least one step, or started,
	// was canceled or was migrated, and the status was written.
	OutcomeAdvanced = "advanced"
	// OutcomeIdle: nothing to do (a wait not due, an ended process, a
	// problem already reported).
	OutcomeIdle = "idle"
	// OutcomeConflict: the status or finalizer write lost to a newer
	// version of the object; the reconcile is requeued.
	OutcomeConflict = "conflict"
	// OutcomeError: the reconcile returned an error, for
	// controller-runtime's rate-limited retry.
	OutcomeError = "error"
	// OutcomeReported: the process cannot go on, and the status now says
	// so (Process.Report).
	OutcomeReported = "reported"
	// OutcomeReleased: the finalizer was removed from a deleted object.
	OutcomeReleased = "released"
)

// Metrics counts what reconcilers do, for Prometheus: reconciles by
// outcome, steps run by flow version, and the objects each reconciler
// holds by flow version and phase. Register it on a registry (with
// controller-runtime, sigs.k8s.io/controller-runtime/pkg/metrics.Registry,
// which the manager serves) and give it to Options.Metrics; several
// reconcilers may share one, their series told apart by the "controller"
// label. For the latency of each step, add observe/stepprom's Interceptor
// to the flow.
//
// It is cheap: two counter increments per reconcile, and a map entry per
// object, updated when its phase changes and read at each scrape. The
// process counts are those of the objects this replica reconciled since it
// started (a manager reconciles every object once at start-up, when its
// caches fill), so a standby replica reports none.
type Metrics struct {
	reconciles *prometheus.CounterVec
	steps      *prometheus.CounterVec
	processes  *prometheus.Desc

	mu sync.Mutex
	// objects holds what each object's process was at its last reconcile.
	objects map[metricObject]metricProcess
}

type metricObject struct {
	controller string
	key        types.NamespacedName
}

type metricProcess struct{ version, phase string }

// NewMetrics returns a collector whose metric names start with namespace
// ("stepflow" when empty): <namespace>_kube_reconciles_total,
// <namespace>_kube_steps_total and <namespace>_kube_processes.
func NewMetrics(namespace string) *Metrics {
	if namespace == "" {
		namespace = "stepflow"
	}
	return &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "kube", Name: "reconciles_total",
			Help: "Reconciles of objects that hold a stepflow process, by controller and outcome."}, []string{"controller", "outcome"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "kube", Name: "steps_total",
			Help: "Steps run by reconciles, by controller and flow version."}, []string{"controller", "version"}),
		processes: prometheus.NewDesc(prometheus.BuildFQName(namespace, "kube", "processes"),
			"Objects reconciled by this replica, by controller, flow version and phase (status.phase).", []string{"controller", "version", "phase"}, nil),
		objects: map[metricObject]metricProcess{},
	}
}

// reconciled counts one reconcile of key. steps is how many steps it ran
// on version; phase and version are the object's process after it, and an
// empty phase forgets the object (deleted, released).
func (m *Metrics) reconciled(controller string, key types.NamespacedName, outcome, version, phase string, steps uint64) {
	if m == nil {
		return
	}
	m.reconciles.WithLabelValues(controller, outcome).Inc()
	if steps > 0 {
		m.steps.WithLabelValues(controller, version).Add(float64(steps))
	}
	if outcome == OutcomeError || outcome == OutcomeConflict {
		return // the object is as it was
	}
	o := metricObject{controller, key}
	m.mu.Lock()
	defer m.mu.Unlock()
	if phase == "" {
		delete(m.objects, o)
		return
	}
	m.objects[o] = metricProcess{version, phase}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.reconciles.Describe(ch)
	m.steps.Describe(ch)
	ch <- m.processes
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.reconciles.Collect(ch)
	m.steps.Collect(ch)
	type series struct{ controller, version, phase string }
	counts := map[series]int{}
	m.mu.Lock()
	for o, p := range m.objects {
		counts[series{o.controller, p.version, p.phase}]++
	}
	m.mu.Unlock()
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(m.processes, prometheus.GaugeValue, float64(n), s.controller, s.version, s.phase)
	}
}

var _ prometheus.Collector = (*Metrics)(nil)
