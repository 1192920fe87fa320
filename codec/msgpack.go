package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Msgpack returns the compact binary codec. The state's own fields are
// written by hand as positional arrays, with trailing empty fields left
// out; the data S is written with msgpack's reflection (struct tags apply;
// map keys are sorted so that encoding stays canonical).
func Msgpack[S any](opts *Options) Codec[S] {
	return &msgpackCodec[S]{max: opts.maxSize()}
}

type msgpackCodec[S any] struct{ max int }

func (c *msgpackCodec[S]) Name() string { return "msgpack" }

// maxDepth bounds frame nesting on decode, so hostile input cannot exhaust
// the stack.
const maxDepth = 64

type encoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var encPool = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	e.enc.SetSortMapKeys(true)
	e.enc.UseCompactInts(true)
	return e
}}

type decoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

var decPool = sync.Pool{New: func() any {
	d := &decoder{}
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}}

// Encode writes the envelope and the state.
func (c *msgpackCodec[S]) Encode(st stepflow.State[S]) ([]byte, error) {
	e := encPool.Get().(*encoder)
	defer encPool.Put(e)
	e.buf.Reset()
	e.buf.Write([]byte{magic, encMsgpack, FormatVersion})
	if err := encodeState(e.enc, &st); err != nil {
		return nil, fmt.Errorf("encode msgpack state: %w", err)
	}
	if e.buf.Len() > c.max {
		return nil, fmt.Errorf("encode msgpack state: %w: %d bytes, limit %d", ErrTooLarge, e.buf.Len(), c.max)
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

func encodeState[S any](e *msgpack.Encoder, st *stepflow.State[S]) error {
	n := 10
	switch {
	case len(st.Signals) > 0:
	case len(st.Record) > 0:
		n = 9
	case st.Err != nil:
		n = 8
	default:
		n = 7
	}
	must := func(err error) {
		if err != nil {
			panic(encodePanic{err})
		}
	}
	return catchEncode(func() {
		must(e.EncodeArrayLen(n))
		must(e.EncodeString(st.Version))
		must(e.EncodeString(st.ID))
		must(e.EncodeUint8(uint8(st.Status)))
		must(e.EncodeUint(st.Steps))
		must(encodeTime(e, st.WakeAt))
		must(encodeFrame(e, &st.Root))
		must(e.Encode(&st.Data))
		if n > 7 {
			must(encodeFailure(e, st.Err))
		}
		if n > 8 {
			must(e.EncodeArrayLen(len(st.Record)))
			for i := range st.Record {
				must(encodeRecord(e, &st.Record[i]))
			}
		}
		if n > 9 {
			must(e.EncodeArrayLen(len(st.Signals)))
			for _, s := range st.Signals {
				must(e.EncodeArrayLen(3))
				must(e.EncodeString(s.Name))
				must(e.EncodeBytes(s.Payload))
				must(encodeTime(e, s.At))
			}
		}
	})
}

type encodePanic struct{ err error }

func catchEncode(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			p, ok := r.(encodePanic)
			if !ok {
				panic(r)
			}
			err = p.err
		}
	}()
	fn()
	return nil
}

func encodeTime(e *msgpack.Encoder, t time.Time) error {
	if t.IsZero() {
		return e.EncodeNil()
	}
	return e.EncodeTime(t)
}

// Frame fields in stored order. Children comes second because almost every
// composite frame has children and little else.
func encodeFrame(e *msgpack.Encoder, f *stepflow.Frame) error {
	n := 9
	switch {
	case len(f.Payload) > 0:
	case f.Err != nil:
		n = 8
	case f.Index != 0:
		n = 7
	case !f.Until.IsZero():
		n = 6
	case !f.Since.IsZero():
		n = 5
	case f.Count != 0:
		n = 4
	case f.Branch != "":
		n = 3
	case len(f.Children) > 0:
		n = 2
	default:
		n = 1
	}
	if err := e.EncodeArrayLen(n); err != nil {
		return err
	}
	if err := e.EncodeString(f.Name); err != nil {
		return err
	}
	if n == 1 {
		return nil
	}
	if err := e.EncodeArrayLen(len(f.Children)); err != nil {
		return err
	}
	for i := range f.Children {
		if err := encodeFrame(e, &f.Children[i]); err != nil {
			return err
		}
	}
	for i := 2; i < n; i++ {
		var err error
		switch i {
		case 2:
			err = e.EncodeString(f.Branch)
		case 3:
			err = e.EncodeUint32(f.Count)
		case 4:
			err = encodeTime(e, f.Since)
		case 5:
			err = encodeTime(e, f.Until)
		case 6:
			err = e.EncodeUint32(f.Index)
		case 7:
			err = encodeFailure(e, f.Err)
		case 8:
			err = e.EncodeBytes(f.Payload)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func encodeFailure(e *msgpack.Encoder, f *stepflow.Failure) error {
	if f == nil {
		return e.EncodeNil()
	}
	if err := e.EncodeArrayLen(5); err != nil {
		return err
	}
	if err := e.EncodeString(f.Path); err != nil {
		return err
	}
	if err := e.EncodeString(f.Kind); err != nil {
		return err
	}
	if err := e.EncodeString(f.Message); err != nil {
		return err
	}
	if err := e.EncodeUint32(f.Attempt); err != nil {
		return err
	}
	return encodeTime(e, f.At)
}

func encodeRecord(e *msgpack.Encoder, r *stepflow.Record) error {
	return errors.Join(
		e.EncodeArrayLen(7),
		e.EncodeUint(r.Seq),
		e.EncodeString(r.Path),
		e.EncodeString(r.Outcome),
		e.EncodeUint32(r.Attempt),
		encodeTime(e, r.Start),
		encodeTime(e, r.End),
		e.EncodeString(r.Err),
	)
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
	d := decPool.Get().(*decoder)
	defer decPool.Put(d)
	d.r.Reset(b[envelopeLen:])
	d.dec.Reset(&d.r)
	defer func() {
		// The msgpack reflection decoder is not ours; never let a panic in
		// it reach the caller.
		if r := recover(); r != nil {
			st, err = fail(fmt.Errorf("%w: %v", ErrCorrupt, r))
		}
	}()
	if err := decodeState(d.dec, &d.r, &st); err != nil {
		return fail(classify(err))
	}
	if d.r.Len() != 0 {
		return fail(fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, d.r.Len()))
	}
	return st, nil
}

// classify maps decoder errors to the sentinels.
func classify(err error) error {
	switch {
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrTruncated):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// arrayLen reads an array header and checks it against what the remaining
// input could possibly hold (one byte per element at least), so that a
// hostile length cannot make us allocate.
func arrayLen(d *msgpack.Decoder, what string, lo, hi int) (int, error) {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n < lo || n > hi {
		return 0, corrupt("%s has %d fields, want %d..%d", what, n, lo, hi)
	}
	return n, nil
}

func listLen(d *msgpack.Decoder, r *bytes.Reader, what string) (int, error) {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, nil
	}
	if n > r.Len() {
		return 0, fmt.Errorf("%w: %s claims %d elements", ErrTruncated, what, n)
	}
	return n, nil
}

func decodeState[S any](d *msgpack.Decoder, r *bytes.Reader, st *stepflow.State[S]) error {
	n, err := arrayLen(d, "state", 7, 10)
	if err != nil {
		return err
	}
	if st.Version, err = d.DecodeString(); err != nil {
		return err
	}
	if st.ID, err = d.DecodeString(); err != nil {
		return err
	}
	s, err := d.DecodeUint8()
	if err != nil {
		return err
	}
	st.Status = stepflow.Status(s)
	if !st.Status.Valid() {
		return corrupt("unknown status %d", s)
	}
	if st.Steps, err = d.DecodeUint64(); err != nil {
		return err
	}
	if st.WakeAt, err = decodeTime(d); err != nil {
		return err
	}
	if err := decodeFrame(d, r, &st.Root, 0); err != nil {
		return err
	}
	if err := d.Decode(&st.Data); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if n > 7 {
		if st.Err, err = decodeFailure(d); err != nil {
			return err
		}
	}
	if n > 8 {
		k, err := listLen(d, r, "record")
		if err != nil {
			return err
		}
		if k > 0 {
			st.Record = make([]stepflow.Record, k)
		}
		for i := range st.Record {
			if err := decodeRecord(d, &st.Record[i]); err != nil {
				return err
			}
		}
	}
	if n > 9 {
		k, err := listLen(d, r, "signals")
		if err != nil {
			return err
		}
		if k > 0 {
			st.Signals = make([]stepflow.Signal, k)
		}
		for i := range st.Signals {
			s := &st.Signals[i]
			if _, err := arrayLen(d, "signal", 3, 3); err != nil {
				return err
			}
			if s.Name, err = d.DecodeString(); err != nil {
				return err
			}
			if s.Payload, err = decodeBytes(d); err != nil {
				return err
			}
			if s.At, err = decodeTime(d); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeBytes(d *msgpack.Decoder) ([]byte, error) {
	b, err := d.DecodeBytes()
	if len(b) == 0 {
		b = nil
	}
	return b, err
}

func decodeTime(d *msgpack.Decoder) (time.Time, error) {
	c, err := d.PeekCode()
	if err != nil {
		return time.Time{}, err
	}
	if c == 0xc0 { // nil
		return time.Time{}, d.DecodeNil()
	}
	t, err := d.DecodeTime()
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

func decodeFrame(d *msgpack.Decoder, r *bytes.Reader, f *stepflow.Frame, depth int) error {
	if depth > maxDepth {
		return corrupt("frames nested deeper than %d", maxDepth)
	}
	n, err := arrayLen(d, "frame", 1, 9)
	if err != nil {
		return err
	}
	if f.Name, err = d.DecodeString(); err != nil {
		return err
	}
	if n == 1 {
		return nil
	}
	k, err := listLen(d, r, "frame children")
	if err != nil {
		return err
	}
	if k > 0 {
		f.Children = make([]stepflow.Frame, k)
	}
	for i := range f.Children {
		if err := decodeFrame(d, r, &f.Children[i], depth+1); err != nil {
			return err
		}
	}
	for i := 2; i < n && err == nil; i++ {
		switch i {
		case 2:
			f.Branch, err = d.DecodeString()
		case 3:
			f.Count, err = d.DecodeUint32()
		case 4:
			f.Since, err = decodeTime(d)
		case 5:
			f.Until, err = decodeTime(d)
		case 6:
			f.Index, err = d.DecodeUint32()
		case 7:
			f.Err, err = decodeFailure(d)
		case 8:
			f.Payload, err = decodeBytes(d)
		}
	}
	return err
}

func decodeFailure(d *msgpack.Decoder) (*stepflow.Failure, error) {
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	if c == 0xc0 {
		return nil, d.DecodeNil()
	}
	if _, err := arrayLen(d, "failure", 5, 5); err != nil {
		return nil, err
	}
	f := &stepflow.Failure{}
	if f.Path, err = d.DecodeString(); err != nil {
		return nil, err
	}
	if f.Kind, err = d.DecodeString(); err != nil {
		return nil, err
	}
	if f.Message, err = d.DecodeString(); err != nil {
		return nil, err
	}
	if f.Attempt, err = d.DecodeUint32(); err != nil {
		return nil, err
	}
	if f.At, err = decodeTime(d); err != nil {
		return nil, err
	}
	return f, nil
}

func decodeRecord(d *msgpack.Decoder, r *stepflow.Record) (err error) {
	if _, err = arrayLen(d, "record", 7, 7); err != nil {
		return err
	}
	if r.Seq, err = d.DecodeUint64(); err != nil {
		return err
	}
	if r.Path, err = d.DecodeString(); err != nil {
		return err
	}
	if r.Outcome, err = d.DecodeString(); err != nil {
		return err
	}
	if r.Attempt, err = d.DecodeUint32(); err != nil {
		return err
	}
	if r.Start, err = decodeTime(d); err != nil {
		return err
	}
	if r.End, err = decodeTime(d); err != nil {
		return err
	}
	r.Err, err = d.DecodeString()
	return err
}
