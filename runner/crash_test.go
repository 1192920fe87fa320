package runner_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/boltstore"
	"github.com/stepflow-io/go-stepflow/store/pgstore"
	"github.com/stepflow-io/go-stepflow/store/storetest"
	"github.com/stepflow-io/go-stepflow/versions"
)

// These tests run runners in child OS processes (the test binary
// re-executing itself with STEPFLOW_CHILD set, see TestMain), kill them with SIGKILL
// mid-run, and check what survived.

const (
	crashProcs = 300
	crashSteps = 5
)

// childFlow is the flow child runners execute. Every step sleeps a little
// (so the kill lands mid-run) and records its execution through record.
func childFlow(steps int, pause time.Duration, record recorder) *stepflow.Flow[counter] {
	return childFlowVersion("crash/v1", steps, pause, record)
}

// recorder notes one execution of a step of a process.
type recorder func(ctx context.Context, id, version string, step int, start, end time.Time) error

// childFlowVersion is childFlow under another version name; crash/v2 has
// one step more than crash/v1, at the end.
func childFlowVersion(version string, steps int, pause time.Duration, record recorder) *stepflow.Flow[counter] {
	if version == "crash/v2" {
		steps++
	}
	return stepflow.Must(stepflow.New(version, childSteps(steps, pause, record)...))
}

// childSteps are the steps of the child flows: each sleeps pause and
// records its execution.
func childSteps(steps int, pause time.Duration, record recorder) []stepflow.Node[counter] {
	var nodes []stepflow.Node[counter]
	for i := range steps {
		nodes = append(nodes, combinators.Do(fmt.Sprintf("s%d", i), func(ctx context.Context, d *counter) error {
			call, _ := stepflow.CallFrom(ctx)
			start := time.Now()
			time.Sleep(pause)
			d.N++
			return record(ctx, call.ID, call.Version, i, start, time.Now())
		}))
	}
	return nodes
}

// limitedChildFlow is childFlow's steps under one slot of the resource
// "cluster" (runner.Limited), as flow limited/v1.
func limitedChildFlow(steps int, pause time.Duration, record recorder) *stepflow.Flow[counter] {
	return stepflow.Must(stepflow.New("limited/v1", runner.Limited("use", "cluster", nil, childSteps(steps, pause, record)...)))
}

// childRegistry is crash/v1 and crash/v2, which a runner of the next
// release hosts.
func childRegistry(steps int, pause time.Duration, record recorder) *versions.Registry[counter] {
	reg, err := versions.New([]*stepflow.Flow[counter]{childFlowVersion("crash/v1", steps, pause, record), childFlowVersion("crash/v2", steps, pause, record)}, nil,
		versions.NewMigration[counter]("crash/v1", "crash/v2"))
	if err != nil {
		panic(err)
	}
	return reg
}

// TestMain turns the test binary into a child runner when STEPFLOW_CHILD
// is set.
func TestMain(m *testing.M) {
	if os.Getenv("STEPFLOW_CHILD") != "" {
		if err := runChild(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild runs a runner until every process of the store has ended.
func runChild() error {
	ctx := context.Background()
	var s store.Store
	var record recorder
	owner := os.Getenv("STEPFLOW_CHILD_OWNER")
	switch mode := os.Getenv("STEPFLOW_CHILD"); mode {
	case "bolt":
		bs, err := boltstore.Open(os.Getenv("STEPFLOW_CHILD_DB"), &boltstore.Options{Timeout: 10 * time.Second})
		if err != nil {
			return err
		}
		s = bs
	case "pg":
		ps, err := pgstore.Open(ctx, os.Getenv(storetest.PostgresEnv), &pgstore.Options{Schema: os.Getenv("STEPFLOW_CHILD_SCHEMA")})
		if err != nil {
			return err
		}
		s = ps
	default:
		return fmt.Errorf("unknown child mode %q", mode)
	}
	defer s.Close()
	if logPath := os.Getenv("STEPFLOW_CHILD_LOG"); logPath != "" {
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		record = func(_ context.Context, id, _ string, step int, start, end time.Time) error {
			// One write per line: appends of this size are atomic.
			_, err := fmt.Fprintf(f, "%s %d %s %d %d\n", id, step, owner, start.UnixNano(), end.UnixNano())
			return err
		}
	} else {
		ps := s.(*pgstore.Store)
		table := pgx.Identifier{os.Getenv("STEPFLOW_CHILD_SCHEMA"), "executions"}.Sanitize()
		record = func(ctx context.Context, id, version string, step int, start, end time.Time) error {
			_, err := ps.Pool().Exec(ctx, `INSERT INTO `+table+` (id, version, step, owner, started, ended) VALUES ($1, $2, $3, $4, $5, $6)`,
				id, version, step, owner, start.UnixNano(), end.UnixNano())
			return err
		}
	}
	steps, _ := strconv.Atoi(os.Getenv("STEPFLOW_CHILD_STEPS"))
	pause, _ := time.ParseDuration(os.Getenv("STEPFLOW_CHILD_PAUSE"))
	batch, _ := strconv.Atoi(os.Getenv("STEPFLOW_CHILD_BATCH"))
	opts := &runner.Options{
		Owner: owner, Batch: batch, Lease: 2 * time.Second, MaxIdle: 200 * time.Millisecond,
		OnError: func(err error) { fmt.Fprintln(os.Stderr, "runner:", err) },
	}
	// STEPFLOW_CHILD_LIMIT=N runs the steps of every process holding one
	// of N slots of a resource shared by all the runners (runner.Limited).
	limit, _ := strconv.Atoi(os.Getenv("STEPFLOW_CHILD_LIMIT"))
	if limit > 0 {
		opts.Limits = map[string]runner.Limit{"cluster": {Capacity: limit}}
		runner.LimitPoll = 20 * time.Millisecond
	}
	r, err := runner.New(s, opts)
	if err != nil {
		return err
	}
	// STEPFLOW_CHILD_RELEASE=next hosts crash/v1 and crash/v2; the
	// default, crash/v1 alone.
	var claimed []string
	switch {
	case limit > 0:
		ps, err := runner.Register(r, limitedChildFlow(steps, pause, record))
		if err != nil {
			return err
		}
		claimed = ps.Versions()
	case os.Getenv("STEPFLOW_CHILD_RELEASE") == "next":
		ps, err := runner.RegisterVersions(r, childRegistry(steps, pause, record))
		if err != nil {
			return err
		}
		claimed = ps.Versions()
	default:
		ps, err := runner.Register(r, childFlow(steps, pause, record))
		if err != nil {
			return err
		}
		claimed = ps.Versions()
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	for {
		time.Sleep(50 * time.Millisecond)
		c, err := r.Counts(ctx)
		if err != nil {
			stop()
			return err
		}
		left := 0
		for _, v := range claimed {
			left += c.ByVersion[v].ByStatus[stepflow.Running] + c.ByVersion[v].ByStatus[stepflow.Waiting]
		}
		if left == 0 {
			break
		}
	}
	stop()
	return <-done
}

type child struct {
	cmd *exec.Cmd
	out lockedBuffer
}

// lockedBuffer collects a child's output; the copying goroutine of
// os/exec writes while the test may read.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startChild(t *testing.T, env ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0])}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	require.NoError(t, c.cmd.Start())
	return c
}

func (c *child) wait(t *testing.T, within time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "child output:\n%s", c.out.String())
	case <-time.After(within):
		_ = c.cmd.Process.Kill()
		<-done
		t.Fatalf("child did not finish within %s; output:\n%s", within, c.out.String())
	}
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Kill()) // SIGKILL
	_ = c.cmd.Wait()
}

// execution is one recorded step run.
type execution struct {
	id, version string
	step        int
	owner       string
	start, end  int64
}

func readLog(t *testing.T, path string) []execution {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var out []execution
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		if len(parts) != 5 {
			continue // a line cut by the kill
		}
		step, _ := strconv.Atoi(parts[1])
		start, _ := strconv.ParseInt(parts[3], 10, 64)
		end, _ := strconv.ParseInt(parts[4], 10, 64)
		out = append(out, execution{id: parts[0], step: step, owner: parts[2], start: start, end: end})
	}
	return out
}

// checkExecutions asserts each step of each process ran at least once and
// at most twice.
func checkExecutions(t *testing.T, execs []execution, procs, steps int) {
	t.Helper()
	counts := map[string]int{}
	for _, e := range execs {
		counts[fmt.Sprintf("%s/%d", e.id, e.step)]++
	}
	twice := 0
	for i := range procs {
		for s := range steps {
			n := counts[fmt.Sprintf("p%04d/%d", i, s)]
			if n < 1 || n > 2 {
				t.Errorf("p%04d step %d ran %d times", i, s, n)
			}
			if n == 2 {
				twice++
			}
		}
	}
	t.Logf("%d executions, %d steps ran twice", len(execs), twice)
}

func startCrashProcs(t *testing.T, s store.Store, n int) {
	_, ps, err := newRunner(childFlow(crashSteps, 0, nil), s, nil)
	require.NoError(t, err)
	for i := range n {
		err := ps.Start(t.Context(), fmt.Sprintf("p%04d", i), counter{})
		require.NoError(t, err)
	}
}

func checkAllDone(t *testing.T, s store.Store, n, steps int) {
	t.Helper()
	_, ps, err := newRunner(childFlow(steps, 0, nil), s, nil)
	require.NoError(t, err)
	for i := range n {
		st, err := ps.State(t.Context(), fmt.Sprintf("p%04d", i))
		require.NoError(t, err)
		require.Equal(t, stepflow.Done, st.Status, "p%04d", i)
		require.Equal(t, steps, st.Data.N, "p%04d: every step's effect on the data was saved once", i)
	}
}

func waitLines(t *testing.T, path string, n int, c *child) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(readLog(t, path)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("child made no progress; output:\n%s", c.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCrashBolt(t *testing.T) {
	dir := t.TempDir()
	db, logPath := filepath.Join(dir, "stepflow.db"), filepath.Join(dir, "executions.log")
	s, err := boltstore.Open(db, nil)
	require.NoError(t, err)
	startCrashProcs(t, s, crashProcs)
	require.NoError(t, s.Close())

	env := []string{"STEPFLOW_CHILD=bolt", "STEPFLOW_CHILD_DB=" + db, "STEPFLOW_CHILD_LOG=" + logPath,
		"STEPFLOW_CHILD_STEPS=" + strconv.Itoa(crashSteps), "STEPFLOW_CHILD_PAUSE=100us", "STEPFLOW_CHILD_BATCH=64"}
	c := startChild(t, append(env, "STEPFLOW_CHILD_OWNER=first")...)
	waitLines(t, logPath, crashProcs*crashSteps/3, c)
	c.kill(t)
	killedAt := len(readLog(t, logPath))
	require.Less(t, killedAt, crashProcs*crashSteps, "the kill must land mid-run")

	c = startChild(t, append(env, "STEPFLOW_CHILD_OWNER=second")...)
	c.wait(t, 90*time.Second)

	s, err = boltstore.Open(db, nil)
	require.NoError(t, err)
	defer s.Close()
	checkAllDone(t, s, crashProcs, crashSteps)
	checkExecutions(t, readLog(t, logPath), crashProcs, crashSteps)
}

func TestCrashPostgres(t *testing.T) {
	storetest.PostgresDSN(t)
	schema := newSchema(t)
	s := newPG(t, schema)
	startCrashProcs(t, s, crashProcs)
	logPath := filepath.Join(t.TempDir(), "executions.log")

	env := []string{"STEPFLOW_CHILD=pg", "STEPFLOW_CHILD_SCHEMA=" + schema, "STEPFLOW_CHILD_LOG=" + logPath,
		"STEPFLOW_CHILD_STEPS=" + strconv.Itoa(crashSteps), "STEPFLOW_CHILD_PAUSE=100us", "STEPFLOW_CHILD_BATCH=64"}
	c := startChild(t, append(env, "STEPFLOW_CHILD_OWNER=first")...)
	waitLines(t, logPath, crashProcs*crashSteps/3, c)
	c.kill(t)
	require.Less(t, len(readLog(t, logPath)), crashProcs*crashSteps, "the kill must land mid-run")

	// The dead runner's leases expire (2s) and the restarted one takes
	// its processes over.
	c = startChild(t, append(env, "STEPFLOW_CHILD_OWNER=second")...)
	c.wait(t, 90*time.Second)
	checkAllDone(t, s, crashProcs, crashSteps)
	checkExecutions(t, readLog(t, logPath), crashProcs, crashSteps)
}

// TestScaleOutPostgres: three runner processes share 2,000 processes; one
// is killed mid-run and its leases are taken over after they expire. No
// step of a process ever runs in two runners at once.
func TestScaleOutPostgres(t *testing.T) {
	storetest.PostgresDSN(t)
	const procs, steps = 2000, 3
	schema := newSchema(t)
	s := newPG(t, schema)
	ctx := t.Context()
	createExecutions(t, schema)
	startCrashProcs(t, s, procs)

	env := []string{"STEPFLOW_CHILD=pg", "STEPFLOW_CHILD_SCHEMA=" + schema,
		"STEPFLOW_CHILD_STEPS=" + strconv.Itoa(steps), "STEPFLOW_CHILD_BATCH=16"}
	var children []*child
	for i := range 3 {
		// runner0, the one to be killed, has slow steps so that it always
		// holds leases on work in progress when the kill lands.
		pause := "1ms"
		if i == 0 {
			pause = "20ms"
		}
		children = append(children, startChild(t, append(env, fmt.Sprintf("STEPFLOW_CHILD_OWNER=runner%d", i), "STEPFLOW_CHILD_PAUSE="+pause)...))
	}
	table := pgx.Identifier{schema, "stepflow_processes"}.Sanitize()
	countExecs := func() int {
		var n int
		require.NoError(t, testPool(t).QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "executions"}.Sanitize()).Scan(&n))
		return n
	}
	leasedBy0 := func() map[string]int64 {
		rows, err := testPool(t).Query(ctx, `SELECT id, due FROM `+table+` WHERE owner = 'runner0'`)
		require.NoError(t, err)
		out := map[string]int64{}
		for rows.Next() {
			var id string
			var due int64
			require.NoError(t, rows.Scan(&id, &due))
			out[id] = due
		}
		require.NoError(t, rows.Err())
		return out
	}
	deadline := time.Now().Add(60 * time.Second)
	for countExecs() < procs*steps/4 || len(leasedBy0()) == 0 {
		require.True(t, time.Now().Before(deadline), "no progress; output:\n%s", children[0].out.String())
		time.Sleep(20 * time.Millisecond)
	}
	children[0].kill(t)
	killedAt := time.Now().UnixNano()
	orphans := leasedBy0()
	require.NotEmpty(t, orphans, "the killed runner held leases")
	for _, c := range children[1:] {
		c.wait(t, 120*time.Second)
	}

	checkAllDone(t, s, procs, steps)
	execs := pgExecutions(t, schema)
	checkExecutions(t, execs, procs, steps)
	byOwner := checkNoOverlap(t, execs)
	// The dead runner's processes were continued by the others, and not
	// before its leases expired.
	for _, e := range execs {
		if leaseEnd, ok := orphans[e.id]; ok && e.owner != "runner0" && e.start > killedAt {
			assert.GreaterOrEqual(t, e.start, leaseEnd, "%s taken over before runner0's lease expired", e.id)
		}
	}
	t.Logf("executions per runner: %v; processes orphaned by the kill and taken over: %d", byOwner, len(orphans))
	for _, o := range []string{"runner0", "runner1", "runner2"} {
		assert.Positive(t, byOwner[o], "%s did part of the work", o)
	}
}

// createExecutions makes the table in which child runners on PostgreSQL
// record their step executions.
func createExecutions(t *testing.T, schema string) {
	_, err := testPool(t).Exec(t.Context(), `CREATE TABLE `+pgx.Identifier{schema, "executions"}.Sanitize()+
		` (id text NOT NULL, version text NOT NULL, step int NOT NULL, owner text NOT NULL, started bigint NOT NULL, ended bigint NOT NULL)`)
	require.NoError(t, err)
}

// pgExecutions reads the executions recorded on PostgreSQL, by process and
// start time.
func pgExecutions(t *testing.T, schema string) []execution {
	rows, err := testPool(t).Query(t.Context(), `SELECT id, version, step, owner, started, ended FROM `+
		pgx.Identifier{schema, "executions"}.Sanitize()+` ORDER BY id, started`)
	require.NoError(t, err)
	var execs []execution
	for rows.Next() {
		var e execution
		require.NoError(t, rows.Scan(&e.id, &e.version, &e.step, &e.owner, &e.start, &e.end))
		execs = append(execs, e)
	}
	require.NoError(t, rows.Err())
	return execs
}

// checkNoOverlap asserts that, per process, executions never overlap in
// time, whoever ran them, and counts executions per runner.
func checkNoOverlap(t *testing.T, execs []execution) map[string]int {
	t.Helper()
	byOwner := map[string]int{}
	for i, e := range execs {
		byOwner[e.owner]++
		if i > 0 && execs[i-1].id == e.id {
			prev := execs[i-1]
			assert.LessOrEqual(t, prev.end, e.start, "%s: step %d (%s) overlaps step %d (%s)", e.id, prev.step, prev.owner, e.step, e.owner)
		}
	}
	return byOwner
}

// TestRollingUpgradeOnPostgres: during a rolling upgrade, a runner process
// of the old release (crash/v1 only) and one of the next release (crash/v1
// and crash/v2) share one database with 2,000 processes, and new processes
// start at crash/v2 meanwhile. Every process completes; none is
// quarantined; the old runner never runs a step of crash/v2; the new one
// migrates the crash/v1 processes it claims; and no step of a process ever
// runs in two runners at once.
func TestRollingUpgradeOnPostgres(t *testing.T) {
	storetest.PostgresDSN(t)
	const procs, late, steps = 2000, 200, 3
	schema := newSchema(t)
	s := newPG(t, schema)
	ctx := t.Context()
	createExecutions(t, schema)
	startCrashProcs(t, s, procs)

	env := []string{"STEPFLOW_CHILD=pg", "STEPFLOW_CHILD_SCHEMA=" + schema,
		"STEPFLOW_CHILD_STEPS=" + strconv.Itoa(steps), "STEPFLOW_CHILD_BATCH=16", "STEPFLOW_CHILD_PAUSE=1ms"}
	old := startChild(t, append(env, "STEPFLOW_CHILD_OWNER=old")...)
	next := startChild(t, append(env, "STEPFLOW_CHILD_OWNER=next", "STEPFLOW_CHILD_RELEASE=next")...)

	// New processes start at crash/v2, from a process of the next
	// release, while both runners work.
	r, err := runner.New(s, nil)
	require.NoError(t, err)
	ps, err := runner.RegisterVersions(r, childRegistry(steps, 0, nil))
	require.NoError(t, err)
	batch := make([]runner.NewProcess[counter], late)
	for i := range batch {
		batch[i] = runner.NewProcess[counter]{ID: fmt.Sprintf("late%04d", i)}
	}
	errs, err := ps.StartMany(ctx, batch)
	require.NoError(t, err)
	require.Nil(t, errs)

	old.wait(t, 120*time.Second)
	next.wait(t, 120*time.Second)

	c, err := r.Counts(ctx)
	require.NoError(t, err)
	assert.Zero(t, c.Quarantined, "nothing is quarantined because of a version some runner knows")
	assert.Equal(t, procs+late, c.ByStatus[stepflow.Done], "every process completed: %+v", c.ByVersion)
	execs := pgExecutions(t, schema)
	byOwner := checkNoOverlap(t, execs)
	migrated := 0
	for _, e := range execs {
		if e.owner == "old" {
			assert.Equal(t, "crash/v1", e.version, "the old runner ran %s step %d of %s", e.id, e.step, e.version)
		}
		if e.version == "crash/v2" && strings.HasPrefix(e.id, "p") && e.step == steps {
			migrated++ // the step only crash/v2 has, run by a process started at crash/v1
		}
	}
	for i := range late {
		st, err := ps.State(ctx, fmt.Sprintf("late%04d", i))
		require.NoError(t, err)
		assert.Equal(t, steps+1, st.Data.N, "late%04d ran crash/v2", i)
	}
	t.Logf("executions per runner: %v; crash/v1 processes migrated to crash/v2 and finished there: %d; counts: %+v", byOwner, migrated, c.ByVersion)
	assert.Positive(t, byOwner["old"], "the old runner did part of the work")
	assert.Positive(t, byOwner["next"], "the new runner did part of the work")
	assert.Positive(t, migrated, "the new runner migrated crash/v1 processes")
}

// TestLimitedAcrossRunnerProcesses runs three runner OS processes on one
// database over processes whose steps need one of three slots of a
// resource: at no time do more than three processes run their steps, and
// every process ends with every slot given back.
func TestLimitedAcrossRunnerProcesses(t *testing.T) {
	storetest.PostgresDSN(t)
	const procs, steps, capacity = 24, 2, 3
	schema := newSchema(t)
	s := newPG(t, schema)
	createExecutions(t, schema)
	_, ps, err := newRunner(limitedChildFlow(steps, 0, nil), s, nil)
	require.NoError(t, err)
	for i := range procs {
		require.NoError(t, ps.Start(t.Context(), fmt.Sprintf("p%03d", i), counter{}))
	}
	env := []string{"STEPFLOW_CHILD=pg", "STEPFLOW_CHILD_SCHEMA=" + schema, "STEPFLOW_CHILD_LIMIT=" + strconv.Itoa(capacity),
		"STEPFLOW_CHILD_STEPS=" + strconv.Itoa(steps), "STEPFLOW_CHILD_PAUSE=15ms", "STEPFLOW_CHILD_BATCH=4"}
	var children []*child
	for i := range 3 {
		children = append(children, startChild(t, append(env, fmt.Sprintf("STEPFLOW_CHILD_OWNER=runner%d", i))...))
	}
	for _, c := range children {
		c.wait(t, 120*time.Second)
	}
	n, err := s.Count(t.Context())
	require.NoError(t, err)
	require.Equal(t, procs, n.ByStatus[stepflow.Done])
	execs := pgExecutions(t, schema)
	require.Len(t, execs, procs*steps)
	// The most processes between their first step's start and their last
	// step's end at once: a sweep over those intervals.
	type edge struct {
		at int64
		d  int
	}
	first, last := map[string]int64{}, map[string]int64{}
	owners := map[string]bool{}
	for _, e := range execs {
		if f, ok := first[e.id]; !ok || e.start < f {
			first[e.id] = e.start
		}
		last[e.id] = max(last[e.id], e.end)
		owners[e.owner] = true
	}
	var edges []edge
	for id := range first {
		edges = append(edges, edge{first[id], 1}, edge{last[id], -1})
	}
	slices.SortFunc(edges, func(a, b edge) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.d, b.d)) })
	most, cur := 0, 0
	for _, e := range edges {
		cur += e.d
		most = max(most, cur)
	}
	assert.LessOrEqual(t, most, capacity, "never more holders than the capacity")
	assert.Equal(t, capacity, most, "the capacity was used")
	assert.Greater(t, len(owners), 1, "several runner processes did the work")
	hs, err := s.SlotHolders(t.Context(), "", "", 10)
	require.NoError(t, err)
	assert.Empty(t, hs, "every slot given back")
}
