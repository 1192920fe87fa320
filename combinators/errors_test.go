package combinators_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// A failure that ends the process keeps its typed error when it comes out
// of a Parallel branch or a ForEach item in the same Apply, as it does out
// of a Sequence: errors.Is and errors.As reach the step's own error.
func TestBranchAndItemFailuresKeepTheirErrors(t *testing.T) {
	errBoom := errors.New("boom")
	ok := func(context.Context, *D) error { return nil }
	boom := func(context.Context, *D) error { return errBoom }
	panics := func(context.Context, *D) error { panic("kaput") }
	items := func(context.Context, *D) ([]int, error) { return []int{1, 2}, nil }

	for _, tc := range []struct {
		name  string
		node  stepflow.Node[D]
		check func(t *testing.T, err error)
	}{
		{"sequence", combinators.Sequence[D]("seq", combinators.Do("a", boom)),
			func(t *testing.T, err error) { assert.ErrorIs(t, err, errBoom) }},
		{"parallel", combinators.Parallel[D]("par", combinators.Do("ok", ok), combinators.Do("a", boom)),
			func(t *testing.T, err error) { assert.ErrorIs(t, err, errBoom) }},
		{"parallel panic", combinators.Parallel[D]("par", combinators.Do("a", panics)),
			func(t *testing.T, err error) {
				var pe *stepflow.PanicError
				require.ErrorAs(t, err, &pe)
				assert.Equal(t, "par/a", pe.Path)
			}},
		{"parallel wait all", combinators.Parallel[D]("par", combinators.Do("a", boom), combinators.Do("b", panics)).WaitAll(),
			func(t *testing.T, err error) {
				assert.ErrorIs(t, err, errBoom)
				var pe *stepflow.PanicError
				assert.ErrorAs(t, err, &pe)
			}},
		{"foreach", combinators.ForEach("each", items, combinators.Do("it", boom)),
			func(t *testing.T, err error) {
				assert.ErrorIs(t, err, errBoom)
				var se *stepflow.StepError
				require.ErrorAs(t, err, &se)
				assert.Equal(t, "each/[0]/it", se.Path)
				assert.Contains(t, err.Error(), `"each/[0]/it"`)
				assert.NotContains(t, err.Error(), `"each/it"`)
			}},
		{"foreach panic", combinators.ForEach("each", items, combinators.Do("it", panics)),
			func(t *testing.T, err error) {
				var pe *stepflow.PanicError
				require.ErrorAs(t, err, &pe)
				assert.Equal(t, "each/[0]/it", pe.Path)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := stepflow.New("errs/v1", tc.node)
			require.NoError(t, err)
			st := f.Start(D{})
			ctx := context.Background()
			for i := 0; i < 10 && !st.Terminal(); i++ {
				st, err = f.Apply(ctx, st)
			}
			require.Equal(t, stepflow.Failed, st.Status)
			require.Error(t, err)
			tc.check(t, err)
			assert.Equal(t, 1, strings.Count(err.Error(), "stepflow:"), "one prefix: %s", err)
		})
	}
}

// Error texts carry one prefix and name the path once, whether the failure
// comes straight from the Apply that made it or from a saved state.
func TestErrorTextsNameThePathOnce(t *testing.T) {
	never := func(context.Context, *D) (bool, error) { return false, nil }
	f, err := stepflow.New("texts/v1", combinators.Sequence[D]("outer",
		combinators.WaitFor("w", never, combinators.Every(time.Minute), combinators.Timeout(time.Hour))))
	require.NoError(t, err)
	h := newHarness(t)
	st := f.Start(D{})
	for !st.Terminal() {
		if st.Status == stepflow.Waiting {
			h.clk.Set(st.WakeAt)
		}
		st, err = h.apply(f, st) // through the codec: the failure is restored from bytes
	}
	require.Error(t, err)
	assert.ErrorIs(t, err, stepflow.ErrTimeout)
	msg := err.Error()
	assert.Equal(t, 1, strings.Count(msg, "stepflow:"), msg)
	assert.Equal(t, 1, strings.Count(msg, `"outer/w"`), msg)
	assert.Contains(t, msg, `stepflow: step "outer/w" timed out after 1h0m0s`)
}
