package codec

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Msgpack returns the compact binary codec. The state's own fields are
// written as positional msgpack arrays with trailing empty fields left out;
// the data S is written with msgpack's reflection (struct tags apply; map
// keys are sorted so that encoding stays canonical) and embedded as a
// binary field, so it can be decoded, and fail, on its own.
//
// Layout after the 3-byte envelope: [version, id, status, steps, wakeAt,
// root frame, data, err?, record?, signals?, intent?]; a frame is [name, children?,
// branch?, count?, since?, until?, index?, err?, payload?].
func Msgpack[S any](opts *Options) Codec[S] {
	return &msgpackCodec[S]{max: opts.maxSize()}
}

type msgpackCodec[S any] struct{ max int }

func (c *msgpackCodec[S]) Name() string { return "msgpack" }

// maxDepth bounds frame nesting on decode, so hostile input cannot exhaust
// the stack.
const maxDepth = 64

// dataEncoder is a pooled msgpack encoder for process data.
type dataEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var dataEncoders = sync.Pool{New: func() any {
	e := &dataEncoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	e.enc.SetSortMapKeys(true)
	e.enc.UseCompactInts(true)
	return e
}}

// Encode writes the envelope and the state.
func (c *msgpackCodec[S]) Encode(st stepflow.State[S]) ([]byte, error) {
	de := dataEncoders.Get().(*dataEncoder)
	defer dataEncoders.Put(de)
	de.buf.Reset()
	if err := de.enc.Encode(&st.Data); err != nil {
		return nil, fmt.Errorf("encode msgpack state: data: %w", err)
	}
	data := de.buf.Bytes()

	b := make([]byte, 0, 64+len(data)+len(st.Version)+len(st.ID))
	b = append(b, magic, encMsgpack, FormatVersion)
	n := 7
	switch {
	case st.Intent != "":
		n = 11
	case len(st.Signals) > 0:
		n = 10
	case len(st.Record) > 0:
		n = 9
	case st.Err != nil:
		n = 8
	}
	b = appendArrayLen(b, n)
	b = appendString(b, st.Version)
	b = appendString(b, st.ID)
	b = appendUint(b, uint64(st.Status))
	b = appendUint(b, st.Steps)
	b = appendTime(b, st.WakeAt)
	b = appendFrame(b, &st.Root)
	b = appendBin(b, data)
	if n > 7 {
		b = appendFailure(b, st.Err)
	}
	if n > 8 {
		b = appendArrayLen(b, len(st.Record))
		for i := range st.Record {
			b = appendRecord(b, &st.Record[i])
		}
	}
	if n > 9 {
		b = appendArrayLen(b, len(st.Signals))
		for _, s := range st.Signals {
			b = appendArrayLen(b, 3)
			b = appendString(b, s.Name)
			b = appendBin(b, s.Payload)
			b = appendTime(b, s.At)
		}
	}
	if n > 10 {
		b = appendString(b, st.Intent)
	}
	if len(b) > c.max {
		return nil, fmt.Errorf("encode msgpack state: %w: %d bytes, limit %d", ErrTooLarge, len(b), c.max)
	}
	return b, nil
}

// frameFields returns how many leading frame fields must be written: the
// last non-empty field decides.
func frameFields(f *stepflow.Frame) int {
	switch {
	case len(f.Payload) > 0:
		return 9
	case f.Err != nil:
		return 8
	case f.Index != 0:
		return 7
	case !f.Until.IsZero():
		return 6
	case !f.Since.IsZero():
		return 5
	case f.Count != 0:
		return 4
	case f.Branch != "":
		return 3
	case len(f.Children) > 0:
		return 2
	}
	return 1
}

func appendFrame(b []byte, f *stepflow.Frame) []byte {
	n := frameFields(f)
	b = appendArrayLen(b, n)
	b = appendString(b, f.Name)
	for i := 1; i < n; i++ {
		switch i {
		case 1:
			b = appendArrayLen(b, len(f.Children))
			for j := range f.Children {
				b = appendFrame(b, &f.Children[j])
			}
		case 2:
			b = appendString(b, f.Branch)
		case 3:
			b = appendUint(b, uint64(f.Count))
		case 4:
			b = appendTime(b, f.Since)
		case 5:
			b = appendTime(b, f.Until)
		case 6:
			b = appendUint(b, uint64(f.Index))
		case 7:
			b = appendFailure(b, f.Err)
		case 8:
			b = appendBin(b, f.Payload)
		}
	}
	return b
}

func appendFailure(b []byte, f *stepflow.Failure) []byte {
	if f == nil {
		return appendNil(b)
	}
	b = appendArrayLen(b, 5)
	b = appendString(b, f.Path)
	b = appendString(b, f.Kind)
	b = appendString(b, f.Message)
	b = appendUint(b, uint64(f.Attempt))
	return appendTime(b, f.At)
}

func appendRecord(b []byte, r *stepflow.Record) []byte {
	b = appendArrayLen(b, 7)
	b = appendUint(b, r.Seq)
	b = appendString(b, r.Path)
	b = appendString(b, r.Outcome)
	b = appendUint(b, uint64(r.Attempt))
	b = appendTime(b, r.Start)
	b = appendTime(b, r.End)
	return appendString(b, r.Err)
}

// Decode checks the envelope and parses the state.
func (c *msgpackCodec[S]) Decode(b []byte) (st stepflow.State[S], err error) {
	fail := func(e error) (stepflow.State[S], error) {
		return stepflow.State[S]{}, &DecodeError{Encoding: "msgpack", Err: e}
	}
	switch {
	case len(b) > c.max:
		return fail(fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), c.max))
	case len(b) == 0:
		return fail(ErrTruncated)
	case b[0] == '{':
		return fail(fmt.Errorf("%w: found json", ErrWrongEncoding))
	case b[0] != magic:
		return fail(fmt.Errorf("%w: first byte 0x%02x", ErrNotState, b[0]))
	case len(b) < envelopeLen:
		return fail(ErrTruncated)
	case b[1] != encMsgpack:
		return fail(fmt.Errorf("%w: encoding byte 0x%02x", ErrNotState, b[1]))
	case b[2] == 0 || b[2] > FormatVersion:
		return fail(fmt.Errorf("%w: %d (this build reads up to %d)", ErrUnsupportedFormat, b[2], FormatVersion))
	}
	defer func() {
		// The reflection decoder for the data is not ours; never let a
		// panic in it reach the caller.
		if p := recover(); p != nil {
			st, err = fail(fmt.Errorf("%w: %v", ErrCorrupt, p))
		}
	}()
	r := &reader{b: b, off: envelopeLen}
	data := decodeState(r, &st)
	if r.err == nil && r.off != len(b) {
		r.corrupt("%d trailing bytes", len(b)-r.off)
	}
	if r.err != nil {
		return fail(r.err)
	}
	dr := &reader{b: data}
	for dr.off < len(data) && dr.err == nil {
		dr.checkValue(0)
	}
	if dr.err != nil {
		return fail(fmt.Errorf("%w: data: %v", ErrCorrupt, dr.err))
	}
	if err := msgpack.Unmarshal(data, &st.Data); err != nil {
		return fail(fmt.Errorf("%w: data: %v", ErrCorrupt, err))
	}
	return st, nil
}

// decodeState parses the shell and returns the encoded data.
func decodeState[S any](r *reader, st *stepflow.State[S]) (data []byte) {
	n := r.arrayLen("state", 7, 11)
	st.Version = r.string()
	st.ID = r.string()
	if s := r.uint(); s > 255 || !stepflow.Status(s).Valid() {
		r.corrupt("unknown status %d", s)
	} else {
		st.Status = stepflow.Status(s)
	}
	st.Steps = r.uint()
	st.WakeAt = r.time()
	decodeFrame(r, &st.Root, 0)
	data = r.bin()
	if n > 7 {
		st.Err = decodeFailure(r)
	}
	if n > 8 {
		if k := r.arrayLen("record", 0, 1<<24); k > 0 {
			st.Record = make([]stepflow.Record, k)
		}
		for i := range st.Record {
			decodeRecord(r, &st.Record[i])
		}
	}
	if n > 9 {
		if k := r.arrayLen("signals", 0, 1<<24); k > 0 {
			st.Signals = make([]stepflow.Signal, k)
		}
		for i := range st.Signals {
			s := &st.Signals[i]
			r.arrayLen("signal", 3, 3)
			s.Name = r.string()
			s.Payload = r.bin()
			s.At = r.time()
		}
	}
	if n > 10 {
		st.Intent = r.string()
	}
	return data
}

func decodeFrame(r *reader, f *stepflow.Frame, depth int) {
	if depth > maxDepth {
		r.corrupt("frames nested deeper than %d", maxDepth)
		return
	}
	n := r.arrayLen("frame", 1, 9)
	f.Name = r.string()
	for i := 1; i < n && r.err == nil; i++ {
		switch i {
		case 1:
			if k := r.arrayLen("frame children", 0, 1<<24); k > 0 {
				f.Children = make([]stepflow.Frame, k)
			}
			for j := range f.Children {
				decodeFrame(r, &f.Children[j], depth+1)
			}
		case 2:
			f.Branch = r.string()
		case 3:
			f.Count = r.uint32()
		case 4:
			f.Since = r.time()
		case 5:
			f.Until = r.time()
		case 6:
			f.Index = r.uint32()
		case 7:
			f.Err = decodeFailure(r)
		case 8:
			f.Payload = r.bin()
		}
	}
}

func decodeFailure(r *reader) *stepflow.Failure {
	if r.nilNext() {
		return nil
	}
	r.arrayLen("failure", 5, 5)
	f := &stepflow.Failure{}
	f.Path = r.string()
	f.Kind = r.string()
	f.Message = r.string()
	f.Attempt = r.uint32()
	f.At = r.time()
	return f
}

func decodeRecord(r *reader, rec *stepflow.Record) {
	r.arrayLen("record", 7, 7)
	rec.Seq = r.uint()
	rec.Path = r.string()
	rec.Outcome = r.string()
	rec.Attempt = r.uint32()
	rec.Start = r.time()
	rec.End = r.time()
	rec.Err = r.string()
}
