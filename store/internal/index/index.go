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
	entries []entry          // by number
	free    []int32          // numbers of removed entries, for reuse
	byID    map[string]int32 // entry numbers by id

	all         set // every entry
	quarantined set // quarantined entries
	healthy     map[stepflow.Status]*set
	flows       map[string]*valueSet
	versions    map[string]*valueSet
	kinds       map[string]*valueSet
	positions   map[string]*valueSet
	// posKeys are the keys of positions, sorted, so that the positions
	// below a path are found as one range.
	posKeys []string
}

// entry is one record's fields. The strings other than the id are the
// keys of their value sets, so entries with one value share its bytes.
type entry struct {
	id string
	Fields
	flow string
}

// valueSet is the set of the entries with one value of a field.
type valueSet struct {
	key string
	set
}

// New returns an empty index.
func New() *Index {
	return &Index{
		byID:      map[string]int32{},
		healthy:   map[stepflow.Status]*set{},
		flows:     map[string]*valueSet{},
		versions:  map[string]*valueSet{},
		kinds:     map[string]*valueSet{},
		positions: map[string]*valueSet{},
	}
}

// Grow makes room for n more records, for a caller that knows how many
// it is about to add.
func (x *Index) Grow(n int) {
	x.entries = slices.Grow(x.entries, n)
	if len(x.byID) == 0 {
		x.byID = make(map[string]int32, n)
	}
}

// Len is the number of records in the index.
func (x *Index) Len() int { return x.all.n }

// Set files record id under f, whether it is new or had other fields.
func (x *Index) Set(id string, f Fields) {
	num, ok := x.byID[id]
	if !ok {
		num = x.alloc(id)
		x.all.insert(x, num)
		x.add(num, f)
		return
	}
	e := &x.entries[num]
	if e.Fields == f {
		return // the usual write: a new state where the record stands
	}
	old := e.Fields
	if old.Quarantined != f.Quarantined || !f.Quarantined && old.Status != f.Status {
		x.groupSet(old).remove(x, num)
		x.groupSet(f).insert(x, num)
	}
	// A quarantined record keeps its status, unindexed.
	e.Status, e.Quarantined = f.Status, f.Quarantined
	if old.Version != f.Version {
		if fl := codec.FlowName(f.Version); fl != e.flow {
			x.leave(x.flows, e.flow, num, nil)
			e.flow = x.join(x.flows, fl, num, nil)
		}
		x.leave(x.versions, old.Version, num, nil)
		e.Version = x.join(x.versions, f.Version, num, nil)
	}
	if old.ErrorKind != f.ErrorKind {
		x.leave(x.kinds, old.ErrorKind, num, nil)
		e.ErrorKind = x.join(x.kinds, f.ErrorKind, num, nil)
	}
	if old.Position != f.Position {
		x.leave(x.positions, old.Position, num, &x.posKeys)
		e.Position = x.join(x.positions, f.Position, num, &x.posKeys)
	}
}

// Delete takes record id out of the index, if it is there.
func (x *Index) Delete(id string) {
	num, ok := x.byID[id]
	if !ok {
		return
	}
	e := &x.entries[num]
	x.all.remove(x, num)
	x.groupSet(e.Fields).remove(x, num)
	x.leave(x.flows, e.flow, num, nil)
	x.leave(x.versions, e.Version, num, nil)
	x.leave(x.kinds, e.ErrorKind, num, nil)
	x.leave(x.positions, e.Position, num, &x.posKeys)
	delete(x.byID, id)
	*e = entry{}
	x.free = append(x.free, num)
}

// alloc numbers a new entry for id.
func (x *Index) alloc(id string) int32 {
	var num int32
	if n := len(x.free); n > 0 {
		num, x.free = x.free[n-1], x.free[:n-1]
	} else {
		num = int32(len(x.entries))
		x.entries = append(x.entries, entry{})
	}
	x.entries[num].id = id
	x.byID[id] = num
	return num
}

// add files a new entry under the value sets of f.
func (x *Index) add(num int32, f Fields) {
	e := &x.entries[num]
	e.Status, e.Quarantined = f.Status, f.Quarantined
	x.groupSet(f).insert(x, num)
	e.flow = x.join(x.flows, codec.FlowName(f.Version), num, nil)
	e.Version = x.join(x.versions, f.Version, num, nil)
	e.ErrorKind = x.join(x.kinds, f.ErrorKind, num, nil)
	e.Position = x.join(x.positions, f.Position, num, &x.posKeys)
}

// groupSet is the set of the records with f's status, or of the
// quarantined ones.
func (x *Index) groupSet(f Fields) *set {
	if f.Quarantined {
		return &x.quarantined
	}
	s := x.healthy[f.Status]
	if s == nil {
		s = &set{}
		x.healthy[f.Status] = s
	}
	return s
}

// join adds entry num to the set of value v in m, made if needed, and
// returns the set's key for the entry to keep. Empty values are not
// indexed. keys, when not nil, is m's sorted key list.
func (x *Index) join(m map[string]*valueSet, v string, num int32, keys *[]string) string {
	if v == "" {
		return ""
	}
	vs := m[v]
	if vs == nil {
		vs = &valueSet{key: strings.Clone(v)}
		m[vs.key] = vs
		if keys != nil {
			i, _ := slices.BinarySearch(*keys, vs.key)
			*keys = slices.Insert(*keys, i, vs.key)
		}
	}
	vs.insert(x, num)
	return vs.key
}

// leave takes entry num out of the set of value v in m, and drops the
// set once empty.
func (x *Index) leave(m map[string]*valueSet, v string, num int32, keys *[]string) {
	if v == "" {
		return
	}
	vs := m[v]
	if vs == nil {
		return
	}
	vs.remove(x, num)
	if vs.n > 0 {
		return
	}
	delete(m, v)
	if keys != nil {
		if i, ok := slices.BinarySearch(*keys, v); ok {
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
			e := &x.entries[num]
			if !strings.HasPrefix(e.id, q.IDPrefix) {
				// The walk started at or after the prefix, and ids with
				// it are contiguous: this one is past them all.
				return
			}
			if e.matches(q) && !yield(e.id) {
				return
			}
		}
	}
}

// matches reports whether the entry passes q's conditions on indexed
// fields (store.Match without the id's).
func (e *entry) matches(q Query) bool {
	switch {
	case q.Status != nil && (e.Quarantined || e.Status != *q.Status),
		q.Quarantined && !e.Quarantined,
		q.Version != "" && e.Version != q.Version,
		q.Flow != "" && e.flow != q.Flow,
		q.ErrorKind != "" && e.ErrorKind != q.ErrorKind,
		q.Position != "" && !underPath(e.Position, q.Position):
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
	return m.x.entries[m.h[i].num()].id < m.x.entries[m.h[j].num()].id
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
