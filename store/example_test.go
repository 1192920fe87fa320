package store_test

import (
	"context"
	"fmt"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
)

// Example shows the store contract a runner relies on: claim under a
// lease, commit with a revision check, and a refused stale write.
func Example() {
	ctx := context.Background()
	s := store.NewMemory()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	_ = s.Create(ctx, store.Record{ID: "p1", Version: "order/v1", Status: stepflow.Running, Blob: []byte("state v1")})

	claimed, _ := s.Claim(ctx, store.Claim{Owner: "runner-a", Now: now, Limit: 10, Lease: 30 * time.Second})
	fmt.Println("claimed:", claimed[0].ID, "revision", claimed[0].Revision, "leased to", claimed[0].Owner)

	again, _ := s.Claim(ctx, store.Claim{Owner: "runner-b", Now: now, Limit: 10, Lease: 30 * time.Second})
	fmt.Println("runner-b gets:", len(again))

	errs, _ := s.Commit(ctx, "runner-a", []store.Write{{
		ID: "p1", Revision: claimed[0].Revision, Status: stepflow.Waiting, Due: now.Add(time.Hour), Blob: []byte("state v2"),
	}})
	fmt.Println("commit refused:", errs != nil)

	errs, _ = s.Commit(ctx, "", []store.Write{{ID: "p1", Revision: 1, Status: stepflow.Done}})
	fmt.Println("stale write:", errs[0])

	rec, _ := s.Load(ctx, "p1")
	fmt.Printf("%s revision %d %s due %s: %s\n", rec.ID, rec.Revision, rec.Status, rec.Due.Format(time.Kitchen), rec.Blob)
	// Output:
	// claimed: p1 revision 1 leased to runner-a
	// runner-b gets: 0
	// commit refused: false
	// stale write: write "p1": stepflow/store: revision conflict
	// p1 revision 2 waiting due 1:00AM: state v2
}
