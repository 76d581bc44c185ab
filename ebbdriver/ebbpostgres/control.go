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

var _ ebbdriver.Control = (*Driver)(nil)

// LeaderAttempt elects or renews the leader of p.Name in one statement: the
// row lock of the upsert orders racing candidates, and every SET expression
// reads the row as it was, so the takeover test is the same in all three.
// A lease is held while Now < expires_at.
func (d *Driver) LeaderAttempt(ctx context.Context, p ebbdriver.LeaderParams) (*ebbtype.Leadership, error) {
	if p.Name == "" || p.ID == "" || p.TTL <= 0 {
		return nil, fmt.Errorf("ebbpostgres: leader attempt: name %q, id %q, TTL %s: need a name, an id and a positive TTL: %w",
			p.Name, p.ID, p.TTL, errBadInput)
	}
	var (
		l       ebbtype.Leadership
		exp     int64
		setting *string
	)
	// Renewals come every few seconds from every replica and must not wait
	// behind other sessions' disk flushes (a slow flush would cost the
	// leadership), so they commit asynchronously like claims. A decision
	// commits synchronously, which flushes the election it depends on first.
	err := d.pool.QueryRow(ctx, `INSERT INTO `+d.t("leaders")+` AS l (name, leader_id, term, expires_at)
		VALUES ($1, $2, 1, $4)
		ON CONFLICT (name) DO UPDATE SET
			leader_id  = CASE WHEN l.expires_at <= $3 OR l.leader_id = $2 THEN $2 ELSE l.leader_id END,
			term       = CASE WHEN l.expires_at <= $3 THEN l.term + 1 ELSE l.term END,
			expires_at = CASE WHEN l.expires_at <= $3 OR l.leader_id = $2 THEN $4 ELSE l.expires_at END
		RETURNING leader_id, term, expires_at, `+asyncCommit("$5")+``,
		p.Name, p.ID, sqlcommon.NS(p.Now), sqlcommon.NS(p.Now.Add(p.TTL)), !d.cfg.SyncCommit).Scan(&l.LeaderID, &l.Term, &exp, &setting)
	if err != nil {
		return nil, d.wrap("leader attempt for "+p.Name, err)
	}
	l.ExpiresAt = sqlcommon.FromNS(exp)
	return &l, nil
}

// LeaderResign ends id's lease but keeps the row: the successor's term must
// still be one above the last.
func (d *Driver) LeaderResign(ctx context.Context, name, id string) error {
	_, err := d.pool.Exec(ctx, `UPDATE `+d.t("leaders")+` SET expires_at = 0 WHERE name = $1 AND leader_id = $2`, name, id)
	return d.wrap("leader resign from "+name, err)
}

// LeaderGet reads the row LeaderAttempt writes.
func (d *Driver) LeaderGet(ctx context.Context, name string, now time.Time) (*ebbtype.Leadership, error) {
	var (
		l   ebbtype.Leadership
		exp int64
	)
	err := d.pool.QueryRow(ctx, `SELECT leader_id, term, expires_at FROM `+d.t("leaders")+`
		WHERE name = $1 AND expires_at > $2`, name, sqlcommon.NS(now)).Scan(&l.LeaderID, &l.Term, &exp)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, d.wrap("reading the leader of "+name, err)
	}
	l.ExpiresAt = sqlcommon.FromNS(exp)
	return &l, nil
}

// DecisionAppend checks the lease and stores the decision in one
// transaction. The check takes a share lock on the leader row, so an
// election cannot commit between the check and the insert: a takeover
// waits for this transaction, or this one sees the new term and refuses.
func (d *Driver) DecisionAppend(ctx context.Context, leaderName string, dec *ebbtype.Decision) error {
	if dec == nil || dec.Pool == "" {
		return fmt.Errorf("ebbpostgres: decision append: need a decision with a pool: %w", errBadInput)
	}
	drained, err := jsonOrNil(dec.Drained, len(dec.Drained) == 0)
	if err != nil {
		return fmt.Errorf("ebbpostgres: decision append: encoding drained workers: %w", err)
	}
	var seq int64
	err = d.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM `+d.t("leaders")+`
			WHERE name = $1 AND leader_id = $2 AND term = $3 AND expires_at > $4 FOR SHARE`,
			leaderName, dec.LeaderID, dec.Term, sqlcommon.NS(dec.At)).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%q does not lead %q in term %d at %s: %w",
				dec.LeaderID, leaderName, dec.Term, dec.At.UTC().Format("2006-01-02T15:04:05.000Z"), ebbdriver.ErrNotLeader)
		}
		if err != nil {
			return fmt.Errorf("checking the leadership: %w", err)
		}
		var inputs []byte
		if len(dec.Inputs) > 0 {
			inputs = dec.Inputs
		}
		if err := tx.QueryRow(ctx, `INSERT INTO `+d.t("decisions")+`
			(pool, at, term, leader_id, from_n, to_n, action, reason, inputs, drained)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb) RETURNING seq`,
			dec.Pool, sqlcommon.NS(dec.At), dec.Term, dec.LeaderID, dec.From, dec.To, dec.Action, dec.Reason,
			inputs, drained).Scan(&seq); err != nil {
			return fmt.Errorf("storing the decision: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+d.t("decisions")+` WHERE pool = $1 AND seq <= (
			SELECT seq FROM `+d.t("decisions")+` WHERE pool = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)`,
			dec.Pool, ebbdriver.DecisionLogMax); err != nil {
			return fmt.Errorf("trimming the decision log: %w", err)
		}
		return nil
	})
	if errors.Is(err, ebbdriver.ErrNotLeader) {
		return fmt.Errorf("ebbpostgres: decision append for pool %s: %w", dec.Pool, err)
	}
	if err != nil {
		return d.wrap("decision append for pool "+dec.Pool, err)
	}
	dec.Seq = seq
	return nil
}

// DecisionList reads the newest decisions; limit ≤ 0 means all that are
// kept.
func (d *Driver) DecisionList(ctx context.Context, pool string, limit int) ([]ebbtype.Decision, error) {
	var lim any
	if limit > 0 {
		lim = limit
	}
	rows, err := d.pool.Query(ctx, `SELECT seq, pool, at, term, leader_id, from_n, to_n, action, reason, inputs, drained
		FROM `+d.t("decisions")+` WHERE $1 = '' OR pool = $1 ORDER BY seq DESC LIMIT $2`, pool, lim)
	if err != nil {
		return nil, d.wrap("listing decisions", err)
	}
	defer rows.Close()
	var out []ebbtype.Decision
	for rows.Next() {
		var (
			dec             ebbtype.Decision
			at              int64
			inputs, drained []byte
		)
		if err := rows.Scan(&dec.Seq, &dec.Pool, &at, &dec.Term, &dec.LeaderID, &dec.From, &dec.To,
			&dec.Action, &dec.Reason, &inputs, &drained); err != nil {
			return nil, d.wrap("listing decisions", err)
		}
		dec.Inputs = inputs
		dec.At = sqlcommon.FromNS(at)
		if drained != nil {
			if err := json.Unmarshal(drained, &dec.Drained); err != nil {
				return nil, d.wrap("listing decisions", fmt.Errorf("decision %d: drained workers %q: %w", dec.Seq, drained, err))
			}
		}
		out = append(out, dec)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap("listing decisions", err)
	}
	return out, nil
}
