package ebbredis

import (
	"slices"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// doneSet reads P:{q}:done: member → score.
func doneSet(t *testing.T, d *Driver, queue string) map[string]int64 {
	t.Helper()
	zs, err := d.rdb.ZRangeWithScores(t.Context(), d.keys(queue).done, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, z := range zs {
		out[z.Member.(string)] = int64(z.Score)
	}
	return out
}

func checkDone(t *testing.T, what string, want, got map[string]int64) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("%s: done set %v, want %v", what, got, want)
		return
	}
	for id, score := range want {
		if got[id] != score {
			t.Errorf("%s: done set %v, want %v", what, got, want)
			return
		}
	}
}

// TestDoneIndex follows P:{q}:done: the tasks that succeed or are cancelled
// (running or not) enter it scored by their expiry rounded up to the next
// millisecond, a task without retention never does, TaskDelete takes a task out and
// Cleanup drops the expired ones, within its Limit, counting them.
func TestDoneIndex(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t)
	ctx := t.Context()
	now := time.Unix(1_790_000_000, 123_456_789)
	expiry := func(at time.Time, retention time.Duration) int64 {
		return (at.UnixMilli() + 1 + retention.Milliseconds()) * 1000
	}
	kept, gone, running, dead, waiting := testTask("q", now), testTask("q", now), testTask("q", now), testTask("q", now), testTask("q", now)
	gone.Retention = 0
	running.Retention = 30 * time.Minute
	mustEnqueue(t, d, kept, gone, running, dead, waiting)
	res, err := d.Fetch(ctx, fetchParams(now, 4, "q"))
	if err != nil || len(res.Tasks) != 4 {
		t.Fatalf("Fetch = %v, %v", res, err)
	}
	byID := map[string]*ebbtype.TaskInfo{}
	for _, r := range res.Tasks {
		byID[r.ID] = r
	}
	end := func(task *ebbtype.TaskInfo, o ebbdriver.Outcome) ebbdriver.Completion {
		r := byID[task.ID]
		if r == nil {
			t.Fatalf("task %s was not fetched", task.ID)
		}
		c := ebbdriver.Completion{Queue: "q", ID: r.ID, LeaseToken: r.LeaseToken, Outcome: o, Now: now}
		if o == ebbdriver.OutcomeDead {
			c.Error = &ebbtype.AttemptError{Error: "fatal"}
		}
		return c
	}
	errs, err := d.Complete(ctx, []ebbdriver.Completion{end(kept, ebbdriver.OutcomeSucceeded),
		end(gone, ebbdriver.OutcomeSucceeded), end(running, ebbdriver.OutcomeCancelled), end(dead, ebbdriver.OutcomeDead)})
	if err != nil || slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
		t.Fatalf("Complete = %v, %v", errs, err)
	}
	later := now.Add(time.Minute)
	if st, err := d.TaskCancel(ctx, waiting.ID, later); err != nil || st != ebbtype.StateCancelled {
		t.Fatalf("TaskCancel = %q, %v", st, err)
	}
	checkDone(t, "after the ends", map[string]int64{
		kept.ID: expiry(now, time.Hour), running.ID: expiry(now, 30*time.Minute), waiting.ID: expiry(later, time.Hour),
	}, doneSet(t, d, "q"))

	if err := d.TaskDelete(ctx, running.ID); err != nil {
		t.Fatalf("TaskDelete: %v", err)
	}
	checkDone(t, "after TaskDelete", map[string]int64{
		kept.ID: expiry(now, time.Hour), waiting.ID: expiry(later, time.Hour),
	}, doneSet(t, d, "q"))

	cleanup := func(at time.Time, limit int) int64 {
		t.Helper()
		n, err := d.Cleanup(ctx, ebbdriver.CleanupParams{Queue: "q", Now: at, DeadRetention: 24 * time.Hour, Limit: limit})
		if err != nil {
			t.Fatalf("Cleanup: %v", err)
		}
		return n
	}
	if n := cleanup(now.Add(59*time.Minute), 10); n != 0 {
		t.Errorf("Cleanup before any expiry = %d, want 0", n)
	}
	first := time.UnixMicro(expiry(now, time.Hour))
	if n := cleanup(first.Add(-time.Microsecond), 10); n != 0 {
		t.Errorf("Cleanup just before the first expiry = %d, want 0", n)
	}
	if n := cleanup(first, 10); n != 1 {
		t.Errorf("Cleanup at the first expiry = %d, want 1 (the expiry is inclusive)", n)
	}
	checkDone(t, "after the first expiry", map[string]int64{waiting.ID: expiry(later, time.Hour)}, doneSet(t, d, "q"))

	// More than a Limit expired: Cleanup takes the Limit, the earliest
	// first, and says so, so that a caller calls again.
	var more []*ebbtype.TaskInfo
	for range 4 {
		more = append(more, testTask("q", now))
	}
	mustEnqueue(t, d, more...)
	for _, task := range more {
		if _, err := d.TaskCancel(ctx, task.ID, now); err != nil {
			t.Fatal(err)
		}
	}
	at := later.Add(2 * time.Hour)
	for i, want := range []int64{2, 2, 1, 0} {
		if n := cleanup(at, 2); n != want {
			t.Errorf("Cleanup %d with limit 2 = %d, want %d", i+1, n, want)
		}
	}
	if got := doneSet(t, d, "q"); len(got) != 0 {
		t.Errorf("done set after the cleanups = %v, want empty", got)
	}
	// The dead task is Cleanup's too, and shares the Limit.
	if n := cleanup(at.Add(24*time.Hour), 10); n != 1 {
		t.Errorf("Cleanup of the dead task = %d, want 1", n)
	}
}

// TestTaskListSkipsVanishedTasks: a listed id whose record is gone (deleted
// by hand) costs a place in the scan but is not returned.
func TestTaskListSkipsVanishedTasks(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	a, b := testTask("q", now), testTask("q", now)
	mustEnqueue(t, d, a, b)
	res, err := d.Fetch(ctx, fetchParams(now, 2, "q"))
	if err != nil || len(res.Tasks) != 2 {
		t.Fatalf("Fetch = %v, %v", res, err)
	}
	var cs []ebbdriver.Completion
	for _, r := range res.Tasks {
		cs = append(cs, ebbdriver.Completion{Queue: "q", ID: r.ID, LeaseToken: r.LeaseToken, Outcome: ebbdriver.OutcomeSucceeded, Now: now})
	}
	if _, err := d.Complete(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if err := d.rdb.HDel(ctx, d.keys("q").tasks, a.ID).Err(); err != nil {
		t.Fatal(err)
	}
	l, err := d.TaskList(ctx, ebbdriver.TaskListParams{State: ebbtype.StateSucceeded})
	if err != nil {
		t.Fatalf("TaskList: %v", err)
	}
	if len(l.Tasks) != 1 || l.Tasks[0].ID != b.ID || l.Scanned != 2 || l.Cursor != "" {
		t.Errorf("TaskList = %d tasks %v, Scanned %d, Cursor %q; want only %s, Scanned 2, no cursor",
			len(l.Tasks), l.Tasks, l.Scanned, l.Cursor, b.ID)
	}
}

func TestTaskListRejects(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	mustEnqueue(t, d, testTask("a", now), testTask("a", now), testTask("b", now))
	res, err := d.TaskList(ctx, ebbdriver.TaskListParams{Queue: "a", Limit: 1})
	if err != nil || res.Cursor == "" {
		t.Fatalf("TaskList = %+v, %v; want a cursor", res, err)
	}
	for _, p := range []ebbdriver.TaskListParams{
		{State: "finished"},
		{Cursor: "not a cursor"},
		{Cursor: listPos{queue: "a", bucket: numBuckets, offset: 0}.cursor()},
		{Queue: "b", Cursor: res.Cursor}, // a's cursor
	} {
		if _, err := d.TaskList(ctx, p); err == nil {
			t.Errorf("TaskList(%+v) succeeded", p)
		}
	}
}

// TestTaskListCursorAcrossQueues: a cursor names the queue it stopped in, so
// the next call resumes there and goes on through the later queues.
func TestTaskListCursorAcrossQueues(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	for _, q := range []string{"c", "a", "b"} {
		mustEnqueue(t, d, testTask(q, now))
	}
	var got []string
	cursor := ""
	for range 10 {
		res, err := d.TaskList(ctx, ebbdriver.TaskListParams{Limit: 1, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Tasks {
			got = append(got, r.Queue)
		}
		if cursor = res.Cursor; cursor == "" {
			break
		}
	}
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("queues in listing order = %v, want a, b, c", got)
	}
}
