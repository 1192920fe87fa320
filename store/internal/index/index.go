package index

import (
	"iter"
	"slices"
	"strings"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Fields are what the index keeps of a record: the fields that List
// filters on, besides the id.
type Fields struct {
	// Status is the record's status; Quarantined is true when it has a
	// quarantine reason. A quarantined record is not under its status.
	Status      stepflow.Status
	Quarantined bool
	// Version is the flow version; the index derives the flow from it.
	Version string
	// Position and ErrorKind; "" is indexed nowhere, since no filter asks
	// for it.
	Position  string
	ErrorKind string
}

// Query is a store.Filter without its limit: the caller stops reading
// candidates when it has enough. Its fields mean what the filter's do.
type Query struct {
	Status      *stepflow.Status
	Quarantined bool
	Flow        string
	Version     string
	IDPrefix    string
	Position    string
	ErrorKind   string
	After       string
}

// Index is the secondary index of one store (see the package
// documentation). It is not safe for concurrent use: its store serializes
// the calls, under the lock that serializes its writes.
//
// The zero value is not ready; use New.
type Index struct {
	// Entries are numbered; their ids and their fields are kept in pages
	// of pageSize by number, so that a growing index never copies them,
	// and the fields, which hold no pointers, are never scanned by the
	// garbage collector.
	ids     [][]string
	entries [][]entry
	used    int32   // numbers given out so far
	free    []int32 // numbers of removed entries, for reuse
	// byID has the entry numbers by id, for Set and Delete; nil for a
	// caller that keeps the numbers itself (Add, Update, Remove).
	byID map[string]int32

	all         set // every entry
	quarantined set // quarantined entries
	healthy     map[stepflow.Status]*set
	// The sets of the values of flows, versions, error kinds and
	// positions, by value, and by number in values.
	flows, versions, kinds, positions map[string]*valueSet
	values                            []*valueSet
	freeValues                        []int32
	// posKeys are the keys of positions, sorted, so that the positions
	// below a path are found as one range.
	posKeys []string
}

const (
	pageBits = 10
	pageSize = 1 << pageBits
)

// entry is what the index knows of a record besides its id: its status,
// and the numbers of its values in Index.values (0 for none).
type entry struct {
	status      stepflow.Status
	quarantined bool
	flow        int32
	version     int32
	kind        int32
	position    int32
}

// valueSet is the set of the entries with one value of a field.
type valueSet struct {
	key string
	num int32 // in Index.values
	set
}

// New returns an empty index.
func New() *Index {
	return &Index{
		healthy:   map[stepflow.Status]*set{},
		flows:     map[string]*valueSet{},
		versions:  map[string]*valueSet{},
		kinds:     map[string]*valueSet{},
		positions: map[string]*valueSet{},
		values:    []*valueSet{nil}, // number 0 is no value
	}
}

// Grow makes room for n more records added by Set, for a caller that
// knows how many it is about to add.
func (x *Index) Grow(n int) {
	if len(x.byID) == 0 {
		x.byID = make(map[string]int32, n)
	}
}

// Len is the number of records in the index.
func (x *Index) Len() int { return x.all.n }

func (x *Index) id(num int32) string    { return x.ids[num>>pageBits][num&(pageSize-1)] }
func (x *Index) entry(num int32) *entry { return &x.entries[num>>pageBits][num&(pageSize-1)] }

// value is the value of number v, "" for 0.
func (x *Index) value(v int32) string {
	if v == 0 {
		return ""
	}
	return x.values[v].key
}

// A caller names records either by id, with Set and Delete, or by the
// number Add gives each, with Update and Remove; the second way spares
// the index a map of the ids, for a caller that has its own. An index is
// used one way only.

// Set files record id under f, whether it is new or had other fields.
func (x *Index) Set(id string, f Fields) {
	if num, ok := x.byID[id]; ok {
		x.Update(num, f)
		return
	}
	if x.byID == nil {
		x.byID = map[string]int32{}
	}
	x.byID[id] = x.Add(id, f)
}

// Delete takes record id out of the index, if it is there.
func (x *Index) Delete(id string) {
	if num, ok := x.byID[id]; ok {
		delete(x.byID, id)
		x.Remove(num)
	}
}

// Add files a new record, whose id is not in the index, under f, and
// returns its number.
func (x *Index) Add(id string, f Fields) int32 {
	num := x.alloc(id)
	x.all.insert(x, num)
	e := x.entry(num)
	e.status, e.quarantined = f.Status, f.Quarantined
	x.group(e).insert(x, num)
	e.flow = x.join(x.flows, codec.FlowName(f.Version), num, nil)
	e.version = x.join(x.versions, f.Version, num, nil)
	e.kind = x.join(x.kinds, f.ErrorKind, num, nil)
	e.position = x.join(x.positions, f.Position, num, &x.posKeys)
	return num
}

// Update files record num under f.
func (x *Index) Update(num int32, f Fields) {
	e := x.entry(num)
	if e.status != f.Status || e.quarantined != f.Quarantined {
		if e.quarantined != f.Quarantined || !f.Quarantined {
			x.group(e).remove(x, num)
			e.status, e.quarantined = f.Status, f.Quarantined
			x.group(e).insert(x, num)
		}
		// A quarantined record keeps its status, unindexed.
		e.status = f.Status
	}
	// The usual write leaves the other fields as they were.
	if x.value(e.version) != f.Version {
		if fl := codec.FlowName(f.Version); x.value(e.flow) != fl {
			x.leave(x.flows, e.flow, num, nil)
			e.flow = x.join(x.flows, fl, num, nil)
		}
		x.leave(x.versions, e.version, num, nil)
		e.version = x.join(x.versions, f.Version, num, nil)
	}
	if x.value(e.kind) != f.ErrorKind {
		x.leave(x.kinds, e.kind, num, nil)
		e.kind = x.join(x.kinds, f.ErrorKind, num, nil)
	}
	if x.value(e.position) != f.Position {
		x.leave(x.positions, e.position, num, &x.posKeys)
		e.position = x.join(x.positions, f.Position, num, &x.posKeys)
	}
}

// Remove takes record num out of the index; the number may then be
// given to another record.
func (x *Index) Remove(num int32) {
	e := x.entry(num)
	x.all.remove(x, num)
	x.group(e).remove(x, num)
	x.leave(x.flows, e.flow, num, nil)
	x.leave(x.versions, e.version, num, nil)
	x.leave(x.kinds, e.kind, num, nil)
	x.leave(x.positions, e.position, num, &x.posKeys)
	*e = entry{}
	x.ids[num>>pageBits][num&(pageSize-1)] = ""
	x.free = append(x.free, num)
}

// alloc numbers a new entry for id.
func (x *Index) alloc(id string) int32 {
	var num int32
	if n := len(x.free); n > 0 {
		num, x.free = x.free[n-1], x.free[:n-1]
	} else {
		num = x.used
		x.used++
		if num&(pageSize-1) == 0 {
			x.ids = append(x.ids, make([]string, pageSize))
			x.entries = append(x.entries, make([]entry, pageSize))
		}
	}
	x.ids[num>>pageBits][num&(pageSize-1)] = id
	return num
}

// group is the set of the records with e's status, or of the quarantined
// ones.
func (x *Index) group(e *entry) *set {
	if e.quarantined {
		return &x.quarantined
	}
	s := x.healthy[e.status]
	if s == nil {
		s = &set{}
		x.healthy[e.status] = s
	}
	return s
}

// join adds entry num to the set of value v in m, made if needed, and
// returns the value's number for the entry to keep; "" is not indexed and
// has number 0. keys, when not nil, is m's sorted key list.
func (x *Index) join(m map[string]*valueSet, v string, num int32, keys *[]string) int32 {
	if v == "" {
		return 0
	}
	vs := m[v]
	if vs == nil {
		vs = &valueSet{key: strings.Clone(v)}
		if n := len(x.freeValues); n > 0 {
			vs.num, x.freeValues = x.freeValues[n-1], x.freeValues[:n-1]
			x.values[vs.num] = vs
		} else {
			vs.num = int32(len(x.values))
			x.values = append(x.values, vs)
		}
		m[vs.key] = vs
		if keys != nil {
			i, _ := slices.BinarySearch(*keys, vs.key)
			*keys = slices.Insert(*keys, i, vs.key)
		}
	}
	vs.insert(x, num)
	return vs.num
}

// leave takes entry num out of the set of value number v, of m, and drops
// the set once empty.
func (x *Index) leave(m map[string]*valueSet, v int32, num int32, keys *[]string) {
	if v == 0 {
		return
	}
	vs := x.values[v]
	vs.remove(x, num)
	if vs.n > 0 {
		return
	}
	delete(m, vs.key)
	x.values[v] = nil
	x.freeValues = append(x.freeValues, v)
	if keys != nil {
		if i, ok := slices.BinarySearch(*keys, vs.key); ok {
			*keys = slices.Delete(*keys, i, i+1)
		}
	}
}

// Candidates yields, in id order, the ids of the records whose indexed
// fields match q, after q.After and within q.IDPrefix. It reads the
// smallest of the sets that q's conditions name (see the package
// documentation) and checks the other conditions on each entry. The
// index must not change while the sequence runs.
func (x *Index) Candidates(q Query) iter.Seq[string] {
	return func(yield func(string) bool) {
		sets, ok := x.pick(q)
		if !ok {
			return
		}
		from, inclusive := q.After, false
		if q.IDPrefix > q.After {
			from, inclusive = q.IDPrefix, true
		}
		m := x.merge(sets, from, inclusive)
		for num, ok := m.next(); ok; num, ok = m.next() {
			id := x.id(num)
			if !strings.HasPrefix(id, q.IDPrefix) {
				// The walk started at or after the prefix, and ids with
				// it are contiguous: this one is past them all.
				return
			}
			if x.matches(x.entry(num), q) && !yield(id) {
				return
			}
		}
	}
}

// matches reports whether the entry passes q's conditions on indexed
// fields (store.Match without the id's).
func (x *Index) matches(e *entry, q Query) bool {
	switch {
	case q.Status != nil && (e.quarantined || e.status != *q.Status),
		q.Quarantined && !e.quarantined,
		q.Version != "" && x.value(e.version) != q.Version,
		q.Flow != "" && x.value(e.flow) != q.Flow,
		q.ErrorKind != "" && x.value(e.kind) != q.ErrorKind,
		q.Position != "" && !underPath(x.value(e.position), q.Position):
		return false
	}
	return true
}

// underPath reports whether pos is path or a path below it.
func underPath(pos, path string) bool {
	return strings.HasPrefix(pos, path) && (len(pos) == len(path) || pos[len(path)] == '/')
}

// pick returns the sets to read for q: those of its most selective
// condition, the fewest entries. ok is false when a condition matches no
// entry at all.
func (x *Index) pick(q Query) (sets []*set, ok bool) {
	if q.Status != nil && q.Quarantined {
		return nil, false // a quarantined record has no status to match
	}
	best, bestN := []*set{&x.all}, x.all.n
	consider := func(n int, ss ...*set) {
		if n < bestN {
			best, bestN = ss, n
		}
	}
	if q.Status != nil {
		s := x.healthy[*q.Status]
		if s == nil {
			return nil, false
		}
		consider(s.n, s)
	}
	if q.Quarantined {
		consider(x.quarantined.n, &x.quarantined)
	}
	for _, c := range []struct {
		m map[string]*valueSet
		v string
	}{{x.flows, q.Flow}, {x.versions, q.Version}, {x.kinds, q.ErrorKind}} {
		if c.v == "" {
			continue
		}
		vs := c.m[c.v]
		if vs == nil {
			return nil, false
		}
		consider(vs.n, &vs.set)
	}
	if q.Position != "" {
		ss, n := x.below(q.Position)
		if n == 0 {
			return nil, false
		}
		consider(n, ss...)
	}
	if bestN == 0 {
		return nil, false
	}
	return best, true
}

// below returns the sets of path and of every position below it, and how
// many entries they hold: the key path itself and the range of keys that
// start with path + "/", that is, from path + "/" up to path + "0" ('0'
// follows '/').
func (x *Index) below(path string) (sets []*set, n int) {
	if vs := x.positions[path]; vs != nil {
		sets, n = append(sets, &vs.set), vs.n
	}
	lo, _ := slices.BinarySearch(x.posKeys, path+"/")
	for _, k := range x.posKeys[lo:] {
		if !strings.HasPrefix(k, path) || k[len(path)] != '/' {
			break
		}
		vs := x.positions[k]
		sets, n = append(sets, &vs.set), n+vs.n
	}
	return sets, n
}

// merged walks the union of disjoint sets in id order: a heap of one
// cursor per set, by the id each stands at. With one set it is a plain
// walk of that set.
type merged struct {
	x *Index
	h []cursor
}

func (x *Index) merge(sets []*set, from string, inclusive bool) merged {
	m := merged{x: x, h: make([]cursor, 0, len(sets))}
	for _, s := range sets {
		if c := s.seek(x, from, inclusive); c.valid() {
			m.h = append(m.h, c)
		}
	}
	for i := len(m.h)/2 - 1; i >= 0; i-- {
		m.down(i)
	}
	return m
}

// next returns the entry with the lowest id not yet returned.
func (m *merged) next() (int32, bool) {
	if len(m.h) == 0 {
		return 0, false
	}
	num := m.h[0].num()
	m.h[0].next()
	if !m.h[0].valid() {
		last := len(m.h) - 1
		m.h[0] = m.h[last]
		m.h = m.h[:last]
	}
	if len(m.h) > 1 {
		m.down(0)
	}
	return num, true
}

func (m *merged) less(i, j int) bool {
	return m.x.id(m.h[i].num()) < m.x.id(m.h[j].num())
}

func (m *merged) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(m.h) {
			return
		}
		j := l
		if r := l + 1; r < len(m.h) && m.less(r, l) {
			j = r
		}
		if !m.less(j, i) {
			return
		}
		m.h[i], m.h[j] = m.h[j], m.h[i]
		i = j
	}
}
