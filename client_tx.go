package ebb

import (
	"context"
	"errors"
	"fmt"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// ErrTxUnsupported means the client's broker cannot take part in the
// caller's transaction (Redis, SQLite), or not in one of that type.
var ErrTxUnsupported = errors.New("the broker does not support enqueueing inside a transaction")

// EnqueueTx stores one task inside the caller's database transaction tx:
// the task exists if and only if tx commits, so a task is never sent for a
// row that rolled back. TTx is the transaction type of the client's driver
// (pgx.Tx for a Postgres driver on pgx, *sql.Tx on database/sql). The caller
// commits or rolls back; workers see the task after the commit.
func EnqueueTx[TTx any](ctx context.Context, c *Client, tx TTx, args Args, opts *EnqueueOpts) (*EnqueueResult, error) {
	res, err := EnqueueManyTx(ctx, c, tx, []EnqueueParams{{Args: args, Opts: opts}})
	if err != nil {
		return nil, err
	}
	return &res[0], nil
}

// EnqueueManyTx is EnqueueMany inside the caller's transaction tx.
func EnqueueManyTx[TTx any](ctx context.Context, c *Client, tx TTx, params []EnqueueParams) ([]EnqueueResult, error) {
	txd, ok := c.driver.(ebbdriver.TxDriver[TTx])
	if !ok {
		return nil, fmt.Errorf("ebb: enqueue in a %T transaction: %w (the %s driver commits on its own; use Enqueue)", tx, ErrTxUnsupported, c.driver.Name())
	}
	return c.enqueue(ctx, params, func(ctx context.Context, tasks []*ebbtype.TaskInfo) ([]ebbdriver.EnqueueResult, error) {
		return txd.EnqueueTx(ctx, tx, tasks)
	})
}
