package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stepflow-io/go-stepflow/console"
	"github.com/stepflow-io/go-stepflow/observe/stepprom"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// servers are the HTTP endpoints a run may serve: the operator console
// (-http) and Prometheus metrics (-metrics).
type servers struct {
	console, metrics *http.Server
	// ConsoleAddr and MetricsAddr are where they listen, once started.
	ConsoleAddr, MetricsAddr string
}

// withMetrics adds the Prometheus collector's hooks to m when cfg asks for
// metrics, and returns the collector (nil otherwise).
func withMetrics(cfg *config, m *runner.Metrics) *stepprom.Collector {
	if cfg.Metrics == "" {
		return nil
	}
	c := stepprom.New("")
	h := c.Hooks()
	step := m.Step
	m.Step = func(call stepflow.Call, d time.Duration, err error) {
		step(call, d, err)
		h.Step(call, d, err)
	}
	migrated := m.Migrated
	m.Migrated = func(id, from, to string) {
		migrated(id, from, to)
		h.Migrated(id, from, to)
	}
	m.Applied, m.Committed, m.Quarantined, m.Deleted, m.Claimed = h.Applied, h.Committed, h.Quarantined, h.Deleted, h.Claimed
	return c
}

// serve starts the servers cfg asks for, over r.
func serve(cfg *config, r *runner.Runner, metrics *stepprom.Collector) (*servers, error) {
	s := &servers{}
	if cfg.HTTP != "" {
		c, err := console.New(r, &console.Options{Actions: true, Title: "deploy"})
		if err != nil {
			return nil, err
		}
		if s.console, s.ConsoleAddr, err = listen(cfg.HTTP, c); err != nil {
			return nil, fmt.Errorf("-http: %w", err)
		}
	}
	if metrics != nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics.Watch(r))
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		var err error
		if s.metrics, s.MetricsAddr, err = listen(cfg.Metrics, mux); err != nil {
			s.close()
			return nil, fmt.Errorf("-metrics: %w", err)
		}
	}
	return s, nil
}

func listen(addr string, h http.Handler) (*http.Server, string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("server:", err)
		}
	}()
	return srv, l.Addr().String(), nil
}

func (s *servers) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range []*http.Server{s.console, s.metrics} {
		if srv != nil {
			_ = srv.Shutdown(ctx)
		}
	}
}
