package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/internal/testredis"
)

// Helpers for the tests of Celery pools: a private redis-server as the
// Celery app's broker and result backend (DB 3, a global key prefix, as a
// real deployment might use), the app in testdata/celery run by Debian's
// Celery 5.2.6, and `ebb server` on a SQLite broker of its own, so every
// command on that Redis comes from the Celery side or from ebb's Celery
// pool.

// celeryPython runs Debian's Celery: the Debian packages install into the
// system interpreter, which need not be the python3 on PATH.
const celeryPython = "/usr/bin/python3"

const (
	celeryDB     = 3
	celeryPrefix = "app1:"
	celeryQueue  = "reports"
	celeryPool   = "celery-reports"
)

type celeryOpts struct {
	max            int
	procs          int    // -c of each worker, and the pool's concurrency
	visibility     string // broker visibility_timeout, seconds
	idleBeforeZero string
	scaleDownDelay string
	token          string
	// withoutE starts workers without -E, so task events come on only
	// through the enable_events broadcast ebb sends when a worker comes
	// online (the first messages a worker takes may then go unreported).
	withoutE bool
	// unsafe runs the app with Celery's default acks and prefetch.
	unsafe bool
}

type celeryFleet struct {
	t      *testing.T
	redis  *testredis.Server
	rdb    *redis.Client
	broker string // the Celery app's broker_url
	appDir string
	logDir string
	srv    *ebbServer
	opts   celeryOpts
}

// needCelery fails the test (never skips) when Debian's Celery is missing.
func needCelery(t *testing.T) {
	t.Helper()
	out, err := exec.Command(celeryPython, "-c", "import celery, redis; print(celery.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("%s cannot import celery and redis: run `bash scripts/test`, which installs python3-celery and python3-redis with apt-get: %v: %s", celeryPython, err, out)
	}
}

func (o celeryOpts) yaml(broker, logDir, appDir, listen, token, ebbBroker string) string {
	q := strconv.Quote
	unsafe := ""
	if o.unsafe {
		unsafe = "1"
	}
	events := ", -E"
	if o.withoutE {
		events = ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "broker: %s\nserver:\n  listen: %s\n", q(ebbBroker), q(listen))
	if token != "" {
		fmt.Fprintf(&b, "  token: %s\n", q(token))
	}
	fmt.Fprintf(&b, `pools:
  - name: %s
    queues: [%s]
    min: 0
    max: %d
    concurrency: %d
    celery:
      broker: %s
      global_keyprefix: %s
    command: [%s, -m, celery, -A, fleet_tasks, worker, -Q, %s, -c, "%d", --loglevel, INFO, --without-mingle, --without-gossip%s, --hostname, "{id}@%%h"]
    env:
      PYTHONPATH: %s
      PYTHONDONTWRITEBYTECODE: "1"
      EBB_CELERY_BROKER: %s
      EBB_CELERY_PREFIX: %s
      EBB_CELERY_QUEUE: %s
      EBB_CELERY_VISIBILITY: %s
      EBB_CELERY_UNSAFE: "%s"
    log_dir: %s
    stop_grace: 40s
    policy:
      scale_down_delay: %s
      idle_before_zero: %s
`, celeryPool, celeryQueue, o.max, o.procs, q(broker), q(celeryPrefix), celeryPython, celeryQueue, o.procs, events,
		q(appDir), q(broker), q(celeryPrefix), celeryQueue, q(o.visibility), unsafe, q(logDir), o.scaleDownDelay, o.idleBeforeZero)
	return b.String()
}

// startCeleryFleet starts the private Redis and `ebb server` with one
// Celery pool at zero, and waits until the server leads.
func startCeleryFleet(t *testing.T, o celeryOpts) *celeryFleet {
	t.Helper()
	needCelery(t)
	if o.visibility == "" {
		o.visibility = "3600"
	}
	appDir, err := filepath.Abs("testdata/celery")
	if err != nil {
		t.Fatal(err)
	}
	rs := testredis.Start(t)
	f := &celeryFleet{t: t, redis: rs, appDir: appDir, logDir: filepath.Join(t.TempDir(), "workers"), opts: o,
		broker: fmt.Sprintf("redis://127.0.0.1:%d/%d", rs.Port, celeryDB)}
	f.rdb = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rs.Port), DB: celeryDB})
	t.Cleanup(func() { _ = f.rdb.Close() })
	port := freePort(t)
	cfg := filepath.Join(t.TempDir(), "ebb.yaml")
	yaml := o.yaml(f.broker, f.logDir, appDir, fmt.Sprintf("127.0.0.1:%d", port), o.token,
		"sqlite:"+filepath.Join(t.TempDir(), "ebb.db"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	f.srv = startServer(t, "server", cfg, port, o.token)
	f.srv.waitLeading(t, 20*time.Second)
	waitFor(t, 10*time.Second, "the Celery pool to watch its queue", func() (bool, string) {
		p := f.srv.pool(t, celeryPool)
		return strings.HasPrefix(p.FleetStatus, "woken by keyspace notifications"), p.FleetStatus
	}, f.srv.proc)
	return f
}

// produced is what produce.py prints.
type produced struct {
	FirstDelayAt     float64  `json:"first_delay_at"`
	FirstDelayDoneAt float64  `json:"first_delay_done_at"`
	IDs              []string `json:"ids"`
}

func unixFloat(f float64) time.Time { return time.Unix(0, int64(f*1e9)) }

// produce runs testdata/celery/produce.py: bursts of .delay() calls.
func (f *celeryFleet) produce(t *testing.T, args ...string) produced {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, celeryPython, append([]string{"produce.py"}, args...)...)
	cmd.Dir = f.appDir
	cmd.Env = append(childEnv(), "PYTHONDONTWRITEBYTECODE=1", "EBB_CELERY_BROKER="+f.broker,
		"EBB_CELERY_PREFIX="+celeryPrefix, "EBB_CELERY_QUEUE="+celeryQueue)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("produce.py %v: %v: %s", args, err, stderr.String())
	}
	var p produced
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("produce.py printed %q: %v", out, err)
	}
	return p
}

// list reads one of the app's records (e2e:runs, e2e:done).
func (f *celeryFleet) list(t *testing.T, key string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := f.rdb.LRange(ctx, celeryPrefix+key, 0, -1).Result()
	if err != nil {
		t.Fatalf("LRANGE %s: %v", key, err)
	}
	return v
}

// waitDone waits until every id is recorded as done.
func (f *celeryFleet) waitDone(t *testing.T, ids []string, timeout time.Duration) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	waitFor(t, timeout, fmt.Sprintf("%d Celery tasks to finish", len(ids)), func() (bool, string) {
		n := 0
		for _, id := range f.list(t, "e2e:done") {
			if want[id] {
				n++
			}
		}
		return n >= len(ids), fmt.Sprintf("%d of %d done", n, len(ids))
	}, f.srv.proc)
}

// checkExactlyOnce checks every id ran once and finished once, and
// nothing else ran.
func (f *celeryFleet) checkExactlyOnce(t *testing.T, ids []string) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	runs := map[string]int{}
	for _, r := range f.list(t, "e2e:runs") {
		id, _, _ := strings.Cut(r, " ")
		runs[id]++
	}
	done := map[string]int{}
	for _, id := range f.list(t, "e2e:done") {
		done[id]++
	}
	for _, id := range ids {
		if runs[id] != 1 || done[id] != 1 {
			t.Errorf("task %s ran %d times and finished %d times, want once each", id, runs[id], done[id])
		}
	}
	for id := range runs {
		if !want[id] {
			t.Errorf("a task nobody sent ran: %s", id)
		}
	}
}

// checkResults checks every id's record in the result backend is SUCCESS.
// A task records itself done just before it returns, and Celery stores its
// result just after, so records are awaited for a few seconds first.
func (f *celeryFleet) checkResults(t *testing.T, ids []string) {
	t.Helper()
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = "celery-task-meta-" + id
	}
	var vals []any
	waitFor(t, 10*time.Second, "every result stored", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		if vals, err = f.rdb.MGet(ctx, keys...).Result(); err != nil {
			return false, err.Error()
		}
		missing := 0
		for _, v := range vals {
			if v == nil {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d missing", missing, len(ids))
	}, f.srv.proc)
	bad := 0
	for i, v := range vals {
		var r struct {
			Status string `json:"status"`
		}
		s, _ := v.(string)
		if json.Unmarshal([]byte(s), &r) != nil || r.Status != "SUCCESS" {
			if bad++; bad <= 5 {
				t.Errorf("task %s: result backend has %q, want status SUCCESS", ids[i], s)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d results are not SUCCESS", bad, len(ids))
	}
}

// checkWarmExits checks every worker the server started exited 0 after
// ebb retired it (its log says so), and returns how many ran.
func (f *celeryFleet) checkWarmExits(t *testing.T) int {
	t.Helper()
	started, exits, unclean := instanceEvents(f.srv.output())
	for _, l := range unclean {
		t.Errorf("a Celery worker did not exit cleanly: %s", l)
	}
	logs := readWorkerLogs(t, f.logDir)
	for _, id := range started {
		if code, ok := exits[id]; !ok || code != 0 {
			t.Errorf("worker %s: exit code %d (exited: %v), want 0", id, code, ok)
		}
		// ebb retires a worker by cancel_consumer first, then Celery's warm
		// shutdown: the remote command, or SIGTERM when the server stops
		// (whichever reaches the worker first).
		l := logs[id]
		if !strings.Contains(l, "Canceling queue "+celeryQueue) ||
			!(strings.Contains(l, "Got shutdown from remote") || strings.Contains(l, "Warm shutdown (MainProcess)")) {
			t.Errorf("worker %s was not retired by cancel_consumer and a warm shutdown; its log:\n%s", id, tailString(l, 2000))
		}
	}
	return len(started)
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// celeryQueue returns the Celery queue's row of GET /api/v1/queues.
func (f *celeryFleet) queueRow(t *testing.T) celeryQueueRow {
	t.Helper()
	var qs []celeryQueueRow
	f.srv.get(t, "/api/v1/queues", &qs)
	for _, q := range qs {
		if q.Name == celeryQueue && q.Kind == "celery" {
			return q
		}
	}
	t.Fatalf("GET /api/v1/queues has no Celery queue %q: %+v", celeryQueue, qs)
	return celeryQueueRow{}
}

type celeryQueueRow struct {
	Name       string  `json:"name"`
	Kind       string  `json:"kind"`
	Queued     int64   `json:"queued"`
	InFlight   int64   `json:"in_flight"`
	OldestAgeS float64 `json:"oldest_age_s"`
}

// firstPush runs MONITOR on the app's Redis and returns a channel that
// gets the server's time of the first LPUSH onto the Celery queue: the
// moment the first .delay()'s message exists.
func (f *celeryFleet) firstPush(t *testing.T) <-chan time.Time {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.redis.Port), 5*time.Second)
	if err != nil {
		t.Fatalf("MONITOR: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	r := bufio.NewReader(conn)
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "+OK" {
		t.Fatalf("MONITOR: %q, %v", line, err)
	}
	out := make(chan time.Time, 1)
	want := strconv.Quote(celeryPrefix + celeryQueue)
	go func() {
		defer conn.Close()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			// +<unix time> [<db> <client>] "LPUSH" "<key>" ...
			if ts, rest, ok := strings.Cut(strings.TrimPrefix(line, "+"), " "); ok &&
				strings.Contains(rest, `] "LPUSH" `+want) {
				if sec, err := strconv.ParseFloat(ts, 64); err == nil {
					out <- unixFloat(sec)
				}
				return
			}
		}
	}()
	return out
}
