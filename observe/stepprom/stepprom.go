// Package stepprom exports Prometheus metrics of a stepflow runner: step
// calls and their latency, saved transitions, quarantines, migrations,
// commits, claim lag (how late due processes are picked up), and the
// number of processes per flow version and status, read
// from the store at each scrape so that it is right after a restart.
// Every series carries the flow version ("version"); step series also the
// node path ("path").
//
// Importing it compiles the Prometheus client; the core packages import
// neither it nor this package.
package stepprom

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Collector holds the metrics. Register it with a prometheus.Registerer
// and install Hooks as runner.Options.Metrics (or call its fields from
// yours); programs that call Flow.Apply themselves add Interceptor to
// their flows instead, for the step metrics.
type Collector struct {
	steps       *prometheus.HistogramVec
	transitions *prometheus.CounterVec
	quarantined *prometheus.CounterVec
	migrated    *prometheus.CounterVec
	deleted     prometheus.Counter
	commits     *prometheus.HistogramVec
	refused     prometheus.Counter
	lag         *prometheus.HistogramVec
	processes   *prometheus.Desc

	// runner is read at each scrape for the process counts; nil before
	// Watch.
	runner  *runner.Runner
	timeout time.Duration
}

// New returns a collector; namespace prefixes every metric name
// (default "stepflow").
func New(namespace string) *Collector {
	if namespace == "" {
		namespace = "stepflow"
	}
	return &Collector{
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "step_duration_seconds",
			Help:    "Duration of calls of user code (steps and predicates), by flow version, node path and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"version", "path", "outcome"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "transitions_total",
			Help: "Saved Applies that changed a process's status, by flow version and new status."}, []string{"version", "status"}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "quarantined_total",
			Help: "Processes set aside because their stored state could not be used, by flow version."}, []string{"version"}),
		migrated: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "migrated_total",
			Help: "Processes moved from one flow version to another, by the versions."}, []string{"from", "to"}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "deleted_total",
			Help: "Ended processes deleted by the runner's retention."}),
		commits: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "commit_duration_seconds",
			Help: "Duration of store transactions of the runner, by outcome.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}, []string{"outcome"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "writes_refused_total",
			Help: "Writes the store refused (a revision conflict or a lost lease): their steps run again."}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "claim_lag_seconds",
			Help:    "How late due processes were picked up: from their wake time (or last write, for running ones) to their Apply, by flow version. A growing lag says the runners do not keep up.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"version"}),
		processes: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "processes"),
			"Processes in the store, by flow version and status (quarantined: status \"quarantined\").", []string{"version", "status"}, nil),
		timeout: 5 * time.Second,
	}
}

// Watch makes the collector report, at each scrape, the number of
// processes of r's store per flow version and status (Runner.Counts).
func (c *Collector) Watch(r *runner.Runner) *Collector {
	c.runner = r
	return c
}

// Interceptor times every call of user code, for programs that call
// Flow.Apply without a runner: a runner with Hooks times them already.
func (c *Collector) Interceptor() stepflow.Interceptor {
	return func(ctx context.Context, call stepflow.Call, next func(context.Context) error) error {
		start := time.Now()
		err := next(ctx)
		c.step(call, time.Since(start), err)
		return err
	}
}

func (c *Collector) step(call stepflow.Call, d time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	c.steps.WithLabelValues(call.Version, call.Path, outcome).Observe(d.Seconds())
}

// Hooks returns the runner hooks that feed the collector: every metric
// but the process counts, which Watch adds.
func (c *Collector) Hooks() *runner.Metrics {
	return &runner.Metrics{
		Step: c.step,
		Applied: func(t runner.Transition) {
			if t.From != t.To {
				c.transitions.WithLabelValues(t.Version, t.To.String()).Inc()
			}
		},
		Quarantined: func(_, version string, _ error) { c.quarantined.WithLabelValues(version).Inc() },
		Migrated:    func(_, from, to string) { c.migrated.WithLabelValues(from, to).Inc() },
		Deleted:     func(n int) { c.deleted.Add(float64(n)) },
		Claimed:     func(version string, lag time.Duration) { c.lag.WithLabelValues(version).Observe(lag.Seconds()) },
		Committed: func(_, refused int, d time.Duration, err error) {
			outcome := "ok"
			if err != nil {
				outcome = "error"
			}
			c.commits.WithLabelValues(outcome).Observe(d.Seconds())
			c.refused.Add(float64(refused))
		},
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.steps.Describe(ch)
	c.transitions.Describe(ch)
	c.quarantined.Describe(ch)
	c.migrated.Describe(ch)
	c.deleted.Describe(ch)
	c.commits.Describe(ch)
	c.refused.Describe(ch)
	c.lag.Describe(ch)
	ch <- c.processes
}

// Collect implements prometheus.Collector. The process counts come from
// the store, within a few seconds; a store that does not answer leaves
// them out of that scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.steps.Collect(ch)
	c.transitions.Collect(ch)
	c.quarantined.Collect(ch)
	c.migrated.Collect(ch)
	c.deleted.Collect(ch)
	c.commits.Collect(ch)
	c.refused.Collect(ch)
	c.lag.Collect(ch)
	if c.runner == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	counts, err := c.runner.Counts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.processes, err)
		return
	}
	for version, vc := range counts.ByVersion {
		for status, n := range vc.ByStatus {
			ch <- prometheus.MustNewConstMetric(c.processes, prometheus.GaugeValue, float64(n), version, status.String())
		}
		if vc.Quarantined > 0 {
			ch <- prometheus.MustNewConstMetric(c.processes, prometheus.GaugeValue, float64(vc.Quarantined), version, "quarantined")
		}
	}
}
