package ebbpostgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbdriver/internal/sqlcommon"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ebbq/ebb/ebbtype"
)

// taskCols is the column list every task read selects, in scanTask's order.
const taskCols = `id, queue, kind, args, headers, priority, run_at, attempt, max_attempts,
	timeout, retention, unique_key, unique_ttl, state, enqueued_at, started_at,
	finished_at, worker_id, lease_token, lease_expires_at, cancel_requested, errors, result`

// nullStr stores "" as NULL.
func nullStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func jsonOrNil(v any, empty bool) (*string, error) {
	if empty {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	s := string(b)
	return &s, nil
}

// scanTask reads one row of taskCols. The columns' types are the schema's,
// so what can be wrong with a stored task is the shape of its JSON columns
// or an unknown state: the record is returned with Malformed saying so.
func scanTask(row pgx.Row) (*ebbtype.TaskInfo, error) {
	// The scan targets live in one struct beside the record: each would
	// otherwise escape to the heap on its own, some twenty allocations per
	// task on the fetch path.
	t := new(struct {
		args, headers, errs, result           []byte
		priority, attempt, maxAttempts        int32
		runAt, timeout, retention, uniqueTTL  int64
		enqueued, started, finished, leaseExp int64
		uniqueKey, workerID, leaseToken       sql.NullString
		state                                 string
	})
	r := new(ebbtype.TaskInfo)
	if err := row.Scan(&r.ID, &r.Queue, &r.Kind, &t.args, &t.headers, &t.priority, &t.runAt, &t.attempt, &t.maxAttempts,
		&t.timeout, &t.retention, &t.uniqueKey, &t.uniqueTTL, &t.state, &t.enqueued, &t.started,
		&t.finished, &t.workerID, &t.leaseToken, &t.leaseExp, &r.CancelRequested, &t.errs, &t.result); err != nil {
		return nil, err
	}
	r.EncodedArgs, r.Result = t.args, t.result
	r.Priority, r.Attempt, r.MaxAttempts = ebbtype.Priority(t.priority), int(t.attempt), int(t.maxAttempts)
	r.RunAt, r.EnqueuedAt, r.StartedAt, r.FinishedAt, r.LeaseExpiresAt =
		sqlcommon.FromNS(t.runAt), sqlcommon.FromNS(t.enqueued), sqlcommon.FromNS(t.started), sqlcommon.FromNS(t.finished), sqlcommon.FromNS(t.leaseExp)
	r.Timeout, r.Retention, r.UniqueTTL = time.Duration(t.timeout), time.Duration(t.retention), time.Duration(t.uniqueTTL)
	r.UniqueKey, r.WorkerID, r.LeaseToken = t.uniqueKey.String, t.workerID.String, t.leaseToken.String
	r.State = ebbtype.State(t.state)
	headers, errs := t.headers, t.errs
	var problems []string
	if headers != nil {
		if err := json.Unmarshal(headers, &r.Headers); err != nil {
			problems = append(problems, fmt.Sprintf("headers are not a JSON object of strings: %v", err))
		}
	}
	if errs != nil {
		if err := json.Unmarshal(errs, &r.Errors); err != nil {
			problems = append(problems, fmt.Sprintf("error history is not a JSON array of attempt errors: %v", err))
		}
	}
	if !r.State.Valid() {
		problems = append(problems, fmt.Sprintf("unknown state %q", r.State))
	}
	if len(problems) > 0 {
		r.Malformed = "stored task cannot be decoded: " + strings.Join(problems, "; ")
	}
	return r, nil
}

// scanTasks reads all rows of taskCols.
func scanTasks(rows pgx.Rows, err error) ([]*ebbtype.TaskInfo, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*ebbtype.TaskInfo
	for rows.Next() {
		r, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// querier runs the statements that may execute inside a caller's
// transaction: on the pool, a pgx.Tx or a database/sql *sql.Tx. They
// return scalar columns only, which both scan alike.
type querier interface {
	query(ctx context.Context, sql string, args ...any) (rowSet, error)
	// queryByID runs a statement that finds rows by an array of ids with
	// a plan that cannot read the whole table as it grows: after
	// planByIndex where the transaction is the driver's own (poolQuerier),
	// else with freshPlan.
	queryByID(ctx context.Context, sql string, args ...any) (rowSet, error)
}

type rowSet interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// pgxQuerier adapts a pool, connection or pgx.Tx.
type pgxQuerier struct {
	q interface {
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	}
}

func (p pgxQuerier) query(ctx context.Context, sql string, args ...any) (rowSet, error) {
	rows, err := p.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

func (p pgxQuerier) queryByID(ctx context.Context, sql string, args ...any) (rowSet, error) {
	return p.query(ctx, sql, freshPlan(args...)...)
}

// poolQuerier runs statements on the driver's pool. A statement that finds
// rows by an array of ids goes in one round trip after planByIndex, in the
// same implicit transaction. A caller's transaction gets freshPlan instead:
// a setting made in it would outlive the statement.
type poolQuerier struct{ pool *pgxpool.Pool }

func (p poolQuerier) query(ctx context.Context, sql string, args ...any) (rowSet, error) {
	return pgxQuerier{p.pool}.query(ctx, sql, args...)
}

func (p poolQuerier) queryByID(ctx context.Context, sql string, args ...any) (rowSet, error) {
	b := &pgx.Batch{}
	b.Queue(planByIndex)
	b.Queue(sql, args...)
	br := p.pool.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return batchRows{rows, br}, nil
}

// batchRows are the rows of a batch's last statement; closing them ends
// the batch.
type batchRows struct {
	pgx.Rows
	br pgx.BatchResults
}

func (r batchRows) Close() {
	r.Rows.Close()
	_ = r.br.Close()
}

// sqlQuerier adapts a database/sql transaction on pgx's stdlib driver,
// which passes Go slices through to pgx as arrays.
type sqlQuerier struct{ tx *sql.Tx }

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

func (s sqlQuerier) queryByID(ctx context.Context, q string, args ...any) (rowSet, error) {
	return s.query(ctx, q, freshPlan(args...)...)
}

func (s sqlQuerier) query(ctx context.Context, q string, args ...any) (rowSet, error) {
	rows, err := s.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

// each runs a query through q; the function it returns calls fn for every
// row, then closes them.
func each(ctx context.Context, q querier, sql string, args ...any) func(fn func(rowSet) error) error {
	return forRows(func() (rowSet, error) { return q.query(ctx, sql, args...) })
}

// eachByID is each through q.queryByID.
func eachByID(ctx context.Context, q querier, sql string, args ...any) func(fn func(rowSet) error) error {
	return forRows(func() (rowSet, error) { return q.queryByID(ctx, sql, args...) })
}

func forRows(open func() (rowSet, error)) func(fn func(rowSet) error) error {
	return func(fn func(rowSet) error) error {
		rows, err := open()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := fn(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
}
