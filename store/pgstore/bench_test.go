package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// deployData is a small process's data, for blobs of a realistic size.
type deployData struct {
	Service  string `msgpack:"service"`
	Image    string `msgpack:"image"`
	Replicas int    `msgpack:"replicas"`
}

// BenchmarkCreateMany starts processes in batches of 1,000 with
// CreateMany, as Processes.StartMany does: one statement per batch, with
// blobs of about 120 bytes. It reports processes started per second.
func BenchmarkCreateMany(b *testing.B) {
	s := newStore(b)
	ctx := context.Background()
	blob, err := codec.Msgpack[deployData](nil).Encode(stepflow.State[deployData]{Version: "deploy/v1", ID: "p000000000",
		Data: deployData{Service: "checkout", Image: "registry.example/shop/checkout-service:1.42.0-build7", Replicas: 3}})
	require.NoError(b, err)
	const batch = 1000
	recs := make([]store.Record, batch)
	n := 0
	createBatch := func() {
		now := time.Now()
		for j := range recs {
			recs[j] = store.Record{ID: fmt.Sprintf("p%09d", n+j), Version: "deploy/v1", Status: stepflow.Running,
				Due: now, Updated: now, Blob: blob}
		}
		errs, err := s.CreateMany(ctx, recs)
		if err != nil || errs != nil {
			b.Fatalf("CreateMany: %v %v", err, errs)
		}
		n += batch
	}
	// One batch before the clock starts, which prepares the statement on
	// the pool's connection.
	createBatch()
	timed := 0
	for b.Loop() {
		createBatch()
		timed += batch
	}
	b.ReportMetric(float64(timed)/b.Elapsed().Seconds(), "starts/s")
	b.ReportMetric(float64(len(blob)), "blob-bytes")
}
