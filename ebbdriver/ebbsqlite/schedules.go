package ebbsqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ebbq/ebb/ebbdriver/internal/sqlcommon"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

var _ ebbdriver.Schedules = (*Driver)(nil)

const scheduleCols = `name, cron, every, at, tz, catch_up, kind, args, queue, priority, max_attempts, timeout,
	headers, paused, last_tick_at, last_task_id, created_at, updated_at`

// ScheduleUpsert writes the definition and merges the firing state in one
// statement, so it cannot interleave with a MarkFired or a pause: the
// stored tick only moves forward and a pause is never undone by a config
// reload.
func (d *Driver) ScheduleUpsert(ctx context.Context, s *ebbtype.Schedule) error {
	if s == nil || s.Name == "" {
		return fmt.Errorf("ebbsqlite: schedule upsert: need a schedule with a name: %w", errBadInput)
	}
	headers, err := encodeHeaders(s.Headers)
	if err != nil {
		return fmt.Errorf("ebbsqlite: schedule upsert %q: encoding headers: %w", s.Name, err)
	}
	return d.writeTx(ctx, "schedule upsert "+s.Name, func(tx *sql.Tx) error {
		// Every SET expression reads the row as it was, so last_task_id is
		// decided by the old last_tick_at.
		_, err := tx.ExecContext(ctx, `INSERT INTO schedules (`+scheduleCols+`)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
			ON CONFLICT (name) DO UPDATE SET
				cron = excluded.cron, every = excluded.every, at = excluded.at, tz = excluded.tz,
				catch_up = excluded.catch_up, kind = excluded.kind, args = excluded.args,
				queue = excluded.queue, priority = excluded.priority, max_attempts = excluded.max_attempts,
				timeout = excluded.timeout, headers = excluded.headers, updated_at = excluded.updated_at,
				paused       = paused OR excluded.paused,
				last_task_id = CASE WHEN excluded.last_tick_at > last_tick_at THEN excluded.last_task_id ELSE last_task_id END,
				last_tick_at = max(last_tick_at, excluded.last_tick_at)`,
			s.Name, s.Cron, int64(s.Every), sqlcommon.NS(s.At), s.TZ, s.CatchUp, s.Kind, nullBytes(s.Args),
			s.Queue, s.Priority, s.MaxAttempts, int64(s.Timeout), headers,
			s.Paused, sqlcommon.NS(s.LastTickAt), s.LastTaskID, sqlcommon.NS(s.CreatedAt), sqlcommon.NS(s.UpdatedAt))
		return err
	})
}

// ScheduleGet implements ebbdriver.Schedules.
func (d *Driver) ScheduleGet(ctx context.Context, name string) (*ebbtype.Schedule, error) {
	s, err := scanSchedule(d.rdb.QueryRowContext(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE name = ?1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("ebbsqlite: schedule %q: %w", name, ebbtype.ErrScheduleNotFound)
	}
	if err != nil {
		return nil, d.wrap("reading schedule "+name, err)
	}
	return s, nil
}

// ScheduleList implements ebbdriver.Schedules. The primary key's BINARY
// collation orders names bytewise, as the Redis driver's ZSET does.
func (d *Driver) ScheduleList(ctx context.Context) ([]ebbtype.Schedule, error) {
	rows, err := d.rdb.QueryContext(ctx, `SELECT `+scheduleCols+` FROM schedules ORDER BY name`)
	if err != nil {
		return nil, d.wrap("listing schedules", err)
	}
	defer rows.Close()
	var out []ebbtype.Schedule
	for rows.Next() {
		s, err := scanSchedule(rows)
		if err != nil {
			return nil, d.wrap("listing schedules", err)
		}
		out = append(out, *s)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap("listing schedules", err)
	}
	return out, nil
}

func scanSchedule(r rowScanner) (*ebbtype.Schedule, error) {
	var (
		s                                      ebbtype.Schedule
		every, at, timeout, tick, created, upd int64
		headers                                sql.NullString
		args                                   []byte // NULL for none; RawMessage cannot scan it
	)
	if err := r.Scan(&s.Name, &s.Cron, &every, &at, &s.TZ, &s.CatchUp, &s.Kind, &args, &s.Queue,
		&s.Priority, &s.MaxAttempts, &timeout, &headers, &s.Paused, &tick, &s.LastTaskID, &created, &upd); err != nil {
		return nil, err
	}
	s.Args = args
	s.Every, s.Timeout = time.Duration(every), time.Duration(timeout)
	s.At, s.LastTickAt, s.CreatedAt, s.UpdatedAt = sqlcommon.FromNS(at), sqlcommon.FromNS(tick), sqlcommon.FromNS(created), sqlcommon.FromNS(upd)
	if headers.Valid {
		if err := json.Unmarshal([]byte(headers.String), &s.Headers); err != nil {
			s.Malformed = fmt.Sprintf("headers %q are not a JSON object: %v", headers.String, err)
		}
	}
	return &s, nil
}

// ScheduleDelete implements ebbdriver.Schedules.
func (d *Driver) ScheduleDelete(ctx context.Context, name string) error {
	return d.writeTx(ctx, "schedule delete "+name, func(tx *sql.Tx) error {
		return scheduleFound(tx.ExecContext(ctx, `DELETE FROM schedules WHERE name = ?1`, name))
	})
}

// ScheduleSetPaused implements ebbdriver.Schedules.
func (d *Driver) ScheduleSetPaused(ctx context.Context, name string, paused bool) error {
	return d.writeTx(ctx, "schedule set paused "+name, func(tx *sql.Tx) error {
		return scheduleFound(tx.ExecContext(ctx, `UPDATE schedules SET paused = ?2 WHERE name = ?1`, name, paused))
	})
}

// scheduleFound turns a statement that touched no row into
// ErrScheduleNotFound. SQLite counts the rows an UPDATE matched, changed or
// not, so pausing a paused schedule is not mistaken for a missing one.
func scheduleFound(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ebbtype.ErrScheduleNotFound
	}
	return nil
}

// ScheduleMarkFired compares and sets the tick in one UPDATE, so of two
// replicas marking the same tick exactly one matches the row. now is not
// stored: the record has no field for it, and UpdatedAt dates the
// definition, not its ticks.
func (d *Driver) ScheduleMarkFired(ctx context.Context, name string, tick time.Time, taskID string, now time.Time) (bool, error) {
	var recorded bool
	err := d.writeTx(ctx, "schedule mark fired "+name, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE schedules SET last_tick_at = ?2, last_task_id = ?3
			WHERE name = ?1 AND last_tick_at < ?2`, name, sqlcommon.NS(tick), taskID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if recorded = n > 0; recorded {
			return nil
		}
		// Stale or missing: the answer differs, so look (still inside the
		// write transaction, where nobody can delete it meanwhile).
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM schedules WHERE name = ?1`, name).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ebbtype.ErrScheduleNotFound
		}
		return err
	})
	if err != nil {
		return false, err
	}
	return recorded, nil
}
