package versions_test

import (
	"context"
	"testing"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// AppV1 is the data of version 1; AppV2 drops Replicas and adds Region.
type AppV1 struct {
	Name     string
	Replicas int
}

type AppV2 struct {
	Name   string
	Region string
}

// TestDataGainsAndLosesFields saves a v1 state with v1's data type, loads
// it with v2's (both codecs), and fixes the data up while migrating.
func TestDataGainsAndLosesFields(t *testing.T) {
	nop1 := func(context.Context, *AppV1) error { return nil }
	v1 := must(stepflow.New("app/v1", combinators.Do("a", nop1), combinators.Do("b", nop1)))
	st, err := v1.Apply(context.Background(), v1.Start(AppV1{Name: "shop", Replicas: 3}))
	require.NoError(t, err)

	var region string
	v2 := must(stepflow.New("app/v2",
		combinators.Do("a", func(context.Context, *AppV2) error { return nil }),
		combinators.Do("b", func(_ context.Context, d *AppV2) error { region = d.Region; return nil })))
	reg, err := versions.New([]*stepflow.Flow[AppV2]{v2}, nil,
		versions.NewMigration[AppV2]("app/v1", "app/v2").Source(versions.Structure(v1)).
			Fix(func(_ stepflow.State[AppV2], to *stepflow.State[AppV2]) error {
				if to.Data.Region == "" {
					to.Data.Region = "eu-west-1"
				}
				return nil
			}))
	require.NoError(t, err)

	for _, enc := range []struct {
		c1 codec.Codec[AppV1]
		c2 codec.Codec[AppV2]
	}{{codec.Msgpack[AppV1](nil), codec.Msgpack[AppV2](nil)}, {codec.JSON[AppV1](nil), codec.JSON[AppV2](nil)}} {
		b, err := enc.c1.Encode(st)
		require.NoError(t, err)
		loaded, err := enc.c2.Decode(b)
		require.NoError(t, err, enc.c2.Name())
		assert.Equal(t, AppV2{Name: "shop"}, loaded.Data, "unknown fields are dropped, new ones are zero")

		next, err := reg.Apply(context.Background(), loaded)
		require.NoError(t, err)
		assert.Equal(t, "app/v2", next.Version)
		assert.Equal(t, "eu-west-1", region)
		assert.Equal(t, AppV2{Name: "shop", Region: "eu-west-1"}, next.Data)
	}
}
