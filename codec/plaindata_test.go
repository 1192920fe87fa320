package codec

import (
	"bytes"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
	"pgregory.net/rapid"
)

// plainAll has a field of every kind plainData handles.
type plainAll struct {
	S      string
	B      bool  `msgpack:"b"`
	I      int   `msgpack:",omitempty"`
	I8     int8  `msgpack:"i8"`
	I16    int16 `msgpack:",omitempty"`
	I32    int32
	I64    int64
	U      uint `msgpack:"u,omitempty"`
	U8     uint8
	U16    uint16
	U32    uint32 `msgpack:",omitempty"`
	U64    uint64
	M      map[string]string
	MO     map[string]string `msgpack:",omitempty"`
	SO     string            `msgpack:"so,omitempty"`
	BO     bool              `msgpack:",omitempty"`
	Skip   string            `msgpack:"-"`
	hidden int
}

func genPlainAll(t *rapid.T) plainAll {
	genMap := func(label string) map[string]string {
		switch rapid.IntRange(0, 2).Draw(t, label+"/shape") {
		case 0:
			return nil
		case 1:
			return map[string]string{}
		}
		return rapid.MapOfN(rapid.StringN(0, 40, -1), rapid.StringN(0, 300, -1), 1, 20).Draw(t, label)
	}
	return plainAll{
		S: rapid.StringN(0, 300, -1).Draw(t, "s"), B: rapid.Bool().Draw(t, "b"),
		I: rapid.Int().Draw(t, "i"), I8: rapid.Int8().Draw(t, "i8"), I16: rapid.Int16().Draw(t, "i16"),
		I32: rapid.Int32().Draw(t, "i32"), I64: rapid.Int64().Draw(t, "i64"),
		U: rapid.Uint().Draw(t, "u"), U8: rapid.Uint8().Draw(t, "u8"), U16: rapid.Uint16().Draw(t, "u16"),
		U32: rapid.Uint32().Draw(t, "u32"), U64: rapid.Uint64().Draw(t, "u64"),
		M: genMap("m"), MO: genMap("mo"),
		SO: rapid.SampledFrom([]string{"", "x"}).Draw(t, "so"), BO: rapid.Bool().Draw(t, "bo"),
	}
}

func msgpackEncode(t require.TestingT, v any) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	require.NoError(t, enc.Encode(v))
	return buf.Bytes()
}

func TestPlainDataWritesWhatMsgpackWrites(t *testing.T) {
	typ := reflect.TypeFor[plainAll]()
	p := newPlainData(typ)
	require.NotNil(t, p)
	require.True(t, p.agrees(typ))
	rapid.Check(t, func(t *rapid.T) {
		v := genPlainAll(t)
		want := msgpackEncode(t, &v)
		got, _ := p.append(nil, unsafe.Pointer(&v), nil)
		require.Equal(t, want, got)
		var back plainAll
		require.True(t, p.read(got, "", unsafe.Pointer(&back)))
		var viaMsgpack plainAll
		require.NoError(t, msgpack.Unmarshal(got, &viaMsgpack))
		assert.Equal(t, viaMsgpack, back)
	})
}

func TestPlainDataReadsOnlyWhatMsgpackReadsTheSame(t *testing.T) {
	// Whatever plainData accepts, msgpack must accept and read to the same
	// value; the rest goes to msgpack.
	p := newPlainData(reflect.TypeFor[plainAll]())
	require.NotNil(t, p)
	rapid.Check(t, func(t *rapid.T) {
		v := genPlainAll(t)
		in := msgpackEncode(t, &v)
		for range rapid.IntRange(0, 3).Draw(t, "edits") {
			if len(in) > 0 {
				in[rapid.IntRange(0, len(in)-1).Draw(t, "at")] = rapid.Byte().Draw(t, "b")
			}
		}
		var got plainAll
		if !p.read(in, string(in), unsafe.Pointer(&got)) {
			return
		}
		var want plainAll
		require.NoError(t, msgpack.Unmarshal(in, &want))
		require.Equal(t, want, got)
	})
}

type (
	withTime     struct{ At time.Time }
	named        string
	withNamed    struct{ N named }
	embedded     struct{ A string }
	withEmbedded struct {
		embedded
		B string
	}
	withAlias struct {
		A string `msgpack:"a,alias:b"`
	}
	withAsArray struct {
		_msgpack struct{} `msgpack:",as_array"`
		A        string
	}
	withSameNames struct {
		A string
		B string `msgpack:"A"`
	}
	withSlice  struct{ L []string }
	withCustom struct{ A string }
	withFloat  struct{ F float64 }
)

func (withCustom) EncodeMsgpack(*msgpack.Encoder) error { return nil }

func TestPlainDataLeavesOtherTypesToMsgpack(t *testing.T) {
	for _, typ := range []reflect.Type{
		reflect.TypeFor[withTime](), reflect.TypeFor[withNamed](), reflect.TypeFor[withEmbedded](),
		reflect.TypeFor[withAlias](), reflect.TypeFor[withAsArray](), reflect.TypeFor[withSameNames](),
		reflect.TypeFor[withSlice](), reflect.TypeFor[withCustom](), reflect.TypeFor[withFloat](),
		reflect.TypeFor[string](), reflect.TypeFor[map[string]string](), reflect.TypeFor[*plainAll](),
	} {
		assert.Nil(t, newPlainData(typ), typ.String())
	}
}

// stateWithData returns an encoded state whose data field holds data.
func stateWithData(data []byte) []byte {
	b := []byte{magic, encMsgpack, FormatVersion}
	b = appendArrayLen(b, 7)
	b = appendString(b, "v")
	b = appendString(b, "")
	b = appendUint(b, 0)
	b = appendUint(b, 0)
	b = appendNil(b)
	b = appendString(appendArrayLen(b, 1), "")
	return appendBin(b, data)
}

func TestMsgpackDecodesDataPlainDataDoesNotRead(t *testing.T) {
	// Valid msgpack in forms the encoder does not write: Decode must read
	// it as msgpack does, not as a half-filled value.
	m := func(kv ...[]byte) []byte {
		b := appendMapLen(nil, len(kv)/2)
		for _, x := range kv {
			b = append(b, x...)
		}
		return b
	}
	str := func(s string) []byte { return appendString(nil, s) }
	cases := map[string][]byte{
		"int64 form":        m(str("I"), []byte{0xd3, 0, 0, 0, 0, 0, 0, 0, 5}),
		"unknown key first": m(str("zz"), str("x"), str("S"), str("web")),
		"nil string":        m(str("S"), []byte{0xc0}),
		"binary string":     m(str("S"), []byte{0xc4, 1, 'a'}),
		"map twice":         m(str("M"), m(str("a"), str("1")), str("M"), m(str("b"), str("2"))),
		"map then nil":      m(str("M"), m(str("a"), str("1")), str("M"), []byte{0xc0}),
		"nil data":          {0xc0},
		"array":             {0x91, 0xa1, 'x'},
		"float for int":     m(str("S"), str("web"), str("I"), []byte{0xcb, 0x40, 0x14, 0, 0, 0, 0, 0, 0}),
		// msgpack reads the first value and leaves the rest.
		"trailing value": append(m(str("S"), str("a")), 0x01),
	}
	c := Msgpack[plainAll](nil)
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			var want plainAll
			wantErr := msgpack.Unmarshal(data, &want)
			st, err := c.Decode(stateWithData(data))
			if wantErr != nil {
				// Decode also fails when msgpack reads the first value
				// but more follows that does not check out.
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, want, st.Data)
		})
	}
}

func FuzzPlainDataRead(f *testing.F) {
	f.Add(msgpackEncode(f, &plainAll{S: "web", I: -5, U64: 1 << 40, M: map[string]string{"a": "b"}}))
	f.Add(msgpackEncode(f, &plainAll{}))
	p := newPlainData(reflect.TypeFor[plainAll]())
	f.Fuzz(func(t *testing.T, in []byte) {
		var got plainAll
		if !p.read(in, "", unsafe.Pointer(&got)) {
			return
		}
		var want plainAll
		require.NoError(t, msgpack.Unmarshal(in, &want))
		require.Equal(t, want, got)
	})
}
