package codec

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// This file reads and writes the msgpack subset that the state shell uses:
// nil, unsigned integers, strings, binary, arrays and the timestamp
// extension. Writing by hand keeps encoding fast and canonical (always the
// shortest form); reading by hand lets every length be checked against the
// bytes that remain before anything is allocated.

func appendNil(b []byte) []byte { return append(b, 0xc0) }

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

func appendString(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n <= 31:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

func appendBin(b []byte, p []byte) []byte {
	return append(appendBinHeader(b, len(p)), p...)
}

func appendBinHeader(b []byte, n int) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
}

// fixBinHeader completes a bin field whose contents were appended after a
// placeholder header of the shortest form at b[at:at+2]: it writes the
// length, widening the header (and moving the contents) when they are
// longer than the short form can say, so the result is what appendBin
// would have written.
func fixBinHeader(b []byte, at int) []byte {
	n := len(b) - at - 2
	var h [5]byte
	hdr := appendBinHeader(h[:0], n)
	if grow := len(hdr) - 2; grow > 0 {
		b = append(b, h[:grow]...)
		copy(b[at+len(hdr):], b[at+2:len(b)-grow])
	}
	copy(b[at:], hdr)
	return b
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

// appendTime writes nil for the zero time, otherwise the msgpack timestamp
// extension in its shortest exact form.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return appendNil(b)
	}
	sec, nsec := t.Unix(), int64(t.Nanosecond())
	switch {
	case sec >= 0 && sec <= math.MaxUint32 && nsec == 0:
		return binary.BigEndian.AppendUint32(append(b, 0xd6, 0xff), uint32(sec))
	case sec >= 0 && sec < 1<<34:
		return binary.BigEndian.AppendUint64(append(b, 0xd7, 0xff), uint64(nsec)<<34|uint64(sec))
	}
	b = binary.BigEndian.AppendUint32(append(b, 0xc7, 12, 0xff), uint32(nsec))
	return binary.BigEndian.AppendUint64(b, uint64(sec))
}

// reader parses msgpack values from a byte slice. The first error sticks:
// every later read returns zero values, so callers check err once.
type reader struct {
	b   []byte
	off int
	err error
	// all, when set, is a copy of b: strings read are substrings of it,
	// which saves an allocation per string. See smallState.
	all string
}

// fail records err unless an error is recorded already. It also cuts b at
// the read offset, so that every later read finds no bytes left: the read
// methods need only compare lengths, which keeps them small enough to be
// inlined.
func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
		r.b = r.b[:r.off]
	}
}

// need reports whether n more bytes are there to read, and records
// ErrTruncated if not.
func (r *reader) need(n int) bool {
	if uint(n) <= uint(len(r.b)-r.off) {
		return true
	}
	r.short(n)
	return false
}

// short records that n bytes were needed and fewer are left.
func (r *reader) short(n int) {
	r.fail(fmt.Errorf("%w: need %d bytes at offset %d, have %d", ErrTruncated, n, r.off, len(r.b)-r.off))
}

func (r *reader) byte() (c byte) {
	if r.off < len(r.b) {
		c = r.b[r.off]
		r.off++
	} else {
		r.short(1)
	}
	return c
}

func (r *reader) peek() byte {
	if r.off < len(r.b) {
		return r.b[r.off]
	}
	r.short(1)
	return 0
}

func (r *reader) bytes(n int) (p []byte) {
	if uint(n) <= uint(len(r.b)-r.off) {
		p = r.b[r.off : r.off+n]
		r.off += n
	} else {
		r.short(n)
	}
	return p
}

func (r *reader) u16() int {
	p := r.bytes(2)
	if p == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(p))
}

func (r *reader) u32() uint32 {
	p := r.bytes(4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

// len32 reads a 32-bit length. One that does not fit an int (on 32-bit
// platforms) cannot fit in memory either: it reads as -1, which every
// caller rejects as more than the input holds.
func (r *reader) len32() int {
	v := r.u32()
	if uint64(v) > uint64(math.MaxInt) {
		return -1
	}
	return int(v)
}

func (r *reader) corrupt(format string, args ...any) {
	r.fail(fmt.Errorf("%w: "+format+" at offset %d", append(append([]any{ErrCorrupt}, args...), r.off)...))
}

// tooDeep records that what (frames or data) nests deeper than maxDepth.
func (r *reader) tooDeep(what string) {
	r.fail(fmt.Errorf("%w: %w: %s nested deeper than %d at offset %d", ErrCorrupt, ErrTooDeep, what, maxDepth, r.off))
}

// nilNext consumes a nil and reports whether there was one.
func (r *reader) nilNext() bool {
	if r.off < len(r.b) && r.b[r.off] == 0xc0 {
		r.off++
		return true
	}
	return false
}

func (r *reader) uint() uint64 {
	c := r.byte()
	switch {
	case r.err != nil:
		return 0
	case c <= 0x7f:
		return uint64(c)
	case c == 0xcc:
		return uint64(r.byte())
	case c == 0xcd:
		return uint64(r.u16())
	case c == 0xce:
		return uint64(r.u32())
	case c == 0xcf:
		p := r.bytes(8)
		if p == nil {
			return 0
		}
		return binary.BigEndian.Uint64(p)
	}
	r.corrupt("want an unsigned integer, found 0x%02x", c)
	return 0
}

func (r *reader) uint32() uint32 {
	v := r.uint()
	if v > math.MaxUint32 {
		r.corrupt("counter %d out of range", v)
	}
	return uint32(v)
}

func (r *reader) strLen() int {
	c := r.byte()
	switch {
	case r.err != nil:
		return 0
	case c&0xe0 == 0xa0:
		return int(c & 0x1f)
	case c == 0xd9:
		return int(r.byte())
	case c == 0xda:
		return r.u16()
	case c == 0xdb:
		return r.len32()
	}
	r.corrupt("want a string, found 0x%02x", c)
	return 0
}

// strBytes returns the bytes of the next string, in place. Most strings
// of a state are short: those are taken without the general path's calls.
func (r *reader) strBytes() []byte {
	if r.off < len(r.b) {
		if c := r.b[r.off]; c&0xe0 == 0xa0 {
			start, end := r.off+1, r.off+1+int(c&0x1f)
			if end <= len(r.b) {
				r.off = end
				return r.b[start:end]
			}
		}
	}
	return r.bytes(r.strLen())
}

// string returns a copy of the next string: a substring of all if that
// is set, else a string of its own.
func (r *reader) string() string {
	p := r.strBytes()
	switch {
	case len(p) == 0:
		return ""
	case r.all != "":
		return r.all[r.off-len(p) : r.off]
	}
	return string(p)
}

// bin returns a copy of the next binary value, nil if it is empty.
func (r *reader) bin() []byte {
	p := r.binView()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

// binView returns the next binary value as a slice of the input.
func (r *reader) binView() []byte {
	if r.nilNext() {
		return nil
	}
	c := r.byte()
	n := 0
	switch {
	case r.err != nil:
		return nil
	case c == 0xc4:
		n = int(r.byte())
	case c == 0xc5:
		n = r.u16()
	case c == 0xc6:
		n = r.len32()
	default:
		r.corrupt("want binary, found 0x%02x", c)
		return nil
	}
	return r.bytes(n)
}

// header reads the header of a map or an array: the fix form (fix|n, n
// up to 15) or the 16- and 32-bit forms. what and kind name the expected
// value in the error.
func (r *reader) header(fix, c16, c32 byte, what, kind string) (int, bool) {
	c := r.byte()
	switch {
	case r.err != nil:
		return 0, false
	case c&0xf0 == fix:
		return int(c & 0x0f), true
	case c == c16:
		return r.u16(), true
	case c == c32:
		return r.len32(), true
	}
	r.corrupt("want %s%s, found 0x%02x", what, kind, c)
	return 0, false
}

// arrayLen reads an array header; lo..hi bound the length, and the length
// can never exceed the bytes left (every element takes at least one).
func (r *reader) arrayLen(what string, lo, hi int) int {
	if r.off < len(r.b) {
		// A short array within bounds, the usual case.
		if c := r.b[r.off]; c&0xf0 == 0x90 {
			if n := int(c & 0x0f); n >= lo && n <= hi && n <= len(r.b)-r.off-1 {
				r.off++
				return n
			}
		}
	}
	return r.arrayLenSlow(what, lo, hi)
}

func (r *reader) arrayLenSlow(what string, lo, hi int) int {
	n, ok := r.header(0x90, 0xdc, 0xdd, what, " (an array)")
	switch {
	case !ok || r.err != nil:
		return 0
	case n < lo || n > hi:
		r.corrupt("%s has %d elements, want %d..%d", what, n, lo, hi)
		return 0
	case n > len(r.b)-r.off:
		r.fail(fmt.Errorf("%w: %s claims %d elements, %d bytes left", ErrTruncated, what, n, len(r.b)-r.off))
		return 0
	}
	return n
}

func (r *reader) time() time.Time {
	if r.nilNext() {
		return time.Time{}
	}
	c := r.byte()
	var sec, nsec int64
	switch c {
	case 0xd6:
		if r.byte() != 0xff {
			r.corrupt("want a timestamp")
		}
		sec = int64(r.u32())
	case 0xd7:
		if r.byte() != 0xff {
			r.corrupt("want a timestamp")
		}
		p := r.bytes(8)
		if p == nil {
			return time.Time{}
		}
		v := binary.BigEndian.Uint64(p)
		nsec, sec = int64(v>>34), int64(v&(1<<34-1))
	case 0xc7:
		if r.byte() != 12 || r.byte() != 0xff {
			r.corrupt("want a timestamp")
		}
		nsec = int64(r.u32())
		p := r.bytes(8)
		if p == nil {
			return time.Time{}
		}
		sec = int64(binary.BigEndian.Uint64(p))
	default:
		r.corrupt("want a timestamp, found 0x%02x", c)
	}
	if r.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		r.corrupt("timestamp nanoseconds %d out of range", nsec)
		return time.Time{}
	}
	return time.Unix(sec, nsec).UTC()
}

// checkValue walks one msgpack value without decoding it and fails if any
// length it declares exceeds what the remaining bytes could hold. The
// reflection decoder used for process data preallocates from declared
// lengths, so this check is what bounds its memory by the input size.
func (r *reader) checkValue(depth int) {
	if depth > maxDepth {
		r.tooDeep("data")
		return
	}
	c := r.byte()
	if r.err != nil {
		return
	}
	var n, per int // element count, and values per element (2 for maps)
	switch {
	case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		return
	case c&0xe0 == 0xa0:
		r.bytes(int(c & 0x1f))
		return
	case c&0xf0 == 0x90:
		n, per = int(c&0x0f), 1
	case c&0xf0 == 0x80:
		n, per = int(c&0x0f), 2
	}
	switch c {
	case 0xcc, 0xd0:
		r.bytes(1)
	case 0xcd, 0xd1:
		r.bytes(2)
	case 0xca, 0xce, 0xd2:
		r.bytes(4)
	case 0xcb, 0xcf, 0xd3:
		r.bytes(8)
	case 0xc4, 0xd9:
		r.bytes(int(r.byte()))
	case 0xc5, 0xda:
		r.bytes(r.u16())
	case 0xc6, 0xdb:
		r.bytes(r.len32())
	case 0xd4:
		r.bytes(2)
	case 0xd5:
		r.bytes(3)
	case 0xd6:
		r.bytes(5)
	case 0xd7:
		r.bytes(9)
	case 0xd8:
		r.bytes(17)
	case 0xc7:
		r.bytes(int(r.byte()) + 1)
	case 0xc8:
		r.bytes(r.u16() + 1)
	case 0xc9:
		if n := r.len32(); n >= 0 {
			r.bytes(n + 1)
		} else {
			r.bytes(n)
		}
	case 0xdc:
		n, per = r.u16(), 1
	case 0xdd:
		n, per = r.len32(), 1
	case 0xde:
		n, per = r.u16(), 2
	case 0xdf:
		n, per = r.len32(), 2
	case 0xc1:
		r.corrupt("reserved msgpack code 0xc1")
	}
	if per == 0 || r.err != nil {
		return
	}
	if n < 0 || n > (len(r.b)-r.off)/per {
		r.fail(fmt.Errorf("%w: data claims %d elements, %d bytes left", ErrTruncated, n, len(r.b)-r.off))
		return
	}
	for i := 0; i < n*per && r.err == nil; i++ {
		r.checkValue(depth + 1)
	}
}
