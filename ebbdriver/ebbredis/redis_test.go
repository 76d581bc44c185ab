package ebbredis

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbdrivertest"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
	"github.com/ebbq/ebb/internal/tid"
)

func testTask(queue string, now time.Time) *ebbtype.TaskInfo {
	return &ebbtype.TaskInfo{
		ID: tid.NewAt(now), Kind: "test.kind", Queue: queue, EncodedArgs: []byte(`{"x":1}`),
		Priority: ebbtype.PriorityNormal, RunAt: now, MaxAttempts: 3, Retention: time.Hour, EnqueuedAt: now,
	}
}

func mustEnqueue(t *testing.T, d *Driver, tasks ...*ebbtype.TaskInfo) {
	t.Helper()
	res, err := d.Enqueue(t.Context(), tasks)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	for i, r := range res {
		if r.Duplicate {
			t.Fatalf("Enqueue: task %d (%s) is a duplicate of %s", i, tasks[i].ID, r.ID)
		}
	}
}

// parallelDriver marks t parallel and returns a fresh driver, t's context
// and the current time: the start of most tests here.
func parallelDriver(t *testing.T) (*Driver, context.Context, time.Time) {
	t.Parallel()
	return newTestDriver(t), t.Context(), time.Now()
}

func fetchParams(now time.Time, limit int, queues ...string) ebbdriver.FetchParams {
	return ebbdriver.FetchParams{Queues: queues, Limit: limit, WorkerID: "w", LeaseToken: tid.New(),
		LeaseDuration: time.Minute, Now: now}
}

func TestOpenBadURL(t *testing.T) {
	t.Parallel()
	_, err := Open(t.Context(), "http://user:hunter2@example.com/0", nil)
	if err == nil || !strings.Contains(err.Error(), "bad broker URL") || !strings.Contains(err.Error(), "redis://host:port/db") {
		t.Errorf("Open(http://…) = %v; want a bad-URL error that shows the expected form", err)
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q shows the password", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	// A port nothing listens on: a private server, stopped.
	srv := testredis.Start(t)
	srv.Kill()
	url := "redis://:hunter2@127.0.0.1:" + strconv.Itoa(srv.Port) + "/0"
	_, err := Open(t.Context(), url, nil)
	if err == nil {
		t.Fatal("Open of a stopped Redis succeeded")
	}
	for _, want := range []string{"cannot reach Redis at 127.0.0.1:" + strconv.Itoa(srv.Port), "is redis-server running?", "EBB_BROKER"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q shows the password", err)
	}
}

func TestOpenOwnsClientNewDoesNot(t *testing.T) {
	t.Parallel()
	prefix := testredis.Prefix(t)
	d, err := Open(t.Context(), testredis.URL(), &Config{Prefix: prefix})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if d.Name() != "redis" {
		t.Errorf("Name = %q", d.Name())
	}
	mustEnqueue(t, d, testTask("a", time.Now()))
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.rdb.Ping(t.Context()).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("Ping after Close of an opened driver = %v, want redis.ErrClosed", err)
	}

	c := testredis.Client(t)
	d, err = New(c, &Config{Prefix: prefix})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Errorf("the caller's client after Close: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	if _, err := New(nil, nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	if _, err := New(testredis.Client(t), &Config{Prefix: "a{b}"}); err == nil || !strings.Contains(err.Error(), "brace") {
		t.Errorf("New with a braced prefix = %v, want an error about the brace", err)
	}
}

func TestEnqueueRejectsBadTasks(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t)
	now := time.Now()
	for name, mutate := range map[string]func(*ebbtype.TaskInfo){
		"args":     func(r *ebbtype.TaskInfo) { r.EncodedArgs = []byte(`{not json`) },
		"queue":    func(r *ebbtype.TaskInfo) { r.Queue = "" },
		"id":       func(r *ebbtype.TaskInfo) { r.ID = "" },
		"priority": func(r *ebbtype.TaskInfo) { r.Priority = 7 },
	} {
		r := testTask("a", now)
		mutate(r)
		if _, err := d.Enqueue(t.Context(), []*ebbtype.TaskInfo{r}); err == nil {
			t.Errorf("Enqueue with a bad %s succeeded", name)
		}
	}
}

// TestMalformed writes broken task data straight into Redis: Fetch and
// TaskGet must return the record with what is wrong instead of failing, so
// the worker can dead-letter it.
func TestMalformed(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	good, badMsg, noMsg, badErrs, badHeader := testTask("a", now), testTask("a", now), testTask("a", now), testTask("a", now), testTask("a", now)
	mustEnqueue(t, d, good, badMsg, noMsg, badErrs, badHeader)
	k := d.keys("a")
	records := map[string]string{
		badMsg.ID:    "queued 0 1 -2 3 0 0 0 0 0 0 0 0 0\n" + `{"id":"` + badMsg.ID + `","k":`,
		noMsg.ID:     "queued 0 1 -2 3 0 0 0 0 0 0 0 0 0\n",
		badErrs.ID:   "queued 0 1 -2 3 0 0 0 0 0 0 0 12 0\n" + `[{"attempt":{"k":"test.kind","q":"a"}`,
		badHeader.ID: "queued zero\n" + `{"id":"x","k":"k","q":"a"}`,
	}
	for id, rec := range records {
		if err := d.rdb.HSet(ctx, k.tasks, id, rec).Err(); err != nil {
			t.Fatal(err)
		}
	}

	res, err := d.Fetch(ctx, fetchParams(now, 10, "a"))
	if err != nil {
		t.Fatalf("Fetch with malformed tasks: %v", err)
	}
	got := map[string]*ebbtype.TaskInfo{}
	for _, r := range res.Tasks {
		got[r.ID] = r
	}
	if len(got) != 5 {
		t.Fatalf("Fetch returned %d tasks, want all 5", len(res.Tasks))
	}
	if r := got[good.ID]; r.Malformed != "" || r.Kind != "test.kind" {
		t.Errorf("good task: Malformed %q, Kind %q", r.Malformed, r.Kind)
	}
	for _, c := range []struct {
		id, want string
	}{{badMsg.ID, "msg"}, {noMsg.ID, "msg missing"}, {badErrs.ID, "error history"}, {badHeader.ID, "msg"}} {
		r := got[c.id]
		if !strings.Contains(r.Malformed, c.want) || r.ID != c.id || r.Queue != "a" || r.State != ebbtype.StateRunning || r.LeaseToken == "" {
			t.Errorf("task %s: %+v; want ID, Queue, a lease and Malformed mentioning %q", c.id, r, c.want)
		}
		if g, err := d.TaskGet(ctx, c.id); err != nil || !strings.Contains(g.Malformed, c.want) {
			t.Errorf("TaskGet(%s) = %+v, %v; want Malformed mentioning %q", c.id, g, err, c.want)
		}
	}

	// The worker dead-letters it with the reason; that must work.
	r := got[badMsg.ID]
	errs, err := d.Complete(ctx, []ebbdriver.Completion{{Queue: r.Queue, ID: r.ID, LeaseToken: r.LeaseToken,
		Outcome: ebbdriver.OutcomeDead, Now: now, Error: &ebbtype.AttemptError{Attempt: 1, At: now, Error: r.Malformed}}})
	if err != nil || errs[0] != nil {
		t.Fatalf("Complete(dead) of a malformed task: %v, %v", err, errs)
	}
	dead, total, err := d.DeadList(ctx, ebbdriver.DeadListParams{Queue: "a", Limit: 10})
	if err != nil || total != 1 || dead[0].ID != badMsg.ID || dead[0].State != ebbtype.StateDead {
		t.Errorf("DeadList = %v, %d, %v", dead, total, err)
	}
}

// --- Redis Cluster hash slots ---------------------------------------------------

// keySlot is Redis Cluster's slot of a key: CRC16 (XMODEM) of its hash tag,
// or of the whole key when it has none.
func keySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) & 16383
}

func TestKeySlot(t *testing.T) {
	t.Parallel()
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	for key, want := range map[string]int{"123456789": 12739, "foo": 12182, "{user1000}.following": 3443, "user1000": 3443, "foo{}{bar}": 8363} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

// TestQueueKeysShareSlot drives a queue through every state and checks that
// every key the driver created for it (found by SCAN) and every key a script
// declares hashes to one slot, so Redis Cluster can run the scripts.
func TestQueueKeysShareSlot(t *testing.T) {
	t.Parallel()
	for _, queue := range []string{"default", "a}b", "x{y", "emails:high", "w"} {
		t.Run(queue, func(t *testing.T) {
			d, ctx, now := parallelDriver(t)
			tasks := []*ebbtype.TaskInfo{testTask(queue, now), testTask(queue, now), testTask(queue, now), testTask(queue, now.Add(time.Hour))}
			tasks[0].UniqueKey = "u1"
			tasks[1].UniqueKey, tasks[1].UniqueTTL = "u2", time.Hour
			mustEnqueue(t, d, tasks...)
			res, err := d.Fetch(ctx, fetchParams(now, 2, queue))
			if err != nil || len(res.Tasks) != 2 {
				t.Fatalf("Fetch = %v, %v", res, err)
			}
			r := res.Tasks[0]
			if _, err := d.Complete(ctx, []ebbdriver.Completion{{Queue: queue, ID: r.ID, LeaseToken: r.LeaseToken,
				Outcome: ebbdriver.OutcomeDead, Now: now, Error: &ebbtype.AttemptError{Error: "x"}}}); err != nil {
				t.Fatal(err)
			}
			if _, err := d.WorkerHeartbeat(ctx, ebbtype.WorkerInfo{ID: "w1", HeartbeatAt: now}, time.Minute); err != nil {
				t.Fatal(err)
			}

			k := d.keys(queue)
			slot := keySlot(k.tasks)
			var found []string
			iter := d.rdb.Scan(ctx, 0, globEscape(k.prefix)+"*", 1000).Iterator()
			for iter.Next(ctx) {
				found = append(found, iter.Val())
			}
			if err := iter.Err(); err != nil {
				t.Fatal(err)
			}
			// tasks, ready:2, leases, dead, stats, uniq, uniqexp, and not
			// one key per task or per unique key: only the queue's own.
			if len(found) < 7 {
				t.Errorf("found only %d keys of queue %q: %v", len(found), queue, found)
			}
			own := []string{k.ready[0], k.ready[1], k.ready[2], k.scheduled, k.leases, k.dead, k.done, k.stats, k.waiters, k.tasks, k.uniq, k.uniqexp}
			for _, key := range found {
				if !slices.Contains(own, key) {
					t.Errorf("key %q is not one of the queue's keys %v", key, own)
				}
			}
			declared := slices.Concat(k.kEnqueue, k.kFetch, k.kComplete, k.kRescue, k.kPromote, k.kDeadMove)
			for _, key := range slices.Concat(found, declared) {
				if keySlot(key) != slot {
					t.Errorf("key %q is in slot %d, not the queue's slot %d", key, keySlot(key), slot)
				}
			}
			// The global keys of one kind share a slot too (their scripts).
			for _, group := range [][]string{
				{d.workersKey(), d.workerInfoKey(), d.workerDrainKey()},
				{d.leaderKey("cp"), d.decisionsKey("seq"), d.decisionsKey("data"), d.decisionsKey("all"), d.decisionsKey("pool:web"),
					d.schedulesKey(), d.scheduleKey("nightly"), d.scheduleKey("a}b{c")},
			} {
				for _, key := range group {
					if keySlot(key) != keySlot(group[0]) {
						t.Errorf("key %q is not in the slot of %q", key, group[0])
					}
				}
			}
		})
	}
}

// TestScriptHeaders checks that every script starts with a comment naming
// each KEYS and ARGV index its body uses.
func TestScriptHeaders(t *testing.T) {
	t.Parallel()
	scripts := map[string]*script{
		"enqueue": scriptEnqueue, "enqueueOne": scriptEnqueueOne, "fetch": scriptFetch, "complete": scriptComplete, "extend": scriptExtend,
		"rescue": scriptRescue, "promote": scriptPromote, "cancel": scriptCancel, "awaitMark": scriptAwaitMark,
		"awaitUnmark": scriptAwaitUnmark, "deadRetry": scriptDeadRetry, "deadPurge": scriptDeadPurge,
		"cleanup": scriptCleanup, "workerHeartbeat": scriptWorkerHeartbeat, "workerList": scriptWorkerList,
		"workerDeregister": scriptWorkerDeregister, "workerDrain": scriptWorkerDrain, "queueStats": scriptQueueStats,
		"leaderAttempt": scriptLeaderAttempt, "leaderResign": scriptLeaderResign,
		"decisionAppend": scriptDecisionAppend, "decisionList": scriptDecisionList,
		"scheduleUpsert": scriptScheduleUpsert, "scheduleDelete": scriptScheduleDelete,
		"schedulePause": scriptSchedulePause, "scheduleMarkFired": scriptScheduleMarkFired,
		"retry": scriptRetry, "delete": scriptDelete,
	}
	use := regexp.MustCompile(`(KEYS|ARGV)\[(\d+)`)
	decl := regexp.MustCompile(`^-- (KEYS|ARGV)\[(\d+)(…)?\] ->`)
	for name, s := range scripts {
		s.built()
		if !strings.HasPrefix(s.src, "-- ") {
			t.Errorf("%s: does not start with a comment", name)
			continue
		}
		declared := map[string]bool{}
		open := map[string]int{} // ARGV[n…]: n and everything after
		for _, line := range strings.Split(s.src, "\n") {
			if !strings.HasPrefix(line, "--") {
				break
			}
			if m := decl.FindStringSubmatch(line); m != nil {
				declared[m[1]+m[2]] = true
				if m[3] != "" {
					open[m[1]], _ = strconv.Atoi(m[2])
				}
			}
		}
		for _, m := range use.FindAllStringSubmatch(s.body, -1) {
			n, _ := strconv.Atoi(m[2])
			if !declared[m[1]+m[2]] && (open[m[1]] == 0 || n < open[m[1]]) {
				t.Errorf("%s: uses %s[%s] but its header does not name it", name, m[1], m[2])
			}
		}
	}
}

// TestFindTaskInQueueUnknownToDriver: a task enqueued by another process is
// found by id through P:queues.
func TestFindTaskInQueueUnknownToDriver(t *testing.T) {
	t.Parallel()
	producer, reader := twoProcesses(t)
	now := time.Now()
	task := testTask("elsewhere", now)
	mustEnqueue(t, producer, testTask("first", now), task)
	got, err := reader.TaskGet(t.Context(), task.ID)
	if err != nil || got.Queue != "elsewhere" || got.State != ebbtype.StateQueued {
		t.Fatalf("TaskGet from another driver = %+v, %v", got, err)
	}
	if st, err := reader.TaskCancel(t.Context(), task.ID, now); err != nil || st != ebbtype.StateCancelled {
		t.Fatalf("TaskCancel from another driver = %q, %v", st, err)
	}
}

// TestLargeBatches crosses the per-script chunk size in Enqueue, Fetch and
// Complete.
func TestLargeBatches(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	const n = 2*maxPerCall + 300
	tasks := make([]*ebbtype.TaskInfo, n)
	for i := range tasks {
		tasks[i] = testTask([]string{"a", "b"}[i%2], now)
	}
	mustEnqueue(t, d, tasks...)
	res, err := d.Fetch(ctx, fetchParams(now, n-100, "a", "b"))
	if err != nil || len(res.Tasks) != n-100 {
		t.Fatalf("Fetch(limit %d) = %d tasks, %v", n-100, len(res.Tasks), err)
	}
	for i, r := range res.Tasks[:n/2] {
		if r.Queue != "a" {
			t.Fatalf("task %d of the fetch is from queue %q: queue a must be drained first", i, r.Queue)
		}
	}
	cs := make([]ebbdriver.Completion, len(res.Tasks))
	for i, r := range res.Tasks {
		cs[i] = ebbdriver.Completion{Queue: r.Queue, ID: r.ID, LeaseToken: r.LeaseToken, Outcome: ebbdriver.OutcomeSucceeded, Now: now}
	}
	errs, err := d.Complete(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("completion %d: %v", i, err)
		}
	}
	st, err := d.QueueStats(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	var succeeded, queued int64
	for _, s := range st {
		succeeded += s.Succeeded
		queued += s.Queued
	}
	if succeeded != n-100 || queued != 100 {
		t.Errorf("succeeded %d, queued %d; want %d and 100", succeeded, queued, n-100)
	}
}

// TestCompletionPublishesOnlyForWaiters: ending a task nobody awaits must not
// publish on the done channel. A sentinel published afterwards on the same
// channel must be the first message the subscriber sees.
func TestCompletionPublishesOnlyForWaiters(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	ps, _, err := d.subscribe(ctx, []string{d.chDone}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	mustEnqueue(t, d, testTask("a", now))
	res, err := d.Fetch(ctx, fetchParams(now, 1, "a"))
	if err != nil || len(res.Tasks) != 1 {
		t.Fatalf("Fetch = %v, %v", res, err)
	}
	r := res.Tasks[0]
	if _, err := d.Complete(ctx, []ebbdriver.Completion{{Queue: "a", ID: r.ID, LeaseToken: r.LeaseToken, Outcome: ebbdriver.OutcomeSucceeded, Now: now}}); err != nil {
		t.Fatal(err)
	}
	if err := d.rdb.Publish(ctx, d.chDone, "sentinel").Err(); err != nil {
		t.Fatal(err)
	}
	m, err := ps.ReceiveMessage(ctx)
	if err != nil || m.Payload != "sentinel" {
		t.Errorf("first message on the done channel = %v, %v; want the sentinel (no publish without waiters)", m, err)
	}
}

// TestDrainOnlyToItsWorker: a listener for another worker sees cancel
// requests but not the drain request.
func TestDrainOnlyToItsWorker(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	if _, err := d.WorkerHeartbeat(ctx, ebbtype.WorkerInfo{ID: "w1", HeartbeatAt: now}, time.Minute); err != nil {
		t.Fatal(err)
	}
	other, err := d.Listen(ctx, ebbdriver.ListenParams{Queues: []string{"x"}, WorkerID: "w2"})
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, d, testTask("a", now))
	res, err := d.Fetch(ctx, fetchParams(now, 1, "a"))
	if err != nil || len(res.Tasks) != 1 {
		t.Fatalf("Fetch = %v, %v", res, err)
	}
	if err := d.WorkerRequestDrain(ctx, "w1", now); err != nil {
		t.Fatal(err)
	}
	if _, err := d.TaskCancel(ctx, res.Tasks[0].ID, now); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-other:
		if ev.Kind != ebbdriver.EventCancel || ev.TaskID != res.Tasks[0].ID || ev.Queue != "a" {
			t.Errorf("first event of w2's listener = %+v, want the cancel request (not w1's drain)", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no cancel event within 10s")
	}
}

// TestRedisRestart kills a private Redis under a driver and brings it back
// empty: calls fail with an error meanwhile, then everything works again,
// including scripts (reloaded after NOSCRIPT), the queue registry and
// notifications (resubscribed).
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	d, err := Open(t.Context(), srv.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	ctx := t.Context()
	now := time.Now()
	mustEnqueue(t, d, testTask("a", now))
	events, err := d.Listen(ctx, ebbdriver.ListenParams{Queues: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = d.Enqueue(short, []*ebbtype.TaskInfo{testTask("a", now)})
	cancel()
	if err == nil {
		t.Fatal("Enqueue with Redis down succeeded")
	}
	if !strings.Contains(err.Error(), "ebbredis: enqueue") {
		t.Errorf("error %q does not say what failed", err)
	}

	srv.Restart() // empty: no data, no script cache
	// The listener reports the resubscription as a possible missed enqueue.
	ebbdrivertest.WaitEvent(t, events, "EventQueued after resubscribing", func(ev ebbdriver.Event) bool {
		return ev.Kind == ebbdriver.EventQueued && ev.Queue == "a"
	})
	task := testTask("a", now)
	retryUntil(t, "Enqueue after the restart", func() error {
		_, err := d.Enqueue(ctx, []*ebbtype.TaskInfo{task})
		return err
	})
	ebbdrivertest.WaitEvent(t, events, "EventQueued for the new task", func(ev ebbdriver.Event) bool {
		return ev.Kind == ebbdriver.EventQueued && ev.Queue == "a"
	})
	res, err := d.Fetch(ctx, fetchParams(now, 10, "a"))
	if err != nil || len(res.Tasks) != 1 || res.Tasks[0].ID != task.ID {
		t.Fatalf("Fetch after restart = %v, %v; want the task enqueued after it", res, err)
	}
	if got, err := d.TaskGet(ctx, task.ID); err != nil || got.State != ebbtype.StateRunning {
		t.Errorf("TaskGet after restart = %+v, %v", got, err)
	}
	st, err := d.QueueStats(ctx, now)
	if err != nil || len(st) != 1 || st[0].Name != "a" || st[0].InFlight != 1 {
		t.Errorf("QueueStats after restart = %+v, %v; want queue a registered again", st, err)
	}
}

// retryUntil calls f until it succeeds: right after a restart the client's
// pool may still hold connections to the dead server.
func retryUntil(t *testing.T, what string, f func() error) {
	t.Helper()
	var last error
	if err := testwait.Until(15*time.Second, func() (bool, error) { last = f(); return last == nil, nil }); err != nil {
		t.Fatalf("%s: %v (%v)", what, last, err)
	}
}

// TestEmptyTokenNeverOwns: a rescued task's claim has its token cut off;
// an empty token must not pass the fence for it (or for anything).
func TestEmptyTokenNeverOwns(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	task := testTask("a", now)
	mustEnqueue(t, d, task)
	if _, err := d.Fetch(ctx, ebbdriver.FetchParams{Queues: []string{"a"}, Limit: 1, Now: now}); err == nil {
		t.Error("Fetch with an empty lease token succeeded")
	}
	res, err := d.Fetch(ctx, fetchParams(now, 1, "a"))
	if err != nil || len(res.Tasks) != 1 {
		t.Fatalf("Fetch = %v, %v", res, err)
	}
	if _, err := d.RescueExpired(ctx, "a", now.Add(time.Hour), 10); err != nil {
		t.Fatal(err)
	}
	errs, err := d.Complete(ctx, []ebbdriver.Completion{{Queue: "a", ID: task.ID, Outcome: ebbdriver.OutcomeSucceeded, Now: now}})
	if err != nil || !errors.Is(errs[0], ebbtype.ErrLeaseLost) {
		t.Errorf("Complete with an empty token = %v, %v; want ErrLeaseLost", errs, err)
	}
	ext, err := d.ExtendLeases(ctx, ebbdriver.ExtendLeasesParams{Leases: []ebbdriver.LeaseRef{{Queue: "a", ID: task.ID}}, Until: now.Add(time.Hour), Now: now})
	if err != nil || len(ext.Lost) != 1 {
		t.Errorf("ExtendLeases with an empty token = %+v, %v; want it lost", ext, err)
	}
	if got, err := d.TaskGet(ctx, task.ID); err != nil || got.State != ebbtype.StateQueued || got.LeaseToken != "" {
		t.Errorf("task after the attempts = %+v, %v; want queued, no token", got, err)
	}
}

// TestQueueStatsQueueSet: QueueStats reuses its copy of P:queues, which
// takes in at once the queues this Driver enqueues into, hears about or
// finds a task in, and the others within queueSetTTL.
func TestQueueStatsQueueSet(t *testing.T) {
	t.Parallel()
	other, d := twoProcesses(t)
	ctx := t.Context()
	now := time.Now()
	names := func() []string {
		t.Helper()
		st, err := d.QueueStats(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range st {
			out = append(out, s.Name)
		}
		return out
	}
	if got := names(); len(got) != 0 {
		t.Fatalf("queues of an empty broker = %v", got)
	}
	mustEnqueue(t, other, testTask("elsewhere", now))
	if got := names(); len(got) != 0 {
		t.Fatalf("queues right after another driver's enqueue = %v, want the cached (empty) set", got)
	}
	mustEnqueue(t, d, testTask("mine", now))
	if got := names(); !slices.Equal(got, []string{"mine"}) {
		t.Fatalf("queues after this driver's enqueue = %v, want [mine] without a refresh", got)
	}
	// A listener hears of a queue: it is listed at once.
	events, err := d.Listen(ctx, ebbdriver.ListenParams{})
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, other, testTask("heard", now))
	ebbdrivertest.WaitEvent(t, events, "EventQueued for heard", func(ev ebbdriver.Event) bool { return ev.Queue == "heard" })
	if got := names(); !slices.Equal(got, []string{"heard", "mine"}) {
		t.Fatalf("queues after a notification = %v, want [heard mine]", got)
	}
	// The copy expires.
	d.qset.mu.Lock()
	d.qset.at = d.qset.at.Add(-queueSetTTL)
	d.qset.mu.Unlock()
	if got := names(); !slices.Equal(got, []string{"elsewhere", "heard", "mine"}) {
		t.Fatalf("queues after queueSetTTL = %v, want all three", got)
	}
	// TaskGet finds tasks in queues new to the Driver, whatever the copy.
	task := testTask("newest", now)
	mustEnqueue(t, other, task)
	if got, err := d.TaskGet(ctx, task.ID); err != nil || got.Queue != "newest" {
		t.Fatalf("TaskGet of a task in a queue new to the driver = %+v, %v", got, err)
	}
	if got := names(); len(got) != 4 {
		t.Fatalf("queues after TaskGet read P:queues = %v, want all four", got)
	}
}

// TestQueueStatsOneCallPerQueue: with the queue set cached, QueueStats is
// one script call per queue and nothing else.
func TestQueueStatsOneCallPerQueue(t *testing.T) {
	t.Parallel()
	c := testredis.Client(t)
	d, _ := New(c, &Config{Prefix: testredis.Prefix(t)})
	t.Cleanup(func() { _ = d.Close() })
	now := time.Now()
	mustEnqueue(t, d, testTask("a", now), testTask("b", now), testTask("c", now))
	if _, err := d.QueueStats(t.Context(), now); err != nil {
		t.Fatal(err)
	}
	var cc cmdCounter
	c.AddHook(&cc)
	st, err := d.QueueStats(t.Context(), now)
	if err != nil || len(st) != 3 {
		t.Fatalf("QueueStats = %+v, %v", st, err)
	}
	if n := cc.n.Load(); n != 3 {
		t.Errorf("QueueStats of 3 queues sent %d commands, want 3 (one script call per queue)", n)
	}
}

// twoProcesses returns two drivers on one Redis under one prefix, as two
// processes sharing a broker see it; both close when the test ends.
func twoProcesses(t *testing.T) (*Driver, *Driver) {
	t.Helper()
	c := testredis.Client(t)
	prefix := testredis.Prefix(t)
	a, errA := New(c, &Config{Prefix: prefix})
	b, errB := New(c, &Config{Prefix: prefix})
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

// TestScriptsCarryTheHelpersTheyCall: Redis builds every helper a script
// carries on each call, so the enqueue script carries only the three it
// calls, and the fetch script, which decodes records, carries the decoder
// and what the decoder calls.
func TestScriptsCarryTheHelpersTheyCall(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		s        *script
		has, not []string
	}{
		{scriptEnqueue, []string{"itoa", "us", "bulk"}, []string{"dec", "enc", "promote", "RECP"}},
		{scriptFetch, []string{"dec", "RECP", "promote", "bulk"}, []string{"pickDead"}},
	} {
		c.s.built()
		for _, h := range c.has {
			if !regexp.MustCompile(`(?m)^local (function )?` + h + `\b`).MatchString(c.s.src) {
				t.Errorf("script %.30q lacks helper %s", c.s.src, h)
			}
		}
		for _, h := range c.not {
			if regexp.MustCompile(`(?m)^local (function )?` + h + `\b`).MatchString(c.s.src) {
				t.Errorf("script %.30q carries helper %s, which it never calls", c.s.src, h)
			}
		}
	}
}

// TestEnqueuePublishesOnlyIntoEmptySets: an enqueue wakes listeners when a
// ready set it adds to was empty, by the lone-task script and by the
// general one, and stays quiet when tasks were already waiting there.
func TestEnqueuePublishesOnlyIntoEmptySets(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	ch := d.keys("a").channel
	ps, _, err := d.subscribe(ctx, []string{ch}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	high := func(t *ebbtype.TaskInfo) *ebbtype.TaskInfo { t.Priority = ebbtype.PriorityHigh; return t }
	mustEnqueue(t, d, testTask("a", now))                                         // empty: 1
	mustEnqueue(t, d, testTask("a", now))                                         // behind it: quiet
	mustEnqueue(t, d, testTask("a", now), testTask("a", now), testTask("a", now)) // quiet
	later := testTask("a", now)
	later.RunAt = now.Add(time.Hour)
	mustEnqueue(t, d, later) // scheduled: quiet
	res, err := d.Fetch(ctx, fetchParams(now, 10, "a"))
	if err != nil || len(res.Tasks) != 5 {
		t.Fatalf("Fetch = %v, %v; want the 5 queued tasks", res, err)
	}
	mustEnqueue(t, d, testTask("a", now), testTask("a", now)) // emptied: 1
	mustEnqueue(t, d, high(testTask("a", now)))               // another priority's empty set: 1
	if err := d.rdb.Publish(ctx, ch, "sentinel").Err(); err != nil {
		t.Fatal(err)
	}
	wakes := 0
	for {
		m, err := ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Payload == "sentinel" {
			break
		}
		wakes++
	}
	if wakes != 3 {
		t.Errorf("%d wake-ups on %s; want 3 (into an empty set each time, none behind waiting tasks)", wakes, ch)
	}
}
