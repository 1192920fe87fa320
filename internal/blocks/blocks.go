// Package blocks hands out small slices cut from larger shared blocks, for
// memory that outlives the call making it and would otherwise take an
// allocation of its own: the new frames of a state, the keys and values a
// store gives its database for one transaction.
//
// Each slice is handed out once and never reused, with its capacity cut
// to its length, so that appending to one copies it rather than writing
// into the slice handed out after it. A slice keeps its whole block alive.
package blocks

// Blocks cuts slices from blocks of Size elements; requests longer than
// Max (or than Size) get an allocation of their own. A zero Blocks, or a
// nil *Blocks, allocates every slice apart.
type Blocks[T any] struct {
	Size, Max int
	free      []T
}

// Take returns n zeroed elements.
func (b *Blocks[T]) Take(n int) []T {
	if b == nil || n > b.Max || n > b.Size {
		return make([]T, n)
	}
	if n > len(b.free) {
		b.free = make([]T, b.Size)
	}
	s := b.free[:n:n]
	b.free = b.free[n:]
	return s
}
