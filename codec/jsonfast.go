package codec

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"math/bits"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// This file reads JSON states in the form Encode writes them: no white
// space, the fields of each object in the order of stepflow's struct
// fields and spelled as their tags, integers without sign or exponent,
// times in UTC without escapes. Such a state needs none of the checks for
// keys named twice, and most of the general reader's work is deciding what
// comes next, which here is known. On anything else this reader gives up,
// and Decode reads the input again with the general reader (jsonstate.go):
// whatever this accepts, that accepts too, to the same state
// (TestCanonicalReaderAgreesWithGeneralReader).

// jsonNames are the names of an object's fields, for matching the keys of
// canonical input against them: a key of at most 8 bytes, as a
// little-endian word, picks the one name it can be through a small hash
// table.
type jsonNames struct {
	names []string
	words []uint64 // the names of at most 8 bytes as words; 0 for others
	// slots maps (word*mul)>>58 to the index of the short name with that
	// hash, plus one; 0 for none. mul is 0 when no multiplier was found
	// that gives the short names distinct slots; then every key takes
	// the slow path.
	mul   uint64
	slots [64]uint8
}

func newJSONNames(names []string) *jsonNames {
	n := &jsonNames{names: names, words: make([]uint64, len(names))}
	for i, name := range names {
		if len(name) <= 8 {
			var buf [8]byte
			copy(buf[:], name)
			n.words[i] = binary.LittleEndian.Uint64(buf[:])
		}
	}
	// A fixed sequence of odd multipliers; the first that separates the
	// names is kept, so tables are the same on every run.
	mul := uint64(0x9E3779B97F4A7C15)
search:
	for range 1000 {
		mul += 0x632BE59BD9B4E019 * 2
		n.slots = [64]uint8{}
		for i, name := range names {
			if len(name) > 8 || i >= 255 {
				continue
			}
			h := (n.words[i] * mul) >> 58
			if n.slots[h] != 0 {
				continue search
			}
			n.slots[h] = uint8(i + 1)
		}
		n.mul = mul
		return n
	}
	n.slots = [64]uint8{}
	return n
}

var (
	cStateNames   = newJSONNames(jsonStateNames)
	cFrameNames   = newJSONNames(jsonFrameNames)
	cFailureNames = newJSONNames(jsonFailureNames)
	cRecordNames  = newJSONNames(jsonRecordNames)
	cSignalNames  = newJSONNames(jsonSignalNames)
)

// ckey reads the key of the next member of an object in canonical form: a
// comma unless first is set, then `"name":` for one of the names from
// index from on. It returns that index, or -1 if the input does not
// continue so (at the end of the object, for one).
func (r *jsonReader) ckey(names *jsonNames, from int, first bool) int {
	b, i := r.b, r.off
	if !first {
		if i >= len(b) || b[i] != ',' {
			return -1
		}
		i++
	}
	if i+9 > len(b) || b[i] != '"' {
		if i < len(b) && b[i] == '"' {
			return r.ckeyLong(names, from, i)
		}
		return -1
	}
	w := binary.LittleEndian.Uint64(b[i+1:])
	n := 8
	if m := (((w ^ '"'*wordOnes) - wordOnes) &^ w) & wordHigh; m != 0 {
		// The key ends at the first quote: keep only its bytes.
		n = bits.TrailingZeros64(m) >> 3
		w &= 1<<(8*n) - 1
	} else if i+9 >= len(b) || b[i+9] != '"' {
		return r.ckeyLong(names, from, i)
	}
	j := int(names.slots[(w*names.mul)>>58]) - 1
	if names.mul == 0 {
		return r.ckeyLong(names, from, i)
	}
	if j < from || names.words[j] != w || len(names.names[j]) != n || i+2+n >= len(b) || b[i+2+n] != ':' {
		return -1
	}
	r.off = i + 3 + n
	return j
}

// ckeyLong is ckey for the key whose quote is at b[i], comparing it with
// each name in turn.
func (r *jsonReader) ckeyLong(names *jsonNames, from, i int) int {
	for j := from; j < len(names.names); j++ {
		end := i + 1 + len(names.names[j])
		if end+1 < len(r.b) && r.b[end] == '"' && r.b[end+1] == ':' && string(r.b[i+1:end]) == names.names[j] {
			r.off = end + 2
			return j
		}
	}
	return -1
}

// readCanonicalJSON reads r.b into st as readJSONEnvelope does, and
// reports whether it could. When it could not, st may be partly set, and
// r holds the errors and scratch of an abandoned parse: both must be
// reset.
func readCanonicalJSON[S any](r *jsonReader, st *stepflow.State[S], plain *jsonPlain) (env jsonEnvelope, ok bool) {
	if !r.lit(`{"stepflow":1,"state":{`) {
		return env, false
	}
	env.format, env.hasFormat, env.hasState = 1, true, true
	for j, first := 0, true; ; first = false {
		if j = r.ckey(cStateNames, j, first); j < 0 {
			break
		}
		switch j {
		case 0:
			ok = r.cstr(&st.Version)
		case 1:
			ok = r.cstr(&st.ID)
		case 2:
			ok = r.cstatus(&st.Status)
		case 3:
			ok = r.cuint(&st.Steps, math.MaxUint64)
		case 4:
			ok = r.ctime(&st.WakeAt)
		case 5:
			ok = r.cframe(&st.Root, 0)
		case 6:
			if plain != nil {
				ok = plain.readCanonical(r, unsafe.Pointer(&st.Data))
				break
			}
			// The data is checked, and kept for encoding/json, as the
			// general reader does; any error is the general reader's
			// to report.
			start := r.off
			r.skip(2, 0, false)
			ok = r.err() == nil
			env.data = r.b[start:r.off]
		case 7:
			ok = r.cfailure(&st.Err)
		case 8:
			ok = r.lit("[") && r.crecords(&st.Record)
		case 9:
			ok = r.lit("[") && r.csignals(&st.Signals)
		case 10:
			ok = r.cstr(&st.Intent)
		}
		if !ok {
			return env, false
		}
		j++
	}
	return env, r.lit(`}}`) && r.off == len(r.b)
}

// lit consumes s if the input continues with it.
func (r *jsonReader) lit(s string) bool {
	if len(r.b)-r.off >= len(s) && string(r.b[r.off:r.off+len(s)]) == s {
		r.off += len(s)
		return true
	}
	return false
}

// cstrBytes reads a string without escapes or control characters, and
// with valid UTF-8, and returns where its contents are.
func (r *jsonReader) cstrBytes() (start, end int, ok bool) {
	b, i := r.b, r.off
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	i++
	start = i
	// Eight bytes at a time up to the first quote, backslash, control
	// character or byte that is not ASCII.
	for {
		if i+8 > len(b) {
			for i < len(b) && jsonStrByte[b[i]] == 1 {
				i++
			}
			break
		}
		if m := specialBytes(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			i += bits.TrailingZeros64(m) >> 3
			break
		}
		i += 8
	}
	if i < len(b) && b[i] == '"' {
		r.off = i + 1
		return start, i, true
	}
	for i < len(b) && jsonStrByte[b[i]] != 0 {
		i++
	}
	if i >= len(b) || b[i] != '"' || !utf8.Valid(b[start:i]) {
		return 0, 0, false
	}
	r.off = i + 1
	return start, i, true
}

const (
	wordOnes = 0x0101010101010101
	wordHigh = 0x8080808080808080
)

// specialBytes returns a mask with the high bit set in the bytes of w
// (little-endian) that are a quote, a backslash, a control character or
// not ASCII. The lowest byte so marked is exact; above it the mask may mark
// bytes that are not special.
func specialBytes(w uint64) uint64 {
	return (w | (w - 0x20*wordOnes) |
		((w ^ '"'*wordOnes) - wordOnes) |
		((w ^ '\\'*wordOnes) - wordOnes)) & wordHigh
}

// cstr reads a string. Strings with escapes, or with bytes that are not
// valid UTF-8, are read as the general reader reads them.
func (r *jsonReader) cstr(s *string) bool {
	start, end, ok := r.cstrBytes()
	switch {
	case !ok:
		if r.off >= len(r.b) || r.b[r.off] != '"' {
			return false
		}
		k, ok := r.str()
		if !ok {
			return false
		}
		*s = r.text(k)
	case start == end:
		*s = ""
	case r.all != "":
		*s = r.all[start:end]
	default:
		*s = string(r.b[start:end])
	}
	return true
}

// statusByFirst maps the first byte of a status name to the status, or to
// -1; the names start with different letters.
var statusByFirst = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i, n := range statusNames {
		if t[n[0]] >= 0 {
			panic("codec: status names share a first letter")
		}
		t[n[0]] = int8(i)
	}
	return t
}()

func (r *jsonReader) cstatus(s *stepflow.Status) bool {
	start, end, ok := r.cstrBytes()
	if !ok || start == end {
		return false
	}
	i := statusByFirst[r.b[start]]
	if i < 0 || string(r.b[start:end]) != statusNames[i] {
		return false
	}
	*s = stepflow.Status(i)
	return true
}

// cuint reads digits (the only form Encode writes integers in) up to max.
func (r *jsonReader) cuint(v *uint64, max uint64) bool {
	b, i := r.b, r.off
	var n uint64
	for i < len(b) && i-r.off < 19 {
		d := b[i] - '0'
		if d > 9 {
			break
		}
		n = n*10 + uint64(d)
		i++
	}
	switch {
	case i == r.off, b[r.off] == '0' && i > r.off+1:
		return false
	case i < len(b) && b[i]-'0' <= 9:
		// A twentieth digit: only some fit.
		for i < len(b) && b[i]-'0' <= 9 {
			i++
		}
		var ok bool
		if n, ok = parseUintJSON(b[r.off:i], max); !ok {
			return false
		}
	case n > max:
		return false
	}
	*v, r.off = n, i
	return true
}

func (r *jsonReader) cuint32(v *uint32) bool {
	var n uint64
	if !r.cuint(&n, math.MaxUint32) {
		return false
	}
	*v = uint32(n)
	return true
}

func (r *jsonReader) ctime(t *time.Time) bool {
	b, i := r.b, r.off
	if i >= len(b) || b[i] != '"' {
		return false
	}
	var n int
	var ok bool
	*t, n, ok = parseJSONTimePrefix(b[i+1:])
	if !ok || i+1+n >= len(b) || b[i+1+n] != '"' {
		return false
	}
	r.off = i + 2 + n
	return true
}

func (r *jsonReader) cbytes(p *[]byte) bool {
	start, end, ok := r.cstrBytes()
	if !ok || start == end {
		return false
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(end-start))
	n, err := base64.StdEncoding.Decode(out, r.b[start:end])
	if err != nil || n == 0 {
		return false
	}
	*p = out[:n]
	return true
}

func (r *jsonReader) cframe(f *stepflow.Frame, depth int) bool {
	if !r.lit("{") {
		return false
	}
	for j, first := 0, true; ; first = false {
		if j = r.ckey(cFrameNames, j, first); j < 0 {
			break
		}
		ok := false
		switch j {
		case 0:
			ok = r.cstr(&f.Name)
		case 1:
			ok = r.cstr(&f.Branch)
		case 2:
			ok = r.ctime(&f.Since)
		case 3:
			ok = r.ctime(&f.Until)
		case 4:
			ok = r.cuint32(&f.Count)
		case 5:
			ok = r.cuint32(&f.Index)
		case 6:
			ok = r.cfailure(&f.Err)
		case 7:
			ok = r.cbytes(&f.Payload)
		case 8:
			if depth < maxDepth && r.lit("[") {
				f.Children, ok = r.cchildren(depth)
			}
		}
		if !ok {
			return false
		}
		j++
	}
	return r.lit("}")
}

// cchildren reads the frames of a children array, whose '[' is read,
// below a frame at depth.
func (r *jsonReader) cchildren(depth int) ([]stepflow.Frame, bool) {
	base := len(r.frameStack)
	for {
		var c stepflow.Frame
		if !r.cframe(&c, depth+1) {
			return nil, false
		}
		r.frameStack = append(r.frameStack, c)
		if !r.lit(",") {
			break
		}
	}
	if !r.lit("]") {
		return nil, false
	}
	out := make([]stepflow.Frame, len(r.frameStack)-base)
	copy(out, r.frameStack[base:])
	clear(r.frameStack[base:])
	r.frameStack = r.frameStack[:base]
	return out, true
}

func (r *jsonReader) cfailure(p **stepflow.Failure) bool {
	if !r.lit("{") {
		return false
	}
	f := &stepflow.Failure{}
	for j, first := 0, true; ; first = false {
		if j = r.ckey(cFailureNames, j, first); j < 0 {
			break
		}
		ok := false
		switch j {
		case 0:
			ok = r.cstr(&f.Path)
		case 1:
			ok = r.cstr(&f.Kind)
		case 2:
			ok = r.cstr(&f.Message)
		case 3:
			ok = r.cuint32(&f.Attempt)
		case 4:
			ok = r.ctime(&f.At)
		}
		if !ok {
			return false
		}
		j++
	}
	*p = f
	return r.lit("}")
}

// crecords reads the records of a record array, whose '[' is read.
func (r *jsonReader) crecords(p *[]stepflow.Record) bool {
	base := len(r.recordStack)
	for {
		var rec stepflow.Record
		if !r.crecord(&rec) {
			return false
		}
		r.recordStack = append(r.recordStack, rec)
		if !r.lit(",") {
			break
		}
	}
	if !r.lit("]") {
		return false
	}
	*p = make([]stepflow.Record, len(r.recordStack)-base)
	copy(*p, r.recordStack[base:])
	clear(r.recordStack[base:])
	r.recordStack = r.recordStack[:base]
	return true
}

func (r *jsonReader) crecord(rec *stepflow.Record) bool {
	if !r.lit("{") {
		return false
	}
	for j, first := 0, true; ; first = false {
		if j = r.ckey(cRecordNames, j, first); j < 0 {
			break
		}
		ok := false
		switch j {
		case 0:
			ok = r.cuint(&rec.Seq, math.MaxUint64)
		case 1:
			ok = r.cstr(&rec.Path)
		case 2:
			ok = r.cstr(&rec.Outcome)
		case 3:
			ok = r.cuint32(&rec.Attempt)
		case 4:
			ok = r.ctime(&rec.Start)
		case 5:
			ok = r.ctime(&rec.End)
		case 6:
			ok = r.cstr(&rec.Err)
		}
		if !ok {
			return false
		}
		j++
	}
	return r.lit("}")
}

// csignals reads the signals of a signal array, whose '[' is read.
func (r *jsonReader) csignals(p *[]stepflow.Signal) bool {
	base := len(r.signalStack)
	for {
		var s stepflow.Signal
		if !r.csignal(&s) {
			return false
		}
		r.signalStack = append(r.signalStack, s)
		if !r.lit(",") {
			break
		}
	}
	if !r.lit("]") {
		return false
	}
	*p = make([]stepflow.Signal, len(r.signalStack)-base)
	copy(*p, r.signalStack[base:])
	clear(r.signalStack[base:])
	r.signalStack = r.signalStack[:base]
	return true
}

func (r *jsonReader) csignal(s *stepflow.Signal) bool {
	if !r.lit("{") {
		return false
	}
	for j, first := 0, true; ; first = false {
		if j = r.ckey(cSignalNames, j, first); j < 0 {
			break
		}
		ok := false
		switch j {
		case 0:
			ok = r.cstr(&s.Name)
		case 1:
			ok = r.cbytes(&s.Payload)
		case 2:
			ok = r.ctime(&s.At)
		}
		if !ok {
			return false
		}
		j++
	}
	return r.lit("}")
}
