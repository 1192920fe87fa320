package codec

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Msgpack returns the compact binary codec. The state's own fields are
// written as positional msgpack arrays with trailing empty fields left out;
// the data S is written with msgpack's reflection (struct tags apply; map
// keys are sorted so that encoding stays canonical) and embedded as a
// binary field, so it can be decoded, and fail, on its own.
//
// When S is a struct of plain fields (strings, bools, integers and
// map[string]string, with msgpack tags that at most rename a field, skip
// it or set omitempty), the codec writes and reads the data itself,
// producing the same bytes and values as msgpack at a fraction of the
// cost. It checks this against msgpack on first use, so a custom encoding
// registered for S with msgpack.Register is honoured if it is registered
// before S is first encoded or decoded (in an init function, say).
//
// Layout after the 3-byte envelope: [version, id, status, steps, wakeAt,
// root frame, data, err?, record?, signals?, intent?]; a frame is [name, children?,
// branch?, count?, since?, until?, index?, err?, payload?].
func Msgpack[S any](opts *Options) Codec[S] {
	c := &msgpackCodec[S]{max: opts.maxSize()}
	c.boxes.New = func() any { return new(S) }
	return c
}

type msgpackCodec[S any] struct {
	max int
	// boxes holds *S values for msgpack's reflection to encode from and
	// decode into. Handing it a pointer into the state instead would move
	// every state passing through Encode or Decode to the heap.
	boxes sync.Pool

	plainOnce sync.Once
	plain     *plainData // nil unless S is a plain struct; see plainData
}

// plainData returns the plan for S, looked up on first use: after package
// initialization, when msgpack.Register calls have run.
func (c *msgpackCodec[S]) plainData() *plainData {
	c.plainOnce.Do(func() { c.plain = plainDataFor(reflect.TypeFor[S]()) })
	return c.plain
}

func (c *msgpackCodec[S]) Name() string { return "msgpack" }

// smallState is the size up to which Decode copies the whole input once
// and makes every string of the state a substring of that copy, instead of
// allocating each string on its own. The copy also holds the bytes that are
// not strings; for states this small that costs less than an allocation
// per string, and a decoded state keeps no more than smallState bytes
// alive that it does not use.
const smallState = 4 << 10

// maxPooledScratch is the largest scratch buffer kept for reuse; a bigger
// one, left by an unusually large state, goes to the garbage collector
// rather than staying pinned in the pool.
const maxPooledScratch = 64 << 10

// dataEncoder is a pooled msgpack encoder for process data. It writes into
// w, the scratch buffer where Encode assembles a whole state before copying
// it out at its exact size.
type dataEncoder struct {
	w    appendWriter
	enc  *msgpack.Encoder
	keys []string // scratch for sorting map keys
}

// appendWriter is an io.Writer that appends to a byte slice. It also has
// the WriteByte method that lets msgpack write to it without wrapping it.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

var dataEncoders = sync.Pool{New: func() any {
	e := &dataEncoder{}
	e.enc = msgpack.NewEncoder(&e.w)
	e.enc.SetSortMapKeys(true)
	e.enc.UseCompactInts(true)
	return e
}}

// dataDecoder is a pooled msgpack decoder for process data, reading from r.
type dataDecoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

var dataDecoders = sync.Pool{New: func() any {
	d := &dataDecoder{}
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}}

// Encode writes the envelope and the state.
func (c *msgpackCodec[S]) Encode(st stepflow.State[S]) (out []byte, err error) {
	de := dataEncoders.Get().(*dataEncoder)
	b, err := c.encode(de, &st)
	switch {
	case err != nil:
	case len(b) > c.max:
		err = fmt.Errorf("encode msgpack state: %w: %d bytes, limit %d", ErrTooLarge, len(b), c.max)
	default:
		// The caller gets a copy of exactly the encoded size, made in
		// one allocation; the scratch buffer goes back to the pool.
		out = append([]byte(nil), b...)
	}
	if cap(b) <= maxPooledScratch {
		de.w.b = b[:0]
		dataEncoders.Put(de) // no use of b after this
	}
	return out, err
}

// encode assembles st in the scratch buffer of de and returns it.
func (c *msgpackCodec[S]) encode(de *dataEncoder, st *stepflow.State[S]) ([]byte, error) {
	b := de.w.b[:0]
	if err := checkFrameDepth(&st.Root, 0); err != nil {
		return b, fmt.Errorf("encode msgpack state: %w", err)
	}
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

	// The data is encoded straight after a bin header sized for short
	// data, which is widened afterwards if the data turns out longer.
	at := len(b)
	b = appendBinHeader(b, 0)
	if plain := c.plainData(); plain != nil {
		b, de.keys = plain.append(b, unsafe.Pointer(&st.Data), de.keys)
		return c.encodeTail(fixBinHeader(b, at), n, st), nil
	}
	de.w.b = b
	d := c.boxes.Get().(*S)
	*d = st.Data
	err := de.enc.Encode(d)
	var zero S
	*d = zero // the pool must not keep the caller's data alive
	c.boxes.Put(d)
	b = de.w.b
	if err != nil {
		return b, fmt.Errorf("encode msgpack state: data: %w", err)
	}
	// Decode walks the data with checkValue before msgpack reads it;
	// the same walk here refuses what it would refuse. (Plain data is
	// one level deep.)
	dr := reader{b: b[at+2:]}
	for dr.off < len(dr.b) && dr.err == nil {
		dr.checkValue(0)
	}
	if dr.err != nil {
		return b, fmt.Errorf("encode msgpack state: data: %w", dr.err)
	}
	return c.encodeTail(fixBinHeader(b, at), n, st), nil
}

// encodeTail writes the state's fields after the data; n is the length
// of the state array.
func (c *msgpackCodec[S]) encodeTail(b []byte, n int, st *stepflow.State[S]) []byte {
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
	return b
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
	r := reader{b: b, off: envelopeLen}
	if len(b) <= smallState {
		// One copy of the input holds every string of the state, data
		// included; the state never points into b.
		r.all = string(b)
	}
	data, dataAt := decodeState(&r, &st)
	if r.err == nil && r.off != len(b) {
		r.corrupt("%d trailing bytes", len(b)-r.off)
	}
	if r.err != nil {
		return fail(r.err)
	}
	// Plain data needs no checkValue walk: read allocates no more than the
	// bytes left can fill, and what it does not accept takes the checked
	// path below.
	if plain := c.plainData(); plain != nil {
		var dataStr string
		if r.all != "" {
			dataStr = r.all[dataAt : dataAt+len(data)]
		}
		if plain.read(data, dataStr, unsafe.Pointer(&st.Data)) {
			return st, nil
		}
		var zero S
		st.Data = zero // msgpack would merge into what read left
	}
	dr := reader{b: data}
	for dr.off < len(data) && dr.err == nil {
		dr.checkValue(0)
	}
	if dr.err != nil {
		return fail(fmt.Errorf("%w: data: %v", ErrCorrupt, dr.err))
	}
	if err := c.decodeData(data, &st.Data); err != nil {
		return fail(fmt.Errorf("%w: data: %v", ErrCorrupt, err))
	}
	return st, nil
}

// decodeData decodes the first msgpack value of data into *v, as
// msgpack.Unmarshal would, with a pooled decoder. msgpack copies what it
// reads, so *v does not alias data.
func (c *msgpackCodec[S]) decodeData(data []byte, v *S) error {
	dd := dataDecoders.Get().(*dataDecoder)
	dd.r.Reset(data)
	dd.dec.Reset(&dd.r)
	d := c.boxes.Get().(*S)
	err := dd.dec.Decode(d)
	// Only reached without a panic: a decoder that panicked is dropped.
	dd.r.Reset(nil)
	dataDecoders.Put(dd)
	*v = *d
	var zero S
	*d = zero
	c.boxes.Put(d)
	return err
}

// decodeState parses the shell and returns the encoded data, which is
// r.b[at:at+len(data)].
func decodeState[S any](r *reader, st *stepflow.State[S]) (data []byte, at int) {
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
	data = r.binView()
	at = r.off - len(data)
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
	return data, at
}

func decodeFrame(r *reader, f *stepflow.Frame, depth int) {
	if depth > maxDepth {
		r.tooDeep("frames")
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
