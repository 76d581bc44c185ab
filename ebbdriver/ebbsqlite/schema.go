package ebbsqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// migrations[i] brings the schema from version i to i+1 (PRAGMA
// user_version). Append only: a released migration never changes.
var migrations = []string{
	// 1: initial schema.
	`
-- One row per task. Times are Unix nanoseconds (0: unset), durations
-- nanoseconds. rowid is the physical key; id is the task id.
CREATE TABLE tasks (
	id               TEXT    NOT NULL UNIQUE,
	queue            TEXT    NOT NULL,
	kind             TEXT    NOT NULL,
	args             BLOB,
	headers          TEXT,              -- JSON object, NULL when none
	priority         INTEGER NOT NULL,
	run_at           INTEGER NOT NULL,
	attempt          INTEGER NOT NULL,
	max_attempts     INTEGER NOT NULL,
	timeout          INTEGER NOT NULL,
	retention        INTEGER NOT NULL,
	unique_key       TEXT,              -- NULL when not unique
	unique_ttl       INTEGER NOT NULL,
	state            TEXT    NOT NULL,
	enqueued_at      INTEGER NOT NULL,
	started_at       INTEGER NOT NULL DEFAULT 0,
	finished_at      INTEGER NOT NULL DEFAULT 0,
	worker_id        TEXT,
	lease_token      TEXT,
	lease_expires_at INTEGER NOT NULL DEFAULT 0,
	cancel_requested INTEGER NOT NULL DEFAULT 0,
	errors           TEXT,              -- JSON array of AttemptError, NULL when none
	result           BLOB,
	-- finished_at + retention for succeeded and cancelled tasks, NULL
	-- otherwise: what Cleanup deletes by.
	expires_at       INTEGER
);

-- Every index but the id index is partial: a row sits only in the index of
-- its state's work, so the million finished rows a busy queue keeps for
-- their retention cost nothing to fetches and counts.

-- Fetch order; also counts Queued tasks and finds the oldest.
CREATE INDEX tasks_queued ON tasks (queue, priority, run_at, id) WHERE state = 'queued';
-- Due Scheduled/Retrying tasks, NextDueAt, the Scheduled count. state is
-- in the key only so the IN term is checked from the index, without
-- visiting the table.
CREATE INDEX tasks_waiting ON tasks (queue, run_at, state) WHERE state IN ('scheduled', 'retrying');
-- Expired leases, the InFlight count.
CREATE INDEX tasks_running ON tasks (queue, lease_expires_at) WHERE state = 'running';
-- Dead listing (newest death first), dead cleanup, the Dead count.
CREATE INDEX tasks_dead ON tasks (queue, finished_at, id) WHERE state = 'dead';
-- Retention cleanup of succeeded and cancelled tasks.
CREATE INDEX tasks_expiring ON tasks (queue, expires_at) WHERE expires_at IS NOT NULL;

-- Every queue that ever received a task, with running totals updated in
-- the transaction that finishes each attempt. ready_seq grows whenever
-- tasks become Queued in the queue: pollers in other processes compare it
-- to tell which queues to announce.
CREATE TABLE queues (
	name      TEXT    PRIMARY KEY,
	succeeded INTEGER NOT NULL DEFAULT 0,
	failed    INTEGER NOT NULL DEFAULT 0,
	retried   INTEGER NOT NULL DEFAULT 0,
	ready_seq INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Held unique keys, scoped to a queue. expires_at NULL: held while task_id
-- is not terminal (UniqueTTL 0); otherwise held until expires_at whatever
-- the task does.
CREATE TABLE unique_keys (
	queue      TEXT NOT NULL,
	key        TEXT NOT NULL,
	task_id    TEXT NOT NULL,
	expires_at INTEGER,
	PRIMARY KEY (queue, key)
) WITHOUT ROWID;
CREATE INDEX unique_keys_expiring ON unique_keys (expires_at) WHERE expires_at IS NOT NULL;

-- Live workers. info is the WorkerInfo as JSON.
CREATE TABLE workers (
	id              TEXT    PRIMARY KEY,
	info            TEXT    NOT NULL,
	expires_at      INTEGER NOT NULL,
	drain_requested INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Cancel and drain requests for pollers in other processes, in commit
-- order. AUTOINCREMENT: seq never goes back even when pruning empties the
-- table, so a poller's "seen up to" mark stays valid.
CREATE TABLE events (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	kind      TEXT    NOT NULL, -- 'cancel' | 'drain'
	queue     TEXT,
	task_id   TEXT,
	worker_id TEXT,
	at        INTEGER NOT NULL
);
`,
	// 2: the control plane (leader election, scaling decisions) and the
	// Enqueued total.
	`
-- Backfilled with the tasks the file still holds (those already cleaned up
-- cannot be counted): a total starting at 0 would read as fewer tasks ever
-- enqueued than the queue has waiting.
ALTER TABLE queues ADD COLUMN enqueued INTEGER NOT NULL DEFAULT 0;
UPDATE queues SET enqueued = c.n
	FROM (SELECT queue, count(*) AS n FROM tasks GROUP BY queue) AS c
	WHERE c.queue = queues.name;

-- One row per election, kept after its leader expires or resigns
-- (expires_at 0) so the next term is always one above the last: a fenced
-- write from an old leader must never match a new term.
CREATE TABLE leaders (
	name       TEXT    PRIMARY KEY,
	leader_id  TEXT    NOT NULL,
	term       INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The scaling decision log, trimmed per pool on append. AUTOINCREMENT:
-- seq never reuses the number of a trimmed decision.
CREATE TABLE decisions (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	pool      TEXT    NOT NULL,
	at        INTEGER NOT NULL,
	term      INTEGER NOT NULL,
	leader_id TEXT    NOT NULL,
	from_n    INTEGER NOT NULL,
	to_n      INTEGER NOT NULL,
	action    TEXT    NOT NULL,
	reason    TEXT    NOT NULL,
	inputs    BLOB,             -- JSON, NULL when none
	drained   TEXT              -- JSON array of worker ids, NULL when none
);
CREATE INDEX decisions_pool ON decisions (pool, seq);
`,
	// 3: beat's periodic schedules.
	`
-- One row per schedule: its definition, written whole by every upsert, and
-- its firing state (paused, last_tick_at, last_task_id) and created_at,
-- which upserts keep. Times and durations are nanoseconds (0: unset);
-- strings are '' when unset.
CREATE TABLE schedules (
	name         TEXT    PRIMARY KEY,
	cron         TEXT    NOT NULL,
	every        INTEGER NOT NULL,
	at           INTEGER NOT NULL,
	tz           TEXT    NOT NULL,
	catch_up     TEXT    NOT NULL,
	kind         TEXT    NOT NULL,
	args         BLOB,              -- JSON
	queue        TEXT    NOT NULL,
	priority     INTEGER NOT NULL,
	max_attempts INTEGER NOT NULL,
	timeout      INTEGER NOT NULL,
	headers      TEXT,              -- JSON object, NULL when none
	paused       INTEGER NOT NULL DEFAULT 0,
	last_tick_at INTEGER NOT NULL DEFAULT 0,
	last_task_id TEXT    NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL
) WITHOUT ROWID;
`,
}

var errSchemaNewer = errors.New("the database was written by a newer ebb")

// schemaVersion is the version this code writes and reads.
var schemaVersion = len(migrations)

// migrate brings the database to schemaVersion in one immediate transaction,
// so processes opening a new file at the same time migrate it once.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if v > schemaVersion {
		return fmt.Errorf("%w: the file has schema version %d, this ebb knows versions up to %d; upgrade ebb", errSchemaNewer, v, schemaVersion)
	}
	if v == schemaVersion {
		return nil
	}
	for i := v; i < schemaVersion; i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrating schema from version %d to %d: %w", i, i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("recording schema version: %w", err)
	}
	return tx.Commit()
}
