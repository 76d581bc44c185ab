package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testredis"
)

// queueRow is one row of `ebb inspect queues --json`, decoded with the
// documented field names.
type queueRow struct {
	Name      string  `json:"name"`
	Queued    int64   `json:"queued"`
	Scheduled int64   `json:"scheduled"`
	InFlight  int64   `json:"in_flight"`
	Dead      int64   `json:"dead"`
	Succeeded int64   `json:"succeeded"`
	Failed    int64   `json:"failed"`
	Retried   int64   `json:"retried"`
	OldestAge float64 `json:"oldest_age_s"`
}

// enqueued is one entry of `ebb enqueue --json` with --count ≤ 10.
type enqueued struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

func inspectQueue(t *testing.T, dir string, brokerArgs []string, queue string) queueRow {
	t.Helper()
	var rows []queueRow
	mustEbbJSON(t, dir, &rows, append([]string{"inspect", "queues", "--json"}, brokerArgs...)...)
	for _, r := range rows {
		if r.Name == queue {
			return r
		}
	}
	return queueRow{Name: queue}
}

// enqueueOne runs `ebb enqueue ... --json` for one task and returns its id.
func enqueueOne(t *testing.T, dir string, args ...string) string {
	t.Helper()
	var res []enqueued
	mustEbbJSON(t, dir, &res, append(append([]string{"enqueue"}, args...), "--json")...)
	if len(res) != 1 || res[0].ID == "" || res[0].State != string(ebb.StateQueued) {
		t.Fatalf("`ebb enqueue %s --json` printed %+v, want one queued task with its id", strings.Join(args, " "), res)
	}
	return res[0].ID
}

// TestCLIEnqueueWorkerInspect drives the command line the way the README
// does: enqueue, run a worker, watch it through inspect, stop it with
// SIGTERM; once on the default SQLite file and once on Redis. It also checks
// that bad input exits 2 with a one-line message.
func TestCLIEnqueueWorkerInspect(t *testing.T) {
	t.Parallel()
	t.Run("sqlite_default", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		testCLIFlow(t, dir, nil)
		if _, err := os.Stat(filepath.Join(dir, "ebb.db")); err != nil {
			t.Errorf("without --broker the CLI must use sqlite:ebb.db in the working directory: %v", err)
		}
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		s := testredis.Start(t)
		dir := t.TempDir()
		testCLIFlow(t, dir, []string{"--broker", s.URL()})
		if _, err := os.Stat(filepath.Join(dir, "ebb.db")); err == nil {
			t.Errorf("with --broker redis://… the CLI created a SQLite file anyway")
		}
	})
	t.Run("bad_input", func(t *testing.T) {
		t.Parallel()
		testCLIBadInput(t)
	})
}

func testCLIFlow(t *testing.T, dir string, brokerArgs []string) {
	const workerID = "cli-worker"
	with := func(args ...string) []string { return append(args, brokerArgs...) }

	r := mustEbb(t, dir, with("enqueue", "noop", "--count", "1000")...)
	if !strings.Contains(r.stdout, "enqueued 1000 noop tasks") {
		t.Errorf("`ebb enqueue noop --count 1000` printed %q, want it to say it enqueued 1000 noop tasks", r.stdout)
	}
	probe := enqueueOne(t, dir, with("sleep", `{"ms": 5}`, "--queue", "probe")...)
	if q := inspectQueue(t, dir, brokerArgs, ebb.QueueDefault); q.Queued != 1000 || q.Succeeded != 0 {
		t.Fatalf("before any worker ran, inspect queues shows %+v, want 1000 queued", q)
	}

	w := startEbb(t, dir, workerID, with("worker", "--id", workerID, "--queues", "default,probe", "--concurrency", "16")...)
	var last queueRow
	waitFor(t, time.Minute, "inspect queues to show default with 1000 succeeded and 0 queued", func() (bool, string) {
		last = inspectQueue(t, dir, brokerArgs, ebb.QueueDefault)
		return last.Succeeded == 1000 && last.Queued == 0 && last.InFlight == 0, fmt.Sprintf("%+v", last)
	}, w)

	var workers []ebbtype.WorkerInfo
	mustEbbJSON(t, dir, &workers, with("inspect", "workers", "--json")...)
	i := slices.IndexFunc(workers, func(wi ebbtype.WorkerInfo) bool { return wi.ID == workerID })
	if i < 0 {
		t.Fatalf("inspect workers does not list the running worker %s: %+v", workerID, workers)
	}
	if wi := workers[i]; !slices.Equal(wi.Queues, []string{"default", "probe"}) || wi.Concurrency != 16 || wi.PID != w.pid() {
		t.Errorf("inspect workers shows %+v, want queues [default probe], concurrency 16, pid %d", wi, w.pid())
	}

	var task ebb.TaskInfo
	waitFor(t, 20*time.Second, "the probe task to succeed", func() (bool, string) {
		mustEbbJSON(t, dir, &task, with("inspect", "task", probe, "--json")...)
		return task.State.Terminal(), string(task.State)
	}, w)
	if task.ID != probe || task.Kind != "sleep" || task.Queue != "probe" || task.State != ebb.StateSucceeded ||
		task.Attempt != 1 || task.WorkerID != workerID || !jsonEqual(task.Result, `{"slept_ms":5}`) {
		t.Errorf("inspect task %s --json shows %+v (result %s), want the sleep task of queue probe succeeded on %s with result {\"slept_ms\":5}", probe, task, task.Result, workerID)
	}
	if r := runEbb(t, dir, with("inspect", "task", "no-such-task")...); r.code != 3 {
		t.Errorf("inspect task of an unknown id exited %d, want 3 (not found); stderr: %s", r.code, r.stderr)
	}

	w.stop(30 * time.Second)
	mustEbbJSON(t, dir, &workers, with("inspect", "workers", "--json")...)
	if slices.ContainsFunc(workers, func(wi ebbtype.WorkerInfo) bool { return wi.ID == workerID }) {
		t.Errorf("the worker exited but inspect workers still lists it: %+v", workers)
	}
}

func testCLIBadInput(t *testing.T) {
	dir := t.TempDir()
	sqliteArgs := []string{"--broker", "sqlite:" + filepath.Join(dir, "bad-input.db")}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedRedis := fmt.Sprintf("redis://%s/0", l.Addr())
	l.Close()

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"bad broker URL scheme", []string{"inspect", "queues", "--broker", "mysql://127.0.0.1:3306/ebb"}, 2, `unknown scheme "mysql"`},
		{"invalid ARGS_JSON", append([]string{"enqueue", "sleep", `{"ms": 5`}, sqliteArgs...), 2, "not valid JSON"},
		{"unknown flag", append([]string{"worker", "--no-such-flag"}, sqliteArgs...), 2, "flag provided but not defined"},
		{"bad flag value", append([]string{"enqueue", "noop", "--count", "many"}, sqliteArgs...), 2, "invalid value"},
		{"unreachable Redis (inspect)", []string{"inspect", "queues", "--broker", closedRedis}, 1, "cannot reach Redis"},
		{"unreachable Redis (worker, no wait)", []string{"worker", "--broker", closedRedis, "--broker-wait", "0"}, 1, "cannot reach Redis"},
	}
	for _, c := range cases {
		r := runEbb(t, dir, c.args...)
		msg := strings.TrimRight(r.stderr, "\n")
		switch {
		case r.code != c.code:
			t.Errorf("%s: `ebb %s` exited %d, want %d; stderr:\n%s", c.name, strings.Join(c.args, " "), r.code, c.code, r.stderr)
		case !strings.Contains(msg, c.want):
			t.Errorf("%s: `ebb %s` printed %q, want a message containing %q", c.name, strings.Join(c.args, " "), msg, c.want)
		case msg == "" || strings.Contains(msg, "\n"):
			t.Errorf("%s: `ebb %s` printed %d lines, want a one-line message:\n%s", c.name, strings.Join(c.args, " "), strings.Count(msg, "\n")+1, msg)
		case r.stdout != "":
			t.Errorf("%s: `ebb %s` printed %q to stdout, want nothing", c.name, strings.Join(c.args, " "), r.stdout)
		}
	}
}

// TestDeadLetterCLI sends a task of a kind no worker handles and a task that
// always fails to the dead letters, then lists, retries and purges them
// with `ebb dead`.
func TestDeadLetterCLI(t *testing.T) {
	t.Parallel()
	eachBroker(t, testDeadLetterCLI)
}

func testDeadLetterCLI(t *testing.T, b *broker) {
	dir := t.TempDir()
	with := func(args ...string) []string { return append(args, "--broker", b.url) }
	const workerID = "dead-worker"

	unknown := enqueueOne(t, dir, with("no_such_kind", `{"x": 1}`)...)
	failing := enqueueOne(t, dir, with("fail", `{"message": "boom"}`, "--max-attempts", "2")...)
	w := startEbb(t, dir, workerID, with("worker", "--id", workerID, "--concurrency", "4")...)
	waitFor(t, 30*time.Second, "both tasks to end dead", func() (bool, string) {
		u, f := b.task(t, unknown), b.task(t, failing)
		return u.State.Terminal() && f.State.Terminal(), describe(u) + ", " + describe(f)
	}, w)

	u := b.task(t, unknown)
	if u.State != ebb.StateDead || u.Attempt != 1 || len(u.Errors) != 1 ||
		!strings.Contains(u.Errors[0].Error, `unknown task kind "no_such_kind"`) || u.Errors[0].WorkerID != workerID {
		t.Errorf("unknown-kind task %s errors %+v: want dead after one attempt, with an error naming kind \"no_such_kind\" and %s", describe(u), u.Errors, workerID)
	}
	f := b.task(t, failing)
	if f.State != ebb.StateDead || f.Attempt != 2 || len(f.Errors) != 2 || f.Errors[0].Error != "boom" || f.Errors[1].Error != "boom" ||
		f.Errors[0].Attempt != 1 || f.Errors[1].Attempt != 2 {
		t.Errorf("failing task %s errors %+v: want dead after 2 attempts, each recorded as \"boom\"", describe(f), f.Errors)
	}
	if s := b.stats(t, ebb.QueueDefault); s.Dead != 2 || s.Failed != 2 || s.Retried != 1 {
		t.Errorf("queue counts %+v, want dead 2, failed 2, retried 1", s)
	}

	var list struct {
		Queue string         `json:"queue"`
		Total int64          `json:"total"`
		Tasks []ebb.TaskInfo `json:"tasks"`
	}
	mustEbbJSON(t, dir, &list, with("dead", "list", "--json")...)
	var listed []string
	for _, ti := range list.Tasks {
		listed = append(listed, ti.ID)
	}
	slices.Sort(listed)
	want := []string{unknown, failing}
	slices.Sort(want)
	if list.Queue != ebb.QueueDefault || list.Total != 2 || !slices.Equal(listed, want) {
		t.Errorf("dead list --json: queue %q total %d ids %v, want queue default with exactly %v", list.Queue, list.Total, listed, want)
	}
	text := mustEbb(t, dir, with("dead", "list")...).stdout
	if !strings.Contains(text, unknown) || !strings.Contains(text, failing) || !strings.Contains(text, "2 of 2 dead tasks") {
		t.Errorf("dead list does not show both dead tasks:\n%s", text)
	}

	// Stop the worker so the retried task stays observable as queued.
	w.stop(30 * time.Second)
	r := mustEbb(t, dir, with("dead", "retry", failing)...)
	if !strings.Contains(r.stdout, "requeued 1 dead task") {
		t.Errorf("dead retry printed %q, want it to say it requeued 1 task", r.stdout)
	}
	if f := b.task(t, failing); f.State != ebb.StateQueued || f.Attempt != 0 || len(f.Errors) != 2 {
		t.Errorf("after dead retry the task is %s (errors %+v), want queued with attempt 0 and its 2 errors kept", describe(f), f.Errors)
	}
	if u := b.task(t, unknown); u.State != ebb.StateDead {
		t.Errorf("dead retry of one id touched another task: %s", describe(u))
	}
	if r := runEbb(t, dir, with("dead", "retry", "no-such-task")...); r.code != 3 {
		t.Errorf("dead retry of an unknown id exited %d, want 3 (not found); stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}

	r = mustEbb(t, dir, with("dead", "purge", "--all")...)
	if !strings.Contains(r.stdout, "purged 1 dead task") {
		t.Errorf("dead purge --all printed %q, want it to say it purged 1 task", r.stdout)
	}
	if _, err := b.drv.TaskGet(t.Context(), unknown); !errors.Is(err, ebbtype.ErrTaskNotFound) {
		t.Errorf("after dead purge --all, TaskGet of the purged task returned %v, want task not found", err)
	}
	if f := b.task(t, failing); f.State != ebb.StateQueued {
		t.Errorf("dead purge --all touched the requeued task: %s", describe(f))
	}
	if s := b.stats(t, ebb.QueueDefault); s.Dead != 0 || s.Queued != 1 {
		t.Errorf("queue counts after retry and purge %+v, want dead 0 and queued 1", s)
	}

	// The retried task really runs again: two fresh attempts, then dead again
	// with its whole history.
	w = startEbb(t, dir, workerID+"-2", with("worker", "--id", workerID+"-2", "--concurrency", "4")...)
	waitFor(t, 30*time.Second, "the retried task to die again", func() (bool, string) {
		f := b.task(t, failing)
		return f.State == ebb.StateDead, describe(f)
	}, w)
	if f := b.task(t, failing); f.Attempt != 2 || len(f.Errors) != 4 || f.Errors[3].WorkerID != workerID+"-2" {
		t.Errorf("retried task %s errors %+v, want 2 new attempts and 4 errors in all", describe(f), f.Errors)
	}
	w.stop(30 * time.Second)
}
