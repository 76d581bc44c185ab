package ebbdrivertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testwait"
	"github.com/ebbq/ebb/internal/tid"
)

const (
	// leaseDuration is the lease every fetch in the suite takes unless a test
	// needs another; tests expire it by passing a later Now, never by waiting.
	leaseDuration = 30 * time.Second

	// eventTimeout bounds waits for notifications. Delivery is best effort
	// but the contract forbids losing one sent after Listen returned, so a
	// healthy driver delivers well within this.
	eventTimeout = 10 * time.Second

	// awaitTimeout bounds TaskAwait. It is generous because a driver may
	// legitimately rely on its slow backstop poll if it subscribed late.
	awaitTimeout = 30 * time.Second

	// expiryTimeout bounds polls for wall-clock expiry (retention, unique
	// TTL, worker TTL); the durations involved are a second or less.
	expiryTimeout = 15 * time.Second
)

// fixture is one subtest's driver and its idea of "now".
type fixture struct {
	t   *testing.T
	ctx context.Context
	d   ebbdriver.Driver
	// now is the subtest's base time. It is truncated to milliseconds
	// because drivers may store times at millisecond precision, so every time
	// the suite derives from it survives a round trip exactly.
	now time.Time
}

func setup(t *testing.T, newDriver Factory) *fixture {
	t.Helper()
	t.Parallel()
	d := newDriver(t)
	if d == nil {
		t.Fatal("factory returned a nil driver")
	}
	return &fixture{t: t, ctx: t.Context(), d: d, now: msNow()}
}

// msNow is the wall clock truncated to milliseconds (see fixture.now).
func msNow() time.Time { return time.Now().Truncate(time.Millisecond) }

// at is the base time shifted by d.
func (f *fixture) at(d time.Duration) time.Time { return f.now.Add(d) }

type taskOpt func(*ebbtype.TaskInfo)

func withRunAt(at time.Time) taskOpt          { return func(r *ebbtype.TaskInfo) { r.RunAt = at } }
func withPriority(p ebbtype.Priority) taskOpt { return func(r *ebbtype.TaskInfo) { r.Priority = p } }
func withMaxAttempts(n int) taskOpt           { return func(r *ebbtype.TaskInfo) { r.MaxAttempts = n } }
func withRetention(d time.Duration) taskOpt {
	return func(r *ebbtype.TaskInfo) { r.Retention = d }
}
func withUnique(key string, ttl time.Duration) taskOpt {
	return func(r *ebbtype.TaskInfo) { r.UniqueKey, r.UniqueTTL = key, ttl }
}
func withArgs(js string) taskOpt { return func(r *ebbtype.TaskInfo) { r.EncodedArgs = []byte(js) } }

// newTask is a fully populated task as a client would hand it to Enqueue:
// queued now, normal priority, three attempts, kept an hour after it ends.
func newTask(queue string, now time.Time, opts ...taskOpt) *ebbtype.TaskInfo {
	r := &ebbtype.TaskInfo{
		ID:          tid.NewAt(now),
		Kind:        "test.kind",
		Queue:       queue,
		EncodedArgs: []byte(`{}`),
		Priority:    ebbtype.PriorityNormal,
		RunAt:       now,
		MaxAttempts: 3,
		Retention:   time.Hour,
		EnqueuedAt:  now,
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// task is newTask at the fixture's base time.
func (f *fixture) task(queue string, opts ...taskOpt) *ebbtype.TaskInfo {
	return newTask(queue, f.now, opts...)
}

// enqueue stores tasks and fails the test unless every one is new.
func (f *fixture) enqueue(tasks ...*ebbtype.TaskInfo) []*ebbtype.TaskInfo {
	f.t.Helper()
	res := f.enqueueResults(tasks...)
	for i, r := range res {
		if r.Duplicate || r.ID != tasks[i].ID {
			f.t.Fatalf("Enqueue result %d = %+v, want new task %s", i, r, tasks[i].ID)
		}
	}
	return tasks
}

func (f *fixture) enqueueResults(tasks ...*ebbtype.TaskInfo) []ebbdriver.EnqueueResult {
	f.t.Helper()
	res, err := f.d.Enqueue(f.ctx, tasks)
	if err != nil {
		f.t.Fatalf("Enqueue: %v", err)
	}
	if len(res) != len(tasks) {
		f.t.Fatalf("Enqueue returned %d results for %d tasks", len(res), len(tasks))
	}
	return res
}

// fetchParams are the defaults of fetch: worker "worker-1", a fresh lease
// token, leaseDuration.
func fetchParams(now time.Time, limit int, queues ...string) ebbdriver.FetchParams {
	return ebbdriver.FetchParams{
		Queues:        queues,
		Limit:         limit,
		WorkerID:      "worker-1",
		LeaseToken:    tid.New(),
		LeaseDuration: leaseDuration,
		Now:           now,
	}
}

func (f *fixture) fetchWith(p ebbdriver.FetchParams) *ebbdriver.FetchResult {
	f.t.Helper()
	res, err := f.d.Fetch(f.ctx, p)
	if err != nil {
		f.t.Fatalf("Fetch(%v, limit %d): %v", p.Queues, p.Limit, err)
	}
	if res == nil {
		f.t.Fatalf("Fetch(%v) returned a nil result", p.Queues)
	}
	if len(res.Tasks) > p.Limit {
		f.t.Fatalf("Fetch(limit %d) returned %d tasks", p.Limit, len(res.Tasks))
	}
	return res
}

func (f *fixture) fetch(now time.Time, limit int, queues ...string) *ebbdriver.FetchResult {
	f.t.Helper()
	return f.fetchWith(fetchParams(now, limit, queues...))
}

// enqueueClaimAs enqueues a task into queue "a" and fetches it at the base
// time as worker.
func (f *fixture) enqueueClaimAs(worker string) (task, claimed *ebbtype.TaskInfo) {
	f.t.Helper()
	task = f.enqueue(f.task("a"))[0]
	p := fetchParams(f.now, 1, "a")
	p.WorkerID = worker
	return task, f.fetchWith(p).Tasks[0]
}

// fetchOne fetches exactly one task and fails if there is none.
func (f *fixture) fetchOne(now time.Time, queues ...string) *ebbtype.TaskInfo {
	f.t.Helper()
	res := f.fetch(now, 1, queues...)
	if len(res.Tasks) != 1 {
		f.t.Fatalf("Fetch(%v) at %s returned %d tasks, want 1", queues, fmtTime(now), len(res.Tasks))
	}
	return res.Tasks[0]
}

// fetchNone fails unless fetching returns nothing.
func (f *fixture) fetchNone(now time.Time, queues ...string) *ebbdriver.FetchResult {
	f.t.Helper()
	res := f.fetch(now, 100, queues...)
	if len(res.Tasks) != 0 {
		f.t.Fatalf("Fetch(%v) at %s returned %v, want nothing", queues, fmtTime(now), taskIDs(res.Tasks))
	}
	return res
}

func (f *fixture) get(id string) *ebbtype.TaskInfo {
	f.t.Helper()
	r, err := f.d.TaskGet(f.ctx, id)
	if err != nil {
		f.t.Fatalf("TaskGet(%s): %v", id, err)
	}
	if r == nil {
		f.t.Fatalf("TaskGet(%s) returned nil without error", id)
	}
	return r
}

func (f *fixture) requireNotFound(id string) {
	f.t.Helper()
	r, err := f.d.TaskGet(f.ctx, id)
	if !errors.Is(err, ebbtype.ErrTaskNotFound) {
		f.t.Fatalf("TaskGet(%s) = %v, %v; want ErrTaskNotFound", id, describe(r), err)
	}
}

func (f *fixture) requireState(id string, want ebbtype.State) *ebbtype.TaskInfo {
	f.t.Helper()
	r := f.get(id)
	if r.State != want {
		f.t.Fatalf("task %s state = %q, want %q", id, r.State, want)
	}
	return r
}

// complete runs a batch of completions and returns the per-item errors.
func (f *fixture) complete(cs ...ebbdriver.Completion) []error {
	f.t.Helper()
	errs, err := f.d.Complete(f.ctx, cs)
	if err != nil {
		f.t.Fatalf("Complete: %v", err)
	}
	if len(errs) != len(cs) {
		f.t.Fatalf("Complete returned %d errors for %d completions", len(errs), len(cs))
	}
	return errs
}

// completeOK runs a batch and fails unless every item applied.
func (f *fixture) completeOK(cs ...ebbdriver.Completion) {
	f.t.Helper()
	for i, err := range f.complete(cs...) {
		if err != nil {
			f.t.Fatalf("Complete item %d (task %s, outcome %d): %v", i, cs[i].ID, cs[i].Outcome, err)
		}
	}
}

// completion is an outcome for a task as fetched, carrying its lease token.
func completion(r *ebbtype.TaskInfo, o ebbdriver.Outcome, now time.Time) ebbdriver.Completion {
	return ebbdriver.Completion{Queue: r.Queue, ID: r.ID, LeaseToken: r.LeaseToken, Outcome: o, Now: now}
}

func succeed(r *ebbtype.TaskInfo, now time.Time, result string) ebbdriver.Completion {
	c := completion(r, ebbdriver.OutcomeSucceeded, now)
	c.Result = []byte(result)
	return c
}

func attemptError(r *ebbtype.TaskInfo, now time.Time, msg string) *ebbtype.AttemptError {
	return &ebbtype.AttemptError{
		Attempt:  r.Attempt,
		At:       now,
		Error:    msg,
		Stack:    "goroutine 1 [running]:\nmain.handler()\n\t/src/main.go:42",
		WorkerID: r.WorkerID,
	}
}

func retry(r *ebbtype.TaskInfo, now, retryAt time.Time, msg string) ebbdriver.Completion {
	c := completion(r, ebbdriver.OutcomeRetry, now)
	c.Error = attemptError(r, now, msg)
	c.RetryAt = retryAt
	return c
}

func dead(r *ebbtype.TaskInfo, now time.Time, msg string) ebbdriver.Completion {
	c := completion(r, ebbdriver.OutcomeDead, now)
	c.Error = attemptError(r, now, msg)
	return c
}

// kill fetches an already enqueued task and completes it as Dead at deathAt.
// It fails unless that task is the next one the queue hands out, so callers
// control which task dies when by RunAt.
func (f *fixture) kill(task *ebbtype.TaskInfo, deathAt time.Time) {
	f.t.Helper()
	r := f.fetchOne(f.now, task.Queue)
	if r.ID != task.ID {
		f.t.Fatalf("fetched %s, want %s", r.ID, task.ID)
	}
	f.completeOK(dead(r, deathAt, "fatal: "+task.ID))
}

func (f *fixture) stats() []ebbtype.QueueStats {
	f.t.Helper()
	return f.statsAt(f.now)
}

func (f *fixture) statsAt(now time.Time) []ebbtype.QueueStats {
	f.t.Helper()
	st, err := f.d.QueueStats(f.ctx, now)
	if err != nil {
		f.t.Fatalf("QueueStats at %s: %v", fmtTime(now), err)
	}
	return st
}

func (f *fixture) deadList(queue string, offset, limit int) ([]*ebbtype.TaskInfo, int64) {
	f.t.Helper()
	l, total, err := f.d.DeadList(f.ctx, ebbdriver.DeadListParams{Queue: queue, Offset: offset, Limit: limit})
	if err != nil {
		f.t.Fatalf("DeadList(%s, %d, %d): %v", queue, offset, limit, err)
	}
	return l, total
}

// listen subscribes until the test ends.
func (f *fixture) listen(p ebbdriver.ListenParams) <-chan ebbdriver.Event {
	f.t.Helper()
	ch, err := f.d.Listen(f.ctx, p)
	if err != nil {
		f.t.Fatalf("Listen(%+v): %v", p, err)
	}
	return ch
}

// waitEvent reads ch until an event matches, failing on timeout or close.
// Non-matching events are passed to other (if non-nil) so a test can object
// to events it must not see.
func waitEvent(t *testing.T, ch <-chan ebbdriver.Event, what string, match, other func(ebbdriver.Event) bool) ebbdriver.Event {
	t.Helper()
	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("waiting for %s: event channel closed", what)
			}
			if match(ev) {
				return ev
			}
			if other != nil && !other(ev) {
				t.Errorf("while waiting for %s: unexpected event %+v", what, ev)
			}
		case <-timer.C:
			t.Fatalf("no %s within %v", what, eventTimeout)
		}
	}
}

// poll calls try until it reports done, failing with what if that takes
// longer than expiryTimeout, or at once if try failed the test.
func poll(t *testing.T, what string, try func() bool) {
	t.Helper()
	testwait.Eventually(t, expiryTimeout, what, func() (bool, error) { return try(), nil })
}

// --- comparison --------------------------------------------------------------

// sameTime compares at millisecond precision: drivers may store milliseconds.
func sameTime(a, b time.Time) bool {
	return a.Truncate(time.Millisecond).Equal(b.Truncate(time.Millisecond))
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return t.UTC().Format("15:04:05.000")
}

func checkTime(t *testing.T, what string, want, got time.Time) {
	t.Helper()
	if !sameTime(want, got) {
		t.Errorf("%s = %s (%v), want %s (%v)", what, fmtTime(got), got, fmtTime(want), want)
	}
}

func check[T comparable](t *testing.T, what string, want, got T) {
	t.Helper()
	if want != got {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func checkSlice[T comparable](t *testing.T, what string, want, got []T) {
	t.Helper()
	if len(want) == 0 && len(got) == 0 {
		return
	}
	if !slices.Equal(want, got) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// checkMap compares maps by content; nil and empty are the same.
func checkMap[K, V comparable](t *testing.T, what string, want, got map[K]V) {
	t.Helper()
	if (len(want) != 0 || len(got) != 0) && !maps.Equal(want, got) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// checkSet compares ignoring order.
func checkSet(t *testing.T, what string, want, got []string) {
	t.Helper()
	w, g := slices.Sorted(slices.Values(want)), slices.Sorted(slices.Values(got))
	checkSlice(t, what, w, g)
}

// checkJSON compares JSON documents by value: a driver may re-encode them.
func checkJSON(t *testing.T, what string, want, got []byte) {
	t.Helper()
	if len(want) == 0 {
		if len(got) != 0 {
			t.Errorf("%s = %s, want empty", what, got)
		}
		return
	}
	if bytes.Equal(want, got) {
		return
	}
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: test's own JSON %q: %v", what, want, err)
	}
	if err := json.Unmarshal(got, &g); err != nil || !reflect.DeepEqual(w, g) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func checkErrors(t *testing.T, what string, want, got []ebbtype.AttemptError) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("%s: %d entries %+v, want %d %+v", what, len(got), got, len(want), want)
		return
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.Attempt != g.Attempt || w.Error != g.Error || w.Stack != g.Stack || w.WorkerID != g.WorkerID || !sameTime(w.At, g.At) {
			t.Errorf("%s[%d] = %+v, want %+v", what, i, g, w)
		}
	}
}

// checkStored compares the fields a client sets on enqueue.
func checkStored(t *testing.T, want, got *ebbtype.TaskInfo) {
	t.Helper()
	p := "task " + want.ID + " "
	check(t, p+"ID", want.ID, got.ID)
	check(t, p+"Kind", want.Kind, got.Kind)
	check(t, p+"Queue", want.Queue, got.Queue)
	checkJSON(t, p+"Args", want.EncodedArgs, got.EncodedArgs)
	checkMap(t, p+"Headers", want.Headers, got.Headers)
	check(t, p+"Priority", want.Priority, got.Priority)
	checkTime(t, p+"RunAt", want.RunAt, got.RunAt)
	check(t, p+"MaxAttempts", want.MaxAttempts, got.MaxAttempts)
	check(t, p+"Timeout", want.Timeout, got.Timeout)
	check(t, p+"Retention", want.Retention, got.Retention)
	check(t, p+"UniqueKey", want.UniqueKey, got.UniqueKey)
	check(t, p+"UniqueTTL", want.UniqueTTL, got.UniqueTTL)
	checkTime(t, p+"EnqueuedAt", want.EnqueuedAt, got.EnqueuedAt)
	check(t, p+"Malformed", "", got.Malformed)
}

func taskIDs(rs []*ebbtype.TaskInfo) []string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids
}

func ids(rs ...*ebbtype.TaskInfo) []string { return taskIDs(rs) }

func describe(r *ebbtype.TaskInfo) string {
	if r == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{ID:%s State:%s}", r.ID, r.State)
}

func checkErrIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error = %v, want %v", what, err, target)
	}
}

// queueStats finds one queue's entry.
func queueStats(t *testing.T, all []ebbtype.QueueStats, name string) ebbtype.QueueStats {
	t.Helper()
	for _, s := range all {
		if s.Name == name {
			return s
		}
	}
	names := make([]string, len(all))
	for i, s := range all {
		names[i] = s.Name
	}
	t.Fatalf("QueueStats has no queue %q (queues: %s)", name, strings.Join(names, ", "))
	return ebbtype.QueueStats{}
}

func checkQueueStats(t *testing.T, when string, want, got ebbtype.QueueStats) {
	t.Helper()
	p := when + ": queue " + want.Name + " "
	check(t, p+"Queued", want.Queued, got.Queued)
	check(t, p+"Scheduled", want.Scheduled, got.Scheduled)
	check(t, p+"DueScheduled", want.DueScheduled, got.DueScheduled)
	checkTime(t, p+"NextDueAt", want.NextDueAt, got.NextDueAt)
	check(t, p+"InFlight", want.InFlight, got.InFlight)
	check(t, p+"Dead", want.Dead, got.Dead)
	check(t, p+"Enqueued", want.Enqueued, got.Enqueued)
	check(t, p+"Succeeded", want.Succeeded, got.Succeeded)
	check(t, p+"Failed", want.Failed, got.Failed)
	check(t, p+"Retried", want.Retried, got.Retried)
	checkTime(t, p+"OldestQueuedAt", want.OldestQueuedAt, got.OldestQueuedAt)
}

// WaitEvent reads ch until an event matches, failing t on timeout or when
// the channel closes: for drivers' own notification tests.
func WaitEvent(t *testing.T, ch <-chan ebbdriver.Event, what string, match func(ebbdriver.Event) bool) ebbdriver.Event {
	t.Helper()
	return waitEvent(t, ch, what, match, nil)
}

// enqueueOrdered enqueues n tasks into queue, due a second apart in the
// past, so they run (and, newest first, list) in a known order.
func (f *fixture) enqueueOrdered(queue string, n int) []*ebbtype.TaskInfo {
	f.t.Helper()
	tasks := make([]*ebbtype.TaskInfo, n)
	for i := range tasks {
		tasks[i] = f.task(queue, withRunAt(f.at(time.Duration(i-10)*time.Second)))
	}
	f.enqueue(tasks...)
	return tasks
}

// claimOrdered enqueues n ordered tasks (enqueueOrdered), claims them all
// and returns them as enqueued and, as claimed, by id.
func (f *fixture) claimOrdered(queue string, n int) ([]*ebbtype.TaskInfo, map[string]*ebbtype.TaskInfo) {
	f.t.Helper()
	tasks := f.enqueueOrdered(queue, n)
	rs := f.fetch(f.now, n, queue).Tasks
	check(f.t, "fetched", n, len(rs))
	byID := map[string]*ebbtype.TaskInfo{}
	for _, r := range rs {
		byID[r.ID] = r
	}
	return tasks, byID
}
