package ebbpostgres

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// freshPlan prepends pgx's QueryExecModeCacheDescribe to a statement's
// arguments: the statement then runs unnamed, so PostgreSQL plans it for
// these arguments and the table as it is now, instead of with the plan it
// caches for a named statement after five executions, made for the table's
// size at the time (see planByIndex, what the driver's own transactions use
// instead). It serves statements that run in a caller's transaction, whose
// settings a statement must not change, and the rare maintenance statements.
// TestPlansSurviveTheTableGrowing holds both.
func freshPlan(args ...any) []any {
	return append([]any{pgx.QueryExecModeCacheDescribe}, args...)
}

// appendErr is the SQL expression for "errors with the jsonb value e
// appended". A stored history that is not an array is kept as the text of a
// first entry rather than dropped.
func appendErr(e string) string {
	return `CASE
		WHEN errors IS NULL THEN jsonb_build_array(` + e + `)
		WHEN jsonb_typeof(errors) = 'array' THEN errors || jsonb_build_array(` + e + `)
		ELSE jsonb_build_array(jsonb_build_object('attempt', 0, 'error', 'unreadable error history: ' || errors::text), ` + e + `)
	END`
}

// asyncCommit is a column that, when the boolean parameter p is true,
// makes the statement's transaction commit without waiting for its WAL
// flush (see Config.SyncCommit for why claims and completions may).
func asyncCommit(p string) string {
	return `CASE WHEN ` + p + `::boolean THEN set_config('synchronous_commit', 'off', true) END`
}

// heldBy is the WHERE clause of the statements that find running tasks by
// id and fence them by token (complete, completeOK, extend): ids is the id
// array parameter, u the alias of the unnested (id, token) rows. The state
// test is a CASE so the planner cannot prove the ebb_tasks_running index's
// predicate from it: written plainly, it planned these as a hash join over
// every running task (that index scanned with the id list as a filter,
// searched linearly in a generic plan), so a heartbeat of a worker holding
// 10,000 tasks and each completion batch read every lease in flight. This
// way each row is looked up by its primary key.
func heldBy(ids, u string) string {
	return `t.id = ANY(` + ids + `::text[] COLLATE "C") AND t.id = ` + u + `.id
		AND (CASE WHEN t.state = 'running' THEN true END) AND t.lease_token = ` + u + `.token`
}

// notifyQueued is the payload telling listeners that queue q has work.
const notifyQueued = `json_build_object('k', 'q', 'q', %s)::text`

// planByIndex makes the rest of its transaction plan without sequential
// scans wherever an index serves. The driver's statements are all written
// for index access, but a plan PostgreSQL caches after five executions is
// made for the table's size at that moment: on the nearly empty table every
// deployment and benchmark starts with, that is a sequential scan, which
// it then goes on running as the table grows (until ANALYZE replaces it).
// Planned for each execution instead, the cost model, made for data on
// disk, still preferred reading all fifty thousand rows of a table not yet
// analyzed to five hundred lookups by primary key, ten times slower. With
// sequential scans ruled out at planning, the cached plan is an index plan
// whatever the table's size, and it stays cached: no planning per call.
const planByIndex = `SELECT set_config('enable_seqscan', 'off', true)`

// Statements, built once per schema. {s} is the quoted schema. pgx prepares
// each on first use per connection and caches it (its default
// QueryExecModeCacheStatement), so the hot ones are parsed and planned once;
// the ones that pick rows by a set run after planByIndex or with freshPlan.
type stmts struct {
	reclaim                                                                           string
	enqueue, enqueueFresh, insertOnly, counted, lockKey, takeKey, keyHolder, dropTask string

	fetchBegin, promote, promoteNext, claim, nextDue, extend, complete, completeOK, lostOrGone string

	taskGet, rescue, cleanupFinished, cleanupDead, cleanupKeys, cleanupAwaiters string
	awaitAdd, awaitDel, queueNames, stats                                       string
}

func newStmts(schema string) *stmts {
	r := strings.NewReplacer("{s}", schema)
	s := &stmts{}
	q := func(sql string) string { return r.Replace(sql) }

	// $1… the task columns as arrays, $18 the counter shard, $19 the
	// channel, or NULL for no notification (outside a caller's transaction
	// the driver notifies after the commit, through its waker). The woken
	// CTE is read by the final SELECT, so it runs: one notification per
	// queue that got Queued tasks.
	input := `WITH input AS (
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::int[],
			$7::bigint[], $8::int[], $9::int[], $10::bigint[], $11::bigint[], $12::text[], $13::bigint[],
			$14::text[], $15::bigint[], $16::text[], $17::bytea[])
		AS t(id, queue, kind, args, headers, priority, run_at, attempt, max_attempts, timeout, retention,
			unique_key, unique_ttl, state, enqueued_at, errors, result)
	), ins AS (
		INSERT INTO {s}.ebb_tasks (id, queue, kind, args, headers, priority, run_at, attempt, max_attempts,
			timeout, retention, unique_key, unique_ttl, state, enqueued_at, errors, result)
		SELECT id, queue, kind, args, headers::jsonb, priority, run_at, attempt, max_attempts, timeout,
			retention, unique_key, unique_ttl, state, enqueued_at, errors::jsonb, result FROM input
		ON CONFLICT (id) DO NOTHING
		RETURNING id, queue, state
	)`
	// enqueueFresh is enqueue for a batch stored on its own, outside a
	// caller's transaction: a plain INSERT, which writes a third less WAL
	// than ON CONFLICT's speculative insertion (no confirmation record per
	// row) and skips its conflict pre-check, and no row per task comes back.
	// A task ID already stored fails the whole statement, which commits
	// nothing, and the batch goes again through enqueue. $1… as for enqueue,
	// $18 the shard, $19 the channel to notify in the statement itself
	// (NULL: the waker notifies after it).
	s.enqueueFresh = q(strings.Replace(input, "ON CONFLICT (id) DO NOTHING\n", "", 1) + `, counted AS (
		INSERT INTO {s}.ebb_queue_counters (queue, shard, enqueued)
		SELECT queue, $18, count(*) FROM ins GROUP BY queue
		ON CONFLICT (queue, shard) DO UPDATE SET enqueued = ebb_queue_counters.enqueued + excluded.enqueued
	), woken AS (
		SELECT pg_notify($19, ` + strings.Replace(notifyQueued, "%s", "queue", 1) + `)
		FROM (SELECT DISTINCT queue FROM ins WHERE state = 'queued') AS w WHERE $19::text IS NOT NULL
	)
	SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM woken)`)
	s.enqueue = q(input + `, counted AS (
		INSERT INTO {s}.ebb_queue_counters (queue, shard, enqueued)
		SELECT queue, $18, count(*) FROM ins GROUP BY queue
		ON CONFLICT (queue, shard) DO UPDATE SET enqueued = ebb_queue_counters.enqueued + excluded.enqueued
	), woken AS (
		SELECT pg_notify($19, ` + strings.Replace(notifyQueued, "%s", "queue", 1) + `)
		FROM (SELECT DISTINCT queue FROM ins WHERE state = 'queued') AS w WHERE $19::text IS NOT NULL
	)
	SELECT id, (SELECT count(*) FROM woken) FROM ins`)
	// The unique-key path stores tasks one at a time and counts them at the
	// end, with counted: $1 queues, $2 stored counts, $3 queues to wake,
	// $4 the shard, $5 the channel.
	s.insertOnly = q(input + ` SELECT id FROM ins`)
	s.counted = q(`WITH c AS (
		INSERT INTO {s}.ebb_queue_counters (queue, shard, enqueued)
		SELECT queue, $4, n FROM unnest($1::text[], $2::bigint[]) AS t(queue, n)
		ON CONFLICT (queue, shard) DO UPDATE SET enqueued = ebb_queue_counters.enqueued + excluded.enqueued
	), woken AS (
		SELECT pg_notify($5, ` + strings.Replace(notifyQueued, "%s", "queue", 1) + `) FROM unnest($3::text[]) AS w(queue)
		WHERE $5::text IS NOT NULL
	)
	SELECT (SELECT count(*) FROM woken)`)
	// Enqueues of one key wait for each other here, so the takeKey that
	// follows, with a snapshot taken after the wait, sees the holder that
	// committed meanwhile (an ON CONFLICT test alone reads the snapshot of
	// before the wait, in which that holder's task did not exist yet).
	s.lockKey = q(`SELECT pg_advisory_xact_lock(hashtextextended('ebb-unique:' || $1 || ':' || $2, 0))`)
	// Takes queue $1's key $2 for task $3 (expiring at $4, NULL: held until
	// terminal) unless another task holds it at $5: its key has not
	// expired, or it has none and is not terminal. The conflicting row is
	// locked either way, so concurrent takers queue up on it.
	s.takeKey = q(`INSERT INTO {s}.ebb_unique_keys AS k (queue, key, task_id, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (queue, key) DO UPDATE SET task_id = excluded.task_id, expires_at = excluded.expires_at
		WHERE k.task_id = excluded.task_id
			OR (k.expires_at IS NOT NULL AND k.expires_at <= $5)
			OR (k.expires_at IS NULL AND NOT EXISTS (SELECT 1 FROM {s}.ebb_tasks t
				WHERE t.id = k.task_id AND t.state NOT IN ('succeeded', 'dead', 'cancelled')))
		RETURNING task_id`)
	s.keyHolder = q(`SELECT task_id FROM {s}.ebb_unique_keys WHERE queue = $1 AND key = $2`)
	s.dropTask = q(`DELETE FROM {s}.ebb_tasks WHERE id = $1`)

	// Fetch: $1 queue, $2 now, $3 limit.
	s.promote = q(`UPDATE {s}.ebb_tasks SET state = 'queued'
		WHERE id = ANY(ARRAY(SELECT id FROM {s}.ebb_tasks
			WHERE queue = $1 AND state IN ('scheduled', 'retrying') AND run_at <= $2
			ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED))`)
	// $1 commit asynchronously. A fetch's first statement: planByIndex and,
	// unless Config.SyncCommit, commit without waiting for the flush.
	s.fetchBegin = planByIndex + `, ` + asyncCommit("$1")
	// Fetch's promotion, after fetchBegin: promote, and the earliest run_at of the
	// waiting tasks it left (its subquery reads the statement's snapshot,
	// in which the promoted rows still wait, hence the NOT IN).
	s.promoteNext = q(`WITH p AS (
		UPDATE {s}.ebb_tasks SET state = 'queued'
		WHERE id = ANY(ARRAY(SELECT id FROM {s}.ebb_tasks
			WHERE queue = $1 AND state IN ('scheduled', 'retrying') AND run_at <= $2
			ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED))
		RETURNING id)
	SELECT (SELECT count(*) FROM p), (SELECT min(run_at) FROM {s}.ebb_tasks
		WHERE queue = $1 AND state IN ('scheduled', 'retrying') AND id NOT IN (SELECT id FROM p))`)
	// $1 now, $2 worker, $3 token, $4 lease expiry, $5 queue, $6 limit.
	// The update finds the rows by the ctids the subquery locked, a TID
	// scan, not by id: joining the ids back costs a primary-key lookup per
	// row and a hash of the batch, a fifth of the claim (EXPLAIN ANALYZE of
	// 4,000 rows: 41 against 53 ms). A locked row cannot move before the
	// commit. One that a concurrent transaction changed after this
	// statement's snapshot is locked at its newer version, which the
	// update's snapshot does not see, so it is left out of the batch and
	// stays queued for the next fetch.
	s.claim = q(`UPDATE {s}.ebb_tasks SET state = 'running', attempt = attempt + 1, started_at = $1,
		worker_id = $2, lease_token = $3, lease_expires_at = $4
		WHERE ctid = ANY(ARRAY(SELECT ctid FROM {s}.ebb_tasks WHERE queue = $5 AND state = 'queued'
			ORDER BY priority, run_at, id LIMIT $6 FOR UPDATE SKIP LOCKED))
		RETURNING ` + taskCols)
	s.nextDue = q(`SELECT min(run_at) FROM {s}.ebb_tasks WHERE queue = $1 AND state IN ('scheduled', 'retrying')`)
	// A retried fetch's earlier claims: $1 queue, $2 token, $3 limit.
	s.reclaim = q(`SELECT ` + taskCols + ` FROM {s}.ebb_tasks
		WHERE queue = $1 AND state = 'running' AND lease_token = $2
		ORDER BY priority, run_at, id LIMIT $3`)
	s.extend = q(`UPDATE {s}.ebb_tasks t SET lease_expires_at = $1
		FROM unnest($2::text[] COLLATE "C", $3::text[]) AS l(id, token)
		WHERE ` + heldBy("$2", "l") + `
		RETURNING t.id, l.token, t.cancel_requested`)

	// Complete: arrays $1 id, $2 token, $3 outcome, $4 result, $5 error
	// JSON, $6 run at (retries), $7 now; $8 shard, $9 channel, $10 commit
	// asynchronously. The ids are unnested in the id column's collation:
	// with the default one the join cannot use the primary key and a batch
	// of 1,000 compared every pair (a second per batch). Outcomes
	// are ebbdriver.Outcome's values. Awaited tasks that finish, and queues
	// that got tasks back, are notified; nothing else is.
	s.complete = q(`WITH c AS (
		SELECT * FROM unnest($1::text[] COLLATE "C", $2::text[], $3::int[], $4::bytea[], $5::text[], $6::bigint[], $7::bigint[])
		AS c(id, token, outcome, result, err, run_at, now)
	), u AS (
		UPDATE {s}.ebb_tasks t SET
			state = CASE c.outcome WHEN 1 THEN 'succeeded'
				WHEN 2 THEN CASE WHEN c.run_at > c.now THEN 'retrying' ELSE 'queued' END
				WHEN 3 THEN 'dead' WHEN 4 THEN 'cancelled' ELSE 'queued' END,
			result = CASE WHEN c.outcome = 1 THEN c.result ELSE t.result END,
			finished_at = CASE WHEN c.outcome IN (1, 3, 4) THEN c.now ELSE t.finished_at END,
			expires_at = CASE WHEN c.outcome IN (1, 4) THEN c.now + t.retention ELSE t.expires_at END,
			run_at = CASE WHEN c.outcome = 2 THEN c.run_at ELSE t.run_at END,
			attempt = CASE WHEN c.outcome = 5 THEN greatest(t.attempt - 1, 0) ELSE t.attempt END,
			errors = CASE WHEN c.err IS NULL THEN t.errors ELSE ` + appendErr("c.err::jsonb") + ` END,
			lease_token = NULL, lease_expires_at = 0
		FROM c WHERE ` + heldBy("$1", "c") + `
		RETURNING t.id, c.token, t.queue, t.state, t.unique_key, t.unique_ttl, c.outcome
	), keys AS (
		DELETE FROM {s}.ebb_unique_keys k USING u
		WHERE u.state IN ('succeeded', 'dead', 'cancelled') AND u.unique_key IS NOT NULL AND u.unique_ttl = 0
			AND k.queue = u.queue AND k.key = u.unique_key AND k.task_id = u.id AND k.expires_at IS NULL
	), tot AS (
		INSERT INTO {s}.ebb_queue_counters AS q (queue, shard, succeeded, failed, retried)
		SELECT queue, $8, count(*) FILTER (WHERE outcome = 1), count(*) FILTER (WHERE outcome = 3),
			count(*) FILTER (WHERE outcome = 2)
		FROM u WHERE outcome IN (1, 2, 3) GROUP BY queue
		ON CONFLICT (queue, shard) DO UPDATE SET succeeded = q.succeeded + excluded.succeeded,
			failed = q.failed + excluded.failed, retried = q.retried + excluded.retried
	), woken AS (
		SELECT pg_notify($9, ` + strings.Replace(notifyQueued, "%s", "queue", 1) + `)
		FROM (SELECT DISTINCT queue FROM u WHERE state = 'queued') AS w
		UNION ALL
		SELECT pg_notify($9, json_build_object('k', 'f', 'id', a.task_id)::text)
		FROM (SELECT DISTINCT a.task_id FROM u JOIN {s}.ebb_awaiters a ON a.task_id = u.id
			WHERE u.state IN ('succeeded', 'dead', 'cancelled') AND EXISTS (SELECT 1 FROM {s}.ebb_awaiters)) AS a
	)
	SELECT id, token, (SELECT count(*) FROM woken), ` + asyncCommit("$10") + ` FROM u`)
	// completeOK is complete for a batch of successes only, the common
	// case: four arrays to send and unnest instead of seven, and no CASE
	// per column. $1 id, $2 token, $3 result, $4 now; $5 shard, $6
	// channel, $7 commit asynchronously.
	s.completeOK = q(`WITH u AS (
		UPDATE {s}.ebb_tasks t SET state = 'succeeded', result = c.result, finished_at = c.now,
			expires_at = c.now + t.retention, lease_token = NULL, lease_expires_at = 0
		FROM unnest($1::text[] COLLATE "C", $2::text[], $3::bytea[], $4::bigint[]) AS c(id, token, result, now)
		WHERE ` + heldBy("$1", "c") + `
		RETURNING t.id, c.token, t.queue, t.unique_key, t.unique_ttl
	), keys AS (
		DELETE FROM {s}.ebb_unique_keys k USING u
		WHERE u.unique_key IS NOT NULL AND u.unique_ttl = 0
			AND k.queue = u.queue AND k.key = u.unique_key AND k.task_id = u.id AND k.expires_at IS NULL
	), tot AS (
		INSERT INTO {s}.ebb_queue_counters AS q (queue, shard, succeeded)
		SELECT queue, $5, count(*) FROM u GROUP BY queue
		ON CONFLICT (queue, shard) DO UPDATE SET succeeded = q.succeeded + excluded.succeeded
	), woken AS (
		SELECT pg_notify($6, json_build_object('k', 'f', 'id', a.task_id)::text)
		FROM (SELECT DISTINCT a.task_id FROM u JOIN {s}.ebb_awaiters a ON a.task_id = u.id
			WHERE EXISTS (SELECT 1 FROM {s}.ebb_awaiters)) AS a
	)
	SELECT id, token, (SELECT count(*) FROM woken), ` + asyncCommit("$7") + ` FROM u`)
	s.lostOrGone = q(`SELECT id FROM {s}.ebb_tasks WHERE id = ANY($1::text[])`)

	s.taskGet = q(`SELECT ` + taskCols + ` FROM {s}.ebb_tasks WHERE id = $1`)

	// Rescue: $1 queue, $2 now, $3 now as a JSON time string, $4 limit,
	// $5 shard, $6 channel.
	s.rescue = q(`WITH r AS (
		UPDATE {s}.ebb_tasks SET
			state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
			finished_at = CASE WHEN attempt >= max_attempts THEN $2 ELSE finished_at END,
			errors = ` + appendErr(`jsonb_build_object('attempt', attempt, 'at', $3::text, 'error', 'lease expired', 'worker_id', coalesce(worker_id, ''))`) + `,
			lease_token = NULL, lease_expires_at = 0
		WHERE id = ANY(ARRAY(SELECT id FROM {s}.ebb_tasks WHERE queue = $1 AND state = 'running'
			AND lease_expires_at < $2 ORDER BY lease_expires_at LIMIT $4 FOR UPDATE SKIP LOCKED))
		RETURNING id, queue, state, unique_key, unique_ttl
	), keys AS (
		DELETE FROM {s}.ebb_unique_keys k USING r
		WHERE r.state = 'dead' AND r.unique_ttl = 0 AND k.queue = r.queue AND k.key = r.unique_key
			AND k.task_id = r.id AND k.expires_at IS NULL
	), tot AS (
		INSERT INTO {s}.ebb_queue_counters AS q (queue, shard, failed, retried)
		SELECT $1, $5, count(*) FILTER (WHERE state = 'dead'), count(*) FILTER (WHERE state = 'queued')
		FROM r HAVING count(*) > 0
		ON CONFLICT (queue, shard) DO UPDATE SET failed = q.failed + excluded.failed, retried = q.retried + excluded.retried
	), woken AS (
		SELECT pg_notify($6, ` + strings.Replace(notifyQueued, "%s", "$1::text", 1) + `)
		WHERE EXISTS (SELECT 1 FROM r WHERE state = 'queued')
		UNION ALL
		SELECT pg_notify($6, json_build_object('k', 'f', 'id', a.task_id)::text)
		FROM (SELECT DISTINCT a.task_id FROM r JOIN {s}.ebb_awaiters a ON a.task_id = r.id WHERE r.state = 'dead') AS a
	)
	SELECT id, state, (SELECT count(*) FROM woken) FROM r`)

	// Cleanup: $1 queue, $2 bound, $3 limit (NULL: none).
	s.cleanupFinished = q(`DELETE FROM {s}.ebb_tasks WHERE id = ANY(ARRAY(SELECT id FROM {s}.ebb_tasks
		WHERE queue = $1 AND expires_at <= $2 ORDER BY expires_at LIMIT $3))`)
	s.cleanupDead = q(`DELETE FROM {s}.ebb_tasks WHERE id = ANY(ARRAY(SELECT id FROM {s}.ebb_tasks
		WHERE queue = $1 AND state = 'dead' AND finished_at < $2 ORDER BY finished_at LIMIT $3))`)
	s.cleanupKeys = q(`DELETE FROM {s}.ebb_unique_keys WHERE (queue, key) IN (SELECT queue, key
		FROM {s}.ebb_unique_keys WHERE expires_at <= $1 LIMIT $2)`)
	s.cleanupAwaiters = q(`DELETE FROM {s}.ebb_awaiters WHERE expires_at <= $1`)
	s.queueNames = q(`SELECT DISTINCT queue FROM {s}.ebb_queue_counters ORDER BY queue`)

	// $1 now. One row per queue that ever received a task, by name.
	s.stats = q(`SELECT c.queue, c.enqueued, c.succeeded, c.failed, c.retried,
		qd.n, qd.oldest, w.n, w.due, w.next, r.n, dd.n
	FROM (SELECT queue, sum(enqueued)::bigint AS enqueued, sum(succeeded)::bigint AS succeeded,
			sum(failed)::bigint AS failed, sum(retried)::bigint AS retried
		FROM {s}.ebb_queue_counters GROUP BY queue) AS c
	CROSS JOIN LATERAL (SELECT count(*) AS n, min(run_at) AS oldest FROM {s}.ebb_tasks
		WHERE queue = c.queue AND state = 'queued') AS qd
	CROSS JOIN LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE run_at <= $1) AS due, min(run_at) AS next
		FROM {s}.ebb_tasks WHERE queue = c.queue AND state IN ('scheduled', 'retrying')) AS w
	CROSS JOIN LATERAL (SELECT count(*) AS n FROM {s}.ebb_tasks WHERE queue = c.queue AND state = 'running') AS r
	CROSS JOIN LATERAL (SELECT count(*) AS n FROM {s}.ebb_tasks WHERE queue = c.queue AND state = 'dead') AS dd
	ORDER BY c.queue`)

	s.awaitAdd = q(`INSERT INTO {s}.ebb_awaiters (task_id, token, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (task_id, token) DO UPDATE SET expires_at = excluded.expires_at`)
	s.awaitDel = q(`DELETE FROM {s}.ebb_awaiters WHERE task_id = $1 AND token = $2`)
	return s
}
