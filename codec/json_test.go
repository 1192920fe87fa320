package codec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// The JSON codec reads and writes states in one pass of its own; before, it
// used encoding/json on the whole envelope. codec.ReferenceJSON is that
// earlier implementation. The tests below hold the codec to it: the same
// bytes for every state, and for every input the same outcome.

// wildString draws any string, including invalid UTF-8, control characters
// and the characters JSON escapes.
func wildString(t *rapid.T, label string) string {
	switch rapid.IntRange(0, 3).Draw(t, label+"/kind") {
	case 0:
		return rapid.String().Draw(t, label)
	case 1:
		return string(rapid.SliceOfN(rapid.Byte(), 0, 12).Draw(t, label))
	case 2:
		return rapid.StringOfN(rapid.SampledFrom([]rune("aZ\"\\/<>&\b\f\n\r\t\x00\x1f\x7f\u00e9\u2028\u2029\ufffd\U0001F600")), 0, 10, -1).Draw(t, label)
	}
	return ""
}

// wildTime draws times in any zone, some of them ones JSON cannot hold
// (years outside 0..9999, offsets of a day or more).
func wildTime(t *rapid.T, label string) time.Time {
	if rapid.Bool().Draw(t, label+"/zero") {
		return time.Time{}
	}
	at := time.Unix(rapid.Int64Range(-70000000000, 260000000000).Draw(t, label+"/sec"), rapid.Int64Range(0, 999999999).Draw(t, label+"/nsec"))
	switch rapid.IntRange(0, 3).Draw(t, label+"/zone") {
	case 0:
		return at.UTC()
	case 1:
		return at.In(time.FixedZone("", rapid.IntRange(-30*3600, 30*3600).Draw(t, label+"/offset")))
	case 2:
		return at.Round(time.Second).UTC()
	}
	return at.Local()
}

// wildState draws a state whose every string, time and status may be
// unusual, some of them not encodable.
func wildState(t *rapid.T) stepflow.State[Deploy] {
	st := genState(t)
	st.Version = wildString(t, "version")
	st.ID = wildString(t, "id")
	st.Intent = wildString(t, "intent")
	st.WakeAt = wildTime(t, "wake")
	if rapid.IntRange(0, 20).Draw(t, "badStatus") == 0 {
		st.Status = stepflow.Status(rapid.IntRange(6, 255).Draw(t, "status"))
	}
	st.Root.Name = wildString(t, "rootName")
	st.Root.Since = wildTime(t, "since")
	for i := range st.Root.Children {
		st.Root.Children[i].Branch = wildString(t, "branch")
	}
	if st.Err != nil {
		st.Err.Message = wildString(t, "message")
		st.Err.At = wildTime(t, "errAt")
	}
	for i := range st.Record {
		st.Record[i].Err = wildString(t, "rerr")
		st.Record[i].End = wildTime(t, "rend")
	}
	for i := range st.Signals {
		st.Signals[i].Name = wildString(t, "sname")
		st.Signals[i].At = wildTime(t, "sat")
	}
	st.Data.App = wildString(t, "app")
	if st.Data.Labels != nil || rapid.Bool().Draw(t, "labels") {
		st.Data.Labels = map[string]string{}
		for range rapid.IntRange(0, 3).Draw(t, "nlabels") {
			st.Data.Labels[wildString(t, "lkey")] = wildString(t, "lval")
		}
	}
	return st
}

// Any other data goes through encoding/json: a struct with a slice, a
// pointer and an interface.
type Other struct {
	Name string            `json:"name,omitempty"`
	Tags []string          `json:"tags"`
	Next *Other            `json:"next,omitempty"`
	Any  any               `json:"any,omitempty"`
	Meta map[string]string `json:"meta,omitempty"`
}

func withOther(t *rapid.T, st stepflow.State[Deploy]) stepflow.State[Other] {
	o := stepflow.State[Other]{Version: st.Version, ID: st.ID, Status: st.Status, Steps: st.Steps, WakeAt: st.WakeAt,
		Root: st.Root, Err: st.Err, Record: st.Record, Signals: st.Signals, Intent: st.Intent}
	o.Data.Name = st.Data.App
	o.Data.Meta = st.Data.Labels
	o.Data.Tags = rapid.SliceOfN(rapid.Just("t<>"), 0, 2).Draw(t, "tags")
	if rapid.Bool().Draw(t, "next") {
		o.Data.Next = &Other{Name: wildString(t, "next")}
	}
	o.Data.Any = rapid.SampledFrom([]any{nil, 1.5, "s", []any{map[string]any{"k": true}}, map[string]any{"\xff": 1, "\xfe": 2}}).Draw(t, "any")
	return o
}

func TestJSONEncodeMatchesReference(t *testing.T) {
	mine, ref := codec.JSON[Deploy](nil), codec.ReferenceJSON[Deploy](nil)
	mineO, refO := codec.JSON[Other](nil), codec.ReferenceJSON[Other](nil)
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		if rapid.Bool().Draw(t, "wild") {
			st = wildState(t)
		}
		sameEncoding(t, mine, ref, st)
		sameEncoding(t, mineO, refO, withOther(t, st))
	})
}

// sameEncoding checks that both codecs encode st to the same bytes, or
// both fail.
func sameEncoding[S any](t *rapid.T, mine, ref codec.Codec[S], st stepflow.State[S]) {
	want, werr := ref.Encode(st)
	got, gerr := mine.Encode(st)
	if werr != nil || gerr != nil {
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("reference error %v, codec error %v", werr, gerr)
		}
		assert.Equal(t, errors.Is(werr, codec.ErrTooDeep), errors.Is(gerr, codec.ErrTooDeep))
		assert.Equal(t, errors.Is(werr, stepflow.ErrInvalidState), errors.Is(gerr, stepflow.ErrInvalidState))
		return
	}
	if !bytes.Equal(want, got) {
		t.Fatalf("encodings differ:\nreference %s\ncodec     %s", want, got)
	}
}

func TestJSONGoldenBytes(t *testing.T) {
	// The mid-run deploy state, as format 1 writes it.
	const golden = `{"stepflow":1,"state":{"version":"deploy/v1","status":"waiting","steps":7,"wakeAt":"2026-03-04T05:06:37Z",` +
		`"root":{"children":[{"name":"shouldDeploy","branch":"then","children":[{"name":"acceptedDeployRequest",` +
		`"since":"2026-03-04T05:06:07Z","until":"2026-03-04T05:06:37Z","count":3}]}]},` +
		`"data":{"App":"web","Env":"prod","PR":4242,"Live":false}}}`
	c := codec.JSON[Deploy](nil)
	st := midRunDeployState(t, 0)
	got, err := c.Encode(st)
	require.NoError(t, err)
	assert.Equal(t, golden, string(got))
	dec, err := c.Decode([]byte(golden))
	require.NoError(t, err)
	assert.Equal(t, st, dec)
}

// outcome names what Decode made of an input: "ok", or the sentinels the
// error matches.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var names []string
	for _, s := range []error{codec.ErrTruncated, codec.ErrNotState, codec.ErrUnsupportedFormat,
		codec.ErrTooLarge, codec.ErrCorrupt, codec.ErrWrongEncoding, codec.ErrTooDeep} {
		if errors.Is(err, s) {
			names = append(names, strings.TrimPrefix(s.Error(), "stepflow/codec: "))
		}
	}
	var de *codec.DecodeError
	if !errors.As(err, &de) {
		names = append(names, fmt.Sprintf("untyped %T", err))
	}
	return strings.Join(names, "+")
}

// sameDecoding checks that the codec and the reference decode in to the
// same state, or fail for the same reason, except where the reference
// accepted what it should not have (see spelledTwice).
func sameDecoding[S any](t interface{ Fatalf(string, ...any) }, in []byte) {
	mine, ref := codec.JSON[S](&codec.Options{MaxSize: 1 << 16}), codec.ReferenceJSON[S](&codec.Options{MaxSize: 1 << 16})
	want, werr := ref.Decode(in)
	got, gerr := mine.Decode(in)
	if wo, go_ := outcome(werr), outcome(gerr); wo != go_ {
		// The reference let a field of a frame, failure, record or
		// signal be named twice in spellings that differ in case;
		// encoding/json then overwrote or merged the first. The codec
		// refuses that, as it refuses any other key named twice.
		if werr == nil && go_ == "corrupt state" && strings.Contains(gerr.Error(), "in another spelling") && spelledTwice(in) {
			return
		}
		t.Fatalf("input %q:\nreference: %s (%v)\ncodec:     %s (%v)", in, wo, werr, go_, gerr)
	}
	if werr == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("input %q decodes differently:\nreference %#v\ncodec     %#v", in, want, got)
	}
}

// shell kinds for spelledTwice: which struct of stepflow an object is read
// into.
type shellKind int

const (
	notShell shellKind = iota
	envelopeObj
	stateObj
	frameObj
	failureObj
	recordObj
	signalObj
)

var shellNames = map[shellKind][]string{
	envelopeObj: {"stepflow", "state"},
	stateObj:    {"version", "id", "status", "steps", "wakeAt", "root", "data", "err", "record", "signals", "intent"},
	frameObj:    {"name", "branch", "since", "until", "count", "index", "err", "payload", "children"},
	failureObj:  {"path", "kind", "message", "attempt", "at"},
	recordObj:   {"seq", "path", "outcome", "attempt", "start", "end", "err"},
	signalObj:   {"name", "payload", "at"},
}

// memberKind returns what the value of a member is read into, and whether
// it is an array of that.
func memberKind(parent shellKind, name string) (shellKind, bool) {
	switch {
	case parent == envelopeObj && name == "state":
		return stateObj, false
	case parent == stateObj && name == "root":
		return frameObj, false
	case (parent == stateObj || parent == frameObj) && name == "err":
		return failureObj, false
	case parent == stateObj && name == "record":
		return recordObj, true
	case parent == stateObj && name == "signals":
		return signalObj, true
	case parent == frameObj && name == "children":
		return frameObj, true
	}
	return notShell, false
}

// spelledTwice reports whether in, a valid JSON document, has an object of
// the state's shell with two keys that encoding/json matches to the same
// field. It walks the tokens with encoding/json, independently of the
// codec.
func spelledTwice(in []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimSpace(in)))
	found, err := walkTwice(dec, envelopeObj, false)
	return err == nil && found
}

func walkTwice(dec *json.Decoder, kind shellKind, array bool) (bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return false, err
	}
	found := false
	switch tok {
	case json.Delim('['):
		for dec.More() {
			elem := notShell
			if array {
				elem = kind
			}
			f, err := walkTwice(dec, elem, false)
			if err != nil {
				return false, err
			}
			found = found || f
		}
		_, err = dec.Token()
	case json.Delim('{'):
		if array {
			kind = notShell
		}
		seen := map[string]bool{}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return false, err
			}
			child, childArray := notShell, false
			for _, n := range shellNames[kind] {
				if strings.EqualFold(key.(string), n) {
					found = found || seen[n]
					seen[n] = true
					child, childArray = memberKind(kind, n)
					break
				}
			}
			f, err := walkTwice(dec, child, childArray)
			if err != nil {
				return false, err
			}
			found = found || f
		}
		_, err = dec.Token()
	}
	return found, err
}

// jsonNode is a parsed JSON value that can be written back with changes.
type jsonNode struct {
	raw     string // a scalar as it stood in the input
	members []jsonMember
	elems   []*jsonNode
	object  bool
}

type jsonMember struct {
	key   string
	value *jsonNode
}

func parseNode(dec *json.Decoder) (*jsonNode, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		n := &jsonNode{object: true}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := parseNode(dec)
			if err != nil {
				return nil, err
			}
			n.members = append(n.members, jsonMember{k.(string), v})
		}
		_, err = dec.Token()
		return n, err
	case json.Delim('['):
		n := &jsonNode{elems: []*jsonNode{}}
		for dec.More() {
			v, err := parseNode(dec)
			if err != nil {
				return nil, err
			}
			n.elems = append(n.elems, v)
		}
		_, err = dec.Token()
		return n, err
	}
	raw, err := json.Marshal(tok)
	return &jsonNode{raw: string(raw)}, err
}

// writeNode writes n back, changing it at random: white space, escapes,
// the case and order of keys, keys named twice, unknown keys, values
// replaced by others, and (only the top value) bytes cut or added.
func writeNode(t *rapid.T, b []byte, n *jsonNode, depth int) []byte {
	ws := func(b []byte) []byte {
		if rapid.IntRange(0, 9).Draw(t, "ws?") == 0 {
			b = append(b, rapid.SampledFrom([]string{" ", "\n", "\t\r\n ", "  "}).Draw(t, "ws")...)
		}
		return b
	}
	b = ws(b)
	if rapid.IntRange(0, 40).Draw(t, "replace?") == 0 {
		return append(b, rapid.SampledFrom([]string{"null", "0", "-1", "1.5", "1e2", `""`, `"x"`, "[]", "{}", "true",
			`[null]`, `"2026-03-04T05:06:07+01:00"`, `"running"`, "4294967296", `{"a":1,"a":2}`, `[[[[[[[[1]]]]]]]]`,
			`"AAEC"`, "[1,2,255]"}).Draw(t, "replacement")...)
	}
	switch {
	case n.object:
		members := n.members
		if rapid.IntRange(0, 5).Draw(t, "shuffle?") == 0 {
			members = rapid.Permutation(members).Draw(t, "order")
		}
		b = append(b, '{')
		for i, m := range members {
			if i > 0 {
				b = append(ws(b), ',')
			}
			key := m.key
			switch rapid.IntRange(0, 30).Draw(t, "key?") {
			case 0:
				key = strings.ToUpper(key)
			case 1:
				key = strings.Replace(key, "s", "\u017f", 1) // folds to s
			case 2:
				b = append(writeString(t, b, "extra"+key), ':')
				b = append(writeNode(t, b, m.value, depth+1), ',')
			case 3:
				b = append(writeString(t, b, key), ':')
				b = append(writeNode(t, b, m.value, depth+1), ',')
				key = strings.ToUpper(key[:min(1, len(key))]) + key[min(1, len(key)):]
			}
			b = append(ws(writeString(t, b, key)), ':')
			b = writeNode(t, b, m.value, depth+1)
		}
		b = append(ws(b), '}')
	case n.elems != nil:
		b = append(b, '[')
		for i, e := range n.elems {
			if i > 0 {
				b = append(ws(b), ',')
			}
			b = writeNode(t, b, e, depth+1)
		}
		b = append(ws(b), ']')
	case strings.HasPrefix(n.raw, `"`):
		var s string
		_ = json.Unmarshal([]byte(n.raw), &s)
		b = writeString(t, b, s)
	default:
		b = append(b, n.raw...)
	}
	return ws(b)
}

// writeString writes s as a JSON string, escaping characters at random.
func writeString(t *rapid.T, b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\' || r < ' ' || rapid.IntRange(0, 15).Draw(t, "escape?") == 0:
			if r > 0xffff {
				r1, r2 := utf16Pair(r)
				b = fmt.Appendf(b, `\u%04x\u%04X`, r1, r2)
			} else {
				b = fmt.Appendf(b, `\u%04x`, r)
			}
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + r>>10, 0xdc00 + r&0x3ff
}

// mutateJSON returns a variant of the JSON state in.
func mutateJSON(t *rapid.T, in []byte) []byte {
	n, err := parseNode(json.NewDecoder(bytes.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	out := writeNode(t, nil, n, 0)
	for range rapid.IntRange(0, 2).Draw(t, "edits") {
		switch rapid.IntRange(0, 5).Draw(t, "edit") {
		case 0:
			out = out[:rapid.IntRange(0, len(out)).Draw(t, "cut")]
		case 1:
			if len(out) > 0 {
				out[rapid.IntRange(0, len(out)-1).Draw(t, "at")] = rapid.SampledFrom([]byte(`{}[]",:0-.eE\ ntfu`+"\x00\xff")).Draw(t, "byte")
			}
		case 2:
			out = append(out, rapid.SampledFrom([]string{"}", "]", " x", "{}", "\u00a0", "\f"}).Draw(t, "tail")...)
		}
	}
	return out
}

func TestJSONDecodeMatchesReference(t *testing.T) {
	ref := codec.ReferenceJSON[Deploy](nil)
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		b, err := ref.Encode(st)
		if err != nil {
			t.Fatal(err)
		}
		in := mutateJSON(t, b)
		sameDecoding[Deploy](t, in)
		sameDecoding[Other](t, in)
		sameDecoding[Nested](t, in)
	})
}

func TestJSONDecodeMatchesReferenceOnOtherData(t *testing.T) {
	ref := codec.ReferenceJSON[Other](nil)
	rapid.Check(t, func(t *rapid.T) {
		b, err := ref.Encode(withOther(t, genState(t)))
		if err != nil {
			t.Skip("not encodable")
		}
		in := mutateJSON(t, b)
		sameDecoding[Other](t, in)
		sameDecoding[Deploy](t, in)
	})
}

// jsonCases are inputs at the edges of what Decode accepts; each is also a
// seed of FuzzJSONDecodeMatchesReference.
var jsonCases = []string{
	`{"stepflow":1,"state":{"version":"v","status":"running","root":{}}}`,
	` {"stepflow":1,"state":{}}` + "\n",
	"\f{\"stepflow\":1,\"state\":{}}\u00a0",
	`{"stepflow":1,"state":{"version":"v"}} x`,
	`{"stepflow":1,"state":{"version":"v"}}}`,
	`{"stepflow":1,"state":{"version":"v"}`,
	`{"stepflow":1,"state":{"version":"v`,
	`{"stepflow":1,"state":{"version":"\u12`,
	`{"stepflow":1,"state":{"steps":1e`,
	`{"stepflow":1,"state":{"steps":-`,
	`{"stepflow":1,"state":{"steps":01}}`,
	`{"stepflow":1,"state":{"steps":tru`,
	`{"stepflow":1,"state":{"steps":trux}}`,
	`{"stepflow":1,"state":{"steps":18446744073709551615}}`,
	`{"stepflow":1,"state":{"steps":18446744073709551616}}`,
	`{"stepflow":1,"state":{"steps":-0}}`,
	`{"stepflow":1,"state":{"steps":1.0}}`,
	`{"stepflow":1,"state":{"steps":null,"status":null,"version":null,"wakeAt":null,"root":null,"err":null}}`,
	`{"stepflow":-0,"state":{}}`,
	`{"stepflow":1.0,"state":{}}`,
	`{"stepflow":"1","state":{}}`,
	`{"stepflow":null,"state":{}}`,
	`{"stepflow":99999999999999999999,"state":{}}`,
	`{"stepflow":2,"state":{"status":"sleepy"}}`,
	`{"stepflow":2,"state":{"a":1,"a":2}}`,
	`{"stepflow":1,"state":null}`,
	`{"stepflow":1,"state":[]}`,
	`{"stepflow":1,"state":5,"x":{"a":1,"A":2}}`,
	`{"stepflow":1,"state":{},"x":{"a":1,"A":2}}`,
	`{"stepflow":1,"state":{},"x":[{"a":1,"A":2}]}`,
	`{"STEPFLOW":1,"State":{"VERSION":"v","\u0073tatus":"\u0077aiting"}}`,
	`{"\u017ftepflow":1,"state":{"\u017fteps":3}}`,
	`{"stepflow":1,"state":{"version":"a","VERSION":"b"}}`,
	`{"stepflow":1,"state":{"root":{"name":"a","NAME":"b"}}}`,
	`{"stepflow":1,"state":{"root":{"name":"a","name":"b"}}}`,
	`{"stepflow":1,"state":{"root":{"children":[{"name":"x","children":[{"err":{"path":"p"},"Err":{"kind":"k"}}]}]}}}`,
	`{"stepflow":1,"state":{"record":[{"seq":1,"Seq":2}],"x":{"a":1,"A":2}}}`,
	`{"stepflow":9,"state":{"root":{"name":"a","NAME":"b"}}}`,
	`{"stepflow":1,"state":{"root":{"children":[null,{}]},"record":[null],"signals":[null]}}`,
	`{"stepflow":1,"state":{"root":{"children":[]},"record":[],"signals":[]}}`,
	`{"stepflow":1,"state":{"root":{"payload":"AAEC"},"signals":[{"name":"s","payload":[0,1,255,null]}]}}`,
	`{"stepflow":1,"state":{"root":{"payload":"AA\nEC"}}}`,
	`{"stepflow":1,"state":{"root":{"payload":"AAE"}}}`,
	`{"stepflow":1,"state":{"root":{"payload":[256]}}}`,
	`{"stepflow":1,"state":{"root":{"payload":""}}}`,
	`{"stepflow":1,"state":{"root":{"count":4294967296}}}`,
	`{"stepflow":1,"state":{"root":{"count":"1"}}}`,
	`{"stepflow":1,"state":{"wakeAt":"2026-03-04T05:06:07+01:00"}}`,
	`{"stepflow":1,"state":{"wakeAt":"2026-03-04T05:06:07.123456789012Z"}}`,
	`{"stepflow":1,"state":{"wakeAt":"2026-03-04T05:06:07,5Z"}}`,
	`{"stepflow":1,"state":{"wakeAt":"2026-02-29T05:06:07Z"}}`,
	`{"stepflow":1,"state":{"wakeAt":"2024-02-29T23:59:59.5Z"}}`,
	`{"stepflow":1,"state":{"wakeAt":"0000-01-01T00:00:00Z"}}`,
	`{"stepflow":1,"state":{"wakeAt":"\u0032026-03-04T05:06:07Z"}}`,
	`{"stepflow":1,"state":{"wakeAt":5}}`,
	`{"stepflow":1,"state":{"wakeAt":{}}}`,
	`{"stepflow":1,"state":{"version":"\ud83d\ude00\ud800x\udc00\u0000","id":"\xff\xfe"}}`,
	`{"stepflow":1,"state":{"version":"a` + "\x01" + `"}}`,
	`{"stepflow":1,"state":{"version":"a\'"}}`,
	`{"stepflow":1,"state":{"data":{"App":"a","app":"b"}}}`,
	`{"stepflow":1,"state":{"data":{"App":"a","App":"b"}}}`,
	`{"stepflow":1,"state":{"data":{"App":"a","Labels":{"\xff":"1","\xfe":"2"}}}}`,
	`{"stepflow":1,"state":{"data":{"App":"a","Labels":{"\u00ff":"1","` + "\u00ff" + `":"2"}}}}`,
	`{"stepflow":1,"state":{"data":{"Labels":{},"PR":-9223372036854775808,"Live":true}}}`,
	`{"stepflow":1,"state":{"data":{"Labels":null,"PR":1e3}}}`,
	`{"stepflow":1,"state":{"data":{"App":null,"Env":5}}}`,
	`{"stepflow":1,"state":{"data":null}}`,
	`{"stepflow":1,"state":{"data":[1,{"x":1,"x":2}]}}`,
	`{"stepflow":1,"state":{"DATA":{"Any":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}}}`,
	`{"stepflow":1,"state":{"data":{"Any":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}}}`,
	`{"stepflow":"x","state":{"data":{"Any":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}}`,
	`{"stepflow":1,"state":{"data":{"a":1,"a":2}},"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
	`{"stepflow":1,"x":` + strings.Repeat("[", 10001),
	`{"stepflow":1,"state":{"root":` + strings.Repeat(`{"children":[`, 66) + strings.Repeat(`]}`, 66) + `}}`,
	`{"stepflow":1,"state":{"root":` + strings.Repeat(`{"children":[`, 64) + `{}` + strings.Repeat(`]}`, 64) + `}}`,
	`{"stepflow":1,"state":{"root":` + strings.Repeat(`{"children":[`, 66) + `{"count":"x"}` + strings.Repeat(`]}`, 66) + `}}`,
	`{"stepflow":1,"state":{"root":` + strings.Repeat(`{"children":[`, 66) + `{"name":"a","NAME":"b"}` + strings.Repeat(`]}`, 66) + `}}`,
	`{"stepflow":1,"state":{` + manyKeys(20) + `,"version":"v","ſtatus":"done","status":"failed"}}`,
}

func TestJSONDecodeMatchesReferenceOnEdgeCases(t *testing.T) {
	for _, in := range jsonCases {
		sameDecoding[Deploy](t, []byte(in))
		sameDecoding[Other](t, []byte(in))
		sameDecoding[Nested](t, []byte(in))
	}
}

func FuzzJSONDecodeMatchesReference(f *testing.F) {
	for _, in := range jsonCases {
		f.Add([]byte(in))
	}
	for _, rec := range []int{0, 32} {
		b, err := codec.JSON[Deploy](nil).Encode(midRunDeployState(f, rec))
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		sameDecoding[Deploy](t, in)
		sameDecoding[Other](t, in)
	})
}

// The differences from the reference are only refusals: keys of a frame,
// a failure, a record or a signal that name one field in two spellings.
func TestJSONRefusesAFieldSpelledTwice(t *testing.T) {
	for _, in := range []string{
		`{"stepflow":1,"state":{"root":{"name":"a","NAME":"b"}}}`,
		`{"stepflow":1,"state":{"root":{"children":[{"err":{"path":"p"},"Err":{"kind":"k"}}]}}}`,
		`{"stepflow":1,"state":{"record":[{"seq":1,"Seq":2}]}}`,
		`{"stepflow":1,"state":{"signals":[{"name":"a","\u004eame":"b"}]}}`,
		`{"stepflow":1,"state":{` + manyKeys(20) + `,"version":"v","ſtatus":"done","status":"failed"}}`,
	} {
		_, err := codec.ReferenceJSON[Deploy](nil).Decode([]byte(in))
		require.NoError(t, err, "the reference accepted %s", in)
		_, err = codec.JSON[Deploy](nil).Decode([]byte(in))
		assert.ErrorIs(t, err, codec.ErrCorrupt, in)
		assert.True(t, spelledTwice([]byte(in)), in)
	}
}

func TestSpelledTwice(t *testing.T) {
	// The oracle itself: it must see a second spelling, and only in the
	// state's own structures.
	assert.True(t, spelledTwice([]byte(`{"stepflow":1,"state":{"root":{"children":[{"name":"x","NAME":"y"}]}}}`)))
	assert.False(t, spelledTwice([]byte(`{"stepflow":1,"state":{"root":{"children":[{"name":"x","nam":"y"}]}}}`)))
	assert.False(t, spelledTwice([]byte(`{"stepflow":1,"state":{"data":{"name":"x","NAME":"y"}}}`)))
	assert.False(t, spelledTwice([]byte(`{"stepflow":1,"state":{"root":{"children":{"name":"x","NAME":"y"}}}}`)))
}

func TestJSONAllocations(t *testing.T) {
	// Decode: one copy of the input, which holds the strings, and the two
	// lists of child frames; the data is read without reflection and the
	// scratch space is pooled. Encode: the result.
	if raceEnabled {
		t.Skip("allocation counts: the race detector makes pools drop items; run without -race (make test does, in its 32-bit run)")
	}
	c := codec.JSON[Deploy](nil)
	st := midRunDeployState(t, 0)
	b, err := c.Encode(st)
	require.NoError(t, err)
	assert.Equal(t, 3.0, testing.AllocsPerRun(100, func() {
		if _, err := c.Decode(b); err != nil {
			t.Fatal(err)
		}
	}), "decode")
	assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() {
		if _, err := c.Encode(st); err != nil {
			t.Fatal(err)
		}
	}), "encode")
}

func BenchmarkJSONDecodeEncode(b *testing.B) {
	st := midRunDeployState(b, 0)
	for _, impl := range []struct {
		name string
		c    codec.Codec[Deploy]
	}{{"codec", codec.JSON[Deploy](nil)}, {"reference", codec.ReferenceJSON[Deploy](nil)}} {
		enc, err := impl.c.Encode(st)
		require.NoError(b, err)
		b.Run("impl="+impl.name+"/op=decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.c.Decode(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("impl="+impl.name+"/op=encode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.c.Encode(st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
