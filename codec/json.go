package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// JSON returns the readable codec: a JSON object
//
//	{"stepflow":1,"state":{"version":"deploy/v1","status":"waiting",...}}
//
// whose "stepflow" member is the format version. Field names are the json
// tags of stepflow.State and its parts; times are RFC 3339 in UTC. It suits
// places where people read states: a Kubernetes status, a debug dump.
//
// The bytes are those of encoding/json (json.Marshal) for the envelope, and
// Decode reads what encoding/json reads: white space anywhere, escapes,
// keys in any order and in any case, unknown keys, which it skips. The
// process data S is written and read with encoding/json (struct tags and
// marshaling methods apply), on its own. When S is a struct of plain
// fields (strings, bools, integers and map[string]string, with json tags
// that at most rename a field, skip it or set omitempty, and no marshaling
// methods), the codec writes and reads the data itself, producing the same
// bytes and values as encoding/json at a fraction of the cost.
func JSON[S any](opts *Options) Codec[S] {
	c := &jsonCodec[S]{max: opts.maxSize()}
	c.boxes.New = func() any { return new(S) }
	return c
}

// The JSON codec reads a state in one pass over its bytes, building the
// state as it goes: first expecting the form Encode writes (jsonfast.go),
// then, when the input is in another form, with the general reader
// (jsonstate.go), which accepts and refuses what encoding/json over the
// whole envelope did, with the checks around it. Only data of types that
// are not plain structs goes through encoding/json, which then reads just
// the bytes of the data. Encode writes the state's own fields by hand
// (jsonwrite.go), and the data through a pooled json.Encoder unless it is
// plain.

type jsonCodec[S any] struct {
	max int
	// boxes holds *S values for encoding/json to encode from; handing it
	// a pointer into the state would move every state to the heap.
	boxes sync.Pool

	plainOnce sync.Once
	plain     *jsonPlain // nil unless S is a plain struct
}

// plainData returns the plan for S, looked up on first use.
func (c *jsonCodec[S]) plainData() *jsonPlain {
	c.plainOnce.Do(func() { c.plain = jsonPlainFor(reflect.TypeFor[S]()) })
	return c.plain
}

func (c *jsonCodec[S]) Name() string { return "json" }

// jsonWriter is pooled scratch space for Encode: the buffer a state is
// assembled in, an encoder for data that writes into it, and room for
// sorting map keys.
type jsonWriter struct {
	w    appendWriter
	enc  *json.Encoder
	keys []string
}

var jsonWriters = sync.Pool{New: func() any {
	w := &jsonWriter{}
	w.enc = json.NewEncoder(&w.w)
	w.enc.SetEscapeHTML(true) // as json.Marshal does
	return w
}}

var jsonReaders = sync.Pool{New: func() any { return &jsonReader{} }}

// Encode writes the envelope and the state.
func (c *jsonCodec[S]) Encode(st stepflow.State[S]) (out []byte, err error) {
	if err := checkFrameDepth(&st.Root, 0); err != nil {
		return nil, fmt.Errorf("encode json state: %w", err)
	}
	w := jsonWriters.Get().(*jsonWriter)
	b, err := c.encode(w, &st)
	switch {
	case err != nil:
		err = fmt.Errorf("encode json state: %w", err)
	case len(b) > c.max:
		err = fmt.Errorf("encode json state: %w: %d bytes, limit %d", ErrTooLarge, len(b), c.max)
	default:
		// The caller gets a copy of exactly the encoded size; the
		// scratch buffer goes back to the pool.
		out = append([]byte(nil), b...)
	}
	if cap(b) <= maxPooledScratch {
		w.w.b = b[:0]
		jsonWriters.Put(w) // no use of b after this
	}
	return out, err
}

// encode assembles st in the scratch buffer of w and returns it.
func (c *jsonCodec[S]) encode(w *jsonWriter, st *stepflow.State[S]) ([]byte, error) {
	var e jsonEncoder
	b := append(w.w.b[:0], `{"stepflow":`...)
	b = strconv.AppendInt(b, FormatVersion, 10)
	b = appendJSONString(append(b, `,"state":{"version":`...), st.Version)
	if st.ID != "" {
		b = appendJSONString(append(b, `,"id":`...), st.ID)
	}
	b = appendJSONStatus(append(b, `,"status":`...), st.Status, &e)
	b = strconv.AppendUint(append(b, `,"steps":`...), st.Steps, 10)
	if !st.WakeAt.IsZero() {
		b = appendJSONTime(append(b, `,"wakeAt":`...), st.WakeAt, &e)
	}
	b = appendJSONFrame(append(b, `,"root":`...), &st.Root, &e)
	b = append(b, `,"data":`...)

	dataAt, check := len(b), true
	if plain := c.plainData(); plain != nil {
		b, w.keys, check = plain.append(b, unsafe.Pointer(&st.Data), w.keys)
	} else {
		w.w.b = b
		d := c.boxes.Get().(*S)
		*d = st.Data
		err := w.enc.Encode(d)
		var zero S
		*d = zero // the pool must not keep the caller's data alive
		c.boxes.Put(d)
		b = w.w.b
		if err != nil {
			e.set(fmt.Errorf("data: %w", err))
			b = append(b[:dataAt], "null"...)
		} else {
			b = b[:len(b)-1] // the encoder ends each value with a newline
		}
	}
	dataEnd := len(b)
	b = appendJSONTail(b, st, &e)
	if e.err == nil && check {
		// Decode refuses data that names a key twice in one object or
		// nests too deep; so does Encode. (The data of a plain struct
		// can do neither, unless map keys that are not valid UTF-8 come
		// out the same.)
		r := jsonReaders.Get().(*jsonReader)
		r.reset(b[dataAt:dataEnd])
		r.skip(2, 0, false)
		e.set(r.err())
		r.release()
		jsonReaders.Put(r)
	}
	return b, e.err
}

// Decode checks the envelope and parses the state.
func (c *jsonCodec[S]) Decode(b []byte) (stepflow.State[S], error) {
	fail := func(e error) (stepflow.State[S], error) {
		return stepflow.State[S]{}, &DecodeError{Encoding: "json", Err: e}
	}
	if len(b) > c.max {
		return fail(fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), c.max))
	}
	t := bytes.TrimSpace(b)
	switch {
	case len(t) == 0:
		return fail(ErrTruncated)
	case t[0] == magic:
		return fail(fmt.Errorf("%w: found msgpack", ErrWrongEncoding))
	case t[0] != '{':
		return fail(fmt.Errorf("%w: does not start with '{'", ErrNotState))
	}
	var st stepflow.State[S]
	canonical, err := c.decode(t, &st)
	if err != nil {
		return fail(err)
	}
	if !canonical {
		// Canonical input has its times in UTC and no empty lists.
		normalize(&st)
	}
	return st, nil
}

// decode reads t, which starts with '{', into st, and reports whether it
// was canonical: in the form Encode writes.
func (c *jsonCodec[S]) decode(t []byte, st *stepflow.State[S]) (canonical bool, err error) {
	defer func() {
		// Data types may decode themselves (json.Unmarshaler); never
		// let a panic in such code reach the caller.
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, p)
		}
	}()
	r := jsonReaders.Get().(*jsonReader)
	r.reset(t)
	if len(t) <= smallState {
		// One copy of the input holds every string of the state that
		// has no escapes, data included; the state never points into t.
		r.all = string(t)
	}
	plain := c.plainData()
	env, canonical := readCanonicalJSON(r, st, plain)
	if !canonical {
		*st = stepflow.State[S]{}
		r.restart(t)
		env = readJSONEnvelope(r, st, plain)
	}
	err = c.check(r, &env, st)
	// Only reached without a panic: a reader that panicked is dropped.
	r.release()
	jsonReaders.Put(r)
	return canonical, err
}

// check decides, once the reader is through, whether the input is a state
// and which error it reports if not, in the order described at the error
// slots; on the way it has encoding/json decode the data if it must.
func (c *jsonCodec[S]) check(r *jsonReader, env *jsonEnvelope, st *stepflow.State[S]) error {
	for _, e := range r.errs[:jsonErrScan+1] {
		if e != nil {
			return corruptIfDeep(e)
		}
	}
	switch {
	case !env.hasFormat:
		return fmt.Errorf("%w: no \"stepflow\" format member", ErrNotState)
	case env.format < 1 || env.format > FormatVersion:
		return fmt.Errorf("%w: %d (this build reads up to %d)", ErrUnsupportedFormat, env.format, FormatVersion)
	case !env.hasState:
		return fmt.Errorf("%w: no \"state\" member", ErrCorrupt)
	case r.errs[jsonErrState] != nil:
		return r.errs[jsonErrState]
	}
	if len(env.data) > 0 {
		// The data was checked as the key scan checks it; encoding/json
		// copies what it keeps, so st does not point into the input.
		// It decodes into a pooled box: handing it &st.Data would move
		// every state to the heap.
		d := c.boxes.Get().(*S)
		err := json.Unmarshal(env.data, d)
		st.Data = *d
		var zero S
		*d = zero
		c.boxes.Put(d)
		if err != nil {
			return jsonErr(fmt.Errorf("data: %w", err))
		}
	}
	for _, e := range r.errs[jsonErrFrames:] {
		if e != nil {
			return corruptIfDeep(e)
		}
	}
	return nil
}

func jsonErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected end of JSON input") {
		return fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}

// corruptIfDeep makes an ErrTooDeep found on decode match ErrCorrupt too,
// as every malformed content does.
func corruptIfDeep(err error) error {
	if errors.Is(err, ErrTooDeep) && !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// normalize gives decoded states the same shape whichever codec read them:
// times in UTC, empty lists as nil.
func normalize[S any](st *stepflow.State[S]) {
	st.WakeAt = st.WakeAt.UTC()
	if len(st.Record) == 0 {
		st.Record = nil
	}
	if len(st.Signals) == 0 {
		st.Signals = nil
	}
	for i := range st.Record {
		st.Record[i].Start, st.Record[i].End = st.Record[i].Start.UTC(), st.Record[i].End.UTC()
	}
	for i := range st.Signals {
		st.Signals[i].At = st.Signals[i].At.UTC()
		if len(st.Signals[i].Payload) == 0 {
			st.Signals[i].Payload = nil
		}
	}
	if st.Err != nil {
		st.Err.At = st.Err.At.UTC()
	}
	normalizeFrame(&st.Root)
}

func normalizeFrame(f *stepflow.Frame) {
	f.Since, f.Until = f.Since.UTC(), f.Until.UTC()
	if f.Err != nil {
		f.Err.At = f.Err.At.UTC()
	}
	if len(f.Payload) == 0 {
		f.Payload = nil
	}
	if len(f.Children) == 0 {
		f.Children = nil
	}
	for i := range f.Children {
		normalizeFrame(&f.Children[i])
	}
}
