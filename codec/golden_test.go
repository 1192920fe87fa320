package codec_test

import (
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Format 1 bytes of the mid-run deploy state, with recording off and on.
// States stored by earlier releases must keep decoding, and equal states
// must keep giving equal bytes, so these bytes may only change together with
// FormatVersion.
const (
	goldenMidRunDeploy = "f56d0197a96465706c6f792f7631a00107d6ff69a7bddd92a09193ac73686f756c64" +
		"4465706c6f799196b561636365707465644465706c6f795265717565737490a003d6ff69a7bdbfd6ff69a7" +
		"bddda47468656ec41e84a3417070a3776562a3456e76a470726f64a25052cd1092a44c697665c2"
	goldenMidRunDeployRecord = "f56d0199a96465706c6f792f7631a00107d6ff69a7bddd92a09193ac73686f756c" +
		"644465706c6f799196b561636365707465644465706c6f795265717565737490a003d6ff69a7bdbfd6ff69" +
		"a7bddda47468656ec41e84a3417070a3776562a3456e76a470726f64a25052cd1092a44c697665c2c09497" +
		"01b167657450726541637475616c5374617465a26f6b01d6ff69a7bdbfd6ff69a7bdbfa09702ae70726541" +
		"637475616c5374617465a47472756501d6ff69a7bdbfd6ff69a7bdbfa09703ac73686f756c644465706c6f" +
		"79a47468656e01d6ff69a7bdbfd6ff69a7bdbfa09704d92073686f756c644465706c6f792f637265617465" +
		"4465706c6f7952657175657374a26f6b01d6ff69a7bdbfd6ff69a7bdbfa0"
)

func TestMsgpackGoldenBytes(t *testing.T) {
	c := codec.Msgpack[Deploy](nil)
	for _, tc := range []struct {
		record int
		golden string
	}{{0, goldenMidRunDeploy}, {32, goldenMidRunDeployRecord}} {
		st := midRunDeployState(t, tc.record)
		want, err := hex.DecodeString(tc.golden)
		require.NoError(t, err)
		dec, err := c.Decode(want)
		require.NoError(t, err)
		if tc.record > 0 {
			// The record now also keeps the polls that answered not
			// yet; the stored bytes were made before, and hold the
			// four entries that come first.
			require.Greater(t, len(st.Record), len(dec.Record))
			st.Record = st.Record[:len(dec.Record)]
		}
		assert.Equal(t, st, dec, "record=%d", tc.record)
		got, err := c.Encode(st)
		require.NoError(t, err)
		assert.Equal(t, tc.golden, hex.EncodeToString(got), "record=%d: format 1 bytes changed", tc.record)
	}
}

func TestMsgpackDataLabelsGoldenBytes(t *testing.T) {
	// Map keys are written sorted, in msgpack's shortest forms.
	st := stepflow.State[Deploy]{Version: "v", Data: Deploy{App: "a", PR: -1, Live: true,
		Labels: map[string]string{"z": "1", "b": "2", "m": "3"}}}
	got, err := codec.Msgpack[Deploy](nil).Encode(st)
	require.NoError(t, err)
	assert.Equal(t, "f56d0197a176a00000c091a0c42a85a3417070a161a3456e76a0a25052ffa44c697665c3a64c6162656c7383a162a132a16da133a17aa131",
		hex.EncodeToString(got))
}

func TestDecodedStateDoesNotAliasInput(t *testing.T) {
	// Callers reuse their read buffers: a decoded state must stay intact
	// when the bytes it came from are overwritten.
	st := midRunDeployState(t, 32)
	st.ID = "process-1"
	st.Data.Labels = map[string]string{"team": "platform"}
	st.Root.Children[0].Payload = []byte{1, 2, 3}
	st.Signals = []stepflow.Signal{{Name: "merged", Payload: []byte("yes"), At: t0}}
	st.Err = &stepflow.Failure{Path: "a/b", Kind: "error", Message: "boom", Attempt: 2, At: t0}
	st.Intent = "a/b"
	for _, c := range codecs() {
		b, err := c.Encode(st)
		require.NoError(t, err)
		dec, err := c.Decode(b)
		require.NoError(t, err)
		for i := range b {
			b[i] = 0xff
		}
		assert.Equal(t, st, dec, c.Name())
	}
}

func BenchmarkDecodeAnyEncoding(b *testing.B) {
	// codec.Decode makes a codec per call, as a store reading states of
	// both encodings does.
	enc, err := codec.Msgpack[Deploy](nil).Encode(midRunDeployState(b, 0))
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := codec.Decode[Deploy](enc, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCodecsAreSafeForConcurrentUse(t *testing.T) {
	// Encode and Decode share pooled buffers between calls; each call
	// must still see only its own state.
	for _, c := range codecs() {
		t.Run(c.Name(), func(t *testing.T) {
			base := midRunDeployState(t, 32)
			var wg sync.WaitGroup
			for g := range 8 {
				st := base
				st.ID = fmt.Sprintf("process-%d", g)
				st.Data.Labels = map[string]string{"g": strings.Repeat("x", g*40)}
				want, err := c.Encode(st)
				require.NoError(t, err)
				wg.Go(func() {
					for range 200 {
						b, err := c.Encode(st)
						if !assert.NoError(t, err) || !assert.Equal(t, want, b) {
							return
						}
						dec, err := c.Decode(b)
						if !assert.NoError(t, err) || !assert.Equal(t, st, dec) {
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
