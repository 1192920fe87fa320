package codec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

type Deploy struct {
	App, Env string
	PR       int
	Live     bool
	Labels   map[string]string `msgpack:",omitempty" json:",omitempty"`
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func genTime(t *rapid.T, label string) time.Time {
	if rapid.Bool().Draw(t, label+"/zero") {
		return time.Time{}
	}
	return t0.Add(time.Duration(rapid.Int64Range(-1e15, 1e15).Draw(t, label)))
}

func genFailure(t *rapid.T, label string) *stepflow.Failure {
	if rapid.Bool().Draw(t, label) {
		return nil
	}
	return &stepflow.Failure{
		Path: rapid.String().Draw(t, label+"/path"), Kind: rapid.SampledFrom([]string{"error", "panic", "timeout"}).Draw(t, label+"/kind"),
		Message: rapid.String().Draw(t, label+"/msg"), Attempt: rapid.Uint32().Draw(t, label+"/attempt"), At: genTime(t, label+"/at"),
	}
}

func genBytes(t *rapid.T, label string) []byte {
	b := rapid.SliceOfN(rapid.Byte(), 0, 8).Draw(t, label)
	if len(b) == 0 {
		return nil
	}
	return b
}

func genFrame(t *rapid.T, depth int) stepflow.Frame {
	f := stepflow.Frame{
		Name:   rapid.StringMatching(`[a-zA-Z]{0,6}`).Draw(t, "name"),
		Branch: rapid.SampledFrom([]string{"", "then", "else"}).Draw(t, "branch"),
		Since:  genTime(t, "since"),
		Until:  genTime(t, "until"),
		Count:  rapid.Uint32().Draw(t, "count"),
		Index:  rapid.Uint32Range(0, 3).Draw(t, "index"),
		Err:    genFailure(t, "ferr"),
	}
	f.Payload = genBytes(t, "payload")
	if depth < 3 {
		n := rapid.IntRange(0, 3).Draw(t, "children")
		for range n {
			f.Children = append(f.Children, genFrame(t, depth+1))
		}
	}
	return f
}

func genState(t *rapid.T) stepflow.State[Deploy] {
	st := stepflow.State[Deploy]{
		Version: rapid.String().Draw(t, "version"),
		ID:      rapid.String().Draw(t, "id"),
		Status:  stepflow.Status(rapid.IntRange(0, 5).Draw(t, "status")),
		Steps:   rapid.Uint64().Draw(t, "steps"),
		WakeAt:  genTime(t, "wake"),
		Root:    genFrame(t, 0),
		Data: Deploy{App: rapid.String().Draw(t, "app"), Env: rapid.String().Draw(t, "env"), PR: rapid.Int().Draw(t, "pr"), Live: rapid.Bool().Draw(t, "live"),
			Labels: rapid.MapOfN(rapid.StringN(0, 4, -1), rapid.String(), 0, 4).Draw(t, "labels")},
		Err: genFailure(t, "err"),
	}
	if len(st.Data.Labels) == 0 {
		st.Data.Labels = nil
	}
	for i := range rapid.IntRange(0, 3).Draw(t, "records") {
		st.Record = append(st.Record, stepflow.Record{Seq: uint64(i), Path: rapid.String().Draw(t, "rpath"), Outcome: "ok", Attempt: 1, Start: genTime(t, "rs"), End: genTime(t, "re"), Err: rapid.String().Draw(t, "rerr")})
	}
	st.Intent = rapid.SampledFrom([]string{"", "a/b"}).Draw(t, "intent")
	for range rapid.IntRange(0, 2).Draw(t, "signals") {
		st.Signals = append(st.Signals, stepflow.Signal{Name: rapid.String().Draw(t, "sname"), Payload: genBytes(t, "sp"), At: genTime(t, "sat")})
	}
	return st
}

func codecs() []codec.Codec[Deploy] {
	return []codec.Codec[Deploy]{codec.Msgpack[Deploy](nil), codec.JSON[Deploy](nil)}
}

func TestRoundTripRandomStates(t *testing.T) {
	for _, c := range codecs() {
		t.Run(c.Name(), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				st := genState(t)
				b, err := c.Encode(st)
				if err != nil {
					t.Fatal(err)
				}
				got, err := c.Decode(b)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				assert.Equal(t, st, got)
				b2, err := c.Encode(got)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, b2) {
					t.Fatalf("re-encoding differs:\n%x\n%x", b, b2)
				}
				// Detect picks the right codec.
				any, err := codec.Decode[Deploy](b, nil)
				require.NoError(t, err)
				assert.Equal(t, st, any)
				// Decoded states share no memory with the input, which
				// callers reuse as their read buffer.
				for i := range b {
					b[i] = 0
				}
				assert.Equal(t, st, got)
				assert.Equal(t, st, any)
			})
		})
	}
}

func TestEncodingIsCanonical(t *testing.T) {
	// Maps iterate in random order; the encoding must not.
	labels := map[string]string{}
	for i := range 50 {
		labels[fmt.Sprintf("k%02d", i)] = "v"
	}
	st := stepflow.State[Deploy]{Version: "v", Data: Deploy{Labels: labels}}
	for _, c := range codecs() {
		first, err := c.Encode(st)
		require.NoError(t, err)
		for range 20 {
			b, err := c.Encode(st)
			require.NoError(t, err)
			require.Equal(t, first, b, c.Name())
		}
	}
}

func TestDecodeErrorsAreTyped(t *testing.T) {
	mp := codec.Msgpack[Deploy](&codec.Options{MaxSize: 1000})
	js := codec.JSON[Deploy](&codec.Options{MaxSize: 1000})
	good, err := mp.Encode(stepflow.State[Deploy]{Version: "v1", Data: Deploy{App: "web"}})
	require.NoError(t, err)
	goodJSON, err := js.Encode(stepflow.State[Deploy]{Version: "v1"})
	require.NoError(t, err)
	future := append([]byte{}, good...)
	future[2] = codec.FormatVersion + 1
	badStatus := append([]byte{}, good...)
	badStatus[envelope+1+3] = 9 // array header, "v1" (3 bytes), "" (1 byte), then status
	cases := []struct {
		name string
		c    codec.Codec[Deploy]
		in   []byte
		want error
	}{
		{"empty", mp, nil, codec.ErrTruncated},
		{"truncated envelope", mp, good[:2], codec.ErrTruncated},
		{"truncated body", mp, good[:len(good)-3], codec.ErrTruncated},
		{"not a state", mp, []byte("hello"), codec.ErrNotState},
		{"future format", mp, future, codec.ErrUnsupportedFormat},
		{"too large", mp, make([]byte, 1001), codec.ErrTooLarge},
		{"json given to msgpack", mp, goodJSON, codec.ErrWrongEncoding},
		{"msgpack given to json", js, good, codec.ErrWrongEncoding},
		{"trailing bytes", mp, append(append([]byte{}, good...), 0xc0), codec.ErrCorrupt},
		{"unknown status", mp, badStatus, codec.ErrCorrupt},
		{"json truncated", js, goodJSON[:len(goodJSON)-5], codec.ErrTruncated},
		{"json without envelope", js, []byte(`{"version":"v1"}`), codec.ErrNotState},
		{"json future format", js, []byte(`{"stepflow":99,"state":{}}`), codec.ErrUnsupportedFormat},
		{"json no state", js, []byte(`{"stepflow":1}`), codec.ErrCorrupt},
		{"json bad status", js, []byte(`{"stepflow":1,"state":{"version":"v","status":"sleepy"}}`), codec.ErrCorrupt},
		{"json too large", js, bytes.Repeat([]byte(" "), 1001), codec.ErrTooLarge},
		{"json trailing value", js, append(append([]byte{}, goodJSON...), `{}`...), codec.ErrCorrupt},
		{"json trailing bracket", js, append(append([]byte{}, goodJSON...), ']'), codec.ErrCorrupt},
		{"json trailing brace", js, append(append([]byte{}, goodJSON...), " }"...), codec.ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.Decode(tc.in)
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			var de *codec.DecodeError
			assert.ErrorAs(t, err, &de)
			assert.Equal(t, tc.c.Name(), de.Encoding)
		})
	}
}

const envelope = 3

func TestEncodeRefusesOversizedStates(t *testing.T) {
	for _, c := range []codec.Codec[Deploy]{codec.Msgpack[Deploy](&codec.Options{MaxSize: 64}), codec.JSON[Deploy](&codec.Options{MaxSize: 64})} {
		_, err := c.Encode(stepflow.State[Deploy]{Version: "v", Data: Deploy{App: string(make([]byte, 100))}})
		assert.ErrorIs(t, err, codec.ErrTooLarge, c.Name())
	}
}

func TestDecodeNeverPanics(t *testing.T) {
	seeds := [][]byte{}
	for _, c := range codecs() {
		b, err := c.Encode(midRunDeployState(t, 0))
		require.NoError(t, err)
		seeds = append(seeds, b)
	}
	rapid.Check(t, func(t *rapid.T) {
		in := rapid.SampledFrom(seeds).Draw(t, "seed")
		in = append([]byte{}, in...)
		// Flip, cut or extend the input at random.
		for range rapid.IntRange(0, 4).Draw(t, "edits") {
			switch rapid.IntRange(0, 2).Draw(t, "op") {
			case 0:
				if len(in) > 0 {
					in[rapid.IntRange(0, len(in)-1).Draw(t, "at")] = rapid.Byte().Draw(t, "b")
				}
			case 1:
				in = in[:rapid.IntRange(0, len(in)).Draw(t, "cut")]
			case 2:
				in = append(in, rapid.SliceOfN(rapid.Byte(), 1, 8).Draw(t, "more")...)
			}
		}
		for _, c := range codecs() {
			st, err := c.Decode(in)
			if err != nil {
				var de *codec.DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("untyped error %T: %v", err, err)
				}
				continue
			}
			// Whatever decodes must re-encode.
			if _, err := c.Encode(st); err != nil {
				t.Fatalf("decoded state does not encode: %v", err)
			}
		}
	})
}

// deployFlow is the flow of the core issue's example.
func deployFlow(tb testing.TB, record int) *stepflow.Flow[Deploy] {
	do := func(context.Context, *Deploy) error { return nil }
	no := func(context.Context, *Deploy) (bool, error) { return false, nil }
	yes := func(context.Context, *Deploy) (bool, error) { return true, nil }
	f, err := stepflow.NewWithOptions("deploy/v1", &stepflow.Options{Record: record},
		combinators.Do("getPreActualState", do),
		combinators.WaitFor("preActualState", yes, combinators.Every(10*time.Second), combinators.Timeout(30*time.Minute)),
		combinators.Case("shouldDeploy", yes,
			combinators.Do("createDeployRequest", func(_ context.Context, d *Deploy) error { d.PR = 4242; return nil }),
			combinators.WaitFor("acceptedDeployRequest", no),
		),
	)
	require.NoError(tb, err)
	return f
}

// midRunDeployState drives the deploy flow to its wait for the pull request
// to merge, after three polls.
func midRunDeployState(tb testing.TB, record int) stepflow.State[Deploy] {
	f := deployFlow(tb, record)
	now := t0
	ctx := stepflow.WithClock(context.Background(), stepflow.ClockFunc(func() time.Time { return now }))
	st := f.Start(Deploy{App: "web", Env: "prod"})
	for {
		if sd := st.Root.Child("shouldDeploy"); sd != nil {
			if w := sd.Child("acceptedDeployRequest"); w != nil && w.Count >= 3 {
				break
			}
		}
		var err error
		st, err = f.Apply(ctx, st)
		require.NoError(tb, err)
		if st.Status == stepflow.Waiting {
			now = st.WakeAt
		}
	}
	return st
}

func TestDeployStateSize(t *testing.T) {
	for _, tc := range []struct {
		record int
		limit  int
	}{{0, 160}, {32, 1024}} {
		st := midRunDeployState(t, tc.record)
		require.Equal(t, []string{"shouldDeploy/acceptedDeployRequest"}, st.Positions())
		b, err := codec.Msgpack[Deploy](nil).Encode(st)
		require.NoError(t, err)
		j, err := codec.JSON[Deploy](nil).Encode(st)
		require.NoError(t, err)
		t.Logf("record=%d: msgpack %d bytes, json %d bytes", tc.record, len(b), len(j))
		assert.LessOrEqual(t, len(b), tc.limit)
	}
}

func BenchmarkCodec(b *testing.B) {
	st := midRunDeployState(b, 0)
	for _, c := range codecs() {
		enc, err := c.Encode(st)
		require.NoError(b, err)
		b.Run(c.Name()+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := c.Encode(st); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.Name()+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := c.Decode(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.Name()+"/roundtrip", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(enc)))
			for i := 0; i < b.N; i++ {
				e, err := c.Encode(st)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Decode(e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
