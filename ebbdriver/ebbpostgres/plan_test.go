package ebbpostgres_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPlansUseStateIndexes: with a hundred thousand finished tasks stored
// and a few in each working state, the fetch, the queue counts and the
// lease rescue read their state's partial index, never the whole table.
func TestPlansUseStateIndexes(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	tasks := pgx.Identifier{d.Schema(), "ebb_tasks"}.Sanitize()
	ctx := t.Context()
	if _, err := d.Pool().Exec(ctx, `INSERT INTO `+tasks+` (id, queue, kind, priority, run_at, attempt, max_attempts,
		timeout, retention, unique_ttl, state, enqueued_at, finished_at, expires_at)
		SELECT lpad(i::text, 26, '0'), 'q', 'k', 2, i, 1, 3, 0, 0, 0,
			CASE WHEN i % 1000 = 1 THEN 'queued' WHEN i % 1000 = 2 THEN 'running' WHEN i % 1000 = 3 THEN 'scheduled'
				WHEN i % 1000 = 4 THEN 'dead' ELSE 'succeeded' END, i, i, i + 1000000
		FROM generate_series(1, 100000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pool().Exec(ctx, `INSERT INTO `+pgx.Identifier{d.Schema(), "ebb_queue_counters"}.Sanitize()+` (queue, shard) VALUES ('q', 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pool().Exec(ctx, `ANALYZE `+tasks); err != nil {
		t.Fatal(err)
	}
	s := pgx.Identifier{d.Schema()}.Sanitize()
	for _, c := range []struct{ name, query, index string }{
		{"claim", `UPDATE {s}.ebb_tasks SET state = 'running' WHERE ctid = ANY(ARRAY(SELECT ctid FROM {s}.ebb_tasks
			WHERE queue = 'q' AND state = 'queued' ORDER BY priority, run_at, id LIMIT 500 FOR UPDATE SKIP LOCKED))`, "ebb_tasks_queued"},
		{"queued count and oldest", `SELECT count(*), min(run_at) FROM {s}.ebb_tasks WHERE queue = 'q' AND state = 'queued'`, "ebb_tasks_queued"},
		{"waiting count", `SELECT count(*), min(run_at) FROM {s}.ebb_tasks WHERE queue = 'q' AND state IN ('scheduled', 'retrying')`, "ebb_tasks_waiting"},
		{"running count", `SELECT count(*) FROM {s}.ebb_tasks WHERE queue = 'q' AND state = 'running'`, "ebb_tasks_running"},
		{"dead count", `SELECT count(*) FROM {s}.ebb_tasks WHERE queue = 'q' AND state = 'dead'`, "ebb_tasks_dead"},
		{"rescue", `SELECT id FROM {s}.ebb_tasks WHERE queue = 'q' AND state = 'running' AND lease_expires_at < 5
			ORDER BY lease_expires_at LIMIT 100`, "ebb_tasks_running"},
		{"cleanup", `SELECT id FROM {s}.ebb_tasks WHERE queue = 'q' AND expires_at <= 1000100 ORDER BY expires_at LIMIT 100`, "ebb_tasks_expiring"},
	} {
		rows, err := d.Pool().Query(ctx, "EXPLAIN "+strings.ReplaceAll(c.query, "{s}", s))
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		if !strings.Contains(plan, c.index) || strings.Contains(plan, "Seq Scan on ebb_tasks") {
			t.Errorf("%s: want a scan of %s, no Seq Scan; plan:\n%s", c.name, c.index, plan)
		}
	}
	st, err := d.QueueStats(ctx, time.Unix(0, 5000))
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Queued != 100 || st[0].InFlight != 100 || st[0].Scheduled != 100 || st[0].Dead != 100 {
		t.Errorf("QueueStats = %+v, want 100 tasks in each working state", st)
	}
}
