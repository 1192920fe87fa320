package codec

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// plainData writes and reads process data of a plain struct type without
// msgpack's reflection, giving exactly the bytes and values msgpack gives.
// A plain struct has only exported, non-embedded fields of the types
// string, bool, int, int8..int64, uint, uint8..uint64 and map[string]string
// (unnamed), and msgpack tags that at most rename a field, skip it ("-") or
// set omitempty. Every other data type goes through msgpack itself.
//
// msgpack writes such a struct as a map from field name to value, in field
// order, leaving out empty omitempty fields; with the encoder settings of
// this package, integers take their shortest form and map keys are sorted.
// Reading accepts known field names in any order, with values in the
// forms msgpack writes (strings as str, integers in any integer form), and
// hands anything else to msgpack, which decides what it means.
type plainData struct {
	fields []plainField
}

type plainField struct {
	name      string
	off       uintptr
	kind      reflect.Kind // reflect.Map stands for map[string]string
	omitEmpty bool
}

var mapStringString = reflect.TypeFor[map[string]string]()

// newPlainField makes the plain field of f from its tag's name (f's own
// name when empty) and options, of which plain data knows omitempty only:
// ok is false for any other.
func newPlainField(f reflect.StructField, name, opts string) (pf plainField, ok bool) {
	pf = plainField{name: name, off: f.Offset}
	switch opts {
	case "":
	case "omitempty":
		pf.omitEmpty = true
	default:
		return pf, false
	}
	if pf.name == "" {
		pf.name = f.Name
	}
	return pf, true
}

// plainPlans caches plainDataFor: reflect.Type to *plainData, nil for
// types msgpack handles. Codecs made per call (Decode, Detect) share it.
var plainPlans sync.Map

// plainDataFor returns the plan for t, or nil if t is not a plain struct
// or msgpack does not agree with the plan (see agrees).
func plainDataFor(t reflect.Type) *plainData {
	return cachedPlan(&plainPlans, t, newPlainData, (*plainData).agrees)
}

// plainKind is the kind of a field type that plain data holds:
// map[string]string, or a predeclared string, bool or integer type. ok is
// false for any other type: a named type may have methods of its own, or
// its own encoding.
func plainKind(ft reflect.Type) (reflect.Kind, bool) {
	if ft == mapStringString {
		return reflect.Map, true
	}
	if ft.PkgPath() != "" || ft.Name() == "" {
		return 0, false
	}
	switch k := ft.Kind(); k {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return k, true
	}
	return 0, false
}

// cachedPlan returns the plan for t kept in cache, made by build and
// checked by agrees on first use; nil when build makes none or agrees
// refuses it.
func cachedPlan[P any](cache *sync.Map, t reflect.Type, build func(reflect.Type) *P, agrees func(*P, reflect.Type) bool) *P {
	if p, ok := cache.Load(t); ok {
		return p.(*P)
	}
	p := build(t)
	if p != nil && !agrees(p, t) {
		p = nil
	}
	got, _ := cache.LoadOrStore(t, p)
	return got.(*P)
}

// newPlainData returns the plan for t, or nil if t is not a plain struct.
func newPlainData(t reflect.Type) *plainData {
	if t.Kind() != reflect.Struct || implementsCodecInterface(t) {
		return nil
	}
	p := &plainData{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("msgpack")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Name == "_msgpack" || f.Anonymous {
			return nil
		}
		if !f.IsExported() {
			continue
		}
		pf, ok := newPlainField(f, name, opts)
		if !ok {
			return nil
		}
		if strings.ContainsAny(pf.name, " \"'`:=\\") || slices.ContainsFunc(p.fields, func(g plainField) bool { return g.name == pf.name }) {
			return nil // unusual names, or two fields of one name
		}
		k, ok := plainKind(f.Type)
		if !ok || k != reflect.Map && implementsCodecInterface(f.Type) {
			return nil
		}
		pf.kind = k
		p.fields = append(p.fields, pf)
	}
	return p
}

var codecInterfaces = []reflect.Type{
	reflect.TypeFor[msgpack.CustomEncoder](), reflect.TypeFor[msgpack.CustomDecoder](),
	reflect.TypeFor[msgpack.Marshaler](), reflect.TypeFor[msgpack.Unmarshaler](),
	reflect.TypeFor[interface{ MarshalBinary() ([]byte, error) }](),
	reflect.TypeFor[interface{ UnmarshalBinary([]byte) error }](),
	reflect.TypeFor[interface{ MarshalText() ([]byte, error) }](),
	reflect.TypeFor[interface{ UnmarshalText([]byte) error }](),
	reflect.TypeFor[interface{ IsZero() bool }](),
}

// implementsCodecInterface reports whether t or *t has a method through
// which msgpack would encode, decode or test it for emptiness differently.
func implementsCodecInterface(t reflect.Type) bool {
	for _, it := range codecInterfaces {
		if t.Implements(it) || reflect.PointerTo(t).Implements(it) {
			return true
		}
	}
	return false
}

// empty reports whether omitempty leaves the field at v out.
func (f *plainField) empty(v unsafe.Pointer) bool {
	switch f.kind {
	case reflect.String:
		return *(*string)(v) == ""
	case reflect.Bool:
		return !*(*bool)(v)
	case reflect.Map:
		return len(*(*map[string]string)(v)) == 0
	}
	return f.int(v) == 0
}

// int reads an integer field as msgpack's encoder sees it: signed kinds as
// int64, unsigned ones as uint64 (returned in the same bits).
func (f *plainField) int(v unsafe.Pointer) int64 {
	switch f.kind {
	case reflect.Int:
		return int64(*(*int)(v))
	case reflect.Int8:
		return int64(*(*int8)(v))
	case reflect.Int16:
		return int64(*(*int16)(v))
	case reflect.Int32:
		return int64(*(*int32)(v))
	case reflect.Int64:
		return *(*int64)(v)
	case reflect.Uint:
		return int64(*(*uint)(v))
	case reflect.Uint8:
		return int64(*(*uint8)(v))
	case reflect.Uint16:
		return int64(*(*uint16)(v))
	case reflect.Uint32:
		return int64(*(*uint32)(v))
	}
	return int64(*(*uint64)(v))
}

func (f *plainField) setInt(v unsafe.Pointer, n int64) {
	switch f.kind {
	case reflect.Int:
		*(*int)(v) = int(n)
	case reflect.Int8:
		*(*int8)(v) = int8(n)
	case reflect.Int16:
		*(*int16)(v) = int16(n)
	case reflect.Int32:
		*(*int32)(v) = int32(n)
	case reflect.Int64:
		*(*int64)(v) = n
	case reflect.Uint:
		*(*uint)(v) = uint(n)
	case reflect.Uint8:
		*(*uint8)(v) = uint8(n)
	case reflect.Uint16:
		*(*uint16)(v) = uint16(n)
	case reflect.Uint32:
		*(*uint32)(v) = uint32(n)
	default:
		*(*uint64)(v) = uint64(n)
	}
}

func (f *plainField) signed() bool { return f.kind >= reflect.Int && f.kind <= reflect.Int64 }

// appendMapLen writes a map header as msgpack does.
func appendMapLen(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x80|byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
}

// appendInt writes n in its shortest msgpack form, as msgpack's compact
// integers do.
func appendInt(b []byte, n int64) []byte {
	switch {
	case n >= 0:
		return appendUint(b, uint64(n))
	case n >= -32:
		return append(b, byte(n))
	case n >= -1<<7:
		return append(b, 0xd0, byte(n))
	case n >= -1<<15:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= -1<<31:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

// append writes the struct at v. keys is scratch space for sorting map
// keys; append returns it for reuse.
func (p *plainData) append(b []byte, v unsafe.Pointer, keys []string) ([]byte, []string) {
	n := 0
	for i := range p.fields {
		f := &p.fields[i]
		if !f.omitEmpty || !f.empty(unsafe.Add(v, f.off)) {
			n++
		}
	}
	b = appendMapLen(b, n)
	for i := range p.fields {
		f := &p.fields[i]
		fv := unsafe.Add(v, f.off)
		if f.omitEmpty && f.empty(fv) {
			continue
		}
		b = appendString(b, f.name)
		switch f.kind {
		case reflect.String:
			b = appendString(b, *(*string)(fv))
		case reflect.Bool:
			if *(*bool)(fv) {
				b = append(b, 0xc3)
			} else {
				b = append(b, 0xc2)
			}
		case reflect.Map:
			m := *(*map[string]string)(fv)
			if m == nil {
				b = appendNil(b)
				continue
			}
			b = appendMapLen(b, len(m))
			keys = keys[:0]
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				b = appendString(appendString(b, k), m[k])
			}
			clear(keys)
		default:
			if f.signed() {
				b = appendInt(b, f.int(fv))
			} else {
				b = appendUint(b, uint64(f.int(fv)))
			}
		}
	}
	return b, keys
}

// read decodes data into the zero struct at v and reports whether it could;
// when it could not, v may be partly set and must be zeroed again. The
// strings it sets are substrings of dataStr, a copy of data, or if that is
// empty of a copy made when the first string is found.
func (p *plainData) read(data []byte, dataStr string, v unsafe.Pointer) bool {
	r := reader{b: data}
	str := func() string {
		q := r.strBytes()
		if len(q) == 0 {
			return ""
		}
		if len(dataStr) != len(data) {
			dataStr = string(data)
		}
		return dataStr[r.off-len(q) : r.off]
	}
	n := r.mapLen()
	for i := 0; i < n && r.err == nil; i++ {
		name := r.strBytes()
		var f *plainField
		for j := range p.fields {
			if string(name) == p.fields[j].name {
				f = &p.fields[j]
				break
			}
		}
		if f == nil {
			return false
		}
		fv := unsafe.Add(v, f.off)
		switch f.kind {
		case reflect.String:
			*(*string)(fv) = str()
		case reflect.Bool:
			switch r.byte() {
			case 0xc2:
				*(*bool)(fv) = false
			case 0xc3:
				*(*bool)(fv) = true
			default:
				return false
			}
		case reflect.Map:
			if r.nilNext() {
				*(*map[string]string)(fv) = nil
				continue
			}
			k := r.mapLen()
			if r.err != nil || k > (len(r.b)-r.off)/2 {
				return false
			}
			m := *(*map[string]string)(fv)
			if m == nil {
				m = make(map[string]string, k)
				*(*map[string]string)(fv) = m
			}
			for range k {
				key := str()
				m[key] = str()
			}
		default:
			x, ok := r.anyInt()
			if !ok {
				return false
			}
			f.setInt(fv, x)
		}
	}
	return r.err == nil && r.off == len(data)
}

// mapLen reads a map header, or fails.
func (r *reader) mapLen() int {
	n, _ := r.header(0x80, 0xde, 0xdf, "a map", "")
	return n
}

// anyInt reads any msgpack integer as msgpack's decoder does for integer
// fields: the bits of its value as an int64.
func (r *reader) anyInt() (int64, bool) {
	c := r.byte()
	switch {
	case r.err != nil:
		return 0, false
	case c <= 0x7f || c >= 0xe0:
		return int64(int8(c)), true
	}
	var p []byte
	switch c {
	case 0xcc, 0xd0:
		p = r.bytes(1)
	case 0xcd, 0xd1:
		p = r.bytes(2)
	case 0xce, 0xd2:
		p = r.bytes(4)
	case 0xcf, 0xd3:
		p = r.bytes(8)
	default:
		return 0, false
	}
	if r.err != nil {
		return 0, false
	}
	switch c {
	case 0xcc:
		return int64(p[0]), true
	case 0xd0:
		return int64(int8(p[0])), true
	case 0xcd:
		return int64(binary.BigEndian.Uint16(p)), true
	case 0xd1:
		return int64(int16(binary.BigEndian.Uint16(p))), true
	case 0xce:
		return int64(binary.BigEndian.Uint32(p)), true
	case 0xd2:
		return int64(int32(binary.BigEndian.Uint32(p))), true
	}
	return int64(binary.BigEndian.Uint64(p)), true
}

// sample returns a new value of t with every field set: strings to str,
// bools to true, maps to m, numbers to n. The plans check themselves
// against their library on it.
func sample(t reflect.Type, fields []plainField, str string, m map[string]string, n int64) reflect.Value {
	full := reflect.New(t)
	for _, f := range fields {
		v := unsafe.Add(full.UnsafePointer(), f.off)
		switch f.kind {
		case reflect.String:
			*(*string)(v) = str
		case reflect.Bool:
			*(*bool)(v) = true
		case reflect.Map:
			*(*map[string]string)(v) = m
		default:
			f.setInt(v, n)
		}
	}
	return full
}

// agrees checks the plan against msgpack itself on the zero value and on
// one with every field set, in case msgpack was taught another encoding
// for the type (msgpack.Register); it reports whether both give the same
// bytes and read them back to the same values.
func (p *plainData) agrees(t reflect.Type) bool {
	full := sample(t, p.fields, "s", map[string]string{"b": "2", "a": ""}, 1000)
	for _, v := range []reflect.Value{reflect.New(t), full} {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.SetSortMapKeys(true)
		enc.UseCompactInts(true)
		if err := enc.Encode(v.Interface()); err != nil {
			return false
		}
		mine, _ := p.append(nil, v.UnsafePointer(), nil)
		if !bytes.Equal(mine, buf.Bytes()) {
			return false
		}
		back := reflect.New(t)
		if !p.read(mine, "", back.UnsafePointer()) || !reflect.DeepEqual(back.Interface(), v.Interface()) {
			return false
		}
		viaMsgpack := reflect.New(t)
		if err := msgpack.Unmarshal(mine, viaMsgpack.Interface()); err != nil || !reflect.DeepEqual(viaMsgpack.Interface(), v.Interface()) {
			return false
		}
	}
	return true
}
