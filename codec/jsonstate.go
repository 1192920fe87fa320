package codec

import (
	"encoding/base64"
	"math"
	"time"
	"unsafe"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// This file reads a JSON state with a jsonReader. Each value is read as
// encoding/json reads it into the field of stepflow.State (or of its parts)
// that its key names: keys match field names exactly or else without
// regard to case, unknown keys are skipped, null leaves a field as it is
// (nil for pointers and slices), and anything else of the wrong type is an
// error.

// The json names of the fields of stepflow.State and its parts, in field
// order; TestJSONFieldNamesMatchTags checks them against the tags.
var (
	jsonEnvelopeNames = []string{"stepflow", "state"}
	jsonStateNames    = []string{"version", "id", "status", "steps", "wakeAt", "root", "data", "err", "record", "signals", "intent"}
	jsonFrameNames    = []string{"name", "branch", "since", "until", "count", "index", "err", "payload", "children"}
	jsonFailureNames  = []string{"path", "kind", "message", "attempt", "at"}
	jsonRecordNames   = []string{"seq", "path", "outcome", "attempt", "start", "end", "err"}
	jsonSignalNames   = []string{"name", "payload", "at"}
)

// statusNames are the names of the statuses, by number, as
// stepflow.Status.MarshalText writes them.
var statusNames = func() (names []string) {
	for s := stepflow.Status(0); s.Valid(); s++ {
		names = append(names, s.String())
	}
	return names
}()

// jsonEnvelope is what Decode needs to know of the envelope once the
// reader is through.
type jsonEnvelope struct {
	format    int
	hasFormat bool // a "stepflow" member that is not null
	hasState  bool // a "state" member that is not null
	// data is the process data, when encoding/json must decode it.
	data []byte
}

// once records that an object has field i, and fails when it had it
// already: a second spelling of a field name would silently overwrite, or
// merge into, the first.
func (r *jsonReader) once(seen *uint16, i int, key []byte) {
	if *seen&(1<<i) != 0 {
		r.failf(jsonErrTwice, ErrCorrupt, "key %q appears twice in one object (in another spelling) at offset %d", key, r.off)
	}
	*seen |= 1 << i
}

// readJSONEnvelope reads r.b, which starts with '{', as a JSON state into
// st. plain, if not nil, reads the data.
func readJSONEnvelope[S any](r *jsonReader, st *stepflow.State[S], plain *jsonPlain) (env jsonEnvelope) {
	const abs = 1 // the envelope object
	r.off = 1
	base := len(r.keys)
	var set map[string]struct{}
	var seen uint16
	for first := true; ; first = false {
		k, ok := r.member(first)
		if !ok {
			break
		}
		key := r.keyBytes(k)
		r.checkKey(base, key, true, &set)
		i := field(key, jsonEnvelopeNames)
		if i >= 0 {
			r.once(&seen, i, key)
		}
		switch i {
		case 0:
			env.format, env.hasFormat = r.format()
		case 1:
			switch r.peek() {
			case '{':
				env.hasState = true
				readJSONState(r, st, plain, &env, abs)
			case 'n':
				r.literal("null")
				env.hasState = false
			default:
				env.hasState = true
				r.wrongType("the state object")
				r.skip(abs, -1, true)
			}
		default:
			r.skip(abs, -1, true)
		}
	}
	r.dropKeys(base)
	if !r.broken() && r.off != len(r.b) {
		r.failf(jsonErrTrailing, ErrCorrupt, "%d bytes of trailing data after the state", len(r.b)-r.off)
	}
	return env
}

// format reads the format version: an integer, or null for none.
func (r *jsonReader) format() (int, bool) {
	switch c := r.peek(); {
	case c == 'n':
		r.literal("null")
		return 0, false
	case c == '-' || '0' <= c && c <= '9':
		at := r.off
		p := r.number()
		v, ok := parseIntJSON(p, math.MaxInt)
		if !ok {
			r.failf(jsonErrEnvelope, ErrCorrupt, "format version %s at offset %d is not an integer", p, at)
		}
		return int(v), true
	}
	r.failf(jsonErrEnvelope, ErrCorrupt, "format version at offset %d is not a number", r.off)
	r.skip(1, -1, true)
	return 0, true
}

// readJSONState reads the state object, whose '{' is at r.off; abs is the
// nesting around it.
func readJSONState[S any](r *jsonReader, st *stepflow.State[S], plain *jsonPlain, env *jsonEnvelope, abs int) {
	if !r.open(abs + 1) {
		return
	}
	abs++
	r.members(jsonStateNames, true, abs, func(i int) {
		switch i {
		case 0:
			st.Version = r.string(abs)
		case 1:
			st.ID = r.string(abs)
		case 2:
			st.Status = r.status(abs)
		case 3:
			st.Steps = r.uint(abs, math.MaxUint64)
		case 4:
			st.WakeAt = r.time(abs)
		case 5:
			r.frame(&st.Root, 0, abs)
		case 6:
			env.data = readJSONData(r, &st.Data, plain, abs)
		case 7:
			st.Err = r.failure(abs)
		case 8:
			st.Record = r.records(abs)
		case 9:
			st.Signals = r.signals(abs)
		case 10:
			st.Intent = r.string(abs)
		}
	})
}

// readJSONData reads the process data into *v (zero) through plain, or,
// when plain is nil or cannot read it, checks it as the key scan does and
// returns it for encoding/json to decode.
func readJSONData[S any](r *jsonReader, v *S, plain *jsonPlain, abs int) []byte {
	r.peek()
	start := r.off
	if plain != nil {
		// plain reads only what it is sure of, and stops at anything
		// else: the value is then read again from its start.
		b, syntax := r.b, r.errs[jsonErrSyntax]
		if plain.read(r, unsafe.Pointer(v)) {
			return nil
		}
		r.b, r.errs[jsonErrSyntax], r.off = b, syntax, start
		var zero S
		*v = zero
	}
	r.skip(abs, 0, false)
	return r.b[start:r.off]
}

// string reads a string, or null.
func (r *jsonReader) string(abs int) string {
	switch r.peek() {
	case '"':
		k, ok := r.str()
		if !ok {
			return ""
		}
		return r.text(k)
	case 'n':
		r.literal("null")
		return ""
	}
	r.wrongType("a string")
	r.skip(abs, -1, false)
	return ""
}

// uint reads an unsigned integer up to max, or null.
func (r *jsonReader) uint(abs int, max uint64) uint64 {
	switch c := r.peek(); {
	case c == '-' || '0' <= c && c <= '9':
		at := r.off
		p := r.number()
		v, ok := parseUintJSON(p, max)
		if !ok {
			r.failf(jsonErrState, ErrCorrupt, "want an unsigned integer up to %d at offset %d, found %s", max, at, p)
		}
		return v
	case c == 'n':
		r.literal("null")
		return 0
	}
	r.wrongType("an unsigned integer")
	r.skip(abs, -1, false)
	return 0
}

func (r *jsonReader) uint32(abs int) uint32 { return uint32(r.uint(abs, math.MaxUint32)) }

// status reads a status name, or null.
func (r *jsonReader) status(abs int) stepflow.Status {
	switch r.peek() {
	case '"':
		at := r.off
		k, ok := r.str()
		if !ok {
			return 0
		}
		name := r.textBytes(k)
		for i, n := range statusNames {
			if string(name) == n {
				return stepflow.Status(i)
			}
		}
		r.failf(jsonErrState, ErrCorrupt, "unknown status %q at offset %d", name, at)
		return 0
	case 'n':
		r.literal("null")
		return 0
	}
	r.wrongType("a status name")
	r.skip(abs, -1, false)
	return 0
}

// time reads a time as time.Time.UnmarshalJSON does: an RFC 3339 string
// (escapes are not decoded), or null for the zero time.
func (r *jsonReader) time(abs int) time.Time {
	switch r.peek() {
	case '"':
		k, ok := r.str()
		if !ok {
			return time.Time{}
		}
		if t, ok := parseJSONTime(r.b[k.start:k.end]); ok {
			return t
		}
		var t time.Time
		if err := t.UnmarshalJSON(r.b[k.start-1 : k.end+1]); err != nil {
			r.failf(jsonErrState, ErrCorrupt, "time at offset %d: %v", k.start-1, err)
		}
		return t
	case 'n':
		r.literal("null")
		return time.Time{}
	}
	r.failf(jsonErrState, ErrCorrupt, "time at offset %d: not a JSON string", r.off)
	r.skip(abs, -1, false)
	return time.Time{}
}

// parseJSONTime parses the form in which Encode writes UTC times,
// 2006-01-02T15:04:05.999999999Z, and reports whether p has it. Any other
// text is left to time.Time.UnmarshalJSON; what this accepts, that accepts
// too, as the same instant.
func parseJSONTime(p []byte) (time.Time, bool) {
	t, n, ok := parseJSONTimePrefix(p)
	return t, ok && n == len(p)
}

// parseJSONTimePrefix parses a time as parseJSONTime does at the start of
// p, and returns its length.
func parseJSONTimePrefix(p []byte) (t time.Time, n int, ok bool) {
	if len(p) < len("2006-01-02T15:04:05Z") ||
		p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':' {
		return t, 0, false
	}
	_ = p[19]
	y0, y1, y2, y3 := p[0]-'0', p[1]-'0', p[2]-'0', p[3]-'0'
	m0, m1, d0, d1 := p[5]-'0', p[6]-'0', p[8]-'0', p[9]-'0'
	h0, h1, i0, i1, s0, s1 := p[11]-'0', p[12]-'0', p[14]-'0', p[15]-'0', p[17]-'0', p[18]-'0'
	if y0 > 9 || y1 > 9 || y2 > 9 || y3 > 9 || m0 > 9 || m1 > 9 || d0 > 9 || d1 > 9 ||
		h0 > 9 || h1 > 9 || i0 > 9 || i1 > 9 || s0 > 9 || s1 > 9 {
		return t, 0, false
	}
	year := int(y0)*1000 + int(y1)*100 + int(y2)*10 + int(y3)
	month, day := int(m0)*10+int(m1), int(d0)*10+int(d1)
	hour, min, sec := int(h0)*10+int(h1), int(i0)*10+int(i1), int(s0)*10+int(s1)
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || min > 59 || sec > 59 {
		return t, 0, false
	}
	n, nsec := 19, 0
	if p[n] == '.' {
		scale := 1000000000
		for n++; n < len(p) && p[n]-'0' <= 9 && scale > 1; n++ {
			scale /= 10
			nsec += int(p[n]-'0') * scale
		}
		if n == 20 {
			return t, 0, false
		}
	}
	if n >= len(p) || p[n] != 'Z' {
		return t, 0, false
	}
	days := daysSinceEpoch(year, month, day)
	return time.Unix(days*86400+int64(hour*3600+min*60+sec), int64(nsec)).UTC(), n + 1, true
}

// daysIn returns the number of days in a month of the proleptic Gregorian
// calendar.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysSinceEpoch returns the days from 1970-01-01 to the given date (year
// at least 0), counting in 400-year cycles of 146097 days that start on
// March 1, so that the leap day ends each cycle's years.
func daysSinceEpoch(year, month, day int) int64 {
	if month <= 2 {
		year--
		month += 12
	}
	// Years and days since 0000-03-01; year is at least -1 here.
	y := int64(year) + 400 // keep it positive: 400 years are 146097 days
	cycles, yoc := y/400, y%400
	doy := int64((153*(month-3)+2)/5 + day - 1)
	doc := yoc*365 + yoc/4 - yoc/100 + doy
	const epoch = 719468 + 146097 // 1970-03-01 minus 0000-03-01, plus the cycle added
	return cycles*146097 + doc - epoch
}

// failure reads a failure object, or null.
func (r *jsonReader) failure(abs int) *stepflow.Failure {
	if !r.enter('{', "a failure object", abs) {
		return nil
	}
	abs++
	f := &stepflow.Failure{}
	r.members(jsonFailureNames, false, abs, func(i int) {
		switch i {
		case 0:
			f.Path = r.string(abs)
		case 1:
			f.Kind = r.string(abs)
		case 2:
			f.Message = r.string(abs)
		case 3:
			f.Attempt = r.uint32(abs)
		case 4:
			f.At = r.time(abs)
		}
	})
	return f
}

// frame reads the frame object (or null) of a frame at depth below the
// root into f, which is zero.
func (r *jsonReader) frame(f *stepflow.Frame, depth, abs int) {
	if !r.enter('{', "a frame object", abs) {
		return
	}
	abs++
	r.members(jsonFrameNames, false, abs, func(i int) {
		switch i {
		case 0:
			f.Name = r.string(abs)
		case 1:
			f.Branch = r.string(abs)
		case 2:
			f.Since = r.time(abs)
		case 3:
			f.Until = r.time(abs)
		case 4:
			f.Count = r.uint32(abs)
		case 5:
			f.Index = r.uint32(abs)
		case 6:
			f.Err = r.failure(abs)
		case 7:
			f.Payload = r.payload(abs)
		case 8:
			f.Children = r.children(depth, abs)
		}
	})
}

// children reads the children of a frame at depth: an array of frames, or
// null. Frames deeper than maxDepth are read (what is wrong in them
// matters first) and reported.
func (r *jsonReader) children(depth, abs int) []stepflow.Frame {
	if !r.enter('[', "an array of frames", abs) {
		return nil
	}
	if r.peek() != ']' && depth >= maxDepth {
		r.failf(jsonErrFrames, ErrTooDeep, "frames nested deeper than %d", maxDepth)
	}
	// Each child is read into a frame of its own and appended when
	// complete: reading its children uses the stack too.
	return readElements(r, &r.frameStack, func(c *stepflow.Frame) { r.frame(c, depth+1, abs+1) })
}

// payload reads node-owned bytes: base64 text, an array of bytes, or null.
func (r *jsonReader) payload(abs int) []byte {
	switch c := r.peek(); c {
	case 'n':
		r.literal("null")
		return nil
	case '"':
		at := r.off
		k, ok := r.str()
		if !ok {
			return nil
		}
		p := r.textBytes(k)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(p)))
		n, err := base64.StdEncoding.Decode(out, p)
		if err != nil {
			r.failf(jsonErrState, ErrCorrupt, "payload at offset %d: %v", at, err)
			return nil
		}
		if n == 0 {
			return nil
		}
		return out[:n]
	case '[':
		if !r.open(abs + 1) {
			return nil
		}
		if r.peek() == ']' {
			r.off++
			return nil
		}
		var out []byte
		for {
			switch c := r.peek(); {
			case c == '-' || '0' <= c && c <= '9':
				at := r.off
				p := r.number()
				v, ok := parseUintJSON(p, math.MaxUint8)
				if !ok {
					r.failf(jsonErrState, ErrCorrupt, "want a byte at offset %d, found %s", at, p)
				}
				out = append(out, byte(v))
			case c == 'n':
				r.literal("null")
				out = append(out, 0)
			default:
				r.wrongType("a byte")
				r.skip(abs+1, -1, false)
			}
			if !r.next() {
				return out
			}
		}
	}
	r.wrongType("base64 text")
	r.skip(abs, -1, false)
	return nil
}

// records reads the record list: an array of records, or null.
func (r *jsonReader) records(abs int) []stepflow.Record {
	if !r.enter('[', "an array of records", abs) {
		return nil
	}
	return readElements(r, &r.recordStack, func(rec *stepflow.Record) { r.record(rec, abs+1) })
}

// record reads a record object, or null, into rec (zero).
func (r *jsonReader) record(rec *stepflow.Record, abs int) {
	if !r.enter('{', "a record object", abs) {
		return
	}
	abs++
	r.members(jsonRecordNames, false, abs, func(i int) {
		switch i {
		case 0:
			rec.Seq = r.uint(abs, math.MaxUint64)
		case 1:
			rec.Path = r.string(abs)
		case 2:
			rec.Outcome = r.string(abs)
		case 3:
			rec.Attempt = r.uint32(abs)
		case 4:
			rec.Start = r.time(abs)
		case 5:
			rec.End = r.time(abs)
		case 6:
			rec.Err = r.string(abs)
		}
	})
}

// signals reads the signal list: an array of signals, or null.
func (r *jsonReader) signals(abs int) []stepflow.Signal {
	if !r.enter('[', "an array of signals", abs) {
		return nil
	}
	return readElements(r, &r.signalStack, func(s *stepflow.Signal) { r.signal(s, abs+1) })
}

// signal reads a signal object, or null, into s (zero).
func (r *jsonReader) signal(s *stepflow.Signal, abs int) {
	if !r.enter('{', "a signal object", abs) {
		return
	}
	abs++
	r.members(jsonSignalNames, false, abs, func(i int) {
		switch i {
		case 0:
			s.Name = r.string(abs)
		case 1:
			s.Payload = r.payload(abs)
		case 2:
			s.At = r.time(abs)
		}
	})
}

// enter starts reading a value that is an object or an array, as open
// ('{' or '[') says, or null. It reports whether the value was opened;
// a null, or a value of another type (reported as not being want), is
// read through.
func (r *jsonReader) enter(open byte, want string, abs int) bool {
	switch r.peek() {
	case open:
		return r.open(abs + 1)
	case 'n':
		r.literal("null")
	default:
		r.wrongType(want)
		r.skip(abs, -1, false)
	}
	return false
}

// members reads the members of the object just opened, whose values are
// at nesting abs: value calls read for each key that names a field (its
// index in names), and others are skipped. A field named twice, in any
// spelling, is an error; fold also checks keys that differ only in case.
func (r *jsonReader) members(names []string, fold bool, abs int, read func(i int)) {
	base := len(r.keys)
	var set map[string]struct{}
	var seen uint16
	for first := true; ; first = false {
		k, ok := r.member(first)
		if !ok {
			break
		}
		key := r.keyBytes(k)
		r.checkKey(base, key, fold, &set)
		i := field(key, names)
		if i < 0 {
			r.skip(abs, -1, false)
			continue
		}
		r.once(&seen, i, key)
		read(i)
	}
	r.dropKeys(base)
}

// readElements reads the elements of the array just opened with read,
// collecting them on stack (the reader's reusable scratch for T: reading
// an element may use it too), and returns a copy, nil for an empty array
// or when the input is broken.
func readElements[T any](r *jsonReader, stack *[]T, read func(*T)) []T {
	if r.peek() == ']' {
		r.off++
		return nil
	}
	base := len(*stack)
	for {
		var v T
		read(&v)
		*stack = append(*stack, v)
		if !r.next() {
			break
		}
	}
	var out []T
	if !r.broken() {
		out = make([]T, len(*stack)-base)
		copy(out, (*stack)[base:])
	}
	clear((*stack)[base:])
	*stack = (*stack)[:base]
	return out
}
