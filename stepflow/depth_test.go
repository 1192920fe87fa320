package stepflow_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// nestedFlow is `levels` sequences nested in one another around a wait
// that never ends, the levels in forEach being ForEach nodes instead.
func nestedFlow(levels int, forEach map[int]bool) stepflow.Node[int] {
	never := func(context.Context, *int) (bool, error) { return false, nil }
	one := func(context.Context, *int) ([]int, error) { return []int{1}, nil }
	var n stepflow.Node[int] = combinators.WaitFor("leaf", never)
	for i := levels - 1; i >= 0; i-- {
		name := fmt.Sprintf("l%d", i)
		if forEach[i] {
			n = combinators.ForEach(name, one, n)
		} else {
			n = combinators.Sequence(name, n)
		}
	}
	return n
}

// New refuses a flow whose states could not be encoded: frames nest at
// most stepflow.MaxDepth levels below the root, a ForEach counting two.
// At the limit, a process standing at the innermost step is encoded and
// decoded by both codecs.
func TestNewRefusesFlowsDeeperThanStatesHold(t *testing.T) {
	// levels sequences put the leaf's frame at levels+1.
	atLimit := stepflow.MaxDepth - 1
	for _, tc := range []struct {
		name    string
		levels  int
		forEach map[int]bool
		ok      bool
	}{
		{"at the limit", atLimit, nil, true},
		{"one too deep", atLimit + 1, nil, false},
		{"seventy", 70, nil, false},
		{"a ForEach counts two", atLimit, map[int]bool{3: true}, false},
		{"a ForEach within the limit", atLimit - 1, map[int]bool{3: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := stepflow.New("deep/v1", nestedFlow(tc.levels, tc.forEach))
			if !tc.ok {
				require.Error(t, err)
				assert.ErrorIs(t, err, stepflow.ErrInvalidFlow)
				var de *stepflow.DefinitionError
				require.True(t, errors.As(err, &de))
				assert.Contains(t, de.Reason, "nested too deep")
				assert.Equal(t, 1, len(joined(err)), "reported once, at the first node too deep: %v", err)
				return
			}
			require.NoError(t, err)
			st := f.Start(0)
			for range 4 {
				st, err = f.Apply(context.Background(), st)
				require.NoError(t, err)
				require.False(t, st.Terminal())
				for _, c := range []codec.Codec[int]{codec.Msgpack[int](nil), codec.JSON[int](nil)} {
					b, err := c.Encode(st)
					require.NoError(t, err, c.Name())
					_, err = c.Decode(b)
					require.NoError(t, err, c.Name())
				}
			}
			assert.Equal(t, stepflow.Waiting, st.Status, "the process stands at the innermost wait")
		})
	}
}

func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
