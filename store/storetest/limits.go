package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/store"
)

// RunLimiter runs the conformance tests of a store.Limiter; newLimiter
// returns an empty one.
func RunLimiter(t *testing.T, newLimiter func(t *testing.T) store.Limiter) {
	t.Run("FirstComeFirstServed", func(t *testing.T) { testLimiterQueue(t, newLimiter(t)) })
	t.Run("Rate", func(t *testing.T) { testLimiterRate(t, newLimiter(t)) })
	t.Run("Release", func(t *testing.T) { testLimiterRelease(t, newLimiter(t)) })
	t.Run("StaleWaiters", func(t *testing.T) { testLimiterStale(t, newLimiter(t)) })
}

var limitT0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func acquire(t *testing.T, l store.Limiter, req store.LimitRequest) bool {
	t.Helper()
	ok, err := l.Acquire(context.Background(), req)
	require.NoError(t, err)
	return ok
}

func testLimiterQueue(t *testing.T, l store.Limiter) {
	req := func(holder string, at time.Duration) store.LimitRequest {
		return store.LimitRequest{Resource: "db", Holder: holder, Capacity: 2, Now: limitT0.Add(at)}
	}
	assert.True(t, acquire(t, l, req("a", 0)))
	assert.True(t, acquire(t, l, req("a", time.Second)), "a holder asking again keeps its slot")
	assert.True(t, acquire(t, l, req("b", 1)))
	assert.False(t, acquire(t, l, req("c", 2)), "full")
	assert.False(t, acquire(t, l, req("d", 3)), "full")
	assert.True(t, acquire(t, l, store.LimitRequest{Resource: "other", Holder: "c", Capacity: 1, Now: limitT0}), "another resource")

	require.NoError(t, l.ReleaseSlots(context.Background(), "a"))
	assert.False(t, acquire(t, l, req("d", 4)), "d came after c")
	assert.True(t, acquire(t, l, req("c", 5)), "c is first in the queue")
	assert.False(t, acquire(t, l, req("d", 6)))
	require.NoError(t, l.ReleaseSlots(context.Background(), "b"))
	assert.True(t, acquire(t, l, req("d", 7)))

	hs, err := l.SlotHolders(context.Background(), "", "", 10)
	require.NoError(t, err)
	var names []string
	for _, h := range hs {
		names = append(names, h.Resource+" "+h.Holder)
	}
	assert.Equal(t, []string{"db c", "db d", "other c"}, names)
	hs, err = l.SlotHolders(context.Background(), "db", "c", 1)
	require.NoError(t, err)
	require.Len(t, hs, 1, "paging")
	assert.Equal(t, "d", hs[0].Holder)
	assert.True(t, hs[0].Since.Equal(limitT0.Add(7)), "since %s", hs[0].Since)
}

func testLimiterRate(t *testing.T, l store.Limiter) {
	req := func(holder string, at time.Duration) store.LimitRequest {
		return store.LimitRequest{Resource: "api", Holder: holder, Rate: 2, Per: time.Minute, Now: limitT0.Add(at)}
	}
	assert.True(t, acquire(t, l, req("a", 0)))
	assert.True(t, acquire(t, l, req("b", time.Second)))
	assert.False(t, acquire(t, l, req("c", 2*time.Second)), "two a minute")
	require.NoError(t, l.ReleaseSlots(context.Background(), "a"))
	assert.False(t, acquire(t, l, req("c", 3*time.Second)), "giving a slot back does not give back the rate")
	assert.True(t, acquire(t, l, req("c", time.Minute+time.Millisecond)), "a minute after the first grant")
	assert.False(t, acquire(t, l, req("d", time.Minute+time.Second/2)), "the second grant is still within the minute")
}

func testLimiterRelease(t *testing.T, l store.Limiter) {
	ctx := context.Background()
	req := func(holder string, at time.Duration) store.LimitRequest {
		return store.LimitRequest{Resource: "db", Holder: holder, Capacity: 1, Now: limitT0.Add(at)}
	}
	assert.True(t, acquire(t, l, req("p1|a", 0)))
	assert.False(t, acquire(t, l, req("p1|b", 1)))
	assert.False(t, acquire(t, l, req("p2|a", 2)))
	n, err := l.ReleaseSlotsPrefix(ctx, "p1|")
	require.NoError(t, err)
	assert.Equal(t, 2, n, "a slot and a place in the queue")
	assert.True(t, acquire(t, l, req("p2|a", 3)), "p1's place went with it")
	require.NoError(t, l.ReleaseSlots(ctx, "nobody"))
}

func testLimiterStale(t *testing.T, l store.Limiter) {
	req := func(holder string, at time.Duration) store.LimitRequest {
		return store.LimitRequest{Resource: "db", Holder: holder, Capacity: 1, Now: limitT0.Add(at), Stale: time.Minute}
	}
	assert.True(t, acquire(t, l, req("a", 0)))
	assert.False(t, acquire(t, l, req("gone", time.Second)), "queued, then never asks again")
	assert.False(t, acquire(t, l, req("b", 2*time.Second)))
	require.NoError(t, l.ReleaseSlots(context.Background(), "a"))
	assert.False(t, acquire(t, l, req("b", 30*time.Second)), "gone was seen 29s ago: it keeps its place")
	assert.True(t, acquire(t, l, req("b", 2*time.Minute)), "gone has not asked for two minutes: b goes first")
	assert.False(t, acquire(t, l, req("gone", 3*time.Minute)), "gone asks again: it waits for b")
}
