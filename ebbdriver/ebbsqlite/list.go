package ebbsqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ebbq/ebb/ebbdriver/internal/sqlcommon"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// TaskList's queries. The window is the next ScanLimit ids below the
// cursor, walked down the id index; the matches are looked up by rowid from
// it. CROSS JOIN keeps SQLite from driving the join from the tasks table
// (through a state's partial index, say), which could visit every task of
// that state whatever the ScanLimit. The windows differ only in the cursor
// term, which must be absent at the start for the index search to stay a
// range: a term true for an empty cursor (an OR) would walk the whole index
// from its top on every page. Parameters: ?1 the cursor, ?2 the ScanLimit;
// for the match query ?3 queue, ?4 state and ?5 kind (empty for any) and ?6
// the Limit; for the count query ?3 the last match returned (empty when the
// Limit was not reached), above which it counts the ids the call examined.
const (
	listWindowFirst = `SELECT rowid AS r, id AS w FROM tasks ORDER BY id DESC LIMIT ?2`
	listWindowNext  = `SELECT rowid AS r, id AS w FROM tasks WHERE id < ?1 ORDER BY id DESC LIMIT ?2`

	listMatchSQL = `SELECT ` + taskCols + ` FROM (%s) AS win CROSS JOIN tasks ON tasks.rowid = win.r
		WHERE (?3 = '' OR queue = ?3) AND (?4 = '' OR state = ?4) AND (?5 = '' OR kind = ?5)
		ORDER BY win.w DESC LIMIT ?6`
	listScannedSQL = `SELECT count(*), min(w) FROM (%s) WHERE w >= ?3`
)

// TaskList pages through tasks newest id first (ids are time-ordered), over
// all queues and states. One call reads at most ScanLimit entries of the id
// index, looks each up and keeps those matching the filters; the cursor is
// the last id examined, so a page continues below it and a task that keeps
// its id is never listed twice.
func (d *Driver) TaskList(ctx context.Context, p ebbdriver.TaskListParams) (*ebbdriver.TaskListResult, error) {
	if p.State != "" && !p.State.Valid() {
		return nil, fmt.Errorf("ebbsqlite: list tasks: unknown state %q; use one of %v: %w", p.State, ebbtype.States(), errBadInput)
	}
	limit, scan := p.Limit, p.ScanLimit
	if limit <= 0 {
		limit = ebbdriver.TaskListLimitDefault
	}
	if scan <= 0 {
		scan = ebbdriver.TaskListScanDefault
	}
	window := listWindowFirst
	if p.Cursor != "" {
		window = listWindowNext
	}
	// One snapshot for both queries, so the count matches the matches.
	tx, err := d.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, d.wrap("listing tasks", err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, fmt.Sprintf(listMatchSQL, window),
		p.Cursor, scan, p.Queue, string(p.State), p.Kind, limit)
	if err != nil {
		return nil, d.wrap("listing tasks", err)
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return nil, d.wrap("listing tasks", err)
	}
	res := &ebbdriver.TaskListResult{Tasks: tasks}
	if res.Tasks == nil {
		res.Tasks = []*ebbtype.TaskInfo{}
	}
	last := ""
	if len(tasks) == limit {
		// The page is full: the call examined the window down to its last
		// match, and the next one continues below it.
		last = tasks[len(tasks)-1].ID
	}
	var lowest sql.NullString
	if err := tx.QueryRowContext(ctx, fmt.Sprintf(listScannedSQL, window), p.Cursor, scan, last).
		Scan(&res.Scanned, &lowest); err != nil {
		return nil, d.wrap("listing tasks", err)
	}
	switch {
	case last != "":
		res.Cursor = last
	case res.Scanned == scan:
		res.Cursor = lowest.String
	}
	return res, nil
}

// TaskRetry makes a Scheduled, Retrying or Dead task Queued now.
func (d *Driver) TaskRetry(ctx context.Context, id string, now time.Time) (ebbtype.State, error) {
	ready := map[string]int64{}
	err := d.writeTx(ctx, "retrying task "+id, func(tx *sql.Tx) error {
		clear(ready)
		var queue, state string
		err := tx.QueryRowContext(ctx, `SELECT queue, state FROM tasks WHERE id = ?1`, id).Scan(&queue, &state)
		if errors.Is(err, sql.ErrNoRows) {
			return ebbtype.ErrTaskNotFound
		}
		if err != nil {
			return err
		}
		switch ebbtype.State(state) {
		case ebbtype.StateScheduled, ebbtype.StateRetrying:
			// run_at moves to now, as for a dead task's retry.
			if _, err := tx.ExecContext(ctx, `UPDATE tasks SET state = 'queued', run_at = ?2 WHERE id = ?1`,
				id, sqlcommon.NS(now)); err != nil {
				return err
			}
		case ebbtype.StateDead:
			where, extra := deadFilter([]string{id})
			if _, err := retryDead(ctx, tx, where, append([]any{queue}, extra...), now); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: task is %s", ebbtype.ErrTaskState, state)
		}
		ready[queue] = 0
		return bumpReady(ctx, tx, d.stmts, ready)
	})
	if err != nil {
		return "", err
	}
	d.notify.queued(ready)
	return ebbtype.StateQueued, nil
}

// TaskDelete deletes a task that is not running, and frees its unique key.
func (d *Driver) TaskDelete(ctx context.Context, id string) error {
	err := d.writeTx(ctx, "deleting task "+id, func(tx *sql.Tx) error {
		var queue, state string
		var key sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT queue, state, unique_key FROM tasks WHERE id = ?1`, id).
			Scan(&queue, &state, &key)
		if errors.Is(err, sql.ErrNoRows) {
			return ebbtype.ErrTaskNotFound
		}
		if err != nil {
			return err
		}
		if ebbtype.State(state) == ebbtype.StateRunning {
			return fmt.Errorf("%w: task is running; cancel it first", ebbtype.ErrTaskState)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tasks WHERE id = ?1`, id); err != nil {
			return err
		}
		if key.Valid {
			if _, err := tx.ExecContext(ctx, `DELETE FROM unique_keys WHERE queue = ?1 AND key = ?2 AND task_id = ?3`,
				queue, key.String, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.notify.finished([]string{id}) // its awaiters learn it is gone
	return nil
}
