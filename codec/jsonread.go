package codec

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// This file holds the JSON reader: a parser over the input bytes that
// checks the syntax as encoding/json does and finds, in the same pass, what
// the codec refuses beyond the syntax (keys named twice, data nested too
// deep). jsonstate.go builds the state with it.

// maxJSONNesting is how many arrays and objects encoding/json lets a
// document open at once; deeper input is a syntax error there, and here.
const maxJSONNesting = 10000

// scanSmallObject is the key count up to which an object's keys are
// compared pairwise rather than through a set.
const scanSmallObject = 16

// Error slots of a jsonReader. Decode reports the first slot that holds an
// error, so that an input with several faults fails for the one that
// encoding/json, reading the whole envelope, followed by the codec's own
// checks, would report: a syntax error anywhere first, then a "stepflow"
// member that is not an integer, trailing data, keys named twice and data
// nested too deep; then (in Decode) a missing or unsupported format version
// and a missing state; then what is wrong inside the state, frames nested
// too deep, and last a field of the state's own structures named twice in
// different spellings. Within a slot the first error in the input wins.
const (
	jsonErrSyntax   = iota // ErrTruncated or ErrCorrupt
	jsonErrEnvelope        // the format member is not an integer
	jsonErrTrailing        // bytes after the envelope
	jsonErrScan            // a key twice in one object, data too deep
	jsonErrState           // a value of the wrong type or out of range
	jsonErrFrames          // frames nested too deep
	jsonErrTwice           // a field named twice, spelled differently
	jsonErrSlots
)

// jsonReader parses JSON from b. Errors go to slots (see above) and the
// parse goes on after them, except after a syntax error: that cuts b at the
// offset where it occurred, so every later read finds the input at its end.
type jsonReader struct {
	b   []byte
	off int
	// all, when set, is a copy of b: strings without escapes are
	// substrings of it, which saves an allocation per string.
	all  string
	errs [jsonErrSlots]error

	// keys holds the keys of the objects being read, each object's from
	// the length it found on entry; see checkKey.
	keys [][]byte
	// Scratch stacks for the elements of the arrays being read, copied
	// out at their exact length when an array ends.
	frameStack  []stepflow.Frame
	recordStack []stepflow.Record
	signalStack []stepflow.Signal
}

// reset prepares r to read b, keeping its scratch space.
func (r *jsonReader) reset(b []byte) {
	r.b, r.off, r.all = b, 0, ""
	r.errs = [jsonErrSlots]error{}
}

// restart prepares r to read b, its input, again from the start, after
// an abandoned parse.
func (r *jsonReader) restart(b []byte) {
	r.b, r.off = b, 0
	r.errs = [jsonErrSlots]error{}
	r.dropKeys(0)
	clear(r.frameStack)
	clear(r.recordStack)
	clear(r.signalStack)
	r.frameStack, r.recordStack, r.signalStack = r.frameStack[:0], r.recordStack[:0], r.signalStack[:0]
}

// release drops what r refers to, so that a pooled reader keeps no input
// or state alive.
func (r *jsonReader) release() {
	r.b, r.all = nil, ""
	clear(r.keys[:cap(r.keys)])
	r.keys = r.keys[:0]
	r.errs = [jsonErrSlots]error{}
}

// err returns the error of the first slot that has one, or nil.
func (r *jsonReader) err() error {
	for _, e := range r.errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// broken reports whether a syntax error ended the parse.
func (r *jsonReader) broken() bool { return r.errs[jsonErrSyntax] != nil }

// fail records err in slot unless the slot holds an error already.
func (r *jsonReader) fail(slot int, err error) {
	if r.errs[slot] != nil {
		return
	}
	r.errs[slot] = err
	if slot == jsonErrSyntax {
		r.b = r.b[:r.off]
	}
}

// failf formats an error for slot, if the slot is free.
func (r *jsonReader) failf(slot int, sentinel error, format string, args ...any) {
	if r.errs[slot] == nil {
		r.fail(slot, fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...))
	}
}

// bad records that the byte at r.off cannot continue the document:
// ErrTruncated when the input ends there, ErrCorrupt otherwise.
func (r *jsonReader) bad(context string) {
	if r.broken() {
		return
	}
	if r.off >= len(r.b) {
		r.fail(jsonErrSyntax, fmt.Errorf("%w: unexpected end of JSON input", ErrTruncated))
		return
	}
	r.fail(jsonErrSyntax, fmt.Errorf("%w: invalid character %q %s at offset %d", ErrCorrupt, r.b[r.off], context, r.off))
}

// wrongType records that a value of the state has the wrong type.
func (r *jsonReader) wrongType(want string) {
	r.failf(jsonErrState, ErrCorrupt, "want %s at offset %d", want, r.off)
}

// peek skips white space and returns the next byte, or 0 at the end of the
// input (bad tells the two apart).
func (r *jsonReader) peek() byte {
	for r.off < len(r.b) {
		switch c := r.b[r.off]; c {
		case ' ', '\t', '\n', '\r':
			r.off++
		default:
			return c
		}
	}
	return 0
}

// open enters an array or object at r.off, which abs (counting it) must
// not nest deeper than encoding/json allows.
func (r *jsonReader) open(abs int) bool {
	if abs > maxJSONNesting {
		r.fail(jsonErrSyntax, fmt.Errorf("%w: exceeded max depth at offset %d", ErrCorrupt, r.off))
		return false
	}
	r.off++
	return true
}

// jsonKey locates a string in the input: its contents are b[start:end].
// esc reports a backslash in them, high a byte that is not ASCII.
type jsonKey struct {
	start, end int
	esc, high  bool
}

// member reads up to the value of the next member of an object, whose '{'
// has been read (first) or one of whose values has. It returns the member's
// key, or false at the object's end (read) and on a syntax error.
func (r *jsonReader) member(first bool) (jsonKey, bool) {
	c := r.peek()
	if !first {
		switch c {
		case ',':
			r.off++
			c = r.peek()
			if c != '"' {
				r.bad("looking for beginning of object key string")
				return jsonKey{}, false
			}
		case '}':
			r.off++
			return jsonKey{}, false
		default:
			r.bad("after object key:value pair")
			return jsonKey{}, false
		}
	} else if c == '}' {
		r.off++
		return jsonKey{}, false
	} else if c != '"' {
		r.bad("looking for beginning of object key string")
		return jsonKey{}, false
	}
	k, ok := r.str()
	if !ok {
		return k, false
	}
	if r.off < len(r.b) && r.b[r.off] == ':' {
		r.off++
		return k, true
	}
	if r.peek() != ':' {
		r.bad("after object key")
		return k, false
	}
	r.off++
	return k, true
}

// next reads what follows an element of an array: true after a ',', false
// after the closing ']' and on a syntax error.
func (r *jsonReader) next() bool {
	switch r.peek() {
	case ',':
		r.off++
		return true
	case ']':
		r.off++
		return false
	}
	r.bad("after array element")
	return false
}

// jsonStrByte classifies bytes inside strings: 1 for ASCII that stands for
// itself, 2 for bytes of longer UTF-8 sequences, 0 for the rest.
var jsonStrByte = func() (t [256]byte) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = 1
	}
	t['"'], t['\\'] = 0, 0
	for c := 0x80; c < 0x100; c++ {
		t[c] = 2
	}
	return t
}()

// str reads the string at r.off (its opening quote) and returns where its
// contents are.
func (r *jsonReader) str() (jsonKey, bool) {
	b := r.b
	i := r.off + 1
	k := jsonKey{start: i}
	for {
		for i < len(b) && jsonStrByte[b[i]] == 1 {
			i++
		}
		if i >= len(b) {
			r.off = i
			r.bad("")
			return jsonKey{start: k.start, end: k.start}, false
		}
		switch c := b[i]; {
		case c == '"':
			k.end, r.off = i, i+1
			return k, true
		case c >= utf8.RuneSelf:
			k.high = true
			i++
		case c == '\\':
			k.esc = true
			i++
			switch {
			case i >= len(b):
			case strings.IndexByte(`"\\/bfnrt`, b[i]) >= 0:
				i++
				continue
			case b[i] == 'u':
				j := i + 1
				for j < len(b) && j < i+5 && isHex(b[j]) {
					j++
				}
				if j == i+5 {
					i = j
					continue
				}
				i = j
			}
			r.off = i
			r.bad("in string escape code")
			return jsonKey{start: k.start, end: k.start}, false
		default:
			r.off = i
			r.bad("in string literal")
			return jsonKey{start: k.start, end: k.start}, false
		}
	}
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// keyBytes returns the key at k as the key scan compares it: as it stands
// in the input, unless it has escapes, which are decoded.
func (r *jsonReader) keyBytes(k jsonKey) []byte {
	if k.esc {
		return unquoteJSON(make([]byte, 0, k.end-k.start), r.b[k.start:k.end])
	}
	return r.b[k.start:k.end]
}

// text returns the string at k as encoding/json decodes it: escapes
// decoded, and each byte that is not part of valid UTF-8 replaced with
// U+FFFD. It is a substring of all when that is set and the string needs
// no decoding.
func (r *jsonReader) text(k jsonKey) string {
	p := r.b[k.start:k.end]
	if !k.esc && (!k.high || utf8.Valid(p)) {
		switch {
		case len(p) == 0:
			return ""
		case r.all != "":
			return r.all[k.start:k.end]
		}
		return string(p)
	}
	q := unquoteJSON(make([]byte, 0, len(p)+8), p)
	return unsafe.String(unsafe.SliceData(q), len(q))
}

// textBytes is text without the copy: the bytes are the input's when the
// string needs no decoding. For comparisons and parsing, not for keeping.
func (r *jsonReader) textBytes(k jsonKey) []byte {
	p := r.b[k.start:k.end]
	if !k.esc && (!k.high || utf8.Valid(p)) {
		return p
	}
	return unquoteJSON(make([]byte, 0, len(p)+8), p)
}

// unquoteJSON appends to dst the contents of a JSON string, given without
// its quotes and known to be well formed, decoded as encoding/json decodes
// them: a \u escape of half a surrogate pair that is not completed by the
// next escape, and each byte that is not part of valid UTF-8, become
// U+FFFD.
func unquoteJSON(dst, p []byte) []byte {
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '\\':
			e := p[i+1]
			i += 2
			switch e {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r1 := hex4(p[i:])
				i += 4
				if utf16.IsSurrogate(r1) {
					r2 := rune(-1)
					if i+6 <= len(p) && p[i] == '\\' && p[i+1] == 'u' {
						r2 = hex4(p[i+2:])
					}
					if d := utf16.DecodeRune(r1, r2); d != utf8.RuneError {
						dst = utf8.AppendRune(dst, d)
						i += 6
						continue
					}
					r1 = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r1)
			default: // '"', '\\' and '/' stand for themselves
				dst = append(dst, e)
			}
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRune(p[i:])
			dst = utf8.AppendRune(dst, r)
			i += n
		}
	}
	return dst
}

// hex4 returns the value of the four hex digits p starts with, or -1.
func hex4(p []byte) rune {
	if len(p) < 4 {
		return -1
	}
	var v rune
	for _, c := range p[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		v = v<<4 | rune(c)
	}
	return v
}

// number reads the number at r.off and returns its text.
func (r *jsonReader) number() []byte {
	b := r.b
	start := r.off
	i := start
	if i < len(b) && b[i] == '-' {
		i++
	}
	// An integer part, then optionally a fraction and an exponent; each
	// needs a digit where digits start.
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i++; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		}
	default:
		r.off = i
		r.bad("in numeric literal")
		return nil
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			r.off = i
			r.bad("after decimal point in numeric literal")
			return nil
		}
		for i++; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			r.off = i
			r.bad("in exponent of numeric literal")
			return nil
		}
		for i++; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		}
	}
	r.off = i
	return b[start:i]
}

// parseUintJSON reads a number as encoding/json reads it into an unsigned
// field: digits only, at most max.
func parseUintJSON(p []byte, max uint64) (uint64, bool) {
	if len(p) == 0 || len(p) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (max-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseIntJSON reads a number as encoding/json reads it into a signed
// field: an optional minus and digits, from -max-1 to max.
func parseIntJSON(p []byte, max int64) (int64, bool) {
	neg := len(p) > 0 && p[0] == '-'
	if neg {
		p = p[1:]
	}
	limit := uint64(max)
	if neg {
		limit++
	}
	u, ok := parseUintJSON(p, limit)
	if !ok {
		return 0, false
	}
	if neg {
		return -int64(u), true // -(max+1) wraps to itself
	}
	return int64(u), true
}

// literal reads true, false or null, whose first byte is at r.off.
func (r *jsonReader) literal(word string) {
	if len(r.b)-r.off >= len(word) && string(r.b[r.off:r.off+len(word)]) == word {
		r.off += len(word)
		return
	}
	for i := 1; i < len(word); i++ {
		r.off++
		if r.off >= len(r.b) || r.b[r.off] != word[i] {
			r.bad("in literal " + word)
			return
		}
	}
}

// skip reads a value the state does not use, or that has the wrong type,
// checking what the key scan checks in it: no key twice in one object
// (compared without regard to case in a top object when fold is set), and,
// in process data, no value deeper than maxDepth. abs counts the arrays
// and objects open around the value; level is the value's data level, or
// -1 outside the data.
func (r *jsonReader) skip(abs, level int, fold bool) {
	if level > maxDepth {
		r.failf(jsonErrScan, ErrTooDeep, "data nested deeper than %d", maxDepth)
	}
	inner := -1
	if level >= 0 {
		inner = level + 1
	}
	switch c := r.peek(); c {
	case '{':
		if !r.open(abs + 1) {
			return
		}
		base := len(r.keys)
		var set map[string]struct{}
		for first := true; ; first = false {
			k, ok := r.member(first)
			if !ok {
				break
			}
			r.checkKey(base, r.keyBytes(k), fold, &set)
			r.skip(abs+1, inner, false)
		}
		r.dropKeys(base)
	case '[':
		if !r.open(abs + 1) {
			return
		}
		if r.peek() == ']' {
			r.off++
			return
		}
		for {
			r.skip(abs+1, inner, false)
			if !r.next() {
				return
			}
		}
	case '"':
		r.str()
	case 't':
		r.literal("true")
	case 'f':
		r.literal("false")
	case 'n':
		r.literal("null")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			r.number()
			return
		}
		r.bad("looking for beginning of value")
	}
}

// checkKey records key k of the object whose keys start at r.keys[base],
// and fails when the object has it already: compared exactly, or without
// regard to case when fold is set. Objects of more than scanSmallObject
// keys are checked through set, holding their keys in lower case if fold
// is set.
func (r *jsonReader) checkKey(base int, k []byte, fold bool, set *map[string]struct{}) {
	own := r.keys[base:]
	if *set == nil && len(own) < scanSmallObject {
		for _, o := range own {
			if bytes.Equal(o, k) || fold && bytes.EqualFold(o, k) {
				r.duplicate(k)
				break
			}
		}
		r.keys = append(r.keys, k)
		return
	}
	if fold {
		k = bytes.ToLower(k)
	}
	if *set == nil {
		*set = make(map[string]struct{}, 2*len(own))
		for _, o := range own {
			if fold {
				o = bytes.ToLower(o)
			}
			(*set)[string(o)] = struct{}{}
		}
		r.dropKeys(base)
	}
	if _, dup := (*set)[string(k)]; dup {
		r.duplicate(k)
		return
	}
	(*set)[string(k)] = struct{}{}
}

// dropKeys forgets the keys of an object that ended.
func (r *jsonReader) dropKeys(base int) {
	clear(r.keys[base:])
	r.keys = r.keys[:base]
}

func (r *jsonReader) duplicate(k []byte) {
	r.failf(jsonErrScan, ErrCorrupt, "key %q appears twice in one object", k)
}

// field returns the index of the name in names that key k stands for, as
// encoding/json matches keys to struct fields: exactly, or else without
// regard to case; -1 if none.
func field(k []byte, names []string) int {
	for i, n := range names {
		if string(k) == n {
			return i
		}
	}
	ks := unsafe.String(unsafe.SliceData(k), len(k))
	for i, n := range names {
		if strings.EqualFold(ks, n) {
			return i
		}
	}
	return -1
}
