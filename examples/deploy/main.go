// Command deploy runs many continuous-deployment pipelines at once with one
// runner goroutine, against a simulated GitOps repository and Argo CD-like
// controller in the same process.
//
//	go run ./examples/deploy                      # 1,000 deployments, bbolt in a temp file
//	go run ./examples/deploy -n 200 -db deploy.db # keep the store; run again to resume
//	go run ./examples/deploy -store postgres://user:pass@host/db
//
// Kill it (Ctrl-C, or kill -9) and run it again with the same -db or
// -store: it picks up where it stopped; nothing that was saved is redone.
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
	Seed     uint64
	Scale    float64
	Latency  time.Duration
	Workers  int
	Progress time.Duration
	Terminal bool
	Out      io.Writer
	// Step, when set, is told about every step call (tests record them).
	Step func(stepflow.Call)
}

func main() {
	cfg := config{Out: os.Stdout}
	flag.IntVar(&cfg.N, "n", 1000, "number of deployments")
	flag.StringVar(&cfg.DB, "db", "", "bbolt file to keep the processes in (default: a temporary file, removed at the end)")
	flag.StringVar(&cfg.Store, "store", "", "PostgreSQL URL (postgres://...) to use instead of bbolt")
	flag.StringVar(&cfg.Schema, "schema", "public", "PostgreSQL schema for the processes table")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "seed of the simulated world")
	flag.Float64Var(&cfg.Scale, "scale", 1, "multiplies every simulated duration")
	flag.DurationVar(&cfg.Latency, "latency", 0, "mean simulated API latency, spent inside steps")
	flag.IntVar(&cfg.Workers, "workers", 1, "runner goroutines")
	flag.DurationVar(&cfg.Progress, "progress", 0, "progress interval (default 200ms on a terminal, 1s otherwise)")
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
	FailedAt                           map[string]int
	PRs, Repeats                       int64
	Elapsed                            time.Duration
	Calls                              map[string][]time.Duration
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
	flow, err := DeployFlow(world)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	calls := map[string][]time.Duration{}
	metrics := &runner.Metrics{Step: func(call stepflow.Call, d time.Duration, _ error) {
		mu.Lock()
		calls[call.Path] = append(calls[call.Path], d)
		mu.Unlock()
		if cfg.Step != nil {
			cfg.Step(call)
		}
	}}
	r, err := runner.New(flow, st, &runner.Options{
		Workers: cfg.Workers, Metrics: metrics, Lease: 10 * time.Second,
		OnError: func(err error) { fmt.Fprintln(cfg.Out, "runner error (retrying):", err) },
	})
	if err != nil {
		return nil, err
	}

	start := time.Now()
	sum := &summary{Total: cfg.N}
	for i := range cfg.N {
		id := fmt.Sprintf("deploy-%05d", i)
		_, err := r.Start(ctx, id, Deploy{App: fmt.Sprintf("app-%05d", i), Target: "v2"})
		switch {
		case errors.Is(err, store.ErrExists):
			sum.Resumed++
		case err != nil:
			return nil, err
		}
	}
	fmt.Fprintf(cfg.Out, "%d deployments (%d resumed) on %s, %d runner goroutine(s)\n", cfg.N, sum.Resumed, where, cfg.Workers)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(runCtx) }()

	p := &progress{out: cfg.Out, terminal: cfg.Terminal, total: cfg.N, start: start}
	tick := time.NewTicker(cfg.Progress)
	defer tick.Stop()
	for {
		t, err := tally(ctx, st)
		if err != nil {
			stopRun()
			<-runErr
			return nil, err
		}
		p.show(t)
		if t.ended() >= cfg.N {
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
	stopRun()
	if err := <-runErr; err != nil {
		return nil, err
	}
	p.done()

	t, err := tally(context.WithoutCancel(ctx), st)
	if err != nil {
		return nil, err
	}
	sum.Done, sum.Failed, sum.Canceled, sum.Quarantine = t.status[stepflow.Done], t.status[stepflow.Failed], t.status[stepflow.Canceled], t.quarantined
	sum.FailedAt = t.failedAt
	sum.PRs, sum.Repeats = world.Stats()
	sum.Elapsed = time.Since(start)
	mu.Lock()
	sum.Calls = calls
	mu.Unlock()
	sum.print(cfg.Out)
	return sum, nil
}

// counts is a snapshot of where the processes are.
type counts struct {
	status      map[stepflow.Status]int
	at          map[string]int // running or waiting processes by position
	failedAt    map[string]int
	quarantined int
}

func (c counts) ended() int {
	return c.status[stepflow.Done] + c.status[stepflow.Failed] + c.status[stepflow.Canceled] + c.quarantined
}

// tally reads every process (a page at a time) and counts them by status
// and by position in the flow.
func tally(ctx context.Context, s store.Store) (counts, error) {
	c := counts{status: map[stepflow.Status]int{}, at: map[string]int{}, failedAt: map[string]int{}}
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
			if rec.Quarantine != "" {
				c.quarantined++
				continue
			}
			st, err := codec.Decode[Deploy](rec.Blob, nil)
			if err != nil {
				c.quarantined++
				continue
			}
			c.status[st.Status]++
			switch {
			case st.Status == stepflow.Failed && st.Err != nil:
				c.failedAt[st.Err.Path]++
			case !st.Terminal():
				pos := st.Positions()
				if len(pos) == 0 {
					pos = []string{"(starting)"}
				}
				c.at[pos[0]]++
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

func (s *summary) print(out io.Writer) {
	fmt.Fprintf(out, "\n%d deployments in %s: %d done, %d failed, %d canceled, %d quarantined\n",
		s.Total, s.Elapsed.Round(time.Millisecond), s.Done, s.Failed, s.Canceled, s.Quarantine)
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
