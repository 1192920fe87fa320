package codec

import (
	"encoding/base64"
	"fmt"
	"math/bits"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// This file writes the shell of a JSON state, the bytes json.Marshal
// writes for it: fields in the order of stepflow's struct fields, empty
// ones left out where their tags say omitempty or omitzero, strings
// escaped as encoding/json escapes them by default.

// jsonSafe marks the ASCII bytes that encoding/json writes as they are in
// a string: the printable ones except '"', '\\' and the HTML specials.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendJSONString writes s as a JSON string, escaped as encoding/json
// escapes it: quotes, backslashes and control characters, '<', '>' and
// '&' (so that the JSON can sit in HTML), U+2028 and U+2029; each byte that
// is not part of valid UTF-8 becomes \ufffd.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	// Most strings need no escapes: find the first byte that might, eight
	// bytes at a time, and copy what comes before it in one go.
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if m := escapeBytes(w); m != 0 {
			i += bits.TrailingZeros64(m) >> 3
			break
		}
	}
	for i < len(s) && s[i] < utf8.RuneSelf && jsonSafe[s[i]] {
		i++
	}
	if i == len(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	return appendJSONStringFrom(b, s, i)
}

// escapeBytes returns a mask with the high bit set in the bytes of w
// (little-endian) that appendJSONString may have to escape: quotes,
// backslashes, control characters, '<', '>', '&' and bytes that are not
// ASCII. The lowest byte so marked is exact.
func escapeBytes(w uint64) uint64 {
	return (w | (w - 0x20*wordOnes) |
		((w ^ '"'*wordOnes) - wordOnes) |
		((w ^ '\\'*wordOnes) - wordOnes) |
		((w ^ '<'*wordOnes) - wordOnes) |
		((w ^ '>'*wordOnes) - wordOnes) |
		((w ^ '&'*wordOnes) - wordOnes)) & wordHigh
}

// appendJSONStringFrom is appendJSONString from s[i] on, where the first
// byte that may need escaping is; b holds the opening quote.
func appendJSONStringFrom(b []byte, s string, i int) []byte {
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += n
			continue
		}
		i += n
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonEncoder keeps the first error met while writing a state.
type jsonEncoder struct{ err error }

func (e *jsonEncoder) set(err error) {
	if e.err == nil {
		e.err = err
	}
}

// appendJSONTime writes t as time.Time.MarshalJSON does, or fails as it
// does (for years outside 0..9999 and zone offsets of a day or more).
func appendJSONTime(b []byte, t time.Time, e *jsonEncoder) []byte {
	b = append(b, '"')
	if t.Location() == time.UTC {
		if out, ok := appendUTC(b, t); ok {
			return append(out, '"')
		}
	}
	out, err := t.AppendText(b)
	if err != nil {
		e.set(err)
		return append(b, '"')
	}
	return append(out, '"')
}

// appendUTC writes a UTC time of the years 0 to 9999 in RFC 3339 with as
// many fractional digits as it needs, as time.Time.AppendText does, and
// reports whether t was such a time.
func appendUTC(b []byte, t time.Time) ([]byte, bool) {
	sec := t.Unix()
	const minSec, maxSec = -62167219200, 253402300799 // 0000-01-01 and 9999-12-31T23:59:59, UTC
	if sec < minSec || sec > maxSec {
		return b, false
	}
	rem := int((sec - minSec) % 86400)
	year, month, day := civilDate((sec-minSec)/86400 + minSec/86400)
	var p [30]byte
	put2 := func(at, v int) { p[at], p[at+1] = twoDigits[2*v], twoDigits[2*v+1] }
	put2(0, year/100)
	put2(2, year%100)
	p[4] = '-'
	put2(5, month)
	p[7] = '-'
	put2(8, day)
	p[10] = 'T'
	put2(11, rem/3600)
	p[13] = ':'
	put2(14, rem/60%60)
	p[16] = ':'
	put2(17, rem%60)
	n := 19
	if ns := t.Nanosecond(); ns != 0 {
		// Nine digits, less the trailing zeros.
		n = 29
		for ns%10 == 0 {
			ns /= 10
			n--
		}
		for i := n - 1; i > 19; i-- {
			p[i] = byte('0' + ns%10)
			ns /= 10
		}
		p[19] = '.'
	}
	p[n] = 'Z'
	return append(b, p[:n+1]...), true
}

// twoDigits holds the numbers 00 to 99 as two digits each.
const twoDigits = "00010203040506070809" + "10111213141516171819" + "20212223242526272829" +
	"30313233343536373839" + "40414243444546474849" + "50515253545556575859" +
	"60616263646566676869" + "70717273747576777879" + "80818283848586878889" + "90919293949596979899"

// civilDate returns the date that is days after 1970-01-01 (a date of the
// years 0 to 9999), the inverse of daysSinceEpoch.
func civilDate(days int64) (year, month, day int) {
	// Count from -0400-03-01, in 400-year cycles of 146097 days, so that
	// each year's leap day comes last and every count is positive.
	z := days + 719468 + 146097
	cycle := z / 146097
	doc := z - cycle*146097                                // day of the cycle, 0..146096
	yoc := (doc - doc/1460 + doc/36524 - doc/146096) / 365 // year of the cycle, 0..399
	doy := doc - (365*yoc + yoc/4 - yoc/100)               // day of the year from March 1
	mp := (5*doy + 2) / 153                                // month from March, 0..11
	day = int(doy - (153*mp+2)/5 + 1)
	month = int(mp + 3)
	year = int(yoc + cycle*400 - 400)
	if month > 12 {
		month -= 12
		year++
	}
	return year, month, day
}

// appendJSONStatus writes s by name, or fails as Status.MarshalText does.
func appendJSONStatus(b []byte, s stepflow.Status, e *jsonEncoder) []byte {
	if int(s) >= len(statusNames) {
		_, err := s.MarshalText()
		e.set(fmt.Errorf("status: %w", err))
		return append(b, `""`...)
	}
	b = append(b, '"')
	b = append(b, statusNames[s]...)
	return append(b, '"')
}

// comma separates a member from the one before it, if any.
func comma(b []byte) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	return b
}

func appendJSONFrame(b []byte, f *stepflow.Frame, e *jsonEncoder) []byte {
	b = append(b, '{')
	if f.Name != "" {
		b = appendJSONString(append(b, `"name":`...), f.Name)
	}
	if f.Branch != "" {
		b = appendJSONString(append(comma(b), `"branch":`...), f.Branch)
	}
	if !f.Since.IsZero() {
		b = appendJSONTime(append(comma(b), `"since":`...), f.Since, e)
	}
	if !f.Until.IsZero() {
		b = appendJSONTime(append(comma(b), `"until":`...), f.Until, e)
	}
	if f.Count != 0 {
		b = strconv.AppendUint(append(comma(b), `"count":`...), uint64(f.Count), 10)
	}
	if f.Index != 0 {
		b = strconv.AppendUint(append(comma(b), `"index":`...), uint64(f.Index), 10)
	}
	if f.Err != nil {
		b = appendJSONFailure(append(comma(b), `"err":`...), f.Err, e)
	}
	if len(f.Payload) > 0 {
		b = appendJSONBytes(append(comma(b), `"payload":`...), f.Payload)
	}
	if len(f.Children) > 0 {
		b = append(comma(b), `"children":[`...)
		for i := range f.Children {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONFrame(b, &f.Children[i], e)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendJSONFailure(b []byte, f *stepflow.Failure, e *jsonEncoder) []byte {
	b = appendJSONString(append(b, `{"path":`...), f.Path)
	b = appendJSONString(append(b, `,"kind":`...), f.Kind)
	b = appendJSONString(append(b, `,"message":`...), f.Message)
	if f.Attempt != 0 {
		b = strconv.AppendUint(append(b, `,"attempt":`...), uint64(f.Attempt), 10)
	}
	if !f.At.IsZero() {
		b = appendJSONTime(append(b, `,"at":`...), f.At, e)
	}
	return append(b, '}')
}

func appendJSONRecord(b []byte, r *stepflow.Record, e *jsonEncoder) []byte {
	b = strconv.AppendUint(append(b, `{"seq":`...), r.Seq, 10)
	b = appendJSONString(append(b, `,"path":`...), r.Path)
	b = appendJSONString(append(b, `,"outcome":`...), r.Outcome)
	if r.Attempt != 0 {
		b = strconv.AppendUint(append(b, `,"attempt":`...), uint64(r.Attempt), 10)
	}
	if !r.Start.IsZero() {
		b = appendJSONTime(append(b, `,"start":`...), r.Start, e)
	}
	if !r.End.IsZero() {
		b = appendJSONTime(append(b, `,"end":`...), r.End, e)
	}
	if r.Err != "" {
		b = appendJSONString(append(b, `,"err":`...), r.Err)
	}
	return append(b, '}')
}

func appendJSONSignal(b []byte, s *stepflow.Signal, e *jsonEncoder) []byte {
	b = appendJSONString(append(b, `{"name":`...), s.Name)
	if len(s.Payload) > 0 {
		b = appendJSONBytes(append(b, `,"payload":`...), s.Payload)
	}
	if !s.At.IsZero() {
		b = appendJSONTime(append(b, `,"at":`...), s.At, e)
	}
	return append(b, '}')
}

// appendJSONBytes writes p as encoding/json writes a []byte: standard
// base64 in a string.
func appendJSONBytes(b []byte, p []byte) []byte {
	b = base64.StdEncoding.AppendEncode(append(b, '"'), p)
	return append(b, '"')
}

// appendJSONTail writes the members of the state that follow its data,
// and closes the state and the envelope.
func appendJSONTail[S any](b []byte, st *stepflow.State[S], e *jsonEncoder) []byte {
	if st.Err != nil {
		b = appendJSONFailure(append(b, `,"err":`...), st.Err, e)
	}
	if len(st.Record) > 0 {
		b = append(b, `,"record":[`...)
		for i := range st.Record {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONRecord(b, &st.Record[i], e)
		}
		b = append(b, ']')
	}
	if len(st.Signals) > 0 {
		b = append(b, `,"signals":[`...)
		for i := range st.Signals {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONSignal(b, &st.Signals[i], e)
		}
		b = append(b, ']')
	}
	if st.Intent != "" {
		b = appendJSONString(append(b, `,"intent":`...), st.Intent)
	}
	return append(b, "}}"...)
}
