package ebbpostgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ebbq/ebb/ebbdriver/internal/sqlcommon"

	"github.com/jackc/pgx/v5"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

var _ ebbdriver.Schedules = (*Driver)(nil)

const scheduleCols = `name, cron, every, at, tz, catch_up, kind, args, queue, priority, max_attempts, timeout,
	headers, paused, last_tick_at, last_task_id, created_at, updated_at`

// ScheduleUpsert writes the definition and merges the firing state in one
// statement, so it cannot interleave with a MarkFired or a pause.
func (d *Driver) ScheduleUpsert(ctx context.Context, s *ebbtype.Schedule) error {
	if s == nil || s.Name == "" {
		return fmt.Errorf("ebbpostgres: schedule upsert: need a schedule with a name: %w", errBadInput)
	}
	headers, err := jsonOrNil(s.Headers, len(s.Headers) == 0)
	if err != nil {
		return fmt.Errorf("ebbpostgres: schedule upsert %q: encoding headers: %w", s.Name, err)
	}
	var args []byte
	if s.Args != nil {
		args = s.Args
	}
	_, err = d.pool.Exec(ctx, `INSERT INTO `+d.t("schedules")+` AS s (`+scheduleCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, $17, $18)
		ON CONFLICT (name) DO UPDATE SET
			cron = excluded.cron, every = excluded.every, at = excluded.at, tz = excluded.tz,
			catch_up = excluded.catch_up, kind = excluded.kind, args = excluded.args,
			queue = excluded.queue, priority = excluded.priority, max_attempts = excluded.max_attempts,
			timeout = excluded.timeout, headers = excluded.headers, updated_at = excluded.updated_at,
			paused       = s.paused OR excluded.paused,
			last_task_id = CASE WHEN excluded.last_tick_at > s.last_tick_at THEN excluded.last_task_id ELSE s.last_task_id END,
			last_tick_at = greatest(s.last_tick_at, excluded.last_tick_at)`,
		s.Name, s.Cron, int64(s.Every), sqlcommon.NS(s.At), s.TZ, s.CatchUp, s.Kind, args,
		s.Queue, int32(s.Priority), s.MaxAttempts, int64(s.Timeout), headers,
		s.Paused, sqlcommon.NS(s.LastTickAt), s.LastTaskID, sqlcommon.NS(s.CreatedAt), sqlcommon.NS(s.UpdatedAt))
	return d.wrap("schedule upsert "+s.Name, err)
}

// ScheduleGet implements ebbdriver.Schedules.
func (d *Driver) ScheduleGet(ctx context.Context, name string) (*ebbtype.Schedule, error) {
	s, err := scanSchedule(d.pool.QueryRow(ctx, `SELECT `+scheduleCols+` FROM `+d.t("schedules")+` WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("ebbpostgres: schedule %q: %w", name, ebbtype.ErrScheduleNotFound)
	}
	if err != nil {
		return nil, d.wrap("reading schedule "+name, err)
	}
	return s, nil
}

// ScheduleList implements ebbdriver.Schedules; the name column's "C"
// collation orders names bytewise, as the other drivers do.
func (d *Driver) ScheduleList(ctx context.Context) ([]ebbtype.Schedule, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+scheduleCols+` FROM `+d.t("schedules")+` ORDER BY name`)
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

func scanSchedule(r pgx.Row) (*ebbtype.Schedule, error) {
	var (
		s                                      ebbtype.Schedule
		every, at, timeout, tick, created, upd int64
		priority                               int32
		headers, args                          []byte
	)
	if err := r.Scan(&s.Name, &s.Cron, &every, &at, &s.TZ, &s.CatchUp, &s.Kind, &args, &s.Queue,
		&priority, &s.MaxAttempts, &timeout, &headers, &s.Paused, &tick, &s.LastTaskID, &created, &upd); err != nil {
		return nil, err
	}
	s.Args = args
	s.Priority = ebbtype.Priority(priority)
	s.Every, s.Timeout = time.Duration(every), time.Duration(timeout)
	s.At, s.LastTickAt, s.CreatedAt, s.UpdatedAt = sqlcommon.FromNS(at), sqlcommon.FromNS(tick), sqlcommon.FromNS(created), sqlcommon.FromNS(upd)
	if headers != nil {
		if err := json.Unmarshal(headers, &s.Headers); err != nil {
			s.Malformed = fmt.Sprintf("headers %q are not a JSON object: %v", headers, err)
		}
	}
	return &s, nil
}

// ScheduleDelete implements ebbdriver.Schedules.
func (d *Driver) ScheduleDelete(ctx context.Context, name string) error {
	tag, err := d.pool.Exec(ctx, `DELETE FROM `+d.t("schedules")+` WHERE name = $1`, name)
	if err == nil && tag.RowsAffected() == 0 {
		return fmt.Errorf("ebbpostgres: schedule %q: %w", name, ebbtype.ErrScheduleNotFound)
	}
	return d.wrap("schedule delete "+name, err)
}

// ScheduleSetPaused implements ebbdriver.Schedules. Postgres counts the
// rows an UPDATE matched, so pausing a paused schedule is not mistaken for a
// missing one.
func (d *Driver) ScheduleSetPaused(ctx context.Context, name string, paused bool) error {
	tag, err := d.pool.Exec(ctx, `UPDATE `+d.t("schedules")+` SET paused = $2 WHERE name = $1`, name, paused)
	if err == nil && tag.RowsAffected() == 0 {
		return fmt.Errorf("ebbpostgres: schedule %q: %w", name, ebbtype.ErrScheduleNotFound)
	}
	return d.wrap("schedule set paused "+name, err)
}

// ScheduleMarkFired compares and sets the tick in one statement, so of two
// replicas marking the same tick exactly one matches the row; the second
// result column tells a stale tick from a missing schedule.
func (d *Driver) ScheduleMarkFired(ctx context.Context, name string, tick time.Time, taskID string, now time.Time) (bool, error) {
	var recorded, exists bool
	err := d.pool.QueryRow(ctx, `WITH u AS (
			UPDATE `+d.t("schedules")+` SET last_tick_at = $2, last_task_id = $3
			WHERE name = $1 AND last_tick_at < $2 RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM u), EXISTS (SELECT 1 FROM `+d.t("schedules")+` WHERE name = $1)`,
		name, sqlcommon.NS(tick), taskID).Scan(&recorded, &exists)
	if err != nil {
		return false, d.wrap("schedule mark fired "+name, err)
	}
	if !recorded && !exists {
		return false, fmt.Errorf("ebbpostgres: schedule %q: %w", name, ebbtype.ErrScheduleNotFound)
	}
	return recorded, nil
}
