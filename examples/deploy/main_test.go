package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store/storetest"
)

// TestMain makes the test binary a deploy run when DEPLOY_CHILD_DB is set,
// so that a test can kill it with SIGKILL.
func TestMain(m *testing.M) {
	if db := os.Getenv("DEPLOY_CHILD_DB"); db != "" {
		n, _ := strconv.Atoi(os.Getenv("DEPLOY_CHILD_N"))
		cfg := testConfig(db, n, &bytes.Buffer{})
		cfg.Step = logSteps(os.Getenv("DEPLOY_CHILD_LOG"))
		if _, err := run(context.Background(), cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testConfig(db string, n int, out *bytes.Buffer) config {
	return config{N: n, DB: db, Seed: 7, Scale: 0.2, Workers: 1, Progress: 100 * time.Millisecond, Out: out}
}

// logSteps appends the idempotency key of every step (Do node) call to a
// file, one line per call.
func logSteps(path string) func(stepflow.Call) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		panic(err)
	}
	var mu sync.Mutex
	return func(c stepflow.Call) {
		if c.Kind != "do" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(f, c.IdempotencyKey())
	}
}

func readKeys(t *testing.T, path string) map[string]int {
	out := map[string]int{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return out
	}
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "deploy/v1|") {
			out[line]++
		}
	}
	return out
}

func TestDeployFlowShape(t *testing.T) {
	f, err := DeployFlow(NewWorld(1))
	require.NoError(t, err)
	var paths []string
	for _, n := range f.Nodes() {
		paths = append(paths, n.Path)
	}
	for _, p := range []string{
		"preActualState/readActualState", "waitPreState", "shouldDeploy",
		"shouldDeploy/createDeployRequest/openPullRequest", "shouldDeploy/waitMerged",
		"shouldDeploy/rollout/monitorRollout", "postActualState/readActualState", "waitPostState", "validate",
	} {
		assert.Contains(t, paths, p)
	}
}

func TestWorldIsDeterministic(t *testing.T) {
	a, b := NewWorld(3), NewWorld(3)
	for i := range 50 {
		app := fmt.Sprintf("app-%d", i)
		assert.Equal(t, a.InitialVersion(app, "v2"), b.InitialVersion(app, "v2"))
		pr := PullRequest{Number: i, App: app, Opened: time.Unix(1000, 0)}
		assert.Equal(t, a.mergedAt(pr), b.mergedAt(pr))
	}
	c := NewWorld(4)
	differs := false
	for i := range 50 {
		pr := PullRequest{Number: i, App: fmt.Sprintf("app-%d", i), Opened: time.Unix(1000, 0)}
		differs = differs || !a.mergedAt(pr).Equal(c.mergedAt(pr))
	}
	assert.True(t, differs, "another seed is another world")
}

func TestRunToTheEnd(t *testing.T) {
	var out bytes.Buffer
	cfg := testConfig(filepath.Join(t.TempDir(), "deploy.db"), 60, &out)
	cfg.Terminal = true
	sum, err := run(t.Context(), cfg)
	require.NoError(t, err, out.String())
	assert.Equal(t, 60, sum.Done+sum.Failed, out.String())
	assert.Zero(t, sum.Quarantine)
	assert.Greater(t, sum.Done, 30, "most deployments succeed")
	assert.Positive(t, sum.PRs)
	text := out.String()
	assert.Contains(t, text, "\r\033[K", "a terminal gets a bar redrawn in place")
	assert.Contains(t, text, "█")
	assert.Contains(t, text, "60 deployments in")
	assert.Contains(t, text, "shouldDeploy/waitMerged")
	assert.Contains(t, text, "p99")

	// Running again with the same store resumes finished work: nothing
	// left to do, no step runs.
	var again bytes.Buffer
	cfg.Out, cfg.Terminal = &again, false
	calls := 0
	cfg.Step = func(stepflow.Call) { calls++ }
	sum2, err := run(t.Context(), cfg)
	require.NoError(t, err)
	assert.Equal(t, 60, sum2.Resumed)
	assert.Equal(t, sum.Done, sum2.Done)
	assert.Zero(t, calls, "a finished process runs no step again")
	assert.NotContains(t, again.String(), "\r", "plain lines when not on a terminal")
}

// TestKillAndResume kills a run with SIGKILL and resumes it with the same
// file: every deployment ends, and no step runs more than twice.
func TestKillAndResume(t *testing.T) {
	const n = 150
	db, logPath := killMidRun(t, n)
	first := readKeys(t, logPath)

	var out bytes.Buffer
	cfg := testConfig(db, n, &out)
	cfg.Step = logSteps(logPath)
	sum, err := run(t.Context(), cfg)
	require.NoError(t, err, out.String())
	assert.Equal(t, n, sum.Resumed, "every deployment was already stored")
	assert.Equal(t, n, sum.Done+sum.Failed)

	all := readKeys(t, logPath)
	redone := 0
	for key, count := range all {
		assert.LessOrEqual(t, count, 2, "%s ran %d times", key, count)
		if first[key] > 0 && count > first[key] {
			redone++
		}
	}
	assert.Less(t, redone, len(first), "saved steps are not redone")
	t.Logf("first run: %d step calls; after resume: %d; redone after the kill: %d", len(first), len(all), redone)
}

// TestRunOnPostgres runs the pipeline with -store, in a schema of its own.
func TestRunOnPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	schema := fmt.Sprintf("stepflow_deploy_test_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			_, _ = conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			_ = conn.Close(context.Background())
		}
	})
	var out bytes.Buffer
	cfg := testConfig("", 40, &out)
	cfg.Store, cfg.Schema = dsn, schema
	sum, err := run(t.Context(), cfg)
	require.NoError(t, err, out.String())
	assert.Equal(t, 40, sum.Done+sum.Failed)
	assert.Contains(t, out.String(), "on postgres")
}

// TestUpgradeToV2 kills a run of deploy/v1 mid-way, then runs the next
// release (-flow v2) on the same file: every deployment ends, those still
// in flight moved to deploy/v2 and the summary says how many, and every
// failed deployment was rolled back by the second flow.
func TestUpgradeToV2(t *testing.T) {
	const n = 150
	db, _ := killMidRun(t, n)

	var out bytes.Buffer
	cfg := testConfig(db, n, &out)
	cfg.Flow = "v2"
	sum, err := run(t.Context(), cfg)
	require.NoError(t, err, out.String())
	checkUpgraded(t, sum, n, out.String())
}

func checkUpgraded(t *testing.T, sum *summary, n int, text string) {
	t.Helper()
	assert.Equal(t, n, sum.Resumed)
	assert.Equal(t, n, sum.Done+sum.Failed, text)
	assert.Zero(t, sum.Quarantine)
	assert.Positive(t, sum.Migrated, "deployments in flight moved to deploy/v2")
	assert.Contains(t, text, fmt.Sprintf("migrated from deploy/v1 to deploy/v2 by this run: %d", sum.Migrated))
	assert.Equal(t, sum.Failed, sum.Rollbacks, "every failed deployment is rolled back")
	assert.Equal(t, sum.Rollbacks, sum.RolledBack, text)
	assert.Contains(t, text, fmt.Sprintf("rollbacks of failed deployments: %d started, %d done", sum.Rollbacks, sum.RolledBack))
	assert.Positive(t, sum.Versions["deploy/v2"], "deploy/v2 ran: %v", sum.Versions)
}

// TestUpgradeToV2OnPostgres is TestUpgradeToV2 with -store: the deploy/v1
// run is stopped mid-way, then -flow v2 finishes it.
func TestUpgradeToV2OnPostgres(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	schema := fmt.Sprintf("stepflow_deploy_up_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			_, _ = conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			_ = conn.Close(context.Background())
		}
	})
	const n = 100
	var out bytes.Buffer
	cfg := testConfig("", n, &out)
	cfg.Store, cfg.Schema = dsn, schema
	ctx, cancel := context.WithCancel(t.Context())
	steps := 0
	cfg.Step = func(stepflow.Call) {
		if steps++; steps == n*2 {
			cancel() // stop mid-way, as an operator's Ctrl-C would
		}
	}
	_, err := run(ctx, cfg)
	require.ErrorIs(t, err, context.Canceled)

	out.Reset()
	cfg.Step, cfg.Flow = nil, "v2"
	sum, err := run(t.Context(), cfg)
	require.NoError(t, err, out.String())
	checkUpgraded(t, sum, n, out.String())
}

// killMidRun runs n deployments of deploy/v1 in a child process on a new
// bbolt file and kills it with SIGKILL once 2n steps have run; it returns
// the file and the log of step calls.
func killMidRun(t *testing.T, n int) (db, logPath string) {
	t.Helper()
	dir := t.TempDir()
	db, logPath = filepath.Join(dir, "deploy.db"), filepath.Join(dir, "steps.log")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "DEPLOY_CHILD_DB="+db, "DEPLOY_CHILD_N="+strconv.Itoa(n), "DEPLOY_CHILD_LOG="+logPath)
	var childOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &childOut, &childOut
	require.NoError(t, cmd.Start())
	deadline := time.Now().Add(60 * time.Second)
	for len(readKeys(t, logPath)) < n*2 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait() // the output is read only once the child is gone
			t.Fatalf("child made no progress: %s", childOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	return db, logPath
}
