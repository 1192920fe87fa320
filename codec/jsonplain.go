package codec

import (
	"bytes"
	"encoding"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// jsonPlain writes and reads process data of a plain struct type without
// encoding/json's reflection, giving exactly the bytes and values
// encoding/json gives. A plain struct has only exported, non-embedded
// fields of the types string, bool, int, int8..int64, uint, uint8..uint64
// and map[string]string (unnamed), with json tags that at most rename a
// field (to letters, digits and '_'), skip it ("-") or set omitempty, no
// two names equal without regard to case, and no JSON or text marshaling
// methods. Every other data type goes through encoding/json itself.
//
// Reading accepts the data as encoding/json writes it, with keys in any
// order and any white space, and gives up on anything else (a key in
// another case, an unknown key, null, a number with a fraction): the
// caller then has encoding/json read it, which decides what it means.
type jsonPlain struct {
	fields []plainField
	keys   []string   // `"name":` of each field, as written
	names  *jsonNames // the names, for readCanonical
}

// jsonPlainPlans caches jsonPlainFor: reflect.Type to *jsonPlain, nil for
// types encoding/json handles.
var jsonPlainPlans sync.Map

// jsonPlainFor returns the plan for t, or nil if t is not a plain struct
// or encoding/json does not agree with the plan (see agrees).
func jsonPlainFor(t reflect.Type) *jsonPlain {
	return cachedPlan(&jsonPlainPlans, t, newJSONPlain, (*jsonPlain).agrees)
}

var jsonInterfaces = []reflect.Type{
	reflect.TypeFor[json.Marshaler](), reflect.TypeFor[json.Unmarshaler](),
	reflect.TypeFor[encoding.TextMarshaler](), reflect.TypeFor[encoding.TextUnmarshaler](),
}

// newJSONPlain returns the plan for t, or nil if t is not a plain struct.
func newJSONPlain(t reflect.Type) *jsonPlain {
	if t.Kind() != reflect.Struct || t.NumField() > 64 {
		return nil
	}
	for _, it := range jsonInterfaces {
		if t.Implements(it) || reflect.PointerTo(t).Implements(it) {
			return nil
		}
	}
	p := &jsonPlain{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		if f.Anonymous {
			return nil
		}
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		pf, ok := newPlainField(f, name, opts)
		if !ok {
			return nil
		}
		if !plainJSONName(pf.name) || slices.ContainsFunc(p.fields, func(g plainField) bool { return strings.EqualFold(g.name, pf.name) }) {
			return nil
		}
		k, ok := plainKind(f.Type)
		if !ok {
			return nil
		}
		pf.kind = k
		p.fields = append(p.fields, pf)
		p.keys = append(p.keys, `"`+pf.name+`":`)
	}
	names := make([]string, len(p.fields))
	for i, f := range p.fields {
		names[i] = f.name
	}
	p.names = newJSONNames(names)
	return p
}

// plainJSONName reports whether a field name is one jsonPlain handles:
// ASCII letters, digits and '_', which JSON writes as they are.
func plainJSONName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// bounds returns the range of an integer field.
func (f *plainField) bounds() (min int64, max uint64) {
	switch f.kind {
	case reflect.Int:
		return math.MinInt, math.MaxInt
	case reflect.Int64:
		return math.MinInt64, math.MaxInt64
	case reflect.Int8:
		return math.MinInt8, math.MaxInt8
	case reflect.Int16:
		return math.MinInt16, math.MaxInt16
	case reflect.Int32:
		return math.MinInt32, math.MaxInt32
	case reflect.Uint8:
		return 0, math.MaxUint8
	case reflect.Uint16:
		return 0, math.MaxUint16
	case reflect.Uint32:
		return 0, math.MaxUint32
	case reflect.Uint:
		return 0, math.MaxUint
	}
	return 0, math.MaxUint64
}

// append writes the struct at v as encoding/json does. keys is scratch
// space for sorting map keys; append returns it for reuse. check reports a
// map key that is not valid UTF-8: encoding/json writes every such byte as
// U+FFFD, so two keys may come out the same, which Encode must refuse.
func (p *jsonPlain) append(b []byte, v unsafe.Pointer, keys []string) (_ []byte, _ []string, check bool) {
	b = append(b, '{')
	first := true
	for i := range p.fields {
		f := &p.fields[i]
		fv := unsafe.Add(v, f.off)
		if f.omitEmpty && f.empty(fv) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, p.keys[i]...)
		switch f.kind {
		case reflect.String:
			b = appendJSONString(b, *(*string)(fv))
		case reflect.Bool:
			b = strconv.AppendBool(b, *(*bool)(fv))
		case reflect.Map:
			m := *(*map[string]string)(fv)
			if m == nil {
				b = append(b, "null"...)
				continue
			}
			keys = keys[:0]
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			b = append(b, '{')
			for j, k := range keys {
				if j > 0 {
					b = append(b, ',')
				}
				check = check || !utf8.ValidString(k)
				b = append(appendJSONString(b, k), ':')
				b = appendJSONString(b, m[k])
			}
			b = append(b, '}')
			clear(keys)
		default:
			if f.signed() {
				b = strconv.AppendInt(b, f.int(fv), 10)
			} else {
				b = strconv.AppendUint(b, uint64(f.int(fv)), 10)
			}
		}
	}
	return append(b, '}'), keys, check
}

// read decodes the object at r's offset into the zero struct at v and
// reports whether it could. When it could not, v may be partly set and
// must be zeroed again, and r may hold a syntax error, which the caller
// undoes; r.off is then anywhere.
func (p *jsonPlain) read(r *jsonReader, v unsafe.Pointer) bool {
	if r.peek() != '{' {
		return false
	}
	r.off++
	var seen uint64
	for first := true; ; first = false {
		k, ok := r.member(first)
		if !ok {
			break
		}
		if k.esc {
			return false
		}
		name := r.b[k.start:k.end]
		i := 0
		for i < len(p.fields) && string(name) != p.fields[i].name {
			i++
		}
		if i == len(p.fields) || seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		f := &p.fields[i]
		fv := unsafe.Add(v, f.off)
		switch c := r.peek(); f.kind {
		case reflect.String:
			if c != '"' {
				return false
			}
			s, ok := r.str()
			if !ok {
				return false
			}
			*(*string)(fv) = r.text(s)
		case reflect.Bool:
			switch c {
			case 't':
				r.literal("true")
				*(*bool)(fv) = true
			case 'f':
				r.literal("false")
			default:
				return false
			}
		case reflect.Map:
			switch c {
			case 'n':
				r.literal("null")
			case '{':
				if !p.readMap(r, (*map[string]string)(fv)) {
					return false
				}
			default:
				return false
			}
		default:
			if c != '-' && (c < '0' || c > '9') {
				return false
			}
			num := r.number()
			min, max := f.bounds()
			if f.signed() {
				n, ok := parseIntJSON(num, int64(max))
				if !ok || n < min {
					return false
				}
				f.setInt(fv, n)
			} else {
				n, ok := parseUintJSON(num, max)
				if !ok {
					return false
				}
				f.setInt(fv, int64(n))
			}
		}
	}
	return !r.broken()
}

// readMap reads an object of strings at r.off into a new map at *m.
func (p *jsonPlain) readMap(r *jsonReader, m *map[string]string) bool {
	r.off++
	*m = map[string]string{}
	for first := true; ; first = false {
		k, ok := r.member(first)
		if !ok {
			return !r.broken()
		}
		if r.peek() != '"' {
			return false
		}
		val, ok := r.str()
		if !ok {
			return false
		}
		key := r.text(k)
		if _, dup := (*m)[key]; dup {
			return false
		}
		(*m)[key] = r.text(val)
	}
}

// agrees checks the plan against encoding/json on the zero value and on
// one with every field set: it reports whether both give the same bytes
// and read them back to the same values.
func (p *jsonPlain) agrees(t reflect.Type) bool {
	full := sample(t, p.fields, "s<&>\u2028\xff\"", map[string]string{"b": "2", "a": "", "<": "\n"}, 100)
	for _, v := range []reflect.Value{reflect.New(t), full} {
		want, err := json.Marshal(v.Interface())
		if err != nil {
			return false
		}
		mine, _, _ := p.append(nil, v.UnsafePointer(), nil)
		if !bytes.Equal(mine, want) {
			return false
		}
		var r jsonReader
		r.reset(mine)
		back := reflect.New(t)
		viaJSON := reflect.New(t)
		if !p.read(&r, back.UnsafePointer()) || r.off != len(mine) ||
			json.Unmarshal(mine, viaJSON.Interface()) != nil || !reflect.DeepEqual(back.Interface(), viaJSON.Interface()) {
			return false
		}
	}
	return true
}

// readCanonical reads the struct at r.off, into the zero struct at v, if
// it is in the form append writes (see readCanonicalJSON), and reports
// whether it was.
func (p *jsonPlain) readCanonical(r *jsonReader, v unsafe.Pointer) bool {
	if !r.lit("{") {
		return false
	}
	for i, first := 0, true; ; first = false {
		if i = r.ckey(p.names, i, first); i < 0 {
			break
		}
		f := &p.fields[i]
		i++
		fv := unsafe.Add(v, f.off)
		switch f.kind {
		case reflect.String:
			if !r.cstr((*string)(fv)) {
				return false
			}
		case reflect.Bool:
			switch {
			case r.lit("true"):
				*(*bool)(fv) = true
			case !r.lit("false"):
				return false
			}
		case reflect.Map:
			if !r.lit("null") && !r.cmap((*map[string]string)(fv)) {
				return false
			}
		default:
			neg := r.lit("-")
			var n uint64
			min, max := f.bounds()
			if neg {
				max = uint64(-(min + 1)) + 1
			}
			if !r.cuint(&n, max) || neg && n == 0 {
				return false
			}
			if neg {
				f.setInt(fv, int64(-n))
			} else {
				f.setInt(fv, int64(n))
			}
		}
	}
	return r.lit("}")
}

// cmap reads an object of strings into a new map at *m.
func (r *jsonReader) cmap(m *map[string]string) bool {
	if !r.lit("{") {
		return false
	}
	*m = map[string]string{}
	if r.lit("}") {
		return true
	}
	for {
		var k, v string
		if !r.cstr(&k) || !r.lit(":") || !r.cstr(&v) {
			return false
		}
		if _, dup := (*m)[k]; dup {
			return false
		}
		(*m)[k] = v
		if !r.lit(",") {
			return r.lit("}")
		}
	}
}
