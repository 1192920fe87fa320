package codec

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFixBinHeaderMatchesAppendBin(t *testing.T) {
	// Encode writes the data after a 2-byte placeholder header and fixes
	// it afterwards; the result must be what appendBin writes, whatever
	// header width the length needs.
	prefix := []byte{0x93, 0x01, 0x02}
	for _, n := range []int{0, 1, 255, 256, 65535, 65536, 70000} {
		data := bytes.Repeat([]byte{0xab}, n)
		b := appendBinHeader(append([]byte(nil), prefix...), 0)
		b = append(b, data...)
		b = append(fixBinHeader(b, len(prefix)), 0xc0)
		want := append(appendBin(append([]byte(nil), prefix...), data), 0xc0)
		require.Equal(t, want, b, "n=%d", n)
	}
}
