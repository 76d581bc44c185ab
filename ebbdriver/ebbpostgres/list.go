package ebbpostgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ebbq/ebb/ebbdriver/internal/sqlcommon"

	"github.com/jackc/pgx/v5"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// TaskList pages through tasks newest id first (ids are time-ordered), over
// all queues and states. One call walks at most ScanLimit entries of the
// primary key below the cursor and keeps those matching the filters; the
// cursor is the last id examined. The first page has no cursor term at all,
// so both windows are plain backward range scans of the primary key.
func (d *Driver) TaskList(ctx context.Context, p ebbdriver.TaskListParams) (*ebbdriver.TaskListResult, error) {
	if p.State != "" && !p.State.Valid() {
		return nil, fmt.Errorf("ebbpostgres: list tasks: unknown state %q; use one of %v: %w", p.State, ebbtype.States(), errBadInput)
	}
	limit, scan := p.Limit, p.ScanLimit
	if limit <= 0 {
		limit = ebbdriver.TaskListLimitDefault
	}
	if scan <= 0 {
		scan = ebbdriver.TaskListScanDefault
	}
	window := `SELECT id AS w FROM ` + d.t("tasks") + ` WHERE $1::text IS NULL ORDER BY id DESC LIMIT $2`
	cursor := any(nil)
	if p.Cursor != "" {
		window = `SELECT id AS w FROM ` + d.t("tasks") + ` WHERE id < $1::text ORDER BY id DESC LIMIT $2`
		cursor = p.Cursor
	}
	res := &ebbdriver.TaskListResult{Tasks: []*ebbtype.TaskInfo{}}
	err := pgx.BeginTxFunc(ctx, d.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		tasks, err := scanTasks(tx.Query(ctx, `SELECT `+taskCols+` FROM (`+window+`) AS win
			JOIN `+d.t("tasks")+` t ON t.id = win.w
			WHERE ($3 = '' OR queue = $3) AND ($4 = '' OR state = $4) AND ($5 = '' OR kind = $5)
			ORDER BY win.w DESC LIMIT $6`, cursor, scan, p.Queue, string(p.State), p.Kind, limit))
		if err != nil {
			return err
		}
		if tasks != nil {
			res.Tasks = tasks
		}
		last := ""
		if len(tasks) == limit {
			last = tasks[len(tasks)-1].ID
		}
		var lowest sql.NullString
		if err := tx.QueryRow(ctx, `SELECT count(*), min(w) FROM (`+window+`) AS win WHERE w >= $3`,
			cursor, scan, last).Scan(&res.Scanned, &lowest); err != nil {
			return err
		}
		switch {
		case last != "":
			res.Cursor = last
		case res.Scanned == scan:
			res.Cursor = lowest.String
		}
		return nil
	})
	if err != nil {
		return nil, d.wrap("listing tasks", err)
	}
	return res, nil
}

// TaskRetry makes a Scheduled, Retrying or Dead task Queued now.
func (d *Driver) TaskRetry(ctx context.Context, id string, now time.Time) (ebbtype.State, error) {
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		var queue, state string
		err := tx.QueryRow(ctx, `SELECT queue, state FROM `+d.t("tasks")+` WHERE id = $1 FOR UPDATE`, id).Scan(&queue, &state)
		if errors.Is(err, pgx.ErrNoRows) {
			return ebbtype.ErrTaskNotFound
		}
		if err != nil {
			return err
		}
		switch ebbtype.State(state) {
		case ebbtype.StateScheduled, ebbtype.StateRetrying:
			if _, err := tx.Exec(ctx, `UPDATE `+d.t("tasks")+` SET state = 'queued', run_at = $2 WHERE id = $1`, id, sqlcommon.NS(now)); err != nil {
				return err
			}
		case ebbtype.StateDead:
			where, extra := deadFilter([]string{id})
			if _, err := d.retryDead(ctx, tx, where, append([]any{queue}, extra...), now); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: task is %s", ebbtype.ErrTaskState, state)
		}
		return d.notifyTx(ctx, tx, event{K: "q", Q: queue})
	})
	if errors.Is(err, ebbtype.ErrTaskNotFound) || errors.Is(err, ebbtype.ErrTaskState) {
		return "", fmt.Errorf("ebbpostgres: retry task %s: %w", id, err)
	}
	if err != nil {
		return "", d.wrap("retrying task "+id, err)
	}
	return ebbtype.StateQueued, nil
}

// TaskDelete deletes a task that is not running, and frees its unique key.
func (d *Driver) TaskDelete(ctx context.Context, id string) error {
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		var queue, state string
		var key sql.NullString
		err := tx.QueryRow(ctx, `SELECT queue, state, unique_key FROM `+d.t("tasks")+` WHERE id = $1 FOR UPDATE`, id).
			Scan(&queue, &state, &key)
		if errors.Is(err, pgx.ErrNoRows) {
			return ebbtype.ErrTaskNotFound
		}
		if err != nil {
			return err
		}
		if ebbtype.State(state) == ebbtype.StateRunning {
			return fmt.Errorf("%w: task is running; cancel it first", ebbtype.ErrTaskState)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+d.t("tasks")+` WHERE id = $1`, id); err != nil {
			return err
		}
		if key.Valid {
			if _, err := tx.Exec(ctx, `DELETE FROM `+d.t("unique_keys")+` WHERE queue = $1 AND key = $2 AND task_id = $3`,
				queue, key.String, id); err != nil {
				return err
			}
		}
		return d.notifyTx(ctx, tx, event{K: "f", ID: id}) // its awaiters learn it is gone
	})
	if errors.Is(err, ebbtype.ErrTaskNotFound) || errors.Is(err, ebbtype.ErrTaskState) {
		return fmt.Errorf("ebbpostgres: delete task %s: %w", id, err)
	}
	return d.wrap("deleting task "+id, err)
}
