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

var _ ebbdriver.Control = (*Driver)(nil)

// LeaderAttempt elects or renews the leader of p.Name in one statement, so
// candidates racing in any number of processes see one outcome. A lease is
// held while Now < expires_at: at ExpiresAt it is over, matching
// DecisionAppend's fence.
func (d *Driver) LeaderAttempt(ctx context.Context, p ebbdriver.LeaderParams) (*ebbtype.Leadership, error) {
	if p.Name == "" || p.ID == "" || p.TTL <= 0 {
		return nil, fmt.Errorf("ebbsqlite: leader attempt: name %q, id %q, TTL %s: need a name, an id and a positive TTL: %w",
			p.Name, p.ID, p.TTL, errBadInput)
	}
	now, until := sqlcommon.NS(p.Now), sqlcommon.NS(p.Now.Add(p.TTL))
	var (
		l   ebbtype.Leadership
		exp int64
	)
	err := d.writeTx(ctx, "leader attempt for "+p.Name, func(tx *sql.Tx) error {
		// Every SET expression reads the row as it was, so the takeover
		// test is the same in all three.
		return tx.QueryRowContext(ctx, `INSERT INTO leaders (name, leader_id, term, expires_at)
			VALUES (?1, ?2, 1, ?4)
			ON CONFLICT (name) DO UPDATE SET
				leader_id  = CASE WHEN expires_at <= ?3 OR leader_id = ?2 THEN ?2 ELSE leader_id END,
				term       = CASE WHEN expires_at <= ?3 THEN term + 1 ELSE term END,
				expires_at = CASE WHEN expires_at <= ?3 OR leader_id = ?2 THEN ?4 ELSE expires_at END
			RETURNING leader_id, term, expires_at`, p.Name, p.ID, now, until).Scan(&l.LeaderID, &l.Term, &exp)
	})
	if err != nil {
		return nil, err
	}
	l.ExpiresAt = sqlcommon.FromNS(exp)
	return &l, nil
}

// LeaderResign ends id's lease but keeps the row: the successor's term must
// still be one above the last.
func (d *Driver) LeaderResign(ctx context.Context, name, id string) error {
	return d.writeTx(ctx, "leader resign from "+name, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE leaders SET expires_at = 0 WHERE name = ?1 AND leader_id = ?2`, name, id)
		return err
	})
}

// LeaderGet reads the row LeaderAttempt writes; a resigned leader's row has
// expires_at 0, so the lease test covers resignation too.
func (d *Driver) LeaderGet(ctx context.Context, name string, now time.Time) (*ebbtype.Leadership, error) {
	var (
		l   ebbtype.Leadership
		exp int64
	)
	err := d.rdb.QueryRowContext(ctx, `SELECT leader_id, term, expires_at FROM leaders
		WHERE name = ?1 AND expires_at > ?2`, name, sqlcommon.NS(now)).Scan(&l.LeaderID, &l.Term, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, d.wrap("reading the leader of "+name, err)
	}
	l.ExpiresAt = sqlcommon.FromNS(exp)
	return &l, nil
}

// DecisionAppend checks the lease and stores the decision in one write
// transaction: no election can commit between the check and the insert.
func (d *Driver) DecisionAppend(ctx context.Context, leaderName string, dec *ebbtype.Decision) error {
	if dec == nil || dec.Pool == "" {
		return fmt.Errorf("ebbsqlite: decision append: need a decision with a pool: %w", errBadInput)
	}
	var drained any // NULL when none
	if len(dec.Drained) > 0 {
		b, err := json.Marshal(dec.Drained)
		if err != nil {
			return fmt.Errorf("ebbsqlite: decision append: encoding drained workers: %w", err)
		}
		drained = string(b)
	}
	var seq int64
	err := d.writeTx(ctx, "decision append for pool "+dec.Pool, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM leaders
			WHERE name = ?1 AND leader_id = ?2 AND term = ?3 AND expires_at > ?4`,
			leaderName, dec.LeaderID, dec.Term, sqlcommon.NS(dec.At)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%q does not lead %q in term %d at %s: %w",
				dec.LeaderID, leaderName, dec.Term, dec.At.UTC().Format("2006-01-02T15:04:05.000Z"), ebbdriver.ErrNotLeader)
		}
		if err != nil {
			return fmt.Errorf("checking the leadership: %w", err)
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO decisions
			(pool, at, term, leader_id, from_n, to_n, action, reason, inputs, drained)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING seq`,
			dec.Pool, sqlcommon.NS(dec.At), dec.Term, dec.LeaderID, dec.From, dec.To, dec.Action, dec.Reason,
			nullBytes(dec.Inputs), drained).Scan(&seq); err != nil {
			return fmt.Errorf("storing the decision: %w", err)
		}
		// The pool's (max+1)th newest and everything older: NULL, and so
		// nothing, until the pool has more than the max.
		if _, err := tx.ExecContext(ctx, `DELETE FROM decisions WHERE pool = ?1 AND seq <= (
			SELECT seq FROM decisions WHERE pool = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)`,
			dec.Pool, ebbdriver.DecisionLogMax); err != nil {
			return fmt.Errorf("trimming the decision log: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	dec.Seq = seq
	return nil
}

// DecisionList reads the newest decisions; limit ≤ 0 means all that are
// kept.
func (d *Driver) DecisionList(ctx context.Context, pool string, limit int) ([]ebbtype.Decision, error) {
	lim := int64(limit)
	if lim <= 0 {
		lim = -1
	}
	const cols = `seq, pool, at, term, leader_id, from_n, to_n, action, reason, inputs, drained`
	var (
		rows *sql.Rows
		err  error
	)
	if pool == "" {
		rows, err = d.rdb.QueryContext(ctx, `SELECT `+cols+` FROM decisions ORDER BY seq DESC LIMIT ?1`, lim)
	} else {
		rows, err = d.rdb.QueryContext(ctx, `SELECT `+cols+` FROM decisions WHERE pool = ?1
			ORDER BY seq DESC LIMIT ?2`, pool, lim)
	}
	if err != nil {
		return nil, d.wrap("listing decisions", err)
	}
	defer rows.Close()
	var out []ebbtype.Decision
	for rows.Next() {
		var (
			dec     ebbtype.Decision
			at      int64
			drained sql.NullString
			inputs  []byte // NULL when a decision has none; RawMessage cannot scan it
		)
		if err := rows.Scan(&dec.Seq, &dec.Pool, &at, &dec.Term, &dec.LeaderID, &dec.From, &dec.To,
			&dec.Action, &dec.Reason, &inputs, &drained); err != nil {
			return nil, d.wrap("listing decisions", err)
		}
		dec.Inputs = inputs
		dec.At = sqlcommon.FromNS(at)
		if drained.Valid {
			if err := json.Unmarshal([]byte(drained.String), &dec.Drained); err != nil {
				return nil, d.wrap("listing decisions", fmt.Errorf("decision %d: drained workers %q: %w", dec.Seq, drained.String, err))
			}
		}
		out = append(out, dec)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap("listing decisions", err)
	}
	return out, nil
}
