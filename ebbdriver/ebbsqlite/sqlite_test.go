package ebbsqlite_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbdrivertest"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/tid"
)

func openAt(t testing.TB, path string) *ebbsqlite.Driver {
	t.Helper()
	d, err := ebbsqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// rawDB opens the file behind the driver's back, to corrupt or inspect it.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func task(queue string, now time.Time) *ebbtype.TaskInfo {
	return &ebbtype.TaskInfo{
		ID: tid.NewAt(now), Kind: "k", Queue: queue, EncodedArgs: []byte(`{}`),
		Priority: ebbtype.PriorityNormal, RunAt: now, MaxAttempts: 3,
		Retention: time.Hour, EnqueuedAt: now,
	}
}

func enqueue(t testing.TB, d ebbdriver.Driver, tasks ...*ebbtype.TaskInfo) {
	t.Helper()
	for len(tasks) > 0 {
		n := min(len(tasks), 1000)
		res, err := d.Enqueue(context.Background(), tasks[:n])
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
		for i, r := range res {
			if r.Duplicate {
				t.Fatalf("task %s: duplicate", tasks[i].ID)
			}
		}
		tasks = tasks[n:]
	}
}

func fetch(t testing.TB, d ebbdriver.Driver, limit int, worker string, now time.Time, queues ...string) []*ebbtype.TaskInfo {
	t.Helper()
	res, err := d.Fetch(context.Background(), ebbdriver.FetchParams{
		Queues: queues, Limit: limit, WorkerID: worker, LeaseToken: tid.New(),
		LeaseDuration: time.Minute, Now: now,
	})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return res.Tasks
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notDB := filepath.Join(dir, "not-a-db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("this is not SQLite\n", 300)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, hint string
	}{
		{"MissingDirectory", filepath.Join(dir, "no", "such", "dir", "ebb.db"), "check the path and permissions"},
		{"Directory", dir, "check the path and permissions"},
		{"NotADatabase", notDB, "not an ebb database"},
		{"Empty", "", "need a plain file path"},
		{"Memory", ":memory:", "need a plain file path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := ebbsqlite.Open(t.Context(), c.path, nil)
			if err == nil {
				d.Close()
				t.Fatalf("Open(%q) succeeded", c.path)
			}
			msg := err.Error()
			if !strings.Contains(msg, "cannot open SQLite database at") {
				t.Errorf("error %q does not say which database could not be opened", msg)
			}
			if !strings.Contains(msg, c.hint) {
				t.Errorf("error %q does not say what to do (%q)", msg, c.hint)
			}
		})
	}
}

func TestOpenNewerSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ebb.db")
	d, err := ebbsqlite.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := rawDB(t, path).Exec(`PRAGMA user_version = 999`); err != nil {
		t.Fatal(err)
	}
	_, err = ebbsqlite.Open(t.Context(), path, nil)
	if err == nil || !strings.Contains(err.Error(), "upgrade ebb") {
		t.Fatalf("Open of a newer schema = %v, want an error saying to upgrade ebb", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ebb.db")
	d, err := ebbsqlite.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	tk := task("a", time.Now())
	enqueue(t, d, tk)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	d = openAt(t, path)
	if r, err := d.TaskGet(t.Context(), tk.ID); err != nil || r.State != ebbtype.StateQueued {
		t.Fatalf("TaskGet after reopen = %+v, %v", r, err)
	}
	var mode string
	if err := rawDB(t, path).QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestMalformedRow(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ebb.db")
	d := openAt(t, path)
	now := time.Now()
	good, badHeaders, badErrors := task("a", now), task("a", now), task("a", now)
	badHeaders.Headers = map[string]string{"trace": "t"}
	enqueue(t, d, good, badHeaders, badErrors)
	raw := rawDB(t, path)
	if _, err := raw.Exec(`UPDATE tasks SET headers = '{"trace": ' WHERE id = ?`, badHeaders.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`UPDATE tasks SET errors = 'garbage', priority = 'high' WHERE id = ?`, badErrors.ID); err != nil {
		t.Fatal(err)
	}

	got := fetch(t, d, 10, "w", now, "a")
	if len(got) != 3 {
		t.Fatalf("Fetch returned %d tasks, want all 3 (malformed ones included)", len(got))
	}
	byID := map[string]*ebbtype.TaskInfo{}
	for _, r := range got {
		byID[r.ID] = r
	}
	if m := byID[good.ID].Malformed; m != "" {
		t.Errorf("good task Malformed = %q", m)
	}
	for _, c := range []struct {
		id   string
		want []string
	}{
		{badHeaders.ID, []string{"headers"}},
		{badErrors.ID, []string{"error history", "priority"}},
	} {
		r := byID[c.id]
		if r == nil {
			t.Fatalf("task %s not fetched", c.id)
		}
		for _, w := range c.want {
			if !strings.Contains(r.Malformed, w) {
				t.Errorf("task %s Malformed = %q, want it to mention %q", c.id, r.Malformed, w)
			}
		}
		if r.Queue != "a" || r.State != ebbtype.StateRunning || r.LeaseToken == "" {
			t.Errorf("malformed task %s came back as queue %q state %q token %q; want it claimed like any other",
				c.id, r.Queue, r.State, r.LeaseToken)
		}
	}

	// The worker dead-letters them; the corrupt error history is kept as text.
	var cs []ebbdriver.Completion
	for _, id := range []string{badHeaders.ID, badErrors.ID} {
		r := byID[id]
		cs = append(cs, ebbdriver.Completion{Queue: "a", ID: id, LeaseToken: r.LeaseToken, Outcome: ebbdriver.OutcomeDead,
			Error: &ebbtype.AttemptError{Attempt: 1, At: now, Error: "malformed: " + r.Malformed}, Now: now})
	}
	errs, err := d.Complete(t.Context(), cs)
	if err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("Complete = %v, %v", errs, err)
	}
	r, err := d.TaskGet(t.Context(), badErrors.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != ebbtype.StateDead || len(r.Errors) != 2 ||
		!strings.Contains(r.Errors[0].Error, "garbage") || !strings.HasPrefix(r.Errors[1].Error, "malformed:") {
		t.Errorf("dead-lettered task = state %q errors %+v; want the old history kept as text, then the reason", r.State, r.Errors)
	}
	dead, total, err := d.DeadList(t.Context(), ebbdriver.DeadListParams{Queue: "a", Limit: 10})
	if err != nil || total != 2 || len(dead) != 2 {
		t.Fatalf("DeadList = %d of %d, %v; want both malformed tasks", len(dead), total, err)
	}
}

// Two Drivers on one file stand for two processes: each has its own
// connections, so the only way news crosses is through the file.
func TestNotificationsAcrossDrivers(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ebb.db")
	a, b := openAt(t, path), openAt(t, path)
	ctx := t.Context()
	now := time.Now()

	queued, err := b.Listen(ctx, ebbdriver.ListenParams{Queues: []string{"q"}})
	if err != nil {
		t.Fatal(err)
	}
	worker, err := b.Listen(ctx, ebbdriver.ListenParams{Queues: []string{"q"}, WorkerID: "w-b"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("Queued", func(t *testing.T) {
		enqueue(t, a, task("q", now))
		ebbdrivertest.WaitEvent(t, queued, "EventQueued from the other driver", func(ev ebbdriver.Event) bool {
			return ev.Kind == ebbdriver.EventQueued && ev.Queue == "q"
		})
	})

	t.Run("Cancel", func(t *testing.T) {
		tk := task("q", now)
		enqueue(t, a, tk)
		var claimed *ebbtype.TaskInfo
		for _, r := range fetch(t, b, 10, "w-b", now, "q") {
			if r.ID == tk.ID {
				claimed = r
			}
		}
		if claimed == nil {
			t.Fatal("task not claimed")
		}
		if st, err := a.TaskCancel(ctx, tk.ID, now); err != nil || st != ebbtype.StateRunning {
			t.Fatalf("TaskCancel = %q, %v", st, err)
		}
		ebbdrivertest.WaitEvent(t, worker, "EventCancel from the other driver", func(ev ebbdriver.Event) bool {
			return ev.Kind == ebbdriver.EventCancel && ev.TaskID == tk.ID && ev.WorkerID == "w-b"
		})

		// TaskAwait in a sees b's completion.
		done := make(chan error, 1)
		go func() {
			r, err := a.TaskAwait(ctx, tk.ID)
			if err == nil && r.State != ebbtype.StateCancelled {
				err = fmt.Errorf("state %q", r.State)
			}
			done <- err
		}()
		errs, err := b.Complete(ctx, []ebbdriver.Completion{{Queue: "q", ID: tk.ID, LeaseToken: claimed.LeaseToken,
			Outcome: ebbdriver.OutcomeCancelled, Now: now}})
		if err != nil || errs[0] != nil {
			t.Fatalf("Complete = %v, %v", errs, err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("TaskAwait: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("TaskAwait did not see the other driver's completion within 10s")
		}
	})

	t.Run("Drain", func(t *testing.T) {
		if _, err := b.WorkerHeartbeat(ctx, ebbtype.WorkerInfo{ID: "w-b", HeartbeatAt: now}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := a.WorkerRequestDrain(ctx, "w-b", now); err != nil {
			t.Fatal(err)
		}
		ebbdrivertest.WaitEvent(t, worker, "EventDrain from the other driver", func(ev ebbdriver.Event) bool {
			return ev.Kind == ebbdriver.EventDrain && ev.WorkerID == "w-b"
		})
	})
}

func TestListenClosedOnDriverClose(t *testing.T) {
	t.Parallel()
	d, err := ebbsqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ebb.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := d.Listen(t.Context(), ebbdriver.ListenParams{})
	if err != nil {
		t.Fatal(err)
	}
	awaitErr := make(chan error, 1)
	tk := task("a", time.Now())
	enqueue(t, d, tk)
	go func() { _, err := d.TaskAwait(t.Context(), tk.ID); awaitErr <- err }()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for range ch {
	}
	if err := <-awaitErr; err == nil {
		t.Fatal("TaskAwait returned no error after Close")
	}
	if _, err := d.Listen(t.Context(), ebbdriver.ListenParams{}); err == nil {
		t.Fatal("Listen after Close succeeded")
	}
}

// --- several processes on one file ------------------------------------------

const (
	childDBEnv = "EBBSQLITE_TEST_CHILD_DB"
	childIDEnv = "EBBSQLITE_TEST_CHILD_ID"
)

// TestMultiProcess runs three copies of the test binary as workers that
// fetch and complete from one file at the same time, and checks every task
// was claimed exactly once.
func TestMultiProcess(t *testing.T) {
	t.Parallel()
	if os.Getenv(childDBEnv) != "" {
		t.Skip("inside a child process")
	}
	const (
		n        = 3000
		children = 3
	)
	path := filepath.Join(t.TempDir(), "ebb.db")
	d := openAt(t, path)
	now := time.Now()
	tasks := make([]*ebbtype.TaskInfo, n)
	for i := range tasks {
		tasks[i] = task("mp", now)
		tasks[i].Priority = ebbtype.Priority(1 + i%3)
	}
	enqueue(t, d, tasks...)

	type child struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		ready  chan struct{}
		claims []string
		stderr strings.Builder
		done   chan struct{}
	}
	cs := make([]*child, children)
	for i := range cs {
		c := &child{ready: make(chan struct{}), done: make(chan struct{})}
		c.cmd = exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMultiProcessChild$", "-test.count=1")
		c.cmd.Env = append(os.Environ(), childDBEnv+"="+path, fmt.Sprintf("%s=child-%d", childIDEnv, i))
		c.cmd.Stderr = &c.stderr
		var err error
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		stdout, err := c.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(c.done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				switch {
				case line == "READY":
					close(c.ready)
				case strings.HasPrefix(line, "CLAIMED "):
					c.claims = append(c.claims, strings.TrimPrefix(line, "CLAIMED "))
				}
			}
		}()
		cs[i] = c
	}
	// Release all children at once so they contend for the same tasks.
	for _, c := range cs {
		select {
		case <-c.ready:
		case <-c.done:
			c.cmd.Wait()
			t.Fatalf("child exited before it was ready: %s", c.stderr.String())
		}
	}
	for _, c := range cs {
		c.stdin.Close()
	}
	claimedBy := map[string]string{}
	for i, c := range cs {
		<-c.done
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, c.stderr.String())
		}
		t.Logf("child-%d claimed %d tasks", i, len(c.claims))
		for _, id := range c.claims {
			if prev, dup := claimedBy[id]; dup {
				t.Errorf("task %s claimed by %s and by child-%d", id, prev, i)
			}
			claimedBy[id] = fmt.Sprintf("child-%d", i)
		}
	}
	if len(claimedBy) != n {
		t.Errorf("%d distinct tasks claimed, want %d", len(claimedBy), n)
	}
	for _, tk := range tasks {
		r, err := d.TaskGet(t.Context(), tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != ebbtype.StateSucceeded || r.Attempt != 1 || r.WorkerID != claimedBy[tk.ID] ||
			string(r.Result) != `"`+r.WorkerID+`"` {
			t.Errorf("task %s: state %s attempt %d worker %q result %s; want succeeded once by %s",
				tk.ID, r.State, r.Attempt, r.WorkerID, r.Result, claimedBy[tk.ID])
		}
	}
	st, err := d.QueueStats(t.Context(), now)
	if err != nil || len(st) != 1 || st[0].Succeeded != n || st[0].Queued != 0 || st[0].InFlight != 0 {
		t.Errorf("QueueStats = %+v, %v; want %d succeeded and nothing left", st, err, n)
	}
}

// TestMultiProcessChild is one worker process of TestMultiProcess.
func TestMultiProcessChild(t *testing.T) {
	path, worker := os.Getenv(childDBEnv), os.Getenv(childIDEnv)
	if path == "" {
		t.Skip("run by TestMultiProcess")
	}
	d, err := ebbsqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "READY")
	out.Flush()
	io.Copy(io.Discard, os.Stdin) // the parent closes it to start everyone
	var mu sync.Mutex
	for {
		now := time.Now()
		rs := fetch(t, d, 7, worker, now, "mp")
		if len(rs) == 0 {
			break // everything was enqueued before the start: nothing left
		}
		cs := make([]ebbdriver.Completion, len(rs))
		for i, r := range rs {
			cs[i] = ebbdriver.Completion{Queue: r.Queue, ID: r.ID, LeaseToken: r.LeaseToken,
				Outcome: ebbdriver.OutcomeSucceeded, Result: []byte(`"` + worker + `"`), Now: now}
			mu.Lock()
			fmt.Fprintln(out, "CLAIMED", r.ID)
			mu.Unlock()
		}
		errs, err := d.Complete(context.Background(), cs)
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		for i, err := range errs {
			if err != nil {
				t.Errorf("Complete %s: %v", cs[i].ID, err)
			}
		}
	}
	out.Flush()
}

func TestCompleteLeaseLostIsPerItem(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	now := time.Now()
	enqueue(t, d, task("a", now), task("a", now))
	rs := fetch(t, d, 2, "w", now, "a")
	errs, err := d.Complete(t.Context(), []ebbdriver.Completion{
		{ID: rs[0].ID, LeaseToken: "wrong", Outcome: ebbdriver.OutcomeSucceeded, Now: now},
		{ID: rs[1].ID, LeaseToken: rs[1].LeaseToken, Outcome: ebbdriver.OutcomeSucceeded, Now: now},
		{ID: rs[1].ID, LeaseToken: rs[1].LeaseToken, Outcome: ebbdriver.Outcome(99), Now: now},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(errs[0], ebbtype.ErrLeaseLost) || errs[1] != nil || errs[2] == nil {
		t.Fatalf("errs = %v", errs)
	}
}

// Workers started together may all find the file missing: exactly one
// creates the schema and the others use it.
func TestConcurrentOpenOfNewFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ebb.db")
	const n = 4
	drivers := make([]*ebbsqlite.Driver, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { drivers[i], errs[i] = ebbsqlite.Open(t.Context(), path, nil) })
	}
	wg.Wait()
	now := time.Now()
	for i, d := range drivers {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		t.Cleanup(func() { d.Close() })
		enqueue(t, d, task("a", now))
	}
	st, err := drivers[0].QueueStats(t.Context(), now)
	if err != nil || len(st) != 1 || st[0].Queued != n {
		t.Fatalf("QueueStats = %+v, %v; want %d queued", st, err, n)
	}
}

func TestPathWithURICharacters(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "odd dir?#%", "e b?b#1%2.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	d := openAt(t, path)
	enqueue(t, d, task("a", time.Now()))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the path given: %v", err)
	}
	if d.Path() != path {
		t.Errorf("Path() = %q, want %q", d.Path(), path)
	}
}

// Control-plane replicas on one machine each open the file: the election
// must hold across connections, not only across one Driver's goroutines.
func TestLeaderAcrossDrivers(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ebb.db")
	const n = 4
	drivers := make([]*ebbsqlite.Driver, n)
	for i := range drivers {
		drivers[i] = openAt(t, path)
	}
	now := time.Now()
	for round := range 3 {
		at := now.Add(time.Duration(round) * time.Hour) // each round past the last one's TTL
		got := make([]*ebbtype.Leadership, 2*n)
		errs := make([]error, 2*n)
		var wg sync.WaitGroup
		for i := range got {
			wg.Go(func() {
				got[i], errs[i] = drivers[i%n].LeaderAttempt(t.Context(), ebbdriver.LeaderParams{
					Name: "cp", ID: fmt.Sprintf("s%d", i), TTL: time.Minute, Now: at,
				})
			})
		}
		wg.Wait()
		winners := 0
		for i, l := range got {
			if errs[i] != nil {
				t.Fatalf("round %d: LeaderAttempt(s%d): %v", round, i, errs[i])
			}
			if l.LeaderID == fmt.Sprintf("s%d", i) {
				winners++
			}
			if l.LeaderID != got[0].LeaderID || l.Term != got[0].Term || !l.ExpiresAt.Equal(got[0].ExpiresAt) {
				t.Errorf("round %d: s%d sees %+v, s0 sees %+v", round, i, l, got[0])
			}
		}
		if winners != 1 || got[0].Term != int64(round+1) {
			t.Fatalf("round %d: %d leaders, term %d; want one leader in term %d", round, winners, got[0].Term, round+1)
		}
		// Only the winner's decisions get through, through any connection.
		for i, d := range drivers {
			dec := &ebbtype.Decision{Pool: "web", At: at, Term: got[0].Term, LeaderID: got[0].LeaderID, Action: "up"}
			if err := d.DecisionAppend(t.Context(), "cp", dec); err != nil {
				t.Errorf("round %d: DecisionAppend by the leader through driver %d: %v", round, i, err)
			}
			dec.LeaderID = "s-not-elected"
			if err := d.DecisionAppend(t.Context(), "cp", dec); !errors.Is(err, ebbdriver.ErrNotLeader) {
				t.Errorf("round %d: DecisionAppend by a non-leader through driver %d = %v, want ErrNotLeader", round, i, err)
			}
		}
	}
}
