package ebbpostgres

import (
	"context"
	"database/sql"

	"github.com/jackc/pgx/v5"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// EnqueueTx stores tasks inside the caller's pgx transaction: they exist,
// and workers hear of them (NOTIFY is transactional), only if tx commits.
func (d *Driver) EnqueueTx(ctx context.Context, tx pgx.Tx, tasks []*ebbtype.TaskInfo) ([]ebbdriver.EnqueueResult, error) {
	res, err := d.enqueue(ctx, pgxQuerier{tx}, tasks, false)
	if err != nil {
		return nil, d.wrap("enqueue in transaction", err)
	}
	return res, nil
}

// CompleteTx records outcomes inside the caller's pgx transaction, fenced
// by lease token as in Complete: they count only if tx commits.
func (d *Driver) CompleteTx(ctx context.Context, tx pgx.Tx, completions []ebbdriver.Completion) ([]error, error) {
	errs, err := d.complete(ctx, pgxQuerier{tx}, completions, false)
	if err != nil {
		return nil, d.wrap("complete in transaction", err)
	}
	return errs, nil
}

// SQLDriver is the same driver for database/sql users: an
// ebbdriver.TxDriver[*sql.Tx]. The *sql.Tx must come from a *sql.DB opened
// with pgx's stdlib driver ("pgx", github.com/jackc/pgx/v5/stdlib) on the
// same database. A Go type cannot take part in both kinds of transaction, hence
// the second type; both share one pool and one listening connection.
type SQLDriver struct {
	*Driver
}

// SQL returns the driver as an ebbdriver.TxDriver[*sql.Tx], for ebb.NewClient
// and ebb.NewWorker when the application's transactions are *sql.Tx.
func (d *Driver) SQL() *SQLDriver { return &SQLDriver{d} }

// EnqueueTx stores tasks inside the caller's database/sql transaction.
func (d *SQLDriver) EnqueueTx(ctx context.Context, tx *sql.Tx, tasks []*ebbtype.TaskInfo) ([]ebbdriver.EnqueueResult, error) {
	res, err := d.enqueue(ctx, sqlQuerier{tx}, tasks, false)
	if err != nil {
		return nil, d.wrap("enqueue in transaction", err)
	}
	return res, nil
}

// CompleteTx records outcomes inside the caller's database/sql transaction.
func (d *SQLDriver) CompleteTx(ctx context.Context, tx *sql.Tx, completions []ebbdriver.Completion) ([]error, error) {
	errs, err := d.complete(ctx, sqlQuerier{tx}, completions, false)
	if err != nil {
		return nil, d.wrap("complete in transaction", err)
	}
	return errs, nil
}
