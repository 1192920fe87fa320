package fuzz

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/stepflow-io/go-stepflow/codec"
)

// msgpackState wraps encoded data (the msgpack of Data) in a minimal
// stored/v1 state shell: [version, id, status, steps, wakeAt, root, data].
func msgpackState(data []byte) []byte {
	b := []byte{0xf5, 'm', 1, 0x97, 0xa9}
	b = append(b, "stored/v1"...)
	b = append(b, 0xa0, 0, 0, 0xc0, 0x91, 0xa0, 0xc4, byte(len(data)))
	return append(b, data...)
}

// TestDecodeMemoryBound decodes small hostile inputs whose length fields
// claim far more elements than they hold. Decoding must fail without
// allocating out of proportion to the size limit: a store that accepts
// states up to MaxSize must not be made to allocate gigabytes by one.
func TestDecodeMemoryBound(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
	}{
		{"state fields", []byte{0xf5, 'm', 1, 0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"frame children", []byte{0xf5, 'm', 1, 0x97, 0xa1, 'v', 0xa0, 0, 0, 0xc0, 0x92, 0xa0, 0xdd, 0, 0x10, 0, 0}},
		// Data{Tags: <1M strings>}: the data is decoded by reflection,
		// which pre-allocates what the length claims.
		{"data slice", msgpackState([]byte{0x81, 0xa4, 't', 'a', 'g', 's', 0xdd, 0x00, 0x0f, 0x42, 0x40, 0xa1, 'a'})},
		// Data{Labels: <1M entries>}.
		{"data map", msgpackState([]byte{0x81, 0xa6, 'l', 'a', 'b', 'e', 'l', 's', 0xdf, 0x00, 0x0f, 0x42, 0x40, 0xa1, 'a', 0xa1, 'b'})},
	}
	c := codec.Msgpack[Data](&codec.Options{MaxSize: fuzzMaxSize})
	limit := uint64(allocFactor*fuzzMaxSize + 64<<10)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := c.Decode(tt.input)
			runtime.ReadMemStats(&after)
			assert.Error(t, err)
			used := after.TotalAlloc - before.TotalAlloc
			assert.LessOrEqual(t, used, limit, "decoding %d hostile bytes allocated %d bytes (size limit %d)", len(tt.input), used, fuzzMaxSize)
		})
	}
}
