package codec_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Nested is process data of any depth: a chain of pointers, plus an
// interface value holding nested lists.
type Nested struct {
	Next *Nested `msgpack:",omitempty" json:",omitempty"`
	Any  any     `msgpack:",omitempty" json:",omitempty"`
}

// nestedData returns data whose deepest value is at level depth, counted
// as the codecs count it (the data itself is level 0), built from
// pointers or from lists.
func nestedData(depth int, lists bool) Nested {
	if lists {
		// Nested{Any: [[...[1]...]]}: the list is level 1, its innermost
		// element level depth.
		var v any = 1
		for range depth - 1 {
			v = []any{v}
		}
		return Nested{Any: v}
	}
	// A chain of depth structs: the innermost one is at level depth-1,
	// and its field at level depth.
	d := &Nested{Any: 1}
	for range depth - 1 {
		d = &Nested{Next: d}
	}
	return *d
}

func nestedFrames(depth int) stepflow.Frame {
	f := stepflow.Frame{Name: "leaf"}
	for range depth {
		f = stepflow.Frame{Name: "n", Children: []stepflow.Frame{f}}
	}
	return f
}

// Whatever Encode writes, Decode reads: both codecs refuse, on both sides,
// frames and data nested deeper than stepflow.MaxDepth, and accept
// anything up to it.
func TestEncodeWritesOnlyWhatDecodeReads(t *testing.T) {
	codecs := []codec.Codec[Nested]{codec.Msgpack[Nested](nil), codec.JSON[Nested](nil)}
	rapid.Check(t, func(t *rapid.T) {
		c := codecs[rapid.IntRange(0, 1).Draw(t, "codec")]
		frames := rapid.IntRange(0, stepflow.MaxDepth+8).Draw(t, "frames")
		data := rapid.IntRange(1, stepflow.MaxDepth+8).Draw(t, "data")
		lists := rapid.Bool().Draw(t, "lists")
		st := stepflow.State[Nested]{Version: "deep/v1", Status: stepflow.Running, Root: nestedFrames(frames), Data: nestedData(data, lists)}

		b, err := c.Encode(st)
		deep := frames > stepflow.MaxDepth || data > stepflow.MaxDepth
		if deep {
			require.ErrorIs(t, err, codec.ErrTooDeep, "%s encoded frames %d, data %d", c.Name(), frames, data)
			return
		}
		require.NoError(t, err, "%s: frames %d, data %d", c.Name(), frames, data)
		got, err := c.Decode(b)
		require.NoError(t, err, "%s wrote what it cannot read: frames %d, data %d", c.Name(), frames, data)
		assert.Equal(t, st.Root, got.Root)
	})
}

// Decode refuses too deep input with an error matching both ErrCorrupt and
// ErrTooDeep.
func TestDecodeRefusesTooDeepInput(t *testing.T) {
	ok := stepflow.State[Nested]{Version: "deep/v1", Root: nestedFrames(stepflow.MaxDepth)}
	for _, c := range []codec.Codec[Nested]{codec.Msgpack[Nested](nil), codec.JSON[Nested](nil)} {
		t.Run(c.Name(), func(t *testing.T) {
			b, err := c.Encode(ok)
			require.NoError(t, err)
			// One more level, spliced in by hand: a frame "n" around
			// the root's first child.
			var deeper []byte
			if c.Name() == "json" {
				deeper = []byte(strings.Replace(string(b), `"children":[`, `"children":[{"name":"x","children":[`, 1))
				deeper = []byte(strings.Replace(string(deeper), `"name":"leaf"}`, `"name":"leaf"}]}`, 1))
			} else {
				i := strings.Index(string(b), "\xa4leaf")
				require.Positive(t, i)
				deeper = append(append(append([]byte{}, b[:i-1]...), 0x92, 0xa1, 'x', 0x91), b[i-1:]...)
			}
			_, err = c.Decode(deeper)
			require.Error(t, err)
			assert.ErrorIs(t, err, codec.ErrCorrupt)
			assert.ErrorIs(t, err, codec.ErrTooDeep)
			var de *codec.DecodeError
			assert.True(t, errors.As(err, &de))
		})
	}
}

// A state is canonical: a JSON object naming a key twice is refused,
// wherever it is, rather than letting the last one win.
func TestJSONRefusesDuplicateKeys(t *testing.T) {
	const good = `{"stepflow":1,"state":{"version":"a/v1","status":"running","root":{"name":"","children":[{"name":"x"}]},"data":{"Any":{"a":1,"A":2}}}}`
	js := codec.JSON[Nested](nil)
	_, err := js.Decode([]byte(good))
	require.NoError(t, err, "keys differing in case are distinct in data maps")

	for name, doc := range map[string]string{
		"envelope":          `{"stepflow":1,"stepflow":1,"state":{"version":"a/v1","status":"running","root":{"name":""}}}`,
		"state":             `{"stepflow":1,"state":{"version":"a/v1","version":"b/v9","status":"running","root":{"name":""}}}`,
		"state, other case": `{"stepflow":1,"state":{"version":"a/v1","Version":"b/v9","status":"running","root":{"name":""}}}`,
		"state, escaped":    `{"stepflow":1,"state":{"version":"a/v1","\u0076ersion":"b/v9","status":"running","root":{"name":""}}}`,
		"frame":             `{"stepflow":1,"state":{"version":"a/v1","status":"running","root":{"name":"","children":[{"name":"x","name":"y"}]}}}`,
		"data":              `{"stepflow":1,"state":{"version":"a/v1","status":"running","root":{"name":""},"data":{"Any":{"a":1,"a":2}}}}`,
		"large data map":    `{"stepflow":1,"state":{"version":"a/v1","status":"running","root":{"name":""},"data":{"Any":{` + manyKeys(40) + `,"k7":0}}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := js.Decode([]byte(doc))
			require.Error(t, err)
			assert.ErrorIs(t, err, codec.ErrCorrupt)
			assert.Contains(t, err.Error(), "appears twice")
		})
	}
	_, err = js.Decode([]byte(`{"stepflow":1,"state":{"version":"a/v1","status":"running","root":{"name":""},"data":{"Any":{` + manyKeys(40) + `}}}}`))
	assert.NoError(t, err, "a large map without duplicates")
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + string(rune('0'+i/10)) + string(rune('0'+i%10)) + `":0`)
	}
	return strings.ReplaceAll(b.String(), `"k0`, `"k`)
}
