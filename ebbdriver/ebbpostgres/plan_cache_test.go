package ebbpostgres_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testpg"
	"github.com/ebbq/ebb/internal/tid"
)

// TestPlansSurviveTheTableGrowing: PostgreSQL caches a generic plan for a
// prepared statement after five executions, and keeps it until the table's
// statistics change. Made while ebb_tasks is nearly empty, which is how
// every deployment and every benchmark starts, a generic plan reads the
// whole table (a sequential scan is the cheapest way through one page)
// and goes on doing so as the table grows, until autovacuum's ANALYZE
// replaces it. Steady latency then rose with every task stored. The
// worker's statements run with plans made for the table as it is, so
// after the table grows by fifty thousand rows, with autovacuum off so no
// ANALYZE can come to the rescue, none of them reads the table
// sequentially. The plans are the ones PostgreSQL executed, reported by
// auto_explain.
func TestPlansSurviveTheTableGrowing(t *testing.T) {
	t.Parallel()
	testpg.Check(t)
	ctx := t.Context()
	pc, err := pgxpool.ParseConfig(testpg.URL())
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 1 // one connection, so it is the one whose plans are cached
	var (
		mu     sync.Mutex
		plans  []string
		record atomic.Bool
	)
	pc.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if record.Load() && strings.Contains(n.Message, "plan:") {
			mu.Lock()
			plans = append(plans, n.Message)
			mu.Unlock()
		}
	}
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_level = notice`)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	schema := testpg.Schema(t)
	d, err := ebbpostgres.New(ctx, pool, &ebbpostgres.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tasks := pgx.Identifier{schema, "ebb_tasks"}.Sanitize()
	if _, err := pool.Exec(ctx, `ALTER TABLE `+tasks+` SET (autovacuum_enabled = false)`); err != nil {
		t.Fatal(err)
	}

	// extendAndComplete renews the claimed tasks' leases, then records
	// their successes.
	extendAndComplete := func(claimed []*ebbtype.TaskInfo, now time.Time) {
		t.Helper()
		var leases []ebbdriver.LeaseRef
		var done []ebbdriver.Completion
		for _, task := range claimed {
			leases = append(leases, ebbdriver.LeaseRef{Queue: "q", ID: task.ID, Token: task.LeaseToken})
			done = append(done, ebbdriver.Completion{Queue: "q", ID: task.ID, LeaseToken: task.LeaseToken,
				Outcome: ebbdriver.OutcomeSucceeded, Now: now})
		}
		if _, err := d.ExtendLeases(ctx, ebbdriver.ExtendLeasesParams{Leases: leases, Until: now.Add(2 * time.Minute), Now: now}); err != nil {
			t.Fatalf("ExtendLeases of %d tasks: %v", len(claimed), err)
		}
		errs, err := d.Complete(ctx, done)
		if err != nil {
			t.Fatalf("Complete of %d tasks: %v", len(claimed), err)
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Complete of task %s: %v", claimed[i].ID, err)
			}
		}
	}
	// One round of the worker's statements: enqueue, promote a due
	// task, claim, extend, complete, read back, rescue and clean up. Odd
	// rounds fetch from two queues, which takes the other path.
	round := func(i int) {
		t.Helper()
		now := time.Now()
		fresh := &ebbtype.TaskInfo{ID: tid.NewAt(now), Queue: "q", Kind: "k", EncodedArgs: []byte(`{}`),
			Priority: ebbtype.PriorityNormal, RunAt: now, MaxAttempts: 3, Retention: time.Hour, EnqueuedAt: now}
		later := *fresh
		later.ID, later.RunAt = tid.NewAt(now), now.Add(time.Millisecond)
		if _, err := d.Enqueue(ctx, []*ebbtype.TaskInfo{fresh, &later}); err != nil {
			t.Fatalf("round %d: Enqueue: %v", i, err)
		}
		token := "tok" + fresh.ID
		queues := []string{"q"}
		if i%2 == 1 {
			queues = append(queues, "r")
		}
		res, err := d.Fetch(ctx, ebbdriver.FetchParams{Queues: queues, Limit: 10, WorkerID: "w", LeaseToken: token,
			LeaseDuration: time.Minute, Now: now.Add(2 * time.Millisecond)})
		if err != nil || len(res.Tasks) != 2 {
			t.Fatalf("round %d: Fetch = %+v, %v; want the fresh and the promoted task", i, res, err)
		}
		extendAndComplete(res.Tasks, now)
		if got, err := d.TaskGet(ctx, fresh.ID); err != nil || got.State != ebbtype.StateSucceeded {
			t.Fatalf("round %d: TaskGet = %+v, %v", i, got, err)
		}
		if _, err := d.RescueExpired(ctx, "q", now, 100); err != nil {
			t.Fatalf("round %d: RescueExpired: %v", i, err)
		}
		if _, err := d.Cleanup(ctx, ebbdriver.CleanupParams{Queue: "q", Now: now, DeadRetention: time.Hour, Limit: 100}); err != nil {
			t.Fatalf("round %d: Cleanup: %v", i, err)
		}
	}
	const warm = 12 // each path past the five executions after which plans are cached
	for i := range warm {
		round(i)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO `+tasks+` (id, queue, kind, priority, run_at, attempt, max_attempts,
		timeout, retention, unique_ttl, state, enqueued_at, finished_at, expires_at)
		SELECT lpad(i::text, 26, '0'), 'q', 'k', 2, i, 1, 3, 0, 0, 0, 'succeeded', i, i, 9e18::bigint
		FROM generate_series(1, 50000) AS i`); err != nil {
		t.Fatal(err)
	}
	record.Store(true)
	for i := range 4 {
		round(warm + i)
	}
	// A burn-down's batch: a plan made for five hundred ids in a table
	// of fifty thousand rows, when the table has never been analyzed,
	// preferred reading the whole table to five hundred lookups.
	now := time.Now()
	batch := make([]*ebbtype.TaskInfo, 500)
	for i := range batch {
		batch[i] = &ebbtype.TaskInfo{ID: tid.NewAt(now), Queue: "q", Kind: "k", EncodedArgs: []byte(`{}`),
			Priority: ebbtype.PriorityNormal, RunAt: now, MaxAttempts: 3, Retention: time.Hour, EnqueuedAt: now}
	}
	if _, err := d.Enqueue(ctx, batch); err != nil {
		t.Fatal(err)
	}
	res, err := d.Fetch(ctx, ebbdriver.FetchParams{Queues: []string{"q"}, Limit: len(batch), WorkerID: "w", LeaseToken: "big",
		LeaseDuration: time.Minute, Now: now})
	if err != nil || len(res.Tasks) != len(batch) {
		t.Fatalf("Fetch of the batch = %d tasks, %v", len(res.Tasks), err)
	}
	extendAndComplete(res.Tasks, now)
	record.Store(false)
	mu.Lock()
	defer mu.Unlock()
	var byPrimaryKey bool
	for _, p := range plans {
		if strings.Contains(p, "Seq Scan on ebb_tasks") {
			t.Errorf("a statement read the whole table:\n%s", p)
		}
		byPrimaryKey = byPrimaryKey || strings.Contains(p, "ebb_tasks_pkey")
	}
	if !byPrimaryKey {
		t.Errorf("auto_explain reported %d plans, none reading the primary key: the test sees nothing", len(plans))
	}
}
