package runner_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// flakyStore fails whole commits on demand, which is what a crash between
// a step's effect and its save looks like to the processes of the batch.
type flakyStore struct {
	store.Store
	fail      func() bool
	allowance map[string]int // extra executions a failed commit permits
}

var errInjected = errors.New("injected commit failure")

func (f *flakyStore) Commit(ctx context.Context, owner string, ws []store.Write) ([]error, error) {
	if owner != "" && f.fail() {
		for _, w := range ws {
			f.allowance[w.ID]++
		}
		return nil, errInjected
	}
	return f.Store.Commit(ctx, owner, ws)
}

// TestPropertyAtLeastOnce: whatever the batch sizes, failed commits and
// cancels, every process ends; a process that completes has had the
// effect of each step saved exactly once; and each step ran at least once
// and at most once more per failed commit that involved its process.
func TestPropertyAtLeastOnce(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		procs := rapid.IntRange(1, 40).Draw(rt, "procs")
		steps := rapid.IntRange(1, 5).Draw(rt, "steps")
		batch := rapid.IntRange(1, 16).Draw(rt, "batch")
		group := rapid.IntRange(0, batch).Draw(rt, "group")
		failRate := rapid.Float64Range(0, 0.3).Draw(rt, "failRate")

		execs := map[string]int{}
		var nodes []stepflow.Node[counter]
		for i := range steps {
			nodes = append(nodes, combinators.Do(fmt.Sprintf("s%d", i), func(ctx context.Context, d *counter) error {
				call, _ := stepflow.CallFrom(ctx)
				execs[fmt.Sprintf("%s/%d", call.ID, i)]++
				d.N++
				return nil
			}))
		}
		f := stepflow.Must(stepflow.New("prop/v1", nodes...))
		clock := newClock()
		fs := &flakyStore{Store: store.NewMemory(), allowance: map[string]int{}}
		fs.fail = func() bool { return rapid.Float64Range(0, 1).Draw(rt, "roll") < failRate }
		const lease = time.Minute
		r, ps, err := newRunner(f, fs, &runner.Options{Batch: batch, GroupCommit: group, Lease: lease, Clock: clock})
		require.NoError(rt, err)
		ctx := context.Background()
		for i := range procs {
			err := ps.Start(ctx, fmt.Sprintf("p%02d", i), counter{})
			require.NoError(rt, err)
		}
		canceled := map[string]bool{}
		for range 10000 {
			if rapid.Float64Range(0, 1).Draw(rt, "cancel?") < 0.02 {
				id := fmt.Sprintf("p%02d", rapid.IntRange(0, procs-1).Draw(rt, "cancel"))
				require.NoError(rt, ps.Cancel(ctx, id, "test"))
				if st, err := ps.State(ctx, id); err == nil && st.Status == stepflow.Canceled {
					canceled[id] = true
				}
			}
			n, err := r.Step(ctx)
			if err != nil {
				require.ErrorIs(rt, err, errInjected)
				// The runner "crashed": its leases expire, someone resumes.
				clock.Advance(lease)
				continue
			}
			if n > 0 {
				continue
			}
			c, err := r.Counts(ctx)
			require.NoError(rt, err)
			if c.ByStatus[stepflow.Running]+c.ByStatus[stepflow.Waiting] == 0 {
				break
			}
			clock.Advance(lease)
		}
		for i := range procs {
			id := fmt.Sprintf("p%02d", i)
			st, err := ps.State(ctx, id)
			require.NoError(rt, err)
			require.True(rt, st.Terminal(), "%s ended (%s)", id, st.Status)
			if st.Status == stepflow.Canceled {
				require.True(rt, canceled[id], "%s canceled only when asked", id)
				continue
			}
			require.Equal(rt, stepflow.Done, st.Status, id)
			require.Equal(rt, steps, st.Data.N, "%s: each step's effect saved once", id)
			for s := range steps {
				n := execs[fmt.Sprintf("%s/%d", id, s)]
				require.GreaterOrEqual(rt, n, 1, "%s step %d ran", id, s)
				require.LessOrEqual(rt, n, 1+fs.allowance[id], "%s step %d ran %d times with %d failed commits", id, s, n, fs.allowance[id])
			}
		}
	})
}
