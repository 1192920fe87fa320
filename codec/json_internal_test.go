package codec

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

func TestJSONFieldNamesMatchTags(t *testing.T) {
	// The readers name the fields of stepflow's structs as their json
	// tags do, in field order.
	tags := func(typ reflect.Type) []string {
		var names []string
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			names = append(names, name)
		}
		return names
	}
	assert.Equal(t, tags(reflect.TypeFor[stepflow.State[int]]()), jsonStateNames)
	assert.Equal(t, tags(reflect.TypeFor[stepflow.Frame]()), jsonFrameNames)
	assert.Equal(t, tags(reflect.TypeFor[stepflow.Failure]()), jsonFailureNames)
	assert.Equal(t, tags(reflect.TypeFor[stepflow.Record]()), jsonRecordNames)
	assert.Equal(t, tags(reflect.TypeFor[stepflow.Signal]()), jsonSignalNames)
	assert.Equal(t, tags(reflect.TypeFor[refEnvelope[int]]()), jsonEnvelopeNames)
	for _, n := range []*jsonNames{cStateNames, cFrameNames, cFailureNames, cRecordNames, cSignalNames} {
		assert.NotZero(t, n.mul, "no hash separates %v", n.names)
	}
	var names []string
	for s := stepflow.Status(0); s.Valid(); s++ {
		text, err := s.MarshalText()
		require.NoError(t, err)
		names = append(names, string(text))
	}
	assert.Equal(t, names, statusNames)
}

func TestJSONNamesMatchKeys(t *testing.T) {
	// ckey finds each name, from its index on, and nothing else: not a
	// prefix, an extension or another case of a name.
	names := []string{"a", "ab", "abcdefgh", "abcdefghi", "abcdefghijklmnop", "B", "children", "x_1"}
	n := newJSONNames(names)
	for j, name := range names {
		for _, in := range []string{`"` + name + `":0,`, `,"` + name + `":0,`} {
			first := in[0] == '"'
			in += strings.Repeat(" ", 12)
			r := jsonReader{b: []byte(in)}
			assert.Equal(t, j, r.ckey(n, 0, first), "%q", in)
			assert.Equal(t, `0,`, string(r.b[r.off:r.off+2]), "%q", in)
			r.off = 0
			assert.Equal(t, j, r.ckey(n, j, first), "%q", in)
			r.off = 0
			assert.Equal(t, -1, r.ckey(n, j+1, first), "%q: names before from are not matched", in)
		}
	}
	for _, key := range []string{"", "A", "b", "abc", "abcdefg", "abcdefghij", "abcdefghijklmno", "Children", "x_2", `a\"`} {
		r := jsonReader{b: []byte(`"` + key + `":0,` + strings.Repeat(" ", 12))}
		assert.Equal(t, -1, r.ckey(n, 0, true), "%q", key)
	}
}

// TestCanonicalReaderAgreesWithGeneralReader: whatever the canonical
// reader accepts, the general one accepts too, to the same state.
func TestCanonicalReaderAgreesWithGeneralReader(t *testing.T) {
	type plain struct {
		Name   string
		N      int8
		U      uint16 `json:"u,omitempty"`
		On     bool
		Labels map[string]string `json:"labels"`
	}
	rapid.Check(t, func(t *rapid.T) {
		st := stepflow.State[plain]{
			Version: rapid.StringMatching(`[a-z/0-9]{0,12}`).Draw(t, "version"),
			ID:      rapid.String().Draw(t, "id"),
			Status:  stepflow.Status(rapid.IntRange(0, 5).Draw(t, "status")),
			Steps:   rapid.Uint64().Draw(t, "steps"),
			WakeAt:  time.Unix(rapid.Int64Range(-62167219200, 253402300799).Draw(t, "wake"), rapid.Int64Range(0, 999999999).Draw(t, "ns")).UTC(),
			Root:    stepflow.Frame{Name: "r", Count: rapid.Uint32().Draw(t, "count"), Payload: rapid.SliceOfN(rapid.Byte(), 0, 5).Draw(t, "payload")},
			Data: plain{Name: rapid.String().Draw(t, "name"), N: rapid.Int8().Draw(t, "n"), U: rapid.Uint16().Draw(t, "u"),
				On: rapid.Bool().Draw(t, "on"), Labels: rapid.MapOfN(rapid.String(), rapid.String(), 0, 3).Draw(t, "labels")},
			Intent: rapid.SampledFrom([]string{"", "a/b"}).Draw(t, "intent"),
		}
		if len(st.Root.Payload) == 0 {
			st.Root.Payload = nil
		}
		if rapid.Bool().Draw(t, "children") {
			st.Root.Children = []stepflow.Frame{{Name: "c", Err: &stepflow.Failure{Path: "c", Kind: "error", Message: "boom", Attempt: 2}}, {}}
			st.Err = st.Root.Children[0].Err
			st.Record = []stepflow.Record{{Seq: 1, Path: "c", Outcome: "ok", Start: st.WakeAt}}
			st.Signals = []stepflow.Signal{{Name: "s", Payload: []byte{1}, At: st.WakeAt}}
		}
		b, err := refJSON[plain](nil).Encode(st)
		require.NoError(t, err)
		// Edits that keep the input canonical, or that it must give up on.
		edits := rapid.IntRange(0, 2).Draw(t, "edits")
		for range edits {
			if len(b) == 0 {
				break
			}
			switch at := rapid.IntRange(0, len(b)-1).Draw(t, "at"); rapid.IntRange(0, 3).Draw(t, "edit") {
			case 0:
				b = b[:at]
			case 1:
				b[at] = rapid.SampledFrom([]byte(`{}[]",:0-9.eEZT aA\`+"\x00\xff")).Draw(t, "byte")
			case 2:
				b = append(b[:at:at], append([]byte(rapid.SampledFrom([]string{" ", `"x":1,`, `,`, "0", `\u0041`}).Draw(t, "insert")), b[at:]...)...)
			}
		}
		var fast stepflow.State[plain]
		var r jsonReader
		r.reset(b)
		r.all = string(b)
		plan := jsonPlainFor(reflect.TypeFor[plain]())
		require.NotNil(t, plan)
		env, ok := readCanonicalJSON(&r, &fast, plan)
		if !ok {
			require.NotZero(t, edits, "the canonical reader gave up on what Encode wrote: %s", b)
			return
		}
		var slow stepflow.State[plain]
		r.restart(b)
		env2 := readJSONEnvelope(&r, &slow, plan)
		require.NoError(t, r.err(), "%s", b)
		normalize(&slow)
		assert.Equal(t, env2, env)
		assert.Equal(t, slow, fast, "%s", b)
	})
}

func TestParseJSONTimeAgreesWithTime(t *testing.T) {
	check := func(t require.TestingT, s string) {
		got, ok := parseJSONTime([]byte(s))
		var want time.Time
		err := want.UnmarshalJSON([]byte(`"` + s + `"`))
		if !ok {
			return // left to UnmarshalJSON
		}
		require.NoError(t, err, s)
		require.True(t, want.Equal(got), "%s: %v, want %v", s, got, want)
		require.Equal(t, want.UTC(), got, s)
	}
	for _, s := range []string{"0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2024-02-29T12:00:00Z",
		"2023-02-29T12:00:00Z", "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-03-04T05:06:07.1Z", "2026-13-01T00:00:00Z",
		"2026-03-04T24:00:00Z", "2026-03-04T05:06:60Z", "2026-03-04T05:06:07.Z", "2026-03-04T05:06:07.1234567891Z"} {
		check(t, s)
	}
	rapid.Check(t, func(t *rapid.T) {
		tm := time.Unix(rapid.Int64Range(-62167219200, 253402300799).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "ns")).UTC()
		s := tm.Format(time.RFC3339Nano)
		got, ok := parseJSONTime([]byte(s))
		require.True(t, ok, s)
		require.Equal(t, tm, got, s)
		// And anything near that form.
		p := []byte(s)
		for range rapid.IntRange(1, 3).Draw(t, "edits") {
			p[rapid.IntRange(0, len(p)-1).Draw(t, "at")] = rapid.SampledFrom([]byte("0123456789:-.TZ+ ")).Draw(t, "c")
		}
		check(t, string(p))
	})
}

func TestAppendJSONTimeAgreesWithMarshalJSON(t *testing.T) {
	check := func(t require.TestingT, tm time.Time) {
		want, werr := tm.MarshalJSON()
		var e jsonEncoder
		got := appendJSONTime(nil, tm, &e)
		if werr != nil {
			require.Error(t, e.err, "%v", tm)
			return
		}
		require.NoError(t, e.err)
		require.Equal(t, string(want), string(got))
	}
	for _, tm := range []time.Time{{}, time.Unix(-62167219200, 0).UTC(), time.Unix(-62167219201, 0).UTC(), time.Unix(253402300799, 999999999).UTC(),
		time.Unix(253402300800, 0).UTC(), time.Unix(0, 1).UTC(), time.Unix(951782400, 0).UTC(), time.Date(2026, 3, 4, 5, 6, 7, 800, time.FixedZone("", 3600)),
		time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("", 24*3600)), time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("UTC", 0))} {
		check(t, tm)
	}
	rapid.Check(t, func(t *rapid.T) {
		tm := time.Unix(rapid.Int64Range(-63000000000, 254000000000).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "ns"))
		if rapid.Bool().Draw(t, "round") {
			tm = tm.Truncate(time.Duration(rapid.SampledFrom([]int64{1e3, 1e6, 1e9}).Draw(t, "unit")))
		}
		check(t, tm.UTC())
		check(t, tm.In(time.FixedZone("", rapid.IntRange(-25*3600, 25*3600).Draw(t, "offset"))))
	})
}

func TestAppendJSONStringAgreesWithEncodingJSON(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var s string
		if rapid.Bool().Draw(t, "bytes") {
			s = string(rapid.SliceOfN(rapid.Byte(), 0, 40).Draw(t, "s"))
		} else {
			s = rapid.StringOfN(rapid.SampledFrom([]rune("ab\"\\/<>&\b\f\n\r\t\x00\x1f\x7f\u00e9\u2028\u2029\ufffd\U0001F600")), 0, 40, -1).Draw(t, "s")
		}
		want, err := json.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendJSONString(nil, s)))
		// And back: the reader decodes it as encoding/json does.
		var back string
		require.NoError(t, json.Unmarshal(want, &back))
		r := jsonReader{b: want}
		k, ok := r.str()
		require.True(t, ok)
		require.Equal(t, back, r.text(k))
	})
}

func TestUnquoteJSONAgreesWithEncodingJSON(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		parts := rapid.SliceOfN(rapid.SampledFrom([]string{"a", "\xff", "\xed\xa0\x80", "é", `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`,
			`\u0041`, `\u00e9`, `\u0000`, `\ud83d`, `\ude00`, `\ud83d\ude00`, `\uD800`, `\uDFFF`, `\ufffd`, `\u2028`}), 0, 12).Draw(t, "parts")
		in := `"` + strings.Join(parts, "") + `"`
		var want string
		require.NoError(t, json.Unmarshal([]byte(in), &want), in)
		r := jsonReader{b: []byte(in)}
		k, ok := r.str()
		require.True(t, ok, in)
		require.Equal(t, want, r.text(k), in)
		require.Equal(t, want, string(r.textBytes(k)), in)
	})
}

type (
	jsonPlainAll struct {
		S    string
		B    bool `json:"b"`
		I    int  `json:",omitempty"`
		I8   int8 `json:"i8"`
		I16  int16
		I32  int32 `json:"i32,omitempty"`
		I64  int64
		U    uint `json:"u_,omitempty"`
		U8   uint8
		U16  uint16
		U32  uint32
		U64  uint64 `json:"LongFieldNameOfMoreThanEight"`
		M    map[string]string
		MO   map[string]string `json:"mo,omitempty"`
		Skip string            `json:"-"`
		priv int
	}
	withMarshaler struct{ A string }
	withText      struct{ A string }
	withOmitZero  struct {
		A string `json:",omitzero"`
	}
	withString struct {
		A int `json:",string"`
	}
	withDash struct {
		A string `json:"-,"`
	}
	withFoldNames struct {
		A string
		B string `json:"a"`
	}
	withUnicodeName  struct{ Größe int }
	withEmbeddedJSON struct {
		embedded
	}
	withNamedField struct{ D time.Duration }
	withSliceField struct{ L []string }
)

func (withMarshaler) MarshalJSON() ([]byte, error) { return []byte(`{}`), nil }
func (*withText) UnmarshalText([]byte) error       { return nil }

func TestJSONPlainPlans(t *testing.T) {
	assert.NotNil(t, jsonPlainFor(reflect.TypeFor[jsonPlainAll]()))
	assert.NotNil(t, jsonPlainFor(reflect.TypeFor[struct{}]()))
	for _, typ := range []reflect.Type{
		reflect.TypeFor[withMarshaler](), reflect.TypeFor[withText](), reflect.TypeFor[withOmitZero](), reflect.TypeFor[withString](),
		reflect.TypeFor[withDash](), reflect.TypeFor[withFoldNames](), reflect.TypeFor[withUnicodeName](), reflect.TypeFor[withEmbeddedJSON](),
		reflect.TypeFor[withNamedField](), reflect.TypeFor[withSliceField](), reflect.TypeFor[string](), reflect.TypeFor[*jsonPlainAll](),
		reflect.TypeFor[map[string]string](),
	} {
		assert.Nil(t, jsonPlainFor(typ), typ.String())
	}
}

func genJSONPlainAll(t *rapid.T) jsonPlainAll {
	str := func(label string) string {
		if rapid.Bool().Draw(t, label+"/bytes") {
			return string(rapid.SliceOfN(rapid.Byte(), 0, 10).Draw(t, label))
		}
		return rapid.String().Draw(t, label)
	}
	m := func(label string) map[string]string {
		switch rapid.IntRange(0, 2).Draw(t, label+"/shape") {
		case 0:
			return nil
		case 1:
			return map[string]string{}
		}
		out := map[string]string{}
		for range rapid.IntRange(1, 4).Draw(t, label+"/n") {
			out[str(label+"/k")] = str(label + "/v")
		}
		return out
	}
	return jsonPlainAll{S: str("s"), B: rapid.Bool().Draw(t, "b"), I: rapid.Int().Draw(t, "i"), I8: rapid.Int8().Draw(t, "i8"),
		I16: rapid.Int16().Draw(t, "i16"), I32: rapid.Int32().Draw(t, "i32"), I64: rapid.Int64().Draw(t, "i64"), U: rapid.Uint().Draw(t, "u"),
		U8: rapid.Uint8().Draw(t, "u8"), U16: rapid.Uint16().Draw(t, "u16"), U32: rapid.Uint32().Draw(t, "u32"), U64: rapid.Uint64().Draw(t, "u64"),
		M: m("m"), MO: m("mo")}
}

func TestJSONPlainWritesWhatEncodingJSONWrites(t *testing.T) {
	p := jsonPlainFor(reflect.TypeFor[jsonPlainAll]())
	require.NotNil(t, p)
	rapid.Check(t, func(t *rapid.T) {
		v := genJSONPlainAll(t)
		want, err := json.Marshal(&v)
		require.NoError(t, err)
		got, _, check := p.append(nil, unsafe.Pointer(&v), nil)
		require.Equal(t, string(want), string(got))
		if !check {
			// Without map keys that are not valid UTF-8, no key comes
			// out twice.
			var r jsonReader
			r.reset(got)
			r.skip(2, 0, false)
			require.NoError(t, r.err())
		}
	})
}

func TestJSONPlainReadsOnlyWhatEncodingJSONReadsTheSame(t *testing.T) {
	// Whatever the plain readers accept, encoding/json reads to the same
	// value; the rest goes to encoding/json.
	p := jsonPlainFor(reflect.TypeFor[jsonPlainAll]())
	require.NotNil(t, p)
	rapid.Check(t, func(t *rapid.T) {
		v := genJSONPlainAll(t)
		in, err := json.Marshal(&v)
		require.NoError(t, err)
		for range rapid.IntRange(0, 3).Draw(t, "edits") {
			if len(in) == 0 {
				break
			}
			at := rapid.IntRange(0, len(in)-1).Draw(t, "at")
			switch rapid.IntRange(0, 2).Draw(t, "edit") {
			case 0:
				in[at] = rapid.SampledFrom([]byte(`{}[]",:0-9.eE ntfu\`)).Draw(t, "byte")
			case 1:
				in = append(in[:at:at], append([]byte(rapid.SampledFrom([]string{" ", `"S":"x",`, `"s":"x",`, `null`, `-`, `\u0041`}).Draw(t, "insert")), in[at:]...)...)
			case 2:
				in = in[:at]
			}
		}
		for _, canonical := range []bool{false, true} {
			var r jsonReader
			r.reset(in)
			var got jsonPlainAll
			var ok bool
			if canonical {
				ok = p.readCanonical(&r, unsafe.Pointer(&got))
			} else {
				ok = p.read(&r, unsafe.Pointer(&got))
			}
			if !ok {
				continue
			}
			var want jsonPlainAll
			require.NoError(t, json.Unmarshal(in[:r.off], &want), "%s", in)
			require.Equal(t, want, got, "%s", in)
		}
	})
}

func FuzzJSONPlainRead(f *testing.F) {
	f.Add([]byte(`{"S":"web","b":true,"I":-5,"LongFieldNameOfMoreThanEight":18446744073709551615,"M":{"a":"b"}}`))
	f.Add([]byte(`{}`))
	p := jsonPlainFor(reflect.TypeFor[jsonPlainAll]())
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, canonical := range []bool{false, true} {
			var r jsonReader
			r.reset(in)
			var got jsonPlainAll
			ok := p.read(&r, unsafe.Pointer(&got))
			if canonical {
				r.reset(in)
				got = jsonPlainAll{}
				ok = p.readCanonical(&r, unsafe.Pointer(&got))
			}
			if !ok {
				continue
			}
			var want jsonPlainAll
			require.NoError(t, json.Unmarshal(in[:r.off], &want))
			require.Equal(t, want, got)
		}
	})
}

func TestJSONEncodeRefusesMapKeysThatCollide(t *testing.T) {
	// encoding/json writes both keys as "\ufffd": Decode would refuse
	// the state, so Encode does, with plain data as with any other.
	st := stepflow.State[jsonPlainAll]{Version: "v", Data: jsonPlainAll{M: map[string]string{"\xff": "1", "\xfe": "2"}}}
	_, err := JSON[jsonPlainAll](nil).Encode(st)
	assert.ErrorContains(t, err, "appears twice")
	_, err = refJSON[jsonPlainAll](nil).Encode(st)
	assert.ErrorContains(t, err, "appears twice")
	st.Data.M = map[string]string{"\xff": "1", "a": "2"}
	b, err := JSON[jsonPlainAll](nil).Encode(st)
	require.NoError(t, err)
	assert.True(t, bytes.Contains(b, []byte(`"\ufffd":"1"`)))
}

// TestCanonicalReaderReadsWhatEncodeWrites: the canonical reader takes
// every state Encode writes whose strings need no escapes, whatever is
// left out, with data of short and long field names.
func TestCanonicalReaderReadsWhatEncodeWrites(t *testing.T) {
	type short struct {
		N int `json:"n"`
	}
	type long struct {
		AFieldNameOfMoreThanEightBytes string
		M                              map[string]string `json:",omitempty"`
	}
	check := func(t *rapid.T, b []byte, read func(r *jsonReader) bool) {
		var r jsonReader
		r.reset(b)
		r.all = string(b)
		require.True(t, read(&r), "%s", b)
	}
	rapid.Check(t, func(t *rapid.T) {
		name := rapid.StringMatching(`[a-z]{0,10}`)
		st := stepflow.State[short]{Version: name.Draw(t, "version"), ID: name.Draw(t, "id"), Intent: name.Draw(t, "intent"),
			Steps: rapid.Uint64().Draw(t, "steps"), Data: short{N: rapid.Int().Draw(t, "n")}}
		if rapid.Bool().Draw(t, "children") {
			st.Root.Children = []stepflow.Frame{{Name: name.Draw(t, "child")}}
		}
		if rapid.Bool().Draw(t, "err") {
			st.Err = &stepflow.Failure{Kind: name.Draw(t, "kind")}
		}
		b, err := JSON[short](nil).Encode(st)
		require.NoError(t, err)
		check(t, b, func(r *jsonReader) bool {
			var got stepflow.State[short]
			_, ok := readCanonicalJSON(r, &got, jsonPlainFor(reflect.TypeFor[short]()))
			return ok
		})
		l := stepflow.State[long]{Version: st.Version, Data: long{AFieldNameOfMoreThanEightBytes: name.Draw(t, "a")}}
		if rapid.Bool().Draw(t, "map") {
			l.Data.M = map[string]string{name.Draw(t, "k"): name.Draw(t, "v")}
		}
		b, err = JSON[long](nil).Encode(l)
		require.NoError(t, err)
		check(t, b, func(r *jsonReader) bool {
			var got stepflow.State[long]
			_, ok := readCanonicalJSON(r, &got, jsonPlainFor(reflect.TypeFor[long]()))
			return ok
		})
	})
}
