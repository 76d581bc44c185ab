package ebbsqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/internal/sqlcommon"
	"github.com/ebbq/ebb/ebbtype"
)

// enqueueGroupMax bounds how many calls one transaction commits together,
// so one commit's latency stays bounded under any number of producers.
const enqueueGroupMax = 256

// Concurrent Enqueue calls commit together (groupcommit): SQLite has one
// writer per file, and most of a single-task enqueue is the transaction
// around it: BEGIN, the queue's counters, COMMIT.
type enqueueCall struct {
	tasks   []*ebbtype.TaskInfo
	enc     []encoded
	results []ebbdriver.EnqueueResult
	ready   map[string]int64 // queues this call made ready, for the notifier
	err     error
}

// commitGroup stores the calls' tasks in one transaction. If it fails and
// more than one call shares it, each call is retried alone, so one call's
// bad task cannot fail another's; a failure that is no call's doing (the
// lock held past the busy timeout, a closed driver) is everyone's at once.
func (d *Driver) commitGroup(ctx context.Context, group []*enqueueCall) {
	err := d.writeTx(ctx, "enqueue", func(tx *sql.Tx) error { return d.enqueueTx(ctx, tx, group) })
	if err != nil && len(group) > 1 && !isBusy(err) && !errors.Is(err, errClosed) {
		for _, c := range group {
			d.commitGroup(ctx, []*enqueueCall{c})
		}
		return
	}
	for _, c := range group {
		if err != nil {
			c.results, c.ready, c.err = nil, nil, err
			continue
		}
		d.notify.queued(c.ready)
	}
}

// enqueueTx inserts the tasks of every call of group and counts them in
// their queues' rows. It may run more than once (writeTx retries), so it
// resets what it reports.
func (d *Driver) enqueueTx(ctx context.Context, tx *sql.Tx, group []*enqueueCall) error {
	insert := tx.StmtContext(ctx, d.stmts.insertTask)
	var holder, setKey *sql.Stmt
	type counts struct{ stored, ready int64 }
	queues := map[string]*counts{}
	for _, c := range group {
		c.results = make([]ebbdriver.EnqueueResult, len(c.tasks))
		c.ready = map[string]int64{}
		for i, t := range c.tasks {
			if t.UniqueKey != "" {
				if holder == nil {
					holder = tx.StmtContext(ctx, d.stmts.uniqueHolder)
					setKey = tx.StmtContext(ctx, d.stmts.uniqueSet)
				}
				id, held, err := uniqueHeld(ctx, holder, t)
				if err != nil {
					return err
				}
				if held {
					c.results[i] = ebbdriver.EnqueueResult{ID: id, Duplicate: true}
					continue
				}
			}
			r, err := insert.ExecContext(ctx, t.ID, t.Queue, t.Kind, nullBytes(t.EncodedArgs), c.enc[i].headers,
				t.Priority, sqlcommon.NS(t.RunAt), t.Attempt, t.MaxAttempts, int64(t.Timeout), int64(t.Retention),
				nullStr(t.UniqueKey), int64(t.UniqueTTL), string(c.enc[i].state), sqlcommon.NS(t.EnqueuedAt),
				c.enc[i].errors, nullBytes(t.Result))
			if err != nil {
				return fmt.Errorf("inserting task %s: %w", t.ID, err)
			}
			if n, err := r.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				c.results[i] = ebbdriver.EnqueueResult{ID: t.ID, Duplicate: true}
				continue
			}
			c.results[i] = ebbdriver.EnqueueResult{ID: t.ID}
			if t.UniqueKey != "" {
				var exp any // NULL: held until terminal
				if t.UniqueTTL > 0 {
					exp = uniqueExpiry(t)
				}
				if _, err := setKey.ExecContext(ctx, t.Queue, t.UniqueKey, t.ID, exp); err != nil {
					return fmt.Errorf("taking unique key %q: %w", t.UniqueKey, err)
				}
			}
			q := queues[t.Queue]
			if q == nil {
				q = &counts{}
				queues[t.Queue] = q
			}
			q.stored++
			if c.enc[i].state == ebbtype.StateQueued {
				q.ready = 1
				c.ready[t.Queue] = 0
			}
		}
	}
	// One statement per queue creates its row, counts what was stored and,
	// when something became Queued, advances ready_seq.
	add := tx.StmtContext(ctx, d.stmts.queueAddReady)
	for name, q := range queues {
		var seq int64
		if err := add.QueryRowContext(ctx, name, q.stored, q.ready).Scan(&seq); err != nil {
			return fmt.Errorf("counting tasks enqueued in queue %q: %w", name, err)
		}
		for _, c := range group {
			if _, ok := c.ready[name]; ok {
				c.ready[name] = seq
			}
		}
	}
	return nil
}
