package ebb_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/ebbtype"
)

// stagingTx stands in for a database transaction: what is enqueued in it is
// stored only on commit.
type stagingTx struct{ staged []*ebbtype.TaskInfo }

// txDriver is SQLite behind the transactional seam, the way a Postgres
// driver would sit there: EnqueueTx writes into the caller's transaction.
type txDriver struct {
	ebbdriver.Driver
	calls int
}

func (d *txDriver) EnqueueTx(_ context.Context, tx *stagingTx, tasks []*ebbtype.TaskInfo) ([]ebbdriver.EnqueueResult, error) {
	d.calls++
	tx.staged = append(tx.staged, tasks...)
	out := make([]ebbdriver.EnqueueResult, len(tasks))
	for i, t := range tasks {
		out[i].ID = t.ID
	}
	return out, nil
}

func (d *txDriver) CompleteTx(ctx context.Context, _ *stagingTx, cs []ebbdriver.Completion) ([]error, error) {
	return d.Complete(ctx, cs)
}

func (d *txDriver) commit(ctx context.Context, tx *stagingTx) error {
	_, err := d.Enqueue(ctx, tx.staged)
	return err
}

var _ ebbdriver.TxDriver[*stagingTx] = (*txDriver)(nil)

func openSQLite(t *testing.T) ebbdriver.Driver {
	t.Helper()
	drv, err := ebbsqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drv.Close() })
	return drv
}

type txArgs struct{ Order int }

func (txArgs) Kind() string { return "order.confirm" }

// TestEnqueueTx: the transactional path validates and fills in tasks exactly
// as Enqueue does and hands them to the driver's EnqueueTx with the caller's
// transaction; nothing is stored until that transaction commits.
func TestEnqueueTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	drv := &txDriver{Driver: openSQLite(t)}
	client, err := ebb.NewClient(drv, nil)
	if err != nil {
		t.Fatal(err)
	}
	tx := &stagingTx{}
	res, err := ebb.EnqueueTx(ctx, client, tx, txArgs{Order: 7}, &ebb.EnqueueOpts{Queue: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if drv.calls != 1 || len(tx.staged) != 1 || tx.staged[0].Queue != "orders" || tx.staged[0].Kind != "order.confirm" ||
		tx.staged[0].MaxAttempts != ebb.MaxAttemptsDefault || tx.staged[0].ID != res.ID {
		t.Fatalf("EnqueueTx staged %+v (%d calls)", tx.staged, drv.calls)
	}
	if _, err := client.Task(ctx, res.ID); !errors.Is(err, ebb.ErrTaskNotFound) {
		t.Fatalf("before commit: Task = %v, want not found", err)
	}
	if err := drv.commit(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Task(ctx, res.ID); err != nil || got.State != ebb.StateQueued {
		t.Fatalf("after commit: %+v, %v", got, err)
	}
	// Bad input is refused before the driver sees it, as for Enqueue.
	if _, err := ebb.EnqueueTx(ctx, client, tx, txArgs{}, &ebb.EnqueueOpts{Queue: "no spaces"}); !errors.Is(err, ebb.ErrInvalidOpts) || drv.calls != 1 {
		t.Fatalf("bad queue: %v (%d calls)", err, drv.calls)
	}
}

// TestEnqueueTxUnsupported: brokers that commit on their own say so, and a
// transaction of the wrong type is refused rather than ignored.
func TestEnqueueTxUnsupported(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	plain, _ := ebb.NewClient(openSQLite(t), nil)
	if _, err := ebb.EnqueueTx(ctx, plain, &stagingTx{}, txArgs{}, nil); !errors.Is(err, ebb.ErrTxUnsupported) {
		t.Fatalf("SQLite: %v, want ErrTxUnsupported", err)
	}
	tx, _ := ebb.NewClient(&txDriver{Driver: openSQLite(t)}, nil)
	if _, err := ebb.EnqueueManyTx(ctx, tx, "not a transaction", []ebb.EnqueueParams{{Args: txArgs{}}}); !errors.Is(err, ebb.ErrTxUnsupported) {
		t.Fatalf("wrong transaction type: %v, want ErrTxUnsupported", err)
	}
}
