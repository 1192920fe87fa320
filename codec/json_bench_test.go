package codec_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// benchPersistedStep measures what a runner pays per step of a process it
// keeps only in its store: decode the stored state, Apply it, encode the
// result. The state is the mid-run deploy state (a wait polled three
// times), and the clock stands at its wake time, so each Apply polls once.
func benchPersistedStep(b *testing.B, c codec.Codec[Deploy]) {
	f := deployFlow(b, 0)
	st := midRunDeployState(b, 0)
	wake := st.WakeAt
	ctx := stepflow.WithClock(context.Background(), stepflow.ClockFunc(func() time.Time { return wake }))
	stored, err := c.Encode(st)
	require.NoError(b, err)
	loopPersisted(b, ctx, c, f, stored)
}

// loopPersisted is the loop of the persisted benchmarks: decode each
// stored state in turn, Apply it, encode the result.
func loopPersisted[S any](b *testing.B, ctx context.Context, c codec.Codec[S], f *stepflow.Flow[S], stored ...[]byte) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		st, err := c.Decode(stored[i])
		if err != nil {
			b.Fatal(err)
		}
		next, err := f.Apply(ctx, st)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Encode(next); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(stored) {
			i = 0
		}
	}
}

func BenchmarkJSONPersistedStep(b *testing.B) {
	benchPersistedStep(b, codec.JSON[Deploy](nil))
}

func BenchmarkMsgpackPersistedStep(b *testing.B) {
	benchPersistedStep(b, codec.Msgpack[Deploy](nil))
}

// BenchmarkPersistedStepReferenceJSON is BenchmarkJSONPersistedStep with
// the JSON codec as it was before it parsed states in one pass.
func BenchmarkPersistedStepReferenceJSON(b *testing.B) {
	benchPersistedStep(b, codec.ReferenceJSON[Deploy](nil))
}

// tenSteps is the process data of tenStepFlow.
type tenSteps struct {
	N int `json:"n" msgpack:"n"`
}

// benchPersistedTenSteps is benchPersistedStep on the states of a flow of
// ten no-op steps (the states the runner's benchmarks step through), one
// at each position in turn.
func benchPersistedTenSteps(b *testing.B, c codec.Codec[tenSteps]) {
	var nodes []stepflow.Node[tenSteps]
	for i := range 10 {
		nodes = append(nodes, combinators.Do(fmt.Sprintf("s%d", i), func(context.Context, *tenSteps) error { return nil }))
	}
	f, err := stepflow.New("noop/v1", nodes...)
	require.NoError(b, err)
	ctx := stepflow.WithClock(context.Background(), stepflow.ClockFunc(func() time.Time { return t0 }))
	var stored [][]byte
	for st := f.Start(tenSteps{}); st.Status == stepflow.Running; {
		st.ID = "p0000000"
		enc, err := c.Encode(st)
		require.NoError(b, err)
		stored = append(stored, enc)
		st, err = f.Apply(ctx, st)
		require.NoError(b, err)
	}
	require.Len(b, stored, 10)
	loopPersisted(b, ctx, c, f, stored...)
}

func BenchmarkPersistedTenStepsJSON(b *testing.B) {
	benchPersistedTenSteps(b, codec.JSON[tenSteps](nil))
}

func BenchmarkPersistedTenStepsReferenceJSON(b *testing.B) {
	benchPersistedTenSteps(b, codec.ReferenceJSON[tenSteps](nil))
}

func BenchmarkPersistedTenStepsMsgpack(b *testing.B) {
	benchPersistedTenSteps(b, codec.Msgpack[tenSteps](nil))
}

// benchPersistedPoll is benchPersistedTenSteps for a poll: the stored
// state waits in a WaitFor whose predicate answers false, between two
// steps, and the clock stands at its wake time, so each Apply polls once.
func benchPersistedPoll(b *testing.B, c codec.Codec[tenSteps]) {
	noop := func(context.Context, *tenSteps) error { return nil }
	never := func(context.Context, *tenSteps) (bool, error) { return false, nil }
	f, err := stepflow.New("poll/v1", combinators.Do("before", noop),
		combinators.WaitFor("wait", never, combinators.Every(time.Second)), combinators.Do("after", noop))
	require.NoError(b, err)
	now := t0
	ctx := stepflow.WithClock(context.Background(), stepflow.ClockFunc(func() time.Time { return now }))
	st := f.Start(tenSteps{})
	st.ID = "p0000000"
	for st.Status != stepflow.Waiting {
		st, err = f.Apply(ctx, st)
		require.NoError(b, err)
	}
	now = st.WakeAt
	next, err := f.Apply(ctx, st)
	require.NoError(b, err)
	require.Equal(b, st.Steps+1, next.Steps, "a poll")
	require.Equal(b, stepflow.Waiting, next.Status, "that answers false")
	stored, err := c.Encode(st)
	require.NoError(b, err)
	loopPersisted(b, ctx, c, f, stored)
}

func BenchmarkPersistedPollMsgpack(b *testing.B) {
	benchPersistedPoll(b, codec.Msgpack[tenSteps](nil))
}

func BenchmarkPersistedPollJSON(b *testing.B) {
	benchPersistedPoll(b, codec.JSON[tenSteps](nil))
}
