package ebbpostgres

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ebbq/ebb/internal/testpg"
)

// TestStatementPlansAtScale: with tens of thousands of tasks in each of
// the queued, running and finished states, the statements that pick a batch
// of rows by a subquery (promotion, rescue, cleanup) and the completion find
// their rows by index (complete and extend by primary key, not by reading
// every running task), in the plan pgx's cached statements get after five
// executions (generic) as in the first five (custom). Written as
// `id IN (SELECT …)`, rescue and cleanup were planned as a hash join over a
// sequential scan of the whole table. The claim picks its rows by the queued
// index and updates them where the subquery locked them (a TID scan), so it
// reads neither the primary key nor the table: see docs/decisions.md.
func TestStatementPlansAtScale(t *testing.T) {
	t.Parallel()
	testpg.Check(t)
	ctx := t.Context()
	d, err := Open(ctx, testpg.SchemaURL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if _, err := d.pool.Exec(ctx, `INSERT INTO `+d.t("tasks")+` (id, queue, kind, priority, run_at, attempt, max_attempts,
		timeout, retention, unique_ttl, state, enqueued_at, finished_at, expires_at, lease_token, lease_expires_at)
		SELECT lpad(i::text, 26, '0'), 'q', 'k', 2, i, 1, 3, 0, 0, 0,
			CASE i % 4 WHEN 0 THEN 'queued' WHEN 1 THEN 'running' WHEN 2 THEN 'succeeded' ELSE 'dead' END, i, i,
			CASE WHEN i % 4 = 2 THEN i + 1000000 END, CASE WHEN i % 4 = 1 THEN 'tok' END, CASE WHEN i % 4 = 1 THEN i ELSE 0 END
		FROM generate_series(1, 80000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := d.pool.Exec(ctx, `ANALYZE `+d.t("tasks")); err != nil {
		t.Fatal(err)
	}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	stmts := []struct {
		name, sql string
		args      []any
		byKey     bool   // must find its rows by primary key, reading no state index
		want      string // a plan node the statement's plan must hold
	}{
		{"claim", d.s.claim, []any{int64(5), "w", "tok2", int64(99), "q", 4000}, false, "Tid Scan on ebb_tasks"},
		{"promote", d.s.promote, []any{"q", int64(5), promoteBatch}, false, ""},
		{"promote and next due", d.s.promoteNext, []any{"q", int64(5), promoteBatch}, false, ""},
		{"rescue", d.s.rescue, []any{"q", int64(40000), "2026-01-01T00:00:00Z", 500, int32(0), d.channel}, false, ""},
		{"cleanup finished", d.s.cleanupFinished, []any{"q", int64(1040000), 500}, false, ""},
		{"cleanup dead", d.s.cleanupDead, []any{"q", int64(40000), 500}, false, ""},
		{"complete", d.s.complete, completeArgs(d, 1000), true, ""},
		{"complete successes", d.s.completeOK, completeOKArgs(d, 1000), true, ""},
		{"extend leases", d.s.extend, extendArgs(1000), true, ""},
	}
	for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
		if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
			t.Fatal(err)
		}
		for _, st := range stmts {
			// EXPLAIN without ANALYZE plans the statement and runs nothing.
			rows, err := conn.Query(ctx, "EXPLAIN "+st.sql, st.args...)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			plan := strings.Join(lines, "\n")
			if strings.Contains(plan, "Seq Scan on ebb_tasks") || strings.Contains(plan, "Hash Semi Join") {
				t.Errorf("%s (%s): reads the whole table; plan:\n%s", st.name, mode, plan)
			}
			if st.want != "" && !strings.Contains(plan, st.want) {
				t.Errorf("%s (%s): want %q in the plan; plan:\n%s", st.name, mode, st.want, plan)
			}
			if st.byKey && (!strings.Contains(plan, "ebb_tasks_pkey") || strings.Contains(plan, "ebb_tasks_running")) {
				t.Errorf("%s (%s): reads every running task instead of looking its rows up by id; plan:\n%s", st.name, mode, plan)
			}
		}
	}
	if _, err := conn.Exec(ctx, "RESET plan_cache_mode"); err != nil {
		t.Fatal(err)
	}
}

// completeOKArgs are completeOK's parameters for n running tasks' successes.
func completeOKArgs(d *Driver, n int) []any {
	a := completeArgs(d, n)
	return []any{a[0], a[1], a[3], a[6], a[7], a[8], a[9]}
}

// extendArgs are extend's parameters for n running tasks' leases.
func extendArgs(n int) []any {
	ids, tokens := make([]string, n), make([]string, n)
	for i := range n {
		ids[i], tokens[i] = fmt.Sprintf("%026d", 4*i+1), "tok"
	}
	return []any{int64(99), ids, tokens}
}

// completeArgs are complete's parameters for n running tasks' successes.
func completeArgs(d *Driver, n int) []any {
	ids, tokens := make([]string, n), make([]string, n)
	outcomes, results, errs, runAts, nows := make([]int32, n), make([][]byte, n), make([]*string, n), make([]int64, n), make([]int64, n)
	for i := range n {
		ids[i], tokens[i], outcomes[i], nows[i] = fmt.Sprintf("%026d", 4*i+1), "tok", 1, 5
	}
	return []any{ids, tokens, outcomes, results, errs, runAts, nows, int32(0), d.channel, true}
}
