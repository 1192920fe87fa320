package codec_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

func TestPeekVersion(t *testing.T) {
	st := stepflow.State[Deploy]{Version: "deploy/v7", ID: "p1", Data: Deploy{App: "web"}}
	for _, c := range []codec.Codec[Deploy]{codec.Msgpack[Deploy](nil), codec.JSON[Deploy](nil)} {
		b, err := c.Encode(st)
		require.NoError(t, err)
		v, err := codec.PeekVersion(b)
		require.NoError(t, err, c.Name())
		assert.Equal(t, "deploy/v7", v)
		for _, cut := range []int{0, 2, 5, len(b) / 2} {
			if _, err := codec.PeekVersion(b[:cut]); err != nil {
				var de *codec.DecodeError
				assert.True(t, errors.As(err, &de), "%s cut at %d: %v", c.Name(), cut, err)
			}
		}
	}
	for _, bad := range []string{"", "x", "\xf5m\x09", `{"stepflow":1}`, `{"state":{}}`, "\xf5m\x01\x97\xa0"} {
		_, err := codec.PeekVersion([]byte(bad))
		var de *codec.DecodeError
		assert.True(t, errors.As(err, &de), "%q: %v", bad, err)
	}
	assert.Equal(t, "deploy", codec.FlowName("deploy/v1"))
	assert.Equal(t, "plain", codec.FlowName("plain"))
}

func FuzzPeekVersion(f *testing.F) {
	b, _ := codec.Msgpack[Deploy](nil).Encode(stepflow.State[Deploy]{Version: "a/v1"})
	f.Add(b)
	f.Add([]byte(`{"stepflow":1,"state":{"version":"a/v1"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := codec.PeekVersion(b)
		if err == nil && v == "" {
			t.Fatal("empty version without an error")
		}
	})
}
