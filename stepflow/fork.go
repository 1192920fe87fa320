package stepflow

import (
	"reflect"
)

// This file holds forks: working memories of their own through which a
// node advances several children at the same time (combinators.Parallel
// and ForEach with Goroutines), and Join, which puts their results
// together in a fixed order, so that the next state does not depend on
// which goroutine finished first.

// Fork returns a cursor over this node's frame bound to a working memory
// of its own: a copy of the data (through S's Clone method, or a deep
// copy), a budget of budget calls, and its own record and errors. Advance
// one child (AdvanceActive) or one instance (Instance) through each fork,
// each fork in its own goroutine and each on a different child, then call
// Join with every fork, in the order the children would have run one
// after the other. A fork must not add or remove children: do that after
// Join.
//
// ok is false when this Apply cannot fork: pending signals or an
// at-most-once intent (which forks could not share), or an Apply already
// abandoned. The node then advances its children one after the other.
func (c *Cursor[S]) Fork(budget int) (fork *Cursor[S], ok bool) {
	x := c.x
	if len(x.signals) > 0 || x.intent != "" || x.abort != nil || x.replayed != nil || x.exit != "" {
		return nil, false
	}
	c.own()
	bx := x.flow.pool.Get().(*exec[S])
	bx.parent, bx.id, bx.steps, bx.err = x.parent, x.id, x.steps, x.err
	bx.interceptors, bx.clock = x.interceptors, x.clock
	bx.nowT, bx.nowSet = x.now(), true
	bx.budget = budget
	bx.recs = bx.recBuf[:0]
	bx.data = x.flow.copyData(&x.data)
	return &Cursor[S]{x: bx, n: c.n, f: c.f, parent: c.parent, sc: c.sc, idx: c.idx,
		owned: true, inInst: c.inInst, fOwned: true, forkBudget: int32(budget)}, true
}

// Join puts forks made by Fork back into this cursor's Apply, in the
// order given, and releases them. The data of each fork that made a call
// is merged into the data with merge(dst, src): dst is the data being
// built, src the fork's.
// A nil merge copies each field of a struct the fork changed (compared
// with the data before the forks), later forks winning where two changed
// the same field; for other types, a fork that changed the data replaces
// it. The forks' records, errors and exits are added in the same order.
// It reports how many forks made a call.
func (c *Cursor[S]) Join(forks []*Cursor[S], merge func(dst, src *S)) (calls int) {
	x := c.x
	base := x.data
	err0 := x.err
	for _, fk := range forks {
		if fk == nil {
			continue
		}
		bx := fk.x
		called := bx.budget < fk.budget0()
		switch {
		case !called:
			// Only user code changes the data.
		case merge != nil:
			merge(&x.data, &bx.data)
		default:
			mergeChanged(&x.data, &base, &bx.data)
		}
		x.recs = append(x.recs, bx.recs...)
		x.origins = append(x.origins, bx.origins...)
		if bx.err != err0 {
			x.err = bx.err
		}
		if x.abort == nil {
			x.abort = bx.abort
		}
		if x.exit == "" {
			x.exit = bx.exit
		}
		if x.attention == nil {
			x.attention = bx.attention
		}
		if called {
			calls++
		}
		if bx.callNode != nil {
			x.callStart, x.callEnd, x.callNode = bx.callStart, bx.callEnd, bx.callNode
		}
		x.flow.release(bx)
		fk.x = nil
	}
	return calls
}

// budget0 is the budget the fork was made with, kept in its cursor's
// spare field.
func (c *Cursor[S]) budget0() int { return int(c.forkBudget) }

// copyData returns a copy of *d that shares nothing a step could change
// with it: S's Clone, or a deep copy.
func (f *Flow[S]) copyData(d *S) S {
	if f.clone != nil {
		return f.clone(d)
	}
	var out S
	deepCopy(reflect.ValueOf(&out).Elem(), reflect.ValueOf(d).Elem())
	return out
}

// deepCopy copies src into dst, which has its type, following pointers,
// slices, maps and interfaces, so that the copy shares no memory a step
// could change with the original. Unexported fields are copied as they
// are (a shallow copy): a data type with unexported maps, slices or
// pointers that steps change needs a Clone method.
func deepCopy(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		p := reflect.New(src.Type().Elem())
		deepCopy(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Slice:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			deepCopy(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Map:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		it := src.MapRange()
		for it.Next() {
			k := reflect.New(src.Type().Key()).Elem()
			deepCopy(k, it.Key())
			v := reflect.New(src.Type().Elem()).Elem()
			deepCopy(v, it.Value())
			m.SetMapIndex(k, v)
		}
		dst.Set(m)
	case reflect.Array:
		for i := range src.Len() {
			deepCopy(dst.Index(i), src.Index(i))
		}
	case reflect.Struct:
		dst.Set(src) // unexported fields, shallow
		for i := range src.NumField() {
			if dst.Field(i).CanSet() {
				deepCopy(dst.Field(i), src.Field(i))
			}
		}
	case reflect.Interface:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		v := reflect.New(src.Elem().Type()).Elem()
		deepCopy(v, src.Elem())
		dst.Set(v)
	default:
		dst.Set(src)
	}
}

// mergeChanged copies into dst what src changed compared with base: each
// field of a struct, or the whole value of another type.
func mergeChanged[S any](dst, base, src *S) {
	d, b, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(base).Elem(), reflect.ValueOf(src).Elem()
	if s.Kind() != reflect.Struct {
		if !reflect.DeepEqual(b.Interface(), s.Interface()) {
			*dst = *src
		}
		return
	}
	for i := range s.NumField() {
		if !d.Field(i).CanSet() {
			continue
		}
		if !reflect.DeepEqual(b.Field(i).Interface(), s.Field(i).Interface()) {
			d.Field(i).Set(s.Field(i))
		}
	}
}
