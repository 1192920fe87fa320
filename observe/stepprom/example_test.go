package stepprom_test

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/observe/stepprom"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// Example exports a runner's metrics: serve reg with promhttp.HandlerFor in
// a service; here the gathered values are printed.
func Example() {
	metrics := stepprom.New("")
	flow := stepflow.Must(stepflow.New("greet/v1",
		combinators.Do("hello", func(context.Context, *struct{}) error { return nil }),
		combinators.Do("charge", func(context.Context, *struct{}) error { return errors.New("card declined") }),
	))
	r, _ := runner.New(store.NewMemory(), &runner.Options{Metrics: metrics.Hooks()})
	greetings, _ := runner.Register(r, flow)
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.Watch(r))

	ctx := context.Background()
	for _, id := range []string{"g-1", "g-2"} {
		_ = greetings.Start(ctx, id, struct{}{})
	}
	for n := 1; n > 0; {
		n, _ = r.Step(ctx)
	}
	families, _ := reg.Gather()
	var lines []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += fmt.Sprintf(" %s=%s", l.GetName(), l.GetValue())
			}
			switch {
			case m.GetCounter() != nil:
				lines = append(lines, fmt.Sprintf("%s%s %g", f.GetName(), labels, m.GetCounter().GetValue()))
			case m.GetGauge() != nil:
				lines = append(lines, fmt.Sprintf("%s%s %g", f.GetName(), labels, m.GetGauge().GetValue()))
			case m.GetHistogram() != nil:
				lines = append(lines, fmt.Sprintf("%s%s count=%d", f.GetName(), labels, m.GetHistogram().GetSampleCount()))
			}
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// stepflow_claim_lag_seconds version=greet/v1 count=4
	// stepflow_commit_duration_seconds outcome=ok count=2
	// stepflow_deleted_total 0
	// stepflow_processes status=failed version=greet/v1 2
	// stepflow_step_duration_seconds outcome=error path=charge version=greet/v1 count=2
	// stepflow_step_duration_seconds outcome=ok path=hello version=greet/v1 count=2
	// stepflow_transitions_total status=failed version=greet/v1 2
	// stepflow_writes_refused_total 0
}
