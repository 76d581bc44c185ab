package ebbpostgres_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testpg"
)

// TestAsyncCommitStaysInItsTransaction: fetches, completions and leader
// elections commit
// without waiting for the flush, but that setting (and the planner
// settings of fetches and completions) must end with their transaction: on the same connection the next enqueue (whose durability
// is promised) commits synchronously again.
func TestAsyncCommitStaysInItsTransaction(t *testing.T) {
	t.Parallel()
	testpg.Check(t)
	pc, err := pgxpool.ParseConfig(testpg.URL())
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 1 // every statement on one connection
	pool, err := pgxpool.NewWithConfig(t.Context(), pc)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	d, err := ebbpostgres.New(t.Context(), pool, &ebbpostgres.Config{Schema: testpg.Schema(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	setting := func(after string) {
		t.Helper()
		// The planner settings of fetches and completions (planByIndex)
		// must end with their transaction too.
		for name, want := range map[string]string{"synchronous_commit": "on", "enable_seqscan": "on"} {
			var v string
			if err := pool.QueryRow(t.Context(), "SHOW "+name).Scan(&v); err != nil {
				t.Fatal(err)
			}
			if v != want {
				t.Errorf("after %s the connection's %s is %q, want %s", after, name, v, want)
			}
		}
	}
	now := time.Now()
	task := &ebbtype.TaskInfo{ID: "01TESTASYNCCOMMIT000000001", Queue: "q", Kind: "k", Priority: 2, RunAt: now,
		MaxAttempts: 3, Retention: time.Hour, EnqueuedAt: now, State: ebbtype.StateQueued}
	if _, err := d.Enqueue(t.Context(), []*ebbtype.TaskInfo{task}); err != nil {
		t.Fatal(err)
	}
	res, err := d.Fetch(t.Context(), ebbdriver.FetchParams{Queues: []string{"q"}, Limit: 10, WorkerID: "w", LeaseToken: "tok",
		LeaseDuration: time.Minute, Now: now})
	if err != nil || len(res.Tasks) != 1 {
		t.Fatalf("Fetch = %v, %v", res, err)
	}
	setting("a fetch")
	errs, err := d.Complete(t.Context(), []ebbdriver.Completion{{Queue: "q", ID: task.ID, LeaseToken: "tok",
		Outcome: ebbdriver.OutcomeSucceeded, Result: []byte(`1`), Now: now}})
	if err != nil || errs[0] != nil {
		t.Fatalf("Complete = %v, %v", errs, err)
	}
	setting("a completion")
	if _, err := d.LeaderAttempt(t.Context(), ebbdriver.LeaderParams{Name: "n", ID: "me", TTL: time.Minute, Now: now}); err != nil {
		t.Fatal(err)
	}
	setting("a leader election")
}
