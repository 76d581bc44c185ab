package ebbsqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// appendErr is the SQL expression for "errors with the JSON value E appended".
// A stored history that is not a JSON array is kept as the text of a first
// entry rather than dropped, so a malformed task can still be dead-lettered
// with its reason.
func appendErr(e string) string {
	return `CASE
		WHEN errors IS NULL THEN json_array(` + e + `)
		WHEN json_valid(errors) AND json_type(errors) = 'array' THEN json_insert(errors, '$[#]', ` + e + `)
		ELSE json_array(json_object('attempt', 0, 'error', 'unreadable error history: ' || errors), ` + e + `)
	END`
}

const succeedBatchSQL = `UPDATE tasks SET state = 'succeeded', result = unhex(c.r), finished_at = c.n,
	expires_at = c.n + tasks.retention, lease_token = NULL, lease_expires_at = 0
	FROM (SELECT value ->> 'i' AS id, value ->> 't' AS tok, value ->> 'n' AS n, value ->> 'r' AS r
		FROM json_each(?1)) AS c
	WHERE tasks.id = c.id AND tasks.state = 'running' AND tasks.lease_token = c.tok
	RETURNING tasks.id, tasks.queue, tasks.unique_key, tasks.unique_ttl`

// Hot statements, prepared once. Write statements run inside transactions
// through tx.StmtContext, which reuses the preparation on the single write
// connection.
type stmts struct {
	all []*sql.Stmt

	insertTask    *sql.Stmt
	uniqueHolder  *sql.Stmt
	uniqueSet     *sql.Stmt
	uniqueRelease *sql.Stmt // TTL 0 keys only
	queueAddReady *sql.Stmt // enqueue's: counts and announces in one
	queueReady    *sql.Stmt
	queueTotals   *sql.Stmt

	promote *sql.Stmt
	claim   *sql.Stmt
	reclaim *sql.Stmt // a retried fetch: the tasks still running under its token
	nextDue *sql.Stmt
	extend  *sql.Stmt

	succeed  *sql.Stmt
	succeedN *sql.Stmt // a batch of successes in one statement
	retry    *sql.Stmt
	dead     *sql.Stmt
	cancel   *sql.Stmt
	handBack *sql.Stmt

	// The periodic work of an idle worker (heartbeat, maintenance's
	// counts), prepared like the hot path: compiling a statement runs
	// SQLite's parser and planner, megabytes of code an idle worker would
	// otherwise page in and run every few seconds.
	workerPrune *sql.Stmt
	workerBeat  *sql.Stmt

	taskGet      *sql.Stmt // read pool, as the rest
	statsQueues  *sql.Stmt
	statsQueued  *sql.Stmt
	statsWaiting *sql.Stmt
	statsRunning *sql.Stmt
	statsDead    *sql.Stmt
}

func prepare(ctx context.Context, wdb, rdb *sql.DB) (*stmts, error) {
	s := &stmts{}
	var errs []error
	p := func(db *sql.DB, query string) *sql.Stmt {
		st, err := db.PrepareContext(ctx, query)
		if err != nil {
			errs = append(errs, fmt.Errorf("preparing %q: %w", query, err))
			return nil
		}
		s.all = append(s.all, st)
		return st
	}
	s.insertTask = p(wdb, `INSERT INTO tasks (id, queue, kind, args, headers, priority, run_at,
		attempt, max_attempts, timeout, retention, unique_key, unique_ttl, state, enqueued_at,
		errors, result)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
		ON CONFLICT (id) DO NOTHING`)
	s.uniqueHolder = p(wdb, `SELECT u.task_id, u.expires_at, t.state
		FROM unique_keys u LEFT JOIN tasks t ON t.id = u.task_id WHERE u.queue = ?1 AND u.key = ?2`)
	s.uniqueSet = p(wdb, `INSERT INTO unique_keys (queue, key, task_id, expires_at) VALUES (?1, ?2, ?3, ?4)
		ON CONFLICT (queue, key) DO UPDATE SET task_id = excluded.task_id, expires_at = excluded.expires_at`)
	s.uniqueRelease = p(wdb, `DELETE FROM unique_keys WHERE key = ?1 AND task_id = ?2 AND expires_at IS NULL`)
	s.queueAddReady = p(wdb, `INSERT INTO queues (name, enqueued, ready_seq) VALUES (?1, ?2, ?3)
		ON CONFLICT (name) DO UPDATE SET enqueued = enqueued + excluded.enqueued,
			ready_seq = ready_seq + excluded.ready_seq
		RETURNING ready_seq`)
	s.queueReady = p(wdb, `UPDATE queues SET ready_seq = ready_seq + 1 WHERE name = ?1 RETURNING ready_seq`)
	s.queueTotals = p(wdb, `UPDATE queues SET succeeded = succeeded + ?2, failed = failed + ?3,
		retried = retried + ?4 WHERE name = ?1`)

	s.promote = p(wdb, `UPDATE tasks SET state = 'queued'
		WHERE rowid IN (SELECT rowid FROM tasks
			WHERE queue = ?1 AND state IN ('scheduled', 'retrying') AND run_at <= ?2
			ORDER BY run_at LIMIT ?3)`)
	s.claim = p(wdb, `UPDATE tasks SET state = 'running', attempt = attempt + 1, started_at = ?1,
		worker_id = ?2, lease_token = ?3, lease_expires_at = ?4
		WHERE rowid IN (SELECT rowid FROM tasks WHERE queue = ?5 AND state = 'queued'
			ORDER BY priority, run_at, id LIMIT ?6)
		RETURNING `+taskCols)
	s.reclaim = p(wdb, `SELECT `+taskCols+` FROM tasks
		WHERE queue = ?1 AND state = 'running' AND lease_token = ?2`)
	s.nextDue = p(wdb, `SELECT min(run_at) FROM tasks WHERE queue = ?1 AND state IN ('scheduled', 'retrying')`)
	s.extend = p(wdb, `UPDATE tasks SET lease_expires_at = ?1
		WHERE id = ?2 AND state = 'running' AND lease_token = ?3 RETURNING cancel_requested`)

	// Completions: ?1 id, ?2 lease token, ?3 now, then per outcome.
	const fence = ` WHERE id = ?1 AND state = 'running' AND lease_token = ?2`
	s.succeed = p(wdb, `UPDATE tasks SET state = 'succeeded', result = ?4, finished_at = ?3,
		expires_at = ?3 + retention, lease_token = NULL, lease_expires_at = 0`+fence+`
		RETURNING queue, unique_key, unique_ttl`)
	// ?1 a JSON array of {"i": id, "t": lease token, "n": now, "r": hex
	// result or absent}. One statement for a whole batch saves a
	// database/sql round of binding and stepping per task, which was most
	// of a no-op task's completion cost; UPDATE FROM visits the tasks by
	// their id index, one per element.
	s.succeedN = p(wdb, succeedBatchSQL)
	// ?4 new state, ?5 run at, ?6 error JSON.
	s.retry = p(wdb, `UPDATE tasks SET state = ?4, run_at = ?5, errors = `+appendErr("json(?6)")+`,
		lease_token = NULL, lease_expires_at = 0`+fence+`
		RETURNING queue`)
	// ?4 error JSON.
	s.dead = p(wdb, `UPDATE tasks SET state = 'dead', finished_at = ?3, errors = `+appendErr("json(?4)")+`,
		lease_token = NULL, lease_expires_at = 0`+fence+`
		RETURNING queue, unique_key, unique_ttl`)
	// ?4 error JSON or NULL.
	s.cancel = p(wdb, `UPDATE tasks SET state = 'cancelled', finished_at = ?3, expires_at = ?3 + retention,
		errors = CASE WHEN ?4 IS NULL THEN errors ELSE `+appendErr("json(?4)")+` END,
		lease_token = NULL, lease_expires_at = 0`+fence+`
		RETURNING queue, unique_key, unique_ttl`)
	s.handBack = p(wdb, `UPDATE tasks SET state = 'queued', attempt = max(attempt - 1, 0),
		lease_token = NULL, lease_expires_at = 0`+fence+`
		RETURNING queue`)

	s.workerPrune = p(wdb, workerPruneSQL)
	s.workerBeat = p(wdb, workerBeatSQL)

	s.taskGet = p(rdb, `SELECT `+taskCols+` FROM tasks WHERE id = ?1`)
	s.statsQueues = p(rdb, statsQueuesSQL)
	s.statsQueued = p(rdb, statsQueuedSQL)
	s.statsWaiting = p(rdb, statsWaitingSQL)
	s.statsRunning = p(rdb, statsRunningSQL)
	s.statsDead = p(rdb, statsDeadSQL)
	if len(errs) > 0 {
		s.close()
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func (s *stmts) close() {
	for _, st := range s.all {
		st.Close()
	}
}
