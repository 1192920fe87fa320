package fuzz

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
	"github.com/stepflow-io/go-stepflow/versions"
)

const statesDir = "testdata/states"

// expectation is what a stored state must still be: its status when read,
// and how a run from it ends.
type expectation struct {
	Status stepflow.Status `json:"status"`
	Steps  uint64          `json:"steps"`
	Final  stepflow.Status `json:"final"`
}

// storedState is one state of the corpus with the run it must lead to.
type storedState struct {
	name   string
	state  stepflow.State[Data]
	expect expectation
}

// corpusStates builds the states the corpus holds: stored/v1 processes
// stopped at each status, with and without errors, records and signals.
func corpusStates(t testing.TB) []storedState {
	flow := storedFlow()
	ctx := context.Background()
	run := func(name string, data Data, id string, s stepflowtest.Script) *stepflowtest.Trace[Data] {
		st := flow.Start(data)
		st.ID = id
		tr, err := stepflowtest.Run(ctx, flow, st, &stepflowtest.RunOptions[Data]{Script: s})
		require.NoError(t, err, name)
		return tr
	}
	// pick returns the state kept after the n-th Apply (0: the start).
	pick := func(tr *stepflowtest.Trace[Data], n int) stepflow.State[Data] { return tr.States()[n] }

	var out []storedState
	add := func(name string, st stepflow.State[Data]) {
		out = append(out, storedState{name: name, state: st})
	}
	alpha := run("alpha", Data{Name: "a"}, "p-alpha", nil)
	add("running-start", pick(alpha, 0))
	add("running-prepare", pick(alpha, 2))
	add("running-case", pick(alpha, 3))
	add("waiting-backoff", pick(alpha, 5))
	add("running-switch-branch", pick(alpha, 8))
	add("done", alpha.Final)

	beta := run("beta", Data{Name: "b", Labels: map[string]string{"team": "x"}}, "p-beta", nil)
	add("running-beta", pick(beta, 6))

	failed := run("fail", Data{Name: nameFail, Tags: []string{"t1", "t2"}}, "p-fail", nil)
	add("failed-permanent", failed.Final)
	panicked := run("panic", Data{Name: namePanic}, "", nil)
	add("failed-panic", panicked.Final)
	timedOut := run("timeout", Data{Name: "t"}, "p-timeout", stepflowtest.Script{"ready": stepflowtest.Always(stepflowtest.False)})
	add("waiting-timeout-soon", pick(timedOut, len(timedOut.Transitions)-1))
	add("failed-timeout", timedOut.Final)

	// Statuses and fields that only a runner or an operator sets.
	att := pick(alpha, 4)
	att.Status = stepflow.NeedsAttention
	add("needs-attention", att)
	canceled := pick(beta, 3)
	canceled.Status = stepflow.Canceled
	canceled.Err = &stepflow.Failure{Path: "prepare/labelled", Kind: stepflow.KindCanceled, Message: "canceled by operator", At: stepflowtest.Epoch}
	add("canceled", canceled)
	signalled := pick(beta, 5)
	signalled.Signals = []stepflow.Signal{{Name: "approve", Payload: []byte(`{"by":"ops"}`), At: stepflowtest.Epoch}}
	add("waiting-signal-pending", signalled)

	out = append(out, richStates(t)...)

	// How each ends when a runner carries on.
	for i := range out {
		f := flow
		if out[i].state.Version == richFlow().Version() {
			f = richFlow()
		}
		tr, err := stepflowtest.Run(ctx, f, out[i].state, &stepflowtest.RunOptions[Data]{Events: approval})
		require.NoError(t, err, out[i].name)
		out[i].expect = expectation{Status: out[i].state.Status, Steps: out[i].state.Steps, Final: tr.Final.Status}
	}
	return out
}

// approval is the signal the rich/v1 runs receive.
var approval = []stepflowtest.Event{{After: 50 * time.Minute, Signal: "approve", Payload: []byte("ops")}}

// richStates stops rich/v1 processes inside every kind of node.
func richStates(t testing.TB) []storedState {
	flow := richFlow()
	run := func(data Data, id string, s stepflowtest.Script, events []stepflowtest.Event) *stepflowtest.Trace[Data] {
		st := flow.Start(data)
		st.ID = id
		tr, err := stepflowtest.Run(context.Background(), flow, st, &stepflowtest.RunOptions[Data]{Script: s, Events: events})
		require.NoError(t, err, "%+v", data)
		return tr
	}
	var out []storedState
	// pick adds the first state of tr, before or after events, that
	// matches.
	pick := func(name string, tr *stepflowtest.Trace[Data], match func(stepflow.State[Data]) bool) {
		for _, x := range tr.Transitions {
			for _, st := range []stepflow.State[Data]{x.Given, x.After} {
				if !x.Crashed && match(st) {
					out = append(out, storedState{name: name, state: st})
					return
				}
			}
		}
		t.Fatalf("no state for %s in\n%s", name, tr)
	}
	at := func(pos ...string) func(stepflow.State[Data]) bool {
		return func(st stepflow.State[Data]) bool { return slices.Equal(st.Positions(), pos) }
	}
	main := run(Data{Name: "main"}, "r-main", nil, approval)
	pick("rich-parallel", main, at("checks/lint/lint1", "checks/scan"))
	pick("rich-sleeping", main, func(st stepflow.State[Data]) bool {
		return st.Status == stepflow.Waiting && slices.Equal(st.Positions(), []string{"checks/lint/cool"})
	})
	pick("rich-foreach", main, at("regions/[0]/rollout", "regions/[1]/rollout"))
	pick("rich-loop", main, at("converge/nudge"))
	pick("rich-waiting-signal", main, at("guarded/approval/approve"))
	pick("rich-signal-pending", main, func(st stepflow.State[Data]) bool { return len(st.Signals) > 0 })
	pick("rich-intent", main, func(st stepflow.State[Data]) bool { return st.Intent != "" })
	pick("rich-done", main, func(st stepflow.State[Data]) bool { return st.Status == stepflow.Done })

	flaky := run(Data{Name: "flaky"}, "r-flaky", nil, approval)
	pick("rich-retry-backoff", flaky, func(st stepflow.State[Data]) bool { return st.Status == stepflow.Waiting })
	crashed := run(Data{Name: "crash"}, "r-crash", stepflowtest.Script{"release/charge": stepflowtest.Calls(stepflowtest.Crash)}, approval)
	pick("rich-needs-attention", crashed, func(st stepflow.State[Data]) bool { return st.Status == stepflow.NeedsAttention })
	failed := run(Data{Name: nameFail}, "r-fail", nil, approval)
	pick("rich-finally-cleanup", failed, at("release/unlock"))
	pick("rich-failed", failed, func(st stepflow.State[Data]) bool { return st.Status == stepflow.Failed })
	escalated := run(Data{Name: "late"}, "r-late", nil, nil)
	pick("rich-caught", escalated, func(st stepflow.State[Data]) bool { return st.Status == stepflow.Running && st.Err != nil })
	exited := run(Data{Name: "exit"}, "r-exit", nil, approval)
	pick("rich-exit", exited, func(st stepflow.State[Data]) bool { return st.Status == stepflow.Done })
	return out
}

func formatDir(v int) string { return filepath.Join(statesDir, fmt.Sprintf("format%d", v)) }

// TestGenerateStates writes the corpus of the current format version with
// -update. It never rewrites a file that exists: states of a released
// format are history. Without -update it checks that the corpus of the
// current format is complete.
func TestGenerateStates(t *testing.T) {
	dir := formatDir(codec.FormatVersion)
	states := corpusStates(t)
	expect := map[string]expectation{}
	for _, s := range states {
		expect[s.name] = s.expect
	}
	codecs := []codec.Codec[Data]{codec.Msgpack[Data](nil), codec.JSON[Data](nil)}
	if stepflowtest.Update() {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for _, s := range states {
			for _, c := range codecs {
				b, err := c.Encode(s.state)
				require.NoError(t, err)
				writeNew(t, filepath.Join(dir, s.name+"."+c.Name()), b)
			}
		}
		b, err := json.MarshalIndent(expect, "", "  ")
		require.NoError(t, err)
		writeNew(t, filepath.Join(dir, "expect.json"), append(b, '\n'))
		writeSeeds(t, states)
		return
	}
	onDisk := readExpect(t, dir)
	for name := range expect {
		assert.Contains(t, onDisk, name, "state %q of format %d is not in the corpus; run go test ./fuzz -run TestGenerateStates -update", name, codec.FormatVersion)
	}
}

func writeNew(t *testing.T, path string, b []byte) {
	if _, err := os.Stat(path); err == nil {
		t.Logf("keeping %s", path)
		return
	}
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

func readExpect(t *testing.T, dir string) map[string]expectation {
	b, err := os.ReadFile(filepath.Join(dir, "expect.json"))
	require.NoError(t, err, "no corpus for this format; run go test ./fuzz -run TestGenerateStates -update")
	var m map[string]expectation
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// formats lists the format versions in the corpus.
func formats(t *testing.T) []int {
	entries, err := os.ReadDir(statesDir)
	require.NoError(t, err)
	var out []int
	for _, e := range entries {
		var v int
		if _, err := fmt.Sscanf(e.Name(), "format%d", &v); err == nil && e.IsDir() {
			out = append(out, v)
		}
	}
	sort.Ints(out)
	require.NotEmpty(t, out)
	return out
}

// TestStoredStates reads every stored state of every format version with
// both codecs, checks that it is what it was, and runs it to its end. A
// codec or engine change that breaks states saved by a released version
// fails here.
func TestStoredStates(t *testing.T) {
	flows := map[string]*stepflow.Flow[Data]{"stored/v1": storedFlow(), "rich/v1": richFlow()}
	for _, v := range formats(t) {
		dir := formatDir(v)
		expect := readExpect(t, dir)
		names := make([]string, 0, len(expect))
		for n := range expect {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, name := range names {
			want := expect[name]
			t.Run(fmt.Sprintf("format%d/%s", v, name), func(t *testing.T) {
				var decoded []stepflow.State[Data]
				for _, enc := range []string{"msgpack", "json"} {
					b, err := os.ReadFile(filepath.Join(dir, name+"."+enc))
					require.NoError(t, err)
					st, err := codec.Decode[Data](b, nil)
					require.NoError(t, err, enc)
					flow := flows[st.Version]
					require.NotNil(t, flow, "state of unknown version %q", st.Version)
					require.NoError(t, flow.Validate(st), enc)
					assert.Equal(t, want.Status, st.Status, enc)
					assert.Equal(t, want.Steps, st.Steps, enc)
					if v == codec.FormatVersion {
						// The current format is canonical: encoding what was
						// read gives the stored bytes back.
						c, err := codec.Detect[Data](b, nil)
						require.NoError(t, err)
						again, err := c.Encode(st)
						require.NoError(t, err)
						assert.Equal(t, strings.TrimSpace(string(b)), string(again), "%s encoding of a stored state changed; a new encoding needs a new format version", enc)
					}
					tr, err := stepflowtest.Run(context.Background(), flow, st, &stepflowtest.RunOptions[Data]{Events: approval})
					require.NoError(t, err, enc)
					assert.Equal(t, want.Final, tr.Final.Status, "%s: a run from the stored state ends otherwise\n%s", enc, tr)
					decoded = append(decoded, st)
				}
				// Both encodings hold the same state.
				mp := codec.Msgpack[Data](nil)
				a, err := mp.Encode(decoded[0])
				require.NoError(t, err)
				b, err := mp.Encode(decoded[1])
				require.NoError(t, err)
				assert.Equal(t, a, b, "the msgpack and JSON files hold different states")
			})
		}
	}
}

// TestStoredStatesMigrate moves every stored state to stored/v2 and runs it
// there: old states stay usable after a flow changes.
func TestStoredStatesMigrate(t *testing.T) {
	regs := map[string]*versions.Registry[Data]{"stored/v1": registry(), "rich/v1": richRegistry()}
	for _, v := range formats(t) {
		dir := formatDir(v)
		for name, want := range readExpect(t, dir) {
			b, err := os.ReadFile(filepath.Join(dir, name+".msgpack"))
			require.NoError(t, err)
			st, err := codec.Decode[Data](b, nil)
			require.NoError(t, err)
			reg := regs[st.Version]
			require.NotNil(t, reg, st.Version)
			moved, err := reg.Migrate(st)
			require.NoError(t, err, name)
			assert.Equal(t, reg.Latest().Version(), moved.Version, name)
			tr, err := stepflowtest.Run(context.Background(), reg.Latest(), moved, &stepflowtest.RunOptions[Data]{Events: approval})
			require.NoError(t, err, name)
			assert.Equal(t, want.Final.Terminal(), tr.Final.Terminal(), "%s\n%s", name, tr)
		}
	}
}

// The flows of the stored corpus are released versions: their structure
// must never change, or the stored states would mean something else.
func TestCorpusFlowsArePinned(t *testing.T) {
	versions.Pin(t, storedFlow(), "a36976cce19e91cc955da17b")
	versions.Pin(t, nextFlow(), "e15d68993bb8924d9f70c269")
	versions.Pin(t, richFlow(), "62bf24e841dff357335b6329")
	versions.Pin(t, richNextFlow(), "31756a917d4fc0cf951dd937")
}
