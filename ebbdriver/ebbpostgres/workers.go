package ebbpostgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ebbq/ebb/ebbdriver/internal/sqlcommon"

	"github.com/jackc/pgx/v5"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// WorkerHeartbeat registers or refreshes a worker until HeartbeatAt+ttl.
func (d *Driver) WorkerHeartbeat(ctx context.Context, info ebbtype.WorkerInfo, ttl time.Duration) (*ebbdriver.WorkerControl, error) {
	if info.ID == "" {
		return nil, fmt.Errorf("ebbpostgres: worker heartbeat: the worker has no ID: %w", errBadInput)
	}
	now := info.HeartbeatAt
	if now.IsZero() {
		now = time.Now()
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("ebbpostgres: worker heartbeat: encoding worker %s: %w", info.ID, err)
	}
	var drain bool
	// One statement: expired entries go, then the upsert. A worker that
	// comes back after its entry expired is a new registration: an old
	// drain request does not apply to it.
	err = d.pool.QueryRow(ctx, `WITH gone AS (
			DELETE FROM `+d.t("workers")+` WHERE expires_at <= $4 AND id <> $1)
		INSERT INTO `+d.t("workers")+` AS w (id, info, expires_at) VALUES ($1, $2::jsonb, $3)
		ON CONFLICT (id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at,
			drain_requested = CASE WHEN w.expires_at <= $4 THEN false ELSE w.drain_requested END
		RETURNING drain_requested`, info.ID, string(b), sqlcommon.NS(now.Add(ttl)), sqlcommon.NS(now)).Scan(&drain)
	if err != nil {
		return nil, d.wrap("worker heartbeat", err)
	}
	return &ebbdriver.WorkerControl{DrainRequested: drain}, nil
}

// WorkerList returns the workers whose entry has not expired at now.
func (d *Driver) WorkerList(ctx context.Context, now time.Time) ([]ebbtype.WorkerInfo, error) {
	rows, err := d.pool.Query(ctx, `SELECT id, info FROM `+d.t("workers")+` WHERE expires_at > $1 ORDER BY id`, sqlcommon.NS(now))
	if err != nil {
		return nil, d.wrap("listing workers", err)
	}
	defer rows.Close()
	var out []ebbtype.WorkerInfo
	for rows.Next() {
		var id string
		var info []byte
		if err := rows.Scan(&id, &info); err != nil {
			return nil, d.wrap("listing workers", err)
		}
		var w ebbtype.WorkerInfo
		// An unreadable entry still shows the worker exists.
		_ = json.Unmarshal(info, &w)
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
	_, err := d.pool.Exec(ctx, `DELETE FROM `+d.t("workers")+` WHERE id = $1`, id)
	return d.wrap("worker deregister", err)
}

// WorkerRequestDrain flags a live worker to drain and notifies it, in one
// transaction.
func (d *Driver) WorkerRequestDrain(ctx context.Context, id string, now time.Time) error {
	err := d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE `+d.t("workers")+` SET drain_requested = true WHERE id = $1 AND expires_at > $2`, id, sqlcommon.NS(now))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ebbtype.ErrWorkerNotFound
		}
		return d.notifyTx(ctx, tx, event{K: "d", W: id})
	})
	if err == ebbtype.ErrWorkerNotFound {
		return fmt.Errorf("ebbpostgres: drain worker %s: %w", id, err)
	}
	return d.wrap("requesting drain of worker "+id, err)
}
