package pgstore

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct {
		p, end string
		ok     bool
	}{
		{"ab", "ac", true},
		{"a/", "a0", true},
		{"é", "ê", true},
		{"a\U0010FFFF", "b", true},
		{"a\U0010FFFF\U0010FFFF", "b", true},
		{"\uD7FF", "\uE000", true}, // over the surrogates
		{"\U0010FFFF", "", false},
	} {
		end, ok := prefixEnd(tc.p)
		assert.Equal(t, tc.ok, ok, "%q", tc.p)
		assert.Equal(t, tc.end, end, "%q", tc.p)
		if ok {
			// Every string that starts with p is below end, and end does
			// not start with p.
			for _, s := range []string{tc.p, tc.p + "\U0010FFFF\U0010FFFF", tc.p + "\x00"} {
				assert.Less(t, s, end, "%q", s)
			}
			assert.False(t, strings.HasPrefix(end, tc.p))
		}
	}
}
