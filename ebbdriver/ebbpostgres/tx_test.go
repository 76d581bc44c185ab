package ebbpostgres_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
	"github.com/ebbq/ebb/internal/testpg"
	"github.com/ebbq/ebb/internal/testwait"
)

// noteArgs is the task the transactional tests enqueue: it writes a note
// row in the application's table.
type noteArgs struct {
	Note string `json:"note"`
}

func (noteArgs) Kind() string { return "note" }

// appTable creates the application's own table in the driver's schema.
func appTable(t *testing.T, d *ebbpostgres.Driver) string {
	t.Helper()
	name := pgx.Identifier{d.Schema(), "notes"}.Sanitize()
	if _, err := d.Pool().Exec(t.Context(), `CREATE TABLE `+name+` (note text PRIMARY KEY, task_id text)`); err != nil {
		t.Fatal(err)
	}
	return name
}

func countRows(t *testing.T, d *ebbpostgres.Driver, query string, args ...any) int {
	t.Helper()
	var n int
	if err := d.Pool().QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// runWorker runs a worker of d with handlers until t ends.
func runWorker(t *testing.T, drv ebbdriver.Driver, h *ebb.Handlers, cfg ebb.WorkerConfig) {
	t.Helper()
	cfg.Handlers = h
	cfg.PollInterval = 50 * time.Millisecond
	cfg.Logger = slog.New(slog.DiscardHandler)
	w, err := ebb.NewWorker(drv, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

func noteHandlers() *ebb.Handlers {
	h := ebb.NewHandlers()
	ebb.Handle(h, func(ctx context.Context, task *ebb.Task[noteArgs]) (string, error) {
		return task.Args.Note, nil
	})
	return h
}

// TestEnqueueTx: a task enqueued in a transaction that rolls back never
// exists, not even for a worker that is running; one in a transaction that
// commits runs, with the application's row beside it. Both for pgx.Tx and
// for database/sql's *sql.Tx.
func TestEnqueueTx(t *testing.T) {
	t.Parallel()
	type txKind struct {
		name    string
		enqueue func(t *testing.T, d *ebbpostgres.Driver, c *ebb.Client, table, note string, commit bool) string
	}
	kinds := []txKind{
		{"pgx", func(t *testing.T, d *ebbpostgres.Driver, c *ebb.Client, table, note string, commit bool) string {
			ctx := t.Context()
			tx, err := d.Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (note) VALUES ($1)`, note); err != nil {
				t.Fatal(err)
			}
			res, err := ebb.EnqueueTx(ctx, c, tx, noteArgs{Note: note}, nil)
			if err != nil {
				t.Fatalf("EnqueueTx: %v", err)
			}
			if commit {
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
			return res.ID
		}},
		{"database-sql", func(t *testing.T, d *ebbpostgres.Driver, c *ebb.Client, table, note string, commit bool) string {
			ctx := t.Context()
			db, err := sql.Open("pgx", testpg.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+` (note) VALUES ($1)`, note); err != nil {
				t.Fatal(err)
			}
			res, err := ebb.EnqueueManyTx(ctx, c, tx, []ebb.EnqueueParams{{Args: noteArgs{Note: note}}, {Args: noteArgs{Note: note + "-2"}}})
			if err != nil {
				t.Fatalf("EnqueueManyTx: %v", err)
			}
			if commit {
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			return res[0].ID
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			d := newDriver(t)
			table := appTable(t, d)
			var drv ebbdriver.Driver = d
			if k.name == "database-sql" {
				drv = d.SQL()
			}
			c, err := ebb.NewClient(drv, nil)
			if err != nil {
				t.Fatal(err)
			}
			runWorker(t, drv, noteHandlers(), ebb.WorkerConfig{})

			rolledBack := k.enqueue(t, d, c, table, "rolled-back", false)
			committed := k.enqueue(t, d, c, table, "committed", true)

			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			done, err := c.Wait(ctx, committed)
			if err != nil {
				t.Fatalf("Wait for the committed task: %v", err)
			}
			if done.State != ebb.StateSucceeded || string(done.Result) != `"committed"` {
				t.Errorf("committed task: state %s result %s, want succeeded \"committed\"", done.State, done.Result)
			}
			// The worker has run the committed task, enqueued after the
			// rolled-back one: had the rolled-back one existed, it would
			// have been fetched first.
			if _, err := c.Task(t.Context(), rolledBack); !errors.Is(err, ebb.ErrTaskNotFound) {
				t.Errorf("task of the rolled-back transaction: %v, want ErrTaskNotFound", err)
			}
			if n := countRows(t, d, `SELECT count(*) FROM `+table+` WHERE note = 'rolled-back'`); n != 0 {
				t.Errorf("rolled-back row exists")
			}
			if n := countRows(t, d, `SELECT count(*) FROM `+pgx.Identifier{d.Schema(), "ebb_tasks"}.Sanitize()+` WHERE kind = 'note' AND args::text LIKE '%rolled-back%'`); n != 0 {
				t.Errorf("%d stored tasks of the rolled-back transaction", n)
			}
		})
	}
}

// TestCompleteTx: a handler writes its row and completes its task in one
// transaction; after the commit both are there, the worker stores no second
// outcome, and a handler whose transaction rolls back is retried.
func TestCompleteTx(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	table := appTable(t, d)
	c, err := ebb.NewClient(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := ebb.NewHandlers()
	ebb.Handle(h, func(ctx context.Context, task *ebb.Task[noteArgs]) (any, error) {
		tx, err := d.Pool().Begin(ctx)
		if err != nil {
			return nil, err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (note, task_id) VALUES ($1, $2)`, task.Args.Note, task.ID); err != nil {
			return nil, err
		}
		if err := ebb.CompleteTx(ctx, tx, task.TaskInfo, "written"); err != nil {
			return nil, err
		}
		if task.Args.Note == "fails-once" && task.Attempt == 1 {
			return nil, errors.New("rolled back on purpose") // deferred Rollback
		}
		return nil, tx.Commit(ctx)
	})
	runWorker(t, d, h, ebb.WorkerConfig{RetryPolicy: ebb.RetryPolicyFunc(func(*ebb.TaskInfo, error) time.Duration { return 0 })})

	for _, note := range []string{"once", "fails-once"} {
		res, err := c.Enqueue(t.Context(), noteArgs{Note: note}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		got, err := c.Wait(ctx, res.ID)
		cancel()
		if err != nil {
			t.Fatalf("Wait %s: %v", note, err)
		}
		if got.State != ebb.StateSucceeded || string(got.Result) != `"written"` {
			t.Errorf("%s: state %s result %s, want succeeded \"written\"", note, got.State, got.Result)
		}
		wantAttempt := map[string]int{"once": 1, "fails-once": 2}[note]
		if got.Attempt != wantAttempt || len(got.Errors) != wantAttempt-1 {
			t.Errorf("%s: attempt %d with %d errors, want %d attempts", note, got.Attempt, len(got.Errors), wantAttempt)
		}
		if n := countRows(t, d, `SELECT count(*) FROM `+table+` WHERE note = $1 AND task_id = $2`, note, res.ID); n != 1 {
			t.Errorf("%s: %d rows, want 1", note, n)
		}
	}
	stats, err := c.QueueList(t.Context())
	if err != nil || len(stats) != 1 {
		t.Fatalf("QueueList = %v, %v", stats, err)
	}
	if stats[0].Succeeded != 2 || stats[0].InFlight != 0 {
		t.Errorf("Succeeded %d, InFlight %d; want 2 and 0 (one completion per task)", stats[0].Succeeded, stats[0].InFlight)
	}
	if err := ebb.CompleteTx(t.Context(), pgx.Tx(nil), &ebb.TaskInfo{ID: "x"}, nil); !errors.Is(err, ebb.ErrNotInHandler) {
		t.Errorf("CompleteTx outside a handler: %v, want ErrNotInHandler", err)
	}
}

// helperEnv makes the test binary a worker process (see TestHelperWorker).
const helperEnv = "EBB_PG_HELPER_WORKER"

// TestCompleteTxAtomicUnderKill kills a worker process after its handler
// wrote its row and completed its task in its transaction, before the
// commit: neither the row nor the completion exists, and once the lease
// runs out another worker runs the task, writes the row once and the task
// succeeds once.
func TestCompleteTxAtomicUnderKill(t *testing.T) {
	t.Parallel()
	url := testpg.SchemaURL(t)
	d, err := ebbpostgres.Open(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table := appTable(t, d)
	c, err := ebb.NewClient(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Enqueue(t.Context(), noteArgs{Note: "atomic"}, nil)
	if err != nil {
		t.Fatal(err)
	}

	start := func(block bool) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWorker$", "-test.v")
		cmd.Env = append(os.Environ(), helperEnv+"="+url, "EBB_PG_HELPER_TABLE="+table, fmt.Sprintf("EBB_PG_HELPER_BLOCK=%v", block))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, bufio.NewScanner(out)
	}
	first, out := start(true)
	found := false
	for out.Scan() {
		if strings.Contains(out.Text(), "COMPLETED-UNCOMMITTED") {
			found = true
			break
		}
	}
	if !found {
		t.Fatal("the helper worker never reached its commit")
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	got, err := c.Task(t.Context(), res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ebb.StateRunning {
		t.Errorf("after the kill the task is %s, want still running (its completion rolled back)", got.State)
	}
	if n := countRows(t, d, `SELECT count(*) FROM `+table); n != 0 {
		t.Errorf("after the kill %d rows exist, want 0 (rolled back with the completion)", n)
	}

	start(false)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	got, err = c.Wait(ctx, res.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if got.State != ebb.StateSucceeded || got.Attempt != 2 {
		t.Errorf("task %s after attempt %d, want succeeded after 2", got.State, got.Attempt)
	}
	if n := countRows(t, d, `SELECT count(*) FROM `+table+` WHERE task_id = $1`, res.ID); n != 1 {
		t.Errorf("%d rows, want exactly 1", n)
	}
	testwait.Eventually(t, 10*time.Second, "one success counted", func() (bool, error) {
		st, err := c.QueueList(t.Context())
		return err == nil && len(st) == 1 && st[0].Succeeded == 1 && st[0].InFlight == 0, err
	})
}

// TestHelperWorker is the worker process of TestCompleteTxAtomicUnderKill;
// without its environment it does nothing.
func TestHelperWorker(t *testing.T) {
	url := os.Getenv(helperEnv)
	if url == "" {
		return
	}
	table, block := os.Getenv("EBB_PG_HELPER_TABLE"), os.Getenv("EBB_PG_HELPER_BLOCK") == "true"
	d, err := ebbpostgres.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := ebb.NewHandlers()
	ebb.Handle(h, func(ctx context.Context, task *ebb.Task[noteArgs]) (any, error) {
		tx, err := d.Pool().Begin(ctx)
		if err != nil {
			return nil, err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (note, task_id) VALUES ($1, $2)`, task.Args.Note, task.ID); err != nil {
			return nil, err
		}
		if err := ebb.CompleteTx(ctx, tx, task.TaskInfo, "written"); err != nil {
			return nil, err
		}
		if block {
			fmt.Println("COMPLETED-UNCOMMITTED")
			select {} // killed here, between the writes and the commit
		}
		return nil, tx.Commit(ctx)
	})
	w, err := ebb.NewWorker(d, &ebb.WorkerConfig{Handlers: h, LeaseDuration: time.Second, HeartbeatInterval: 200 * time.Millisecond,
		PollInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Run(context.Background()) // runs until killed
}
