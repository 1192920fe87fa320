package index

import "slices"

// chunkMax is the most numbers a chunk of a set holds; a fuller one is
// split in two. Inserting into a chunk moves half of it on average, so a
// chunk is kept small enough (1 KiB) for that move to cost less than the
// binary searches that find the place; and large enough that a set of
// 100,000 ids is a few hundred chunks, which a binary search crosses in
// nine steps.
const chunkMax = 256

// chunkMin is the size below which a chunk is merged with a neighbour
// that has room, so that deletes do not leave a set of tiny chunks.
const chunkMin = chunkMax / 4

// set is an ordered set of entries, ordered by their ids: a list of
// sorted chunks, each chunk's ids all below the next chunk's. It holds
// entry numbers, not ids or pointers, so that the garbage collector never
// scans it, and every comparison reads the id in the index's pages.
//
// A search is a binary search over the chunks' last ids, then one within
// the chunk: O(log n). An insert or a delete adds a move of at most
// chunkMax numbers, and, once every chunkMax/2 inserts, of the chunk list.
type set struct {
	chunks [][]int32
	n      int
}

// search returns where id is or would be: the chunk and the position in
// it. A chunk index of len(s.chunks) means after every id.
func (s *set) search(x *Index, id string) (ci, i int) {
	lo, hi := 0, len(s.chunks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		c := s.chunks[m]
		if x.id(c[len(c)-1]) < id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(s.chunks) {
		return lo, 0
	}
	c := s.chunks[lo]
	a, b := 0, len(c)
	for a < b {
		m := int(uint(a+b) >> 1)
		if x.id(c[m]) < id {
			a = m + 1
		} else {
			b = m
		}
	}
	return lo, a
}

// insert adds entry num, which must not be in the set.
func (s *set) insert(x *Index, num int32) {
	s.n++
	if len(s.chunks) == 0 {
		c := make([]int32, 1, 8)
		c[0] = num
		s.chunks = append(s.chunks, c)
		return
	}
	var ci, i int
	last := s.chunks[len(s.chunks)-1]
	if id := x.id(num); x.id(last[len(last)-1]) < id {
		// After every id, the usual case when ids grow and when an
		// index is built in id order: append to the last chunk, or
		// start a new one when it is full (a split would leave two
		// half-full chunks behind ids that come in order).
		if len(last) == chunkMax {
			c := make([]int32, 1, chunkMax)
			c[0] = num
			s.chunks = append(s.chunks, c)
			return
		}
		ci, i = len(s.chunks)-1, len(last)
	} else {
		ci, i = s.search(x, id)
	}
	c := slices.Insert(s.chunks[ci], i, num)
	if len(c) <= chunkMax {
		s.chunks[ci] = c
		return
	}
	// Split: the upper half moves to a new chunk, with room to grow.
	half := len(c) / 2
	right := make([]int32, len(c)-half, chunkMax)
	copy(right, c[half:])
	s.chunks[ci] = c[:half]
	s.chunks = slices.Insert(s.chunks, ci+1, right)
}

// remove takes entry num out of the set; it reports false if num was not
// in it.
func (s *set) remove(x *Index, num int32) bool {
	ci, i := s.search(x, x.id(num))
	if ci == len(s.chunks) || s.chunks[ci][i] != num {
		return false
	}
	s.n--
	c := slices.Delete(s.chunks[ci], i, i+1)
	switch {
	case len(c) == 0:
		s.chunks = slices.Delete(s.chunks, ci, ci+1)
		return true
	case len(c) < chunkMin && ci+1 < len(s.chunks) && len(c)+len(s.chunks[ci+1]) <= chunkMax:
		s.chunks[ci] = append(c, s.chunks[ci+1]...)
		s.chunks = slices.Delete(s.chunks, ci+1, ci+2)
	case len(c) < chunkMin && ci > 0 && len(s.chunks[ci-1])+len(c) <= chunkMax:
		s.chunks[ci-1] = append(s.chunks[ci-1], c...)
		s.chunks = slices.Delete(s.chunks, ci, ci+1)
	default:
		s.chunks[ci] = c
	}
	return true
}

// cursor walks a set in id order.
type cursor struct {
	s     *set
	ci, i int
}

// seek returns a cursor at the first id after from, or at from too when
// inclusive.
func (s *set) seek(x *Index, from string, inclusive bool) cursor {
	ci, i := s.search(x, from)
	c := cursor{s: s, ci: ci, i: i}
	if !inclusive && c.valid() && x.id(c.num()) == from {
		c.next()
	}
	return c
}

func (c *cursor) valid() bool { return c.ci < len(c.s.chunks) }

// num is the entry at the cursor, which must be valid.
func (c *cursor) num() int32 { return c.s.chunks[c.ci][c.i] }

func (c *cursor) next() {
	c.i++
	if c.i == len(c.s.chunks[c.ci]) {
		c.ci, c.i = c.ci+1, 0
	}
}
