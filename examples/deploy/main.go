// Command deploy runs many continuous-deployment pipelines at once with one
// runner goroutine, against a simulated GitOps repository and Argo CD-like
// controller in the same process.
//
//	go run ./examples/deploy                      # 1,000 deployments, bbolt in a temp file
//	go run ./examples/deploy -n 200 -db deploy.db # keep the store; run again to resume
//	go run ./examples/deploy -store postgres://user:pass@host/db
//	go run ./examples/deploy -db deploy.db -flow v2 # the next release: deploy/v2
//	go run ./examples/deploy -http localhost:8080   # browse the processes in the console
//	go run ./examples/deploy -metrics localhost:9090 # Prometheus metrics at /metrics
//
// With -http the operator console (package console) serves the processes
// during the run and after the summary, with the runner still running, until
// interrupted: list the failed deployments, read why one failed, cancel or
// redrive one, or all those a filter matches. The stepflow command (go run
// ./cmd/stepflow -addr localhost:8080 list -status failed) does the same from
// a shell.
//
// Kill it (Ctrl-C, or kill -9) and run it again with the same -db or
// -store: it picks up where it stopped; nothing that was saved is redone.
// Run it again with -flow v2 and the deployments still in flight move to
// deploy/v2 at their next step. A second flow, rollback/v1, runs in the
// same store and runner: every deployment that fails is rolled back.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/boltstore"
	"github.com/stepflow-io/go-stepflow/store/pgstore"
)

// config is everything a run needs; main fills it from flags.
type config struct {
	N        int
	DB       string // bbolt file; "" means a temporary file
	Store    string // postgres:// URL; "" means bbolt
	Schema   string // PostgreSQL schema
	Flow     string // "v1" or "v2"
	Seed     uint64
	Scale    float64
	Latency  time.Duration
	Workers  int
	Progress time.Duration
	HTTP     string // console address; "" for none
	Metrics  string // Prometheus address; "" for none
	Terminal bool
	Out      io.Writer
	// Step, when set, is told about every step call (tests record them).
	Step func(stepflow.Call)
	// Served, when set, is called once the summary is printed while the
	// console serves (tests browse it, then cancel the run's context).
	Served func(*servers)
}

func main() {
	cfg := config{Out: os.Stdout}
	flag.IntVar(&cfg.N, "n", 1000, "number of deployments")
	flag.StringVar(&cfg.DB, "db", "", "bbolt file to keep the processes in (default: a temporary file, removed at the end)")
	flag.StringVar(&cfg.Store, "store", "", "PostgreSQL URL (postgres://...) to use instead of bbolt")
	flag.StringVar(&cfg.Schema, "schema", "public", "PostgreSQL schema for the processes table")
	flag.StringVar(&cfg.Flow, "flow", "v1", "release to run: v1 (deploy/v1) or v2 (deploy/v1 and deploy/v2, new deployments on v2)")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "seed of the simulated world")
	flag.Float64Var(&cfg.Scale, "scale", 1, "multiplies every simulated duration")
	flag.DurationVar(&cfg.Latency, "latency", 0, "mean simulated API latency, spent inside steps")
	flag.IntVar(&cfg.Workers, "workers", 1, "runner goroutines")
	flag.DurationVar(&cfg.Progress, "progress", 0, "progress interval (default 200ms on a terminal, 1s otherwise)")
	flag.StringVar(&cfg.HTTP, "http", "", "serve the operator console at this address (e.g. localhost:8080) during the run and after it, until interrupted")
	flag.StringVar(&cfg.Metrics, "metrics", "", "serve Prometheus metrics at this address, under /metrics")
	flag.Parse()
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		cfg.Terminal = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "deploy:", err)
		os.Exit(1)
	}
}

// summary is the outcome of a run.
type summary struct {
	Total, Resumed                     int
	Done, Failed, Canceled, Quarantine int
	// Migrated counts the deployments this run moved from deploy/v1 to
	// deploy/v2; Versions, the deployments by version at the end.
	Migrated int
	Versions map[string]int
	// Rollbacks started for failed deployments, and how many are done.
	Rollbacks, RolledBack int
	FailedAt              map[string]int
	PRs, Repeats          int64
	Elapsed               time.Duration
	Calls                 map[string][]time.Duration
}

func openStore(ctx context.Context, cfg *config) (store.Store, string, func(), error) {
	if cfg.Store != "" {
		s, err := pgstore.Open(ctx, cfg.Store, &pgstore.Options{Schema: cfg.Schema})
		if err != nil {
			return nil, "", nil, err
		}
		if err := s.Migrate(ctx); err != nil {
			_ = s.Close()
			return nil, "", nil, err
		}
		return s, "postgres", func() { _ = s.Close() }, nil
	}
	path, cleanup := cfg.DB, func() {}
	if path == "" {
		dir, err := os.MkdirTemp("", "stepflow-deploy-")
		if err != nil {
			return nil, "", nil, err
		}
		path = filepath.Join(dir, "deploy.db")
		cleanup = func() { _ = os.RemoveAll(dir) }
	}
	s, err := boltstore.Open(path, nil)
	if err != nil {
		cleanup()
		return nil, "", nil, err
	}
	return s, "bbolt " + path, func() { _ = s.Close(); cleanup() }, nil
}

// run starts (or resumes) cfg.N deployments and runs them to the end.
func run(ctx context.Context, cfg config) (*summary, error) {
	if cfg.N <= 0 {
		return nil, errors.New("-n must be positive")
	}
	if cfg.Progress <= 0 {
		cfg.Progress = time.Second
		if cfg.Terminal {
			cfg.Progress = 200 * time.Millisecond
		}
	}
	st, where, closeStore, err := openStore(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer closeStore()

	world := NewWorld(cfg.Seed)
	world.Scale, world.Latency = cfg.Scale, cfg.Latency
	var mu sync.Mutex
	calls := map[string][]time.Duration{}
	var migrated atomic.Int64
	metrics := &runner.Metrics{
		Step: func(call stepflow.Call, d time.Duration, _ error) {
			mu.Lock()
			calls[call.Path] = append(calls[call.Path], d)
			mu.Unlock()
			if cfg.Step != nil {
				cfg.Step(call)
			}
		},
		Migrated: func(_, _, _ string) { migrated.Add(1) },
	}
	collector := withMetrics(&cfg, metrics)
	r, err := runner.New(st, &runner.Options{
		Workers: cfg.Workers, Metrics: metrics, Lease: 10 * time.Second,
		OnError: func(err error) { fmt.Fprintln(cfg.Out, "runner error (retrying):", err) },
	})
	if err != nil {
		return nil, err
	}
	deploys, err := registerDeploy(r, world, cfg.Flow)
	if err != nil {
		return nil, err
	}
	rollbackFlow, err := RollbackFlow(world)
	if err != nil {
		return nil, err
	}
	rollbacks, err := runner.Register(r, rollbackFlow)
	if err != nil {
		return nil, err
	}
	srv, err := serve(&cfg, r, collector)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	if srv.ConsoleAddr != "" {
		fmt.Fprintf(cfg.Out, "console: http://%s/\n", srv.ConsoleAddr)
	}
	if srv.MetricsAddr != "" {
		fmt.Fprintf(cfg.Out, "metrics: http://%s/metrics\n", srv.MetricsAddr)
	}

	start := time.Now()
	sum := &summary{Total: cfg.N}
	// Start the deployments a thousand at a time: one store transaction
	// and one wake-up per batch. Ids already taken are deployments of an
	// earlier run, which resume.
	for lo := 0; lo < cfg.N; lo += 1000 {
		batch := make([]runner.NewProcess[Deploy], 0, min(1000, cfg.N-lo))
		for i := lo; i < min(lo+1000, cfg.N); i++ {
			batch = append(batch, runner.NewProcess[Deploy]{ID: fmt.Sprintf("deploy-%05d", i), Data: Deploy{App: fmt.Sprintf("app-%05d", i), Target: "v2"}})
		}
		errs, err := deploys.StartMany(ctx, batch)
		if err != nil {
			return nil, err
		}
		for _, err := range errs {
			switch {
			case errors.Is(err, store.ErrExists):
				sum.Resumed++
			case err != nil:
				return nil, err
			}
		}
	}
	fmt.Fprintf(cfg.Out, "%d deployments (%d resumed) of %s on %s, %d runner goroutine(s)\n", cfg.N, sum.Resumed, deploys.Latest(), where, cfg.Workers)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(runCtx) }()

	p := &progress{out: cfg.Out, terminal: cfg.Terminal, total: cfg.N, start: start}
	tick := time.NewTicker(cfg.Progress)
	defer tick.Stop()
	for {
		t, err := tally(ctx, st)
		if err == nil {
			// Roll back what failed. The rollback's id is derived from
			// the deployment's, so a restart starts none twice.
			err = startRollbacks(ctx, rollbacks, t.failedApps)
		}
		if err != nil {
			stopRun()
			<-runErr
			return nil, err
		}
		p.show(t)
		if t.ended() >= cfg.N && t.rollbacksEnded() >= len(t.failedApps) {
			break
		}
		select {
		case <-ctx.Done():
			stopRun()
			<-runErr
			p.done()
			fmt.Fprintln(cfg.Out, "interrupted; run again with the same store to resume")
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	if srv.console == nil {
		stopRun()
		if err := <-runErr; err != nil {
			return nil, err
		}
	}
	p.done()

	t, err := tally(context.WithoutCancel(ctx), st)
	if err != nil {
		return nil, err
	}
	sum.Done, sum.Failed, sum.Canceled, sum.Quarantine = t.status[stepflow.Done], t.status[stepflow.Failed], t.status[stepflow.Canceled], t.quarantined
	sum.FailedAt, sum.Versions = t.failedAt, t.versions
	sum.Rollbacks, sum.RolledBack = len(t.failedApps), t.rollbacks[stepflow.Done]
	sum.Migrated = int(migrated.Load())
	sum.PRs, sum.Repeats = world.Stats()
	sum.Elapsed = time.Since(start)
	mu.Lock()
	sum.Calls = calls
	mu.Unlock()
	sum.print(cfg.Out, cfg.Flow)
	if srv.console == nil && sum.Failed > 0 {
		fmt.Fprintln(cfg.Out, "\nto see why they failed: go run ./examples/deploy -http localhost:8080, then open http://localhost:8080/?status=failed")
	}
	if srv.console != nil {
		// The console goes on serving, and the runner on running what
		// an operator changes there, until interrupted.
		fmt.Fprintf(cfg.Out, "\nconsole: http://%s/ (interrupt to stop)\n", srv.ConsoleAddr)
		if cfg.Served != nil {
			cfg.Served(srv)
		}
		<-ctx.Done()
		stopRun()
		if err := <-runErr; err != nil {
			return sum, err
		}
	}
	return sum, nil
}

// registerDeploy hosts the deployment flow of the release: deploy/v1
// alone, or deploy/v1 and deploy/v2 with the migration between them.
func registerDeploy(r *runner.Runner, w *World, release string) (*runner.Processes[Deploy], error) {
	switch release {
	case "v1", "":
		f, err := DeployFlow(w)
		if err != nil {
			return nil, err
		}
		return runner.Register(r, f)
	case "v2":
		reg, err := DeployVersions(w)
		if err != nil {
			return nil, err
		}
		return runner.RegisterVersions(r, reg)
	}
	return nil, fmt.Errorf("-flow %q: want v1 or v2", release)
}

// startRollbacks starts a rollback for each failed deployment that has
// none yet.
func startRollbacks(ctx context.Context, rollbacks *runner.Processes[Rollback], failed map[string]string) error {
	var batch []runner.NewProcess[Rollback]
	for id, app := range failed {
		batch = append(batch, runner.NewProcess[Rollback]{ID: "rollback-" + id, Data: Rollback{App: app, To: "v1"}})
	}
	if len(batch) == 0 {
		return nil
	}
	errs, err := rollbacks.StartMany(ctx, batch)
	if err != nil {
		return err
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
	}
	return nil
}

// counts is a snapshot of where the processes are.
type counts struct {
	status      map[stepflow.Status]int // deployments
	at          map[string]int          // running or waiting deployments by position
	failedAt    map[string]int
	versions    map[string]int // deployments by flow version
	quarantined int
	// failedApps maps each failed deployment to its app, and rollbacks
	// counts the rollback processes by status.
	failedApps map[string]string
	rollbacks  map[stepflow.Status]int
}

func (c counts) ended() int {
	return c.status[stepflow.Done] + c.status[stepflow.Failed] + c.status[stepflow.Canceled] + c.quarantined
}

func (c counts) rollbacksEnded() int {
	return c.rollbacks[stepflow.Done] + c.rollbacks[stepflow.Failed] + c.rollbacks[stepflow.Canceled]
}

// tally reads every record (a page at a time) and counts them by flow,
// status and position. It decodes nothing: the store keeps each
// process's version, status and position beside its state, so only the
// failed deployments are decoded.
func tally(ctx context.Context, s store.Store) (counts, error) {
	c := counts{status: map[stepflow.Status]int{}, at: map[string]int{}, failedAt: map[string]int{},
		versions: map[string]int{}, failedApps: map[string]string{}, rollbacks: map[stepflow.Status]int{}}
	after := ""
	for {
		recs, err := s.List(ctx, store.Filter{After: after, Limit: 1000})
		if err != nil {
			return c, err
		}
		if len(recs) == 0 {
			return c, nil
		}
		for _, rec := range recs {
			if rec.Flow() == "rollback" {
				c.rollbacks[rec.Status]++
				continue
			}
			if rec.Quarantine != "" {
				c.quarantined++
				continue
			}
			c.status[rec.Status]++
			c.versions[rec.Version]++
			switch {
			case rec.Status == stepflow.Failed:
				c.failedAt[rec.Position]++
				// The app is in the data: only failed deployments
				// are decoded.
				st, err := codec.Decode[Deploy](rec.Blob, nil)
				if err != nil {
					return c, fmt.Errorf("failed deployment %s: %w", rec.ID, err)
				}
				c.failedApps[rec.ID] = st.Data.App
			case !rec.Status.Terminal():
				pos := rec.Position
				if pos == "" {
					pos = "(running)"
				}
				c.at[pos]++
			}
		}
		after = recs[len(recs)-1].ID
	}
}

// progress prints live progress: a bar redrawn in place on a terminal,
// plain lines otherwise.
type progress struct {
	out      io.Writer
	terminal bool
	total    int
	start    time.Time
	drawn    bool
}

func (p *progress) show(c counts) {
	ended := c.ended()
	elapsed := time.Since(p.start).Round(100 * time.Millisecond)
	type kv struct {
		k string
		v int
	}
	var at []kv
	for k, v := range c.at {
		at = append(at, kv{k, v})
	}
	sort.Slice(at, func(i, j int) bool { return at[i].v > at[j].v || at[i].v == at[j].v && at[i].k < at[j].k })
	var parts []string
	for i, e := range at {
		if i == 4 {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, fmt.Sprintf("%s:%d", e.k, e.v))
	}
	where := strings.Join(parts, " ")
	if !p.terminal {
		fmt.Fprintf(p.out, "%6s  %d/%d ended (done %d, failed %d)  %s\n", elapsed, ended, p.total,
			c.status[stepflow.Done], c.status[stepflow.Failed], where)
		return
	}
	const width = 30
	fill := width * ended / max(p.total, 1)
	bar := strings.Repeat("█", fill) + strings.Repeat("░", width-fill)
	line := fmt.Sprintf("%s %5d/%d %6s  done %d failed %d  %s", bar, ended, p.total, elapsed,
		c.status[stepflow.Done], c.status[stepflow.Failed], where)
	if r := []rune(line); len(r) > 160 {
		line = string(r[:160])
	}
	fmt.Fprintf(p.out, "\r\033[K%s", line)
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.out)
		p.drawn = false
	}
}

func (s *summary) print(out io.Writer, release string) {
	fmt.Fprintf(out, "\n%d deployments in %s: %d done, %d failed, %d canceled, %d quarantined\n",
		s.Total, s.Elapsed.Round(time.Millisecond), s.Done, s.Failed, s.Canceled, s.Quarantine)
	if release == "v2" || s.Migrated > 0 {
		fmt.Fprintf(out, "migrated from deploy/v1 to deploy/v2 by this run: %d (deployments by version at the end: %s)\n", s.Migrated, byVersion(s.Versions))
	}
	fmt.Fprintf(out, "rollbacks of failed deployments: %d started, %d done\n", s.Rollbacks, s.RolledBack)
	if len(s.FailedAt) > 0 {
		var keys []string
		for k := range s.FailedAt {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Fprint(out, "failed at:")
		for _, k := range keys {
			fmt.Fprintf(out, " %s=%d", k, s.FailedAt[k])
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "pull requests opened by this run: %d (repeated requests absorbed by the idempotency key: %d)\n", s.PRs, s.Repeats)
	fmt.Fprintf(out, "\n%-50s %7s %9s %9s %9s\n", "step (wall clock per call)", "calls", "p50", "p90", "p99")
	var paths []string
	for p := range s.Calls {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		d := slices.Clone(s.Calls[p])
		slices.Sort(d)
		fmt.Fprintf(out, "%-50s %7d %9s %9s %9s\n", p, len(d), pct(d, 0.50), pct(d, 0.90), pct(d, 0.99))
	}
}

func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	return sorted[i].Round(time.Microsecond)
}

func byVersion(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
