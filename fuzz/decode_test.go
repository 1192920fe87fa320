package fuzz

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
)

// fuzzMaxSize is the size limit the decode targets configure: small, so
// that the fuzzer reaches it, and so that memory use out of proportion to
// it stands out.
const fuzzMaxSize = 4096

// allocFactor bounds the memory a decode may allocate, per byte of the
// size limit. A state holds at most MaxSize bytes, but each byte can stand
// for a whole frame or record in memory, so the bound is a multiple.
const allocFactor = 256

var sentinels = []error{codec.ErrTruncated, codec.ErrNotState, codec.ErrUnsupportedFormat,
	codec.ErrTooLarge, codec.ErrCorrupt, codec.ErrWrongEncoding}

func FuzzDecodeMsgpack(f *testing.F) {
	addStoredStates(f, "msgpack")
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, codec.Msgpack[Data](&codec.Options{MaxSize: fuzzMaxSize}), b)
	})
}

func FuzzDecodeJSON(f *testing.F) {
	addStoredStates(f, "json")
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, codec.JSON[Data](&codec.Options{MaxSize: fuzzMaxSize}), b)
	})
}

// checkDecode checks one input against c.
func checkDecode(t *testing.T, c codec.Codec[Data], b []byte) {
	before := allocated()
	st, err := c.Decode(b)
	used := allocated() - before
	if limit := uint64(allocFactor*fuzzMaxSize + 64<<10); used > limit {
		t.Fatalf("decoding %d bytes allocated %d bytes, more than %d (limit %d bytes)", len(b), used, limit, fuzzMaxSize)
	}
	if err != nil {
		checkDecodeError(t, c.Name(), b, err)
		return
	}
	// Whatever decodes encodes back, and that encoding is a fixed point.
	enc, err := c.Encode(st)
	if errors.Is(err, codec.ErrTooLarge) {
		return
	}
	require.NoError(t, err, "a decoded state must encode again")
	st2, err := c.Decode(enc)
	require.NoError(t, err, "an encoded state must decode")
	enc2, err := c.Encode(st2)
	require.NoError(t, err)
	require.Equal(t, enc, enc2, "encoding is not canonical")
	// The other codec can hold it too.
	var other codec.Codec[Data] = codec.JSON[Data](nil)
	if c.Name() == "json" {
		other = codec.Msgpack[Data](nil)
	}
	ob, err := other.Encode(st)
	require.NoError(t, err)
	_, err = other.Decode(ob)
	require.NoError(t, err)
}

func checkDecodeError(t *testing.T, name string, b []byte, err error) {
	var de *codec.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("decode error is %T, want *codec.DecodeError: %v", err, err)
	}
	require.Equal(t, name, de.Encoding)
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("decode error matches %d sentinels, want exactly one: %v", n, err)
	}
	if len(b) > fuzzMaxSize && !errors.Is(err, codec.ErrTooLarge) {
		t.Fatalf("%d bytes (limit %d) gave %v, want ErrTooLarge", len(b), fuzzMaxSize, err)
	}
}

var allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}

// allocated returns the bytes allocated on the heap so far. It is cheaper
// than runtime.ReadMemStats, which stops the world, and precise enough for
// a bound: small objects are counted a span at a time.
func allocated() uint64 {
	metrics.Read(allocSample)
	return allocSample[0].Value.Uint64()
}

// addStoredStates seeds f with the stored corpus in one encoding; args
// gives the remaining arguments of the target.
func addStoredStates(f *testing.F, enc string, args ...any) {
	paths, err := filepath.Glob(filepath.Join(statesDir, "format*", "*."+enc))
	require.NoError(f, err)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(f, err)
		f.Add(append([]any{b}, args...)...)
	}
}

// writeSeeds writes the seed corpora of the targets under
// testdata/fuzz/<Target>: the stored states cut and corrupted in the ways
// that reach the codecs' error paths.
func writeSeeds(t *testing.T, states []storedState) {
	mp := codec.Msgpack[Data](nil)
	js := codec.JSON[Data](nil)
	seeds := map[string][][]any{}
	for i, s := range states {
		m, err := mp.Encode(s.state)
		require.NoError(t, err)
		j, err := js.Encode(s.state)
		require.NoError(t, err)
		if i%3 == 0 {
			seeds["FuzzDecodeMsgpack"] = append(seeds["FuzzDecodeMsgpack"], []any{m[:len(m)/2]})
			seeds["FuzzDecodeJSON"] = append(seeds["FuzzDecodeJSON"], []any{j[:len(j)/2]})
		}
		which := uint8(0)
		if s.state.Version == "rich/v1" {
			which = 1 | uint8(i%2)<<6
		}
		seeds["FuzzApply"] = append(seeds["FuzzApply"], []any{m, which, int64(i * 97), []byte{byte(i), byte(i * 7), 0}})
		seeds["FuzzMigrate"] = append(seeds["FuzzMigrate"], []any{m, which & 1, []byte{byte(i)}})
	}
	hostile := [][]byte{
		{0xf5, 'm', 1, 0xdd, 0xff, 0xff, 0xff, 0xff},                                       // a state array claiming 4G fields
		{0xf5, 'm', 1, 0x97, 0xa1, 'v', 0xa0, 0, 0, 0xc0, 0x92, 0xa0, 0xdd, 0, 0x10, 0, 0}, // frame children claiming 1M
		{0xf5, 'm', 2},                 // a format from the future
		{0xf5, 'x', 1},                 // an unknown encoding byte
		{'{', '"', 's', '"', ':', '1'}, // JSON in the msgpack codec
	}
	for _, h := range hostile {
		seeds["FuzzDecodeMsgpack"] = append(seeds["FuzzDecodeMsgpack"], []any{h})
	}
	deep := strings.Repeat(`{"name":"x","children":[`, 80) + strings.Repeat(`]}`, 80)
	for _, h := range []string{
		`{"stepflow":1,"state":{"version":"stored/v1","status":"running","root":` + deep + `}}`,
		`{"stepflow":99,"state":{}}`,
		`{"stepflow":1,"state":null}`,
		`{"stepflow":1,"state":{"status":"sleeping"}}`,
		`[1,2,3]`,
	} {
		seeds["FuzzDecodeJSON"] = append(seeds["FuzzDecodeJSON"], []any{[]byte(h)})
	}
	for target, list := range seeds {
		dir := filepath.Join("testdata", "fuzz", target)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for i, args := range list {
			var b bytes.Buffer
			b.WriteString("go test fuzz v1\n")
			for _, a := range args {
				switch a := a.(type) {
				case []byte:
					fmt.Fprintf(&b, "[]byte(%q)\n", a)
				default:
					fmt.Fprintf(&b, "%T(%v)\n", a, a)
				}
			}
			writeNew(t, filepath.Join(dir, fmt.Sprintf("seed-%03d", i)), b.Bytes())
		}
	}
}
