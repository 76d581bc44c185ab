package ebb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ebbq/ebb/ebbdriver"
)

// handlerRunKey carries, in a handler's context, what CompleteTx needs: the
// worker's driver and clock and the attempt the handler runs.
type handlerRunKey struct{}

type handlerRun struct {
	w          *Worker
	queue, id  string
	token      string
	completeTx atomic.Bool // CompleteTx stored the outcome in the handler's transaction
}

// ErrNotInHandler means CompleteTx was called with a context that is not a
// handler's (or of another task than the one named).
var ErrNotInHandler = errors.New("ebb: CompleteTx needs the context a worker passed to the task's handler")

// CompleteTx records the task's success, with result as its stored result,
// inside the handler's own database transaction tx: what the handler writes
// in tx and the task's completion commit together or not at all. Call it
// from the handler with the context and task the worker passed, then commit
// tx, then return nil. The worker then stores no outcome of its own.
//
// TTx is the transaction type of the worker's driver (pgx.Tx for
// ebbpostgres.Driver, *sql.Tx for its SQL() form); other drivers report
// ErrTxUnsupported. If tx rolls back, nothing was recorded: return the
// error and the attempt is retried as usual. A handler that returns nil
// after a rollback leaves the task running until its lease expires; it is
// then rescued and run again, never lost. The completion is fenced like any
// other: if the worker lost the lease meanwhile, CompleteTx reports
// ErrLeaseLost and the caller should roll back.
func CompleteTx[TTx any](ctx context.Context, tx TTx, task *TaskInfo, result any) error {
	run, _ := ctx.Value(handlerRunKey{}).(*handlerRun)
	if run == nil || task == nil || task.ID != run.id {
		return ErrNotInHandler
	}
	txd, ok := run.w.driver.(ebbdriver.TxDriver[TTx])
	if !ok {
		return fmt.Errorf("ebb: complete in a %T transaction: %w (the %s driver commits on its own; return the result instead)", tx, ErrTxUnsupported, run.w.driver.Name())
	}
	encoded, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("ebb: result of type %T cannot be stored as JSON: %w", result, err)
	}
	errs, err := txd.CompleteTx(ctx, tx, []ebbdriver.Completion{{Queue: run.queue, ID: run.id, LeaseToken: run.token,
		Outcome: ebbdriver.OutcomeSucceeded, Result: encoded, Now: run.w.clock.Now()}})
	if err != nil {
		return fmt.Errorf("ebb: completing task %s in a transaction: %w", run.id, err)
	}
	if errs[0] != nil {
		return fmt.Errorf("ebb: completing task %s in a transaction: %w", run.id, errs[0])
	}
	run.completeTx.Store(true)
	return nil
}
