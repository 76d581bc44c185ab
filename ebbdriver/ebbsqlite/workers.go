package ebbsqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ebbq/ebb/ebbdriver/internal/sqlcommon"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// WorkerHeartbeat registers or refreshes a worker until HeartbeatAt+ttl.
func (d *Driver) WorkerHeartbeat(ctx context.Context, info ebbtype.WorkerInfo, ttl time.Duration) (*ebbdriver.WorkerControl, error) {
	if info.ID == "" {
		return nil, fmt.Errorf("ebbsqlite: worker heartbeat: the worker has no ID: %w", errBadInput)
	}
	now := info.HeartbeatAt
	if now.IsZero() {
		now = time.Now()
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("ebbsqlite: worker heartbeat: encoding worker %s: %w", info.ID, err)
	}
	var drain int64
	err = d.writeTx(ctx, "worker heartbeat", func(tx *sql.Tx) error {
		// The registry is small; expired entries go on every heartbeat.
		if _, err := tx.StmtContext(ctx, d.stmts.workerPrune).ExecContext(ctx, sqlcommon.NS(now), info.ID); err != nil {
			return err
		}
		// A worker that comes back after its entry expired is a new
		// registration: an old drain request does not apply to it.
		return tx.StmtContext(ctx, d.stmts.workerBeat).QueryRowContext(ctx,
			info.ID, string(b), sqlcommon.NS(now.Add(ttl)), sqlcommon.NS(now)).Scan(&drain)
	})
	if err != nil {
		return nil, err
	}
	return &ebbdriver.WorkerControl{DrainRequested: drain != 0}, nil
}

const (
	workerPruneSQL = `DELETE FROM workers WHERE expires_at <= ?1 AND id <> ?2`
	workerBeatSQL  = `INSERT INTO workers (id, info, expires_at) VALUES (?1, ?2, ?3)
		ON CONFLICT (id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at,
			drain_requested = CASE WHEN workers.expires_at <= ?4 THEN 0 ELSE workers.drain_requested END
		RETURNING drain_requested`
)

// WorkerList returns the workers whose entry has not expired at now.
func (d *Driver) WorkerList(ctx context.Context, now time.Time) ([]ebbtype.WorkerInfo, error) {
	rows, err := d.rdb.QueryContext(ctx, `SELECT id, info FROM workers
		WHERE expires_at > ?1 ORDER BY id`, sqlcommon.NS(now))
	if err != nil {
		return nil, d.wrap("listing workers", err)
	}
	defer rows.Close()
	var out []ebbtype.WorkerInfo
	for rows.Next() {
		var id, info string
		if err := rows.Scan(&id, &info); err != nil {
			return nil, d.wrap("listing workers", err)
		}
		var w ebbtype.WorkerInfo
		// An unreadable entry still shows the worker exists.
		_ = json.Unmarshal([]byte(info), &w)
		w.ID = id
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap("listing workers", err)
	}
	return out, nil
}

// WorkerDeregister removes a worker's entry; removing an absent one is not
// an error.
func (d *Driver) WorkerDeregister(ctx context.Context, id string) error {
	return d.writeTx(ctx, "worker deregister", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM workers WHERE id = ?1`, id)
		return err
	})
}

// WorkerRequestDrain flags a live worker to drain and notifies it.
func (d *Driver) WorkerRequestDrain(ctx context.Context, id string, now time.Time) error {
	var pe pendingEvent
	err := d.writeTx(ctx, "requesting drain of worker "+id, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `UPDATE workers SET drain_requested = 1 WHERE id = ?1 AND expires_at > ?2`, id, sqlcommon.NS(now))
		if err != nil {
			return err
		}
		if k, err := r.RowsAffected(); err != nil {
			return err
		} else if k == 0 {
			return ebbtype.ErrWorkerNotFound
		}
		pe = pendingEvent{Event: ebbdriver.Event{Kind: ebbdriver.EventDrain, WorkerID: id}}
		pe.seq, err = insertEvent(ctx, tx, "drain", pe.Event, now)
		return err
	})
	if err != nil {
		return err
	}
	d.notify.events([]pendingEvent{pe})
	return nil
}
