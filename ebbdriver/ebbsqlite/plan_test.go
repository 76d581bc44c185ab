package ebbsqlite

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestQueryPlans checks that every query that runs per fetch, per
// completion or per stats call searches the partial index of its state
// without visiting the table, so its cost does not grow with the finished
// tasks kept for their retention; and that the decision log is read and
// trimmed through its pool index, without sorting.
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	d := openPlanDriver(t)
	for _, c := range []struct {
		name, query, index string
	}{
		{"claim", `SELECT rowid FROM tasks WHERE queue = ?1 AND state = 'queued' ORDER BY priority, run_at, id LIMIT ?2`, "tasks_queued"},
		{"promote", `SELECT rowid FROM tasks WHERE queue = ?1 AND state IN ('scheduled', 'retrying') AND run_at <= ?2 ORDER BY run_at LIMIT ?3`, "tasks_waiting"},
		{"next due", `SELECT min(run_at) FROM tasks WHERE queue = ?1 AND state IN ('scheduled', 'retrying')`, "tasks_waiting"},
		{"rescue", `SELECT rowid FROM tasks WHERE queue = ?1 AND state = 'running' AND lease_expires_at < ?2 ORDER BY lease_expires_at LIMIT ?4`, "tasks_running"},
		{"stats queued", statsQueuedSQL, "tasks_queued"},
		{"stats waiting", statsWaitingSQL, "tasks_waiting"},
		{"stats running", statsRunningSQL, "tasks_running"},
		{"stats dead", statsDeadSQL, "tasks_dead"},
		{"dead list", `SELECT id FROM tasks WHERE queue = ?1 AND state = 'dead' ORDER BY finished_at DESC, id DESC LIMIT 10`, "tasks_dead"},
		{"cleanup finished", `SELECT rowid FROM tasks WHERE queue = ?1 AND expires_at <= ?2 LIMIT ?3`, "tasks_expiring"},
		{"cleanup dead", `SELECT rowid FROM tasks WHERE queue = ?1 AND state = 'dead' AND finished_at < ?2 LIMIT ?3`, "tasks_dead"},
		{"by id", `SELECT id FROM tasks WHERE id = ?1`, "sqlite_autoindex_tasks_1"},
		// Listing decisions reads their rows, so only the trim can stay
		// in the index; neither may sort.
		{"decisions of a pool", `SELECT seq, at, inputs FROM decisions WHERE pool = ?1 ORDER BY seq DESC LIMIT ?2`, "decisions_pool"},
		{"decision trim", `SELECT seq FROM decisions WHERE pool = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2`, "decisions_pool"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// ?1 is always the queue (or id); the rest are numbers.
			var args []any
			for i := 1; strings.Contains(c.query, fmt.Sprintf("?%d", i)) || i == 3 && strings.Contains(c.query, "?4"); i++ {
				if i == 1 {
					args = append(args, "q")
				} else {
					args = append(args, 0)
				}
			}
			all := queryPlan(t, d, c.name, c.query, args...)
			if strings.HasPrefix(c.index, "decisions_") {
				if !strings.Contains(all, "SEARCH decisions USING ") || !strings.Contains(all, "INDEX "+c.index+" ") {
					t.Errorf("plan %q does not search index %s", all, c.index)
				}
			} else if !strings.Contains(all, "SEARCH tasks USING COVERING INDEX "+c.index+" ") {
				t.Errorf("plan %q does not search index %s alone", all, c.index)
			}
			if strings.Contains(all, "TEMP B-TREE") {
				t.Errorf("plan %q sorts", all)
			}
		})
	}
}

// TestSucceedBatchPlan checks that the batched success walks its JSON
// argument and looks each task up by id: a scan of the tasks table would
// make every completion cost as much as the tasks kept.
func TestSucceedBatchPlan(t *testing.T) {
	t.Parallel()
	d := openPlanDriver(t)
	all := queryPlan(t, d, "succeed batch", succeedBatchSQL, `[{"i":"a","t":"x","n":1}]`)
	if !strings.Contains(all, "SEARCH tasks USING INDEX sqlite_autoindex_tasks_1 (id=?)") {
		t.Errorf("plan %q does not look tasks up by id", all)
	}
	if strings.Contains(all, "SCAN tasks") {
		t.Errorf("plan %q scans the tasks table", all)
	}
}

// TestListQueryPlans checks that TaskList's queries walk the id index for
// their window and look the window's rows up by rowid, with no sort: what
// bounds a call by its ScanLimit, however many tasks are stored.
func TestListQueryPlans(t *testing.T) {
	t.Parallel()
	d := openPlanDriver(t)
	for _, c := range []struct {
		name, query string
		args        []any
		walk        string // how the window reads the id index
	}{
		{"first page", fmt.Sprintf(listMatchSQL, listWindowFirst), []any{"", 10, "q", "dead", "k", 5}, "SCAN"},
		{"next page", fmt.Sprintf(listMatchSQL, listWindowNext), []any{"x", 10, "q", "dead", "k", 5}, "SEARCH"},
		{"first page scanned", fmt.Sprintf(listScannedSQL, listWindowFirst), []any{"", 10, "x"}, "SCAN"},
		{"next page scanned", fmt.Sprintf(listScannedSQL, listWindowNext), []any{"x", 10, "x"}, "SEARCH"},
	} {
		t.Run(c.name, func(t *testing.T) {
			all := queryPlan(t, d, c.name, c.query, c.args...)
			if !strings.Contains(all, c.walk+" tasks USING COVERING INDEX sqlite_autoindex_tasks_1") {
				t.Errorf("plan %q does not %s the id index alone", all, c.walk)
			}
			lookups := strings.Count(all, "SEARCH tasks USING INTEGER PRIMARY KEY (rowid=?)")
			if strings.Contains(c.query, "CROSS JOIN") && lookups != 1 {
				t.Errorf("plan %q does not look the window's rows up by rowid", all)
			}
			if n := strings.Count(all, " tasks "); n != 1+lookups {
				t.Errorf("plan %q reads tasks in more ways than the window and its lookups", all)
			}
			if strings.Contains(all, "TEMP B-TREE") {
				t.Errorf("plan %q sorts", all)
			}
		})
	}
}

// openPlanDriver opens a driver on a new, empty file in a temporary folder;
// it is closed when the test ends.
func openPlanDriver(t *testing.T) *Driver {
	t.Helper()
	d, err := Open(t.Context(), filepath.Join(t.TempDir(), "ebb.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// queryPlan returns the details of query's EXPLAIN QUERY PLAN rows, joined
// by "; ", and logs them under name.
func queryPlan(t *testing.T, d *Driver, name, query string, args ...any) string {
	t.Helper()
	rows, err := d.rdb.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	all := strings.Join(plan, "; ")
	t.Logf("%s: %s", name, all)
	return all
}
