package pgstore_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/store"
	"github.com/stepflow-io/go-stepflow/store/pgstore"
)

// An order and the process that ships it are stored in one transaction:
// both exist, or neither, and the runners hear of the process only once
// the transaction has committed. A runner's Processes.Record builds such a
// record from the process's data; here it is encoded by hand.
func ExampleStore_CreateTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@db.example:5432/shop")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	s := pgstore.New(pool, &pgstore.Options{Schema: "shipping"})
	if err := s.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	blob, err := codec.Msgpack[stepflow.None](nil).Encode(stepflow.State[stepflow.None]{Version: "ship/v2", ID: "ship-order-42"})
	if err != nil {
		log.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO orders (id, total_cents) VALUES ($1, $2)`, "order-42", 1999); err != nil {
			return err
		}
		errs, err := s.CreateTx(ctx, tx, store.Record{ID: "ship-order-42", Status: stepflow.Running, Blob: blob})
		if err != nil {
			return err
		}
		if errs != nil {
			return errs[0] // store.ErrExists: the order is already being shipped
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
