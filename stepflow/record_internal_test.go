package stepflow

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// naiveAppend is what appendBounded must return, computed the slow way.
func naiveAppend(old, add []Record, limit int) []Record {
	all := append(slices.Clone(old), add...)
	return slices.Clone(all[max(0, len(all)-limit):])
}

func recs(from, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Seq: uint64(from + i), Path: fmt.Sprintf("s%d", from+i)}
	}
	return out
}

// TestAppendBoundedProperty grows records from random earlier states, as
// a process whose older states are applied again would, through
// appendBounded or recordSlot, and checks every
// result against the naive computation and every earlier result against
// its snapshot: sharing blocks must never change what a state shows.
func TestAppendBoundedProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		limit := rapid.IntRange(1, 40).Draw(t, "limit")
		states := [][]Record{nil}
		snaps := [][]Record{nil}
		seq := 0
		for range rapid.IntRange(1, 120).Draw(t, "steps") {
			from := rapid.IntRange(0, len(states)-1).Draw(t, "from")
			// Mostly extend the newest state, as a live process does.
			if rapid.IntRange(0, 3).Draw(t, "older") != 0 {
				from = len(states) - 1
			}
			n := rapid.IntRange(1, 3).Draw(t, "n")
			if rapid.IntRange(0, 9).Draw(t, "many") == 0 {
				n = rapid.IntRange(1, 2*limit+2).Draw(t, "n-many")
			}
			add := recs(seq, n)
			seq += n
			var got []Record
			if n == 1 && rapid.Bool().Draw(t, "slot") {
				// recordSlot, as a straight step records: the slot is
				// zero, and the caller writes the record there.
				var r *Record
				got, r = recordSlot(states[from], limit)
				if *r != (Record{}) {
					t.Fatalf("recordSlot gave a used slot: %v", *r)
				}
				*r = add[0]
			} else {
				got = appendBounded(states[from], add, limit)
			}
			want := naiveAppend(states[from], add, limit)
			if !slices.Equal(got, want) {
				t.Fatalf("append %d to state %d (len %d), limit %d: got %v, want %v", n, from, len(states[from]), limit, got, want)
			}
			states = append(states, got)
			snaps = append(snaps, slices.Clone(got))
			for i := range states {
				if !slices.Equal(states[i], snaps[i]) {
					t.Fatalf("state %d changed after a later append", i)
				}
			}
		}
	})
}

// TestAppendBoundedConcurrent extends one state from many goroutines at
// once (run with -race): exactly the results a copy would give, and the
// shared state unchanged.
func TestAppendBoundedConcurrent(t *testing.T) {
	base := appendBounded(nil, recs(0, 3), 32) // a block with free slots
	snap := slices.Clone(base)
	const n = 8
	got := make([][]Record, n)
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[g] = appendBounded(base, recs(100*(g+1), 1), 32)
		}()
	}
	wg.Wait()
	assert.Equal(t, snap, base)
	for g := range n {
		require.Equal(t, naiveAppend(snap, recs(100*(g+1), 1), 32), got[g], "goroutine %d", g)
	}
}

// TestAppendBoundedForeignCapacity: spare capacity Apply did not allocate
// (a caller's slice) is never written.
func TestAppendBoundedForeignCapacity(t *testing.T) {
	backing := make([]Record, 2, 10)
	copy(backing, recs(0, 2))
	spare := backing[:10]
	spare[2] = Record{Path: "caller's"}
	got := appendBounded(backing, recs(2, 1), 32)
	assert.Equal(t, "caller's", spare[2].Path)
	assert.Equal(t, naiveAppend(backing, recs(2, 1), 32), got)
}
