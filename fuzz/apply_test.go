package fuzz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
	"github.com/stepflow-io/go-stepflow/versions"
)

// engineSentinels are the conditions an Apply error may match.
var engineSentinels = []error{stepflow.ErrVersionMismatch, stepflow.ErrInvalidState, stepflow.ErrStep,
	stepflow.ErrPanic, stepflow.ErrTimeout, stepflow.ErrCanceled, stepflow.ErrGuard}

// scripted is an interceptor that forces each call's outcome from a byte
// of the fuzz input; a byte beyond the input runs the call normally.
type scripted struct {
	outcomes []byte
	n        int
}

func (s *scripted) intercept(ctx context.Context, call stepflow.Call, next func(context.Context) error) error {
	var o byte
	if s.n < len(s.outcomes) {
		o = s.outcomes[s.n] % 6
	}
	s.n++
	switch o {
	case 1:
		return stepflowtest.ErrInjected
	case 2:
		_ = next(ctx)
		return stepflowtest.ErrInjected
	case 3:
		return stepflow.Permanent(stepflowtest.ErrInjected)
	case 4:
		return nil
	case 5:
		panic("injected")
	}
	return next(ctx)
}

// applyOnce applies st to flow at the given time with the given outcomes,
// authorizing a recorded at-most-once intent if asked to.
func applyOnce(flow *stepflow.Flow[Data], st stepflow.State[Data], now time.Time, outcomes []byte, authorized bool) (stepflow.State[Data], error) {
	ctx := stepflowtest.NewClock(now).Context(context.Background())
	ctx = stepflow.WithInterceptor(ctx, (&scripted{outcomes: outcomes}).intercept)
	if authorized {
		ctx = stepflow.WithIntentSaved(ctx, st)
	}
	return flow.Apply(ctx, st)
}

// fuzzTime turns a fuzzed number into a time within a few days of Epoch,
// where the stored states' times are.
func fuzzTime(n int64) time.Time {
	const span = int64(72 * time.Hour / time.Second)
	return stepflowtest.Epoch.Add(time.Duration(((n%span)+span)%span) * time.Second)
}

// FuzzApply applies an arbitrary state to stored/v1 (flow even) or rich/v1
// (flow odd). Unless flow has its high bit set, the state's version is set
// to the flow's, so that most inputs get past the version check; bit 6
// authorizes a recorded at-most-once intent.
func FuzzApply(f *testing.F) {
	addStoredStates(f, "msgpack", uint8(0), int64(0), []byte(nil))
	addStoredStates(f, "msgpack", uint8(1), int64(3600), []byte(nil))
	flows := []*stepflow.Flow[Data]{storedFlow(), richFlow()}
	mp := codec.Msgpack[Data](nil)
	f.Fuzz(func(t *testing.T, b []byte, which uint8, now int64, outcomes []byte) {
		st, err := codec.Decode[Data](b, nil)
		if err != nil {
			return
		}
		flow := flows[which%2]
		if which&0x80 == 0 {
			st.Version = flow.Version()
		}
		in, err := mp.Encode(st)
		if err != nil {
			return
		}
		at := fuzzTime(now)
		authorized := which&0x40 != 0
		next, err := applyOnce(flow, st, at, outcomes, authorized)
		after, encErr := mp.Encode(st)
		require.NoError(t, encErr)
		require.Equal(t, in, after, "Apply modified its input")

		// Deterministic: the same input, time and outcomes give the same
		// result.
		next2, err2 := applyOnce(flow, st, at, outcomes, authorized)
		require.Equal(t, fmt.Sprint(err), fmt.Sprint(err2), "Apply is not deterministic")
		out, encErr := mp.Encode(next)
		require.NoError(t, encErr)
		out2, _ := mp.Encode(next2)
		require.Equal(t, out, out2, "Apply is not deterministic")

		checkApplied(t, flow, st, next, err, in, out)
	})
}

// checkApplied checks the result of applying st (encoded as in) to flow.
func checkApplied(t *testing.T, flow *stepflow.Flow[Data], st, next stepflow.State[Data], err error, in, out []byte) {
	var se *stepflow.StepError
	switch {
	case err == nil:
	case errors.As(err, &se):
		require.Equal(t, stepflow.Failed, next.Status, "a step error comes with a failed state")
		require.NotNil(t, next.Err, "a failed state records its error")
	default:
		matched := false
		for _, s := range engineSentinels {
			matched = matched || errors.Is(err, s)
		}
		require.True(t, matched, "Apply returned an untyped error %T: %v", err, err)
		require.Equal(t, in, out, "Apply returned an error and a changed state")
		return
	}
	if bytes.Equal(in, out) {
		return // nothing to do yet, or a final state
	}
	require.Equal(t, st.Steps+1, next.Steps, "an Apply that changed the state adds one step")
	if flow.Validate(st) == nil {
		require.NoError(t, flow.Validate(next), "a valid state became invalid")
	}
	// What Apply returns can be stored and read back.
	for _, c := range []codec.Codec[Data]{codec.Msgpack[Data](nil), codec.JSON[Data](nil)} {
		b, err := c.Encode(next)
		require.NoError(t, err)
		_, err = c.Decode(b)
		require.NoError(t, err)
	}
}

// FuzzMigrate migrates an arbitrary state from stored/v1 to stored/v2
// (which even) or from rich/v1 to rich/v2 (which odd), then applies the
// result with the given outcomes.
func FuzzMigrate(f *testing.F) {
	addStoredStates(f, "msgpack", uint8(0), []byte(nil))
	addStoredStates(f, "msgpack", uint8(1), []byte(nil))
	regs := []*versions.Registry[Data]{registry(), richRegistry()}
	mp := codec.Msgpack[Data](nil)
	f.Fuzz(func(t *testing.T, b []byte, which uint8, outcomes []byte) {
		st, err := codec.Decode[Data](b, nil)
		if err != nil {
			return
		}
		reg := regs[which%2]
		st.Version = reg.Versions()[0]
		in, err := mp.Encode(st)
		if err != nil {
			return
		}
		moved, err := reg.Migrate(st)
		after, _ := mp.Encode(st)
		require.Equal(t, in, after, "Migrate modified its input")
		if err != nil {
			matched := false
			for _, s := range append([]error{versions.ErrNoTarget, versions.ErrInvalidMigration, versions.ErrUnknownVersion}, engineSentinels...) {
				matched = matched || errors.Is(err, s)
			}
			require.True(t, matched, "Migrate returned an untyped error %T: %v", err, err)
			return
		}
		latest := reg.Latest()
		require.Equal(t, latest.Version(), moved.Version)
		require.NoError(t, latest.Validate(moved), "a migrated state must be valid")
		out, err := mp.Encode(moved)
		require.NoError(t, err)
		_, err = mp.Decode(out)
		require.NoError(t, err)
		// And it runs on the new version.
		next, err := applyOnce(latest, moved, stepflowtest.Epoch.Add(24*time.Hour), outcomes, false)
		nb, _ := mp.Encode(next)
		checkApplied(t, latest, moved, next, err, out, nb)
	})
}
