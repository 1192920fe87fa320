package blocks_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/stepflow-io/go-stepflow/internal/blocks"
)

func TestSlicesAreTheirOwn(t *testing.T) {
	b := &blocks.Blocks[int]{Size: 8, Max: 4}
	var got [][]int
	for n := range 6 {
		s := b.Take(n%4 + 1)
		for i := range s {
			assert.Zero(t, s[i])
			s[i] = n
		}
		assert.Equal(t, len(s), cap(s), "capacity cut to length")
		got = append(got, s)
	}
	_ = append(got[0], 99, 99, 99) // must copy, not write into got[1]
	for n, s := range got {
		for _, v := range s {
			assert.Equal(t, n, v, "slice %d", n)
		}
	}
	assert.Len(t, b.Take(5), 5, "past Max: its own allocation")
	var none *blocks.Blocks[int]
	assert.Len(t, none.Take(3), 3)
	var zero blocks.Blocks[int]
	assert.Len(t, zero.Take(3), 3)
	odd := &blocks.Blocks[int]{Size: 2, Max: 4}
	assert.Len(t, odd.Take(3), 3, "longer than a block: its own allocation")
}

func TestOneAllocationPerBlock(t *testing.T) {
	b := &blocks.Blocks[[16]byte]{Size: 64, Max: 8}
	allocs := testing.AllocsPerRun(100, func() {
		for range 8 {
			b.Take(8) // a block of 64 per run
		}
	})
	assert.Equal(t, 1.0, allocs)
}
