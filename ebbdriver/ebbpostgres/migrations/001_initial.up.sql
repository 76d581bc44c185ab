-- ebb's tables. {s} is the schema, quoted; every name starts with ebb_ so
-- the tables can share a schema (public, say) with an application's own.
-- Times are Unix nanoseconds (0: unset) and durations nanoseconds, as the
-- callers pass them: no precision is lost and every driver agrees.

-- One row per task; id is time-ordered, compared bytewise.
CREATE TABLE {s}.ebb_tasks (
	id               text COLLATE "C" PRIMARY KEY,
	queue            text COLLATE "C" NOT NULL,
	kind             text    NOT NULL,
	args             bytea,
	headers          jsonb,
	priority         integer NOT NULL,
	run_at           bigint  NOT NULL,
	attempt          integer NOT NULL,
	max_attempts     integer NOT NULL,
	timeout          bigint  NOT NULL,
	retention        bigint  NOT NULL,
	unique_key       text,
	unique_ttl       bigint  NOT NULL,
	state            text    NOT NULL,
	enqueued_at      bigint  NOT NULL,
	started_at       bigint  NOT NULL DEFAULT 0,
	finished_at      bigint  NOT NULL DEFAULT 0,
	worker_id        text,
	lease_token      text,
	lease_expires_at bigint  NOT NULL DEFAULT 0,
	cancel_requested boolean NOT NULL DEFAULT false,
	errors           jsonb,
	result           bytea,
	-- finished_at + retention for succeeded and cancelled tasks, NULL
	-- otherwise: what Cleanup deletes by.
	expires_at       bigint
);

-- Every index but the primary key is partial: a row sits only in the index
-- of its state's work, so finished rows kept for their retention cost the
-- fetches and counts nothing.
CREATE INDEX ebb_tasks_queued ON {s}.ebb_tasks (queue, priority, run_at, id) WHERE state = 'queued';
CREATE INDEX ebb_tasks_waiting ON {s}.ebb_tasks (queue, run_at) WHERE state IN ('scheduled', 'retrying');
CREATE INDEX ebb_tasks_running ON {s}.ebb_tasks (queue, lease_expires_at) WHERE state = 'running';
CREATE INDEX ebb_tasks_dead ON {s}.ebb_tasks (queue, finished_at, id) WHERE state = 'dead';
CREATE INDEX ebb_tasks_expiring ON {s}.ebb_tasks (queue, expires_at) WHERE expires_at IS NOT NULL;

-- Running totals per queue, split over a few shard rows so concurrent
-- completions do not all wait for one row lock. A queue has a row once it
-- has received a task.
CREATE TABLE {s}.ebb_queue_counters (
	queue     text COLLATE "C" NOT NULL,
	shard     integer NOT NULL,
	enqueued  bigint  NOT NULL DEFAULT 0,
	succeeded bigint  NOT NULL DEFAULT 0,
	failed    bigint  NOT NULL DEFAULT 0,
	retried   bigint  NOT NULL DEFAULT 0,
	PRIMARY KEY (queue, shard)
);

-- Held unique keys, scoped to a queue. expires_at NULL: held while task_id
-- is not terminal (UniqueTTL 0); otherwise until expires_at.
CREATE TABLE {s}.ebb_unique_keys (
	queue      text COLLATE "C" NOT NULL,
	key        text NOT NULL,
	task_id    text NOT NULL,
	expires_at bigint,
	PRIMARY KEY (queue, key)
);
CREATE INDEX ebb_unique_keys_expiring ON {s}.ebb_unique_keys (expires_at) WHERE expires_at IS NOT NULL;

-- Tasks some process awaits: finishing one of them notifies, finishing the
-- others does not, so completions cost no notification unless awaited.
CREATE TABLE {s}.ebb_awaiters (
	task_id    text COLLATE "C" NOT NULL,
	token      text NOT NULL,
	expires_at bigint NOT NULL,
	PRIMARY KEY (task_id, token)
);

-- Live workers; info is the WorkerInfo as JSON.
CREATE TABLE {s}.ebb_workers (
	id              text COLLATE "C" PRIMARY KEY,
	info            jsonb   NOT NULL,
	expires_at      bigint  NOT NULL,
	drain_requested boolean NOT NULL DEFAULT false
);

-- One row per election, kept after its leader expires or resigns
-- (expires_at 0) so the next term is always one above the last.
CREATE TABLE {s}.ebb_leaders (
	name       text PRIMARY KEY,
	leader_id  text   NOT NULL,
	term       bigint NOT NULL,
	expires_at bigint NOT NULL
);

-- The fenced scaling decision log, trimmed per pool on append.
CREATE TABLE {s}.ebb_decisions (
	seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	pool      text    NOT NULL,
	at        bigint  NOT NULL,
	term      bigint  NOT NULL,
	leader_id text    NOT NULL,
	from_n    integer NOT NULL,
	to_n      integer NOT NULL,
	action    text    NOT NULL,
	reason    text    NOT NULL,
	inputs    bytea,
	drained   jsonb
);
CREATE INDEX ebb_decisions_pool ON {s}.ebb_decisions (pool, seq);

-- Beat's schedules: the definition, written whole by every upsert, and the
-- firing state, which upserts keep.
CREATE TABLE {s}.ebb_schedules (
	name         text COLLATE "C" PRIMARY KEY,
	cron         text    NOT NULL,
	every        bigint  NOT NULL,
	at           bigint  NOT NULL,
	tz           text    NOT NULL,
	catch_up     text    NOT NULL,
	kind         text    NOT NULL,
	args         bytea,
	queue        text    NOT NULL,
	priority     integer NOT NULL,
	max_attempts integer NOT NULL,
	timeout      bigint  NOT NULL,
	headers      jsonb,
	paused       boolean NOT NULL DEFAULT false,
	last_tick_at bigint  NOT NULL DEFAULT 0,
	last_task_id text    NOT NULL DEFAULT '',
	created_at   bigint  NOT NULL,
	updated_at   bigint  NOT NULL
);
