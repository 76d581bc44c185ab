package ebbdrivertest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/tid"
)

func testFetch(t *testing.T, newDriver Factory) {
	t.Run("ClaimFields", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a"))[0]
		p := fetchParams(f.at(time.Second), 10, "a")
		p.WorkerID = "worker-7"
		p.LeaseDuration = 45 * time.Second
		res := f.fetchWith(p)
		if len(res.Tasks) != 1 {
			t.Fatalf("Fetch returned %d tasks, want 1", len(res.Tasks))
		}
		for _, r := range []*ebbtype.TaskInfo{res.Tasks[0], f.get(task.ID)} {
			checkStored(t, task, r)
			check(t, "State", ebbtype.StateRunning, r.State)
			check(t, "Attempt", 1, r.Attempt)
			check(t, "WorkerID", "worker-7", r.WorkerID)
			check(t, "LeaseToken", p.LeaseToken, r.LeaseToken)
			checkTime(t, "StartedAt", p.Now, r.StartedAt)
			checkTime(t, "LeaseExpiresAt", p.Now.Add(45*time.Second), r.LeaseExpiresAt)
			check(t, "CancelRequested", false, r.CancelRequested)
		}
		st := queueStats(t, f.stats(), "a")
		check(t, "Queued", int64(0), st.Queued)
		check(t, "InFlight", int64(1), st.InFlight)
	})

	t.Run("RetryReturnsLostClaims", func(t *testing.T) {
		// A fetch whose reply was lost, repeated with Retry and the same
		// token, now and lease: its claims come back (counted toward the
		// limit) ahead of new ones, with the attempt they were claimed at;
		// tasks finished meanwhile, or claimed under another token, do not.
		f := setup(t, newDriver)
		tasks := f.enqueue(f.task("a"), f.task("a"), f.task("a"), f.task("b"), f.task("b"))
		other := f.fetchOne(f.now, "b") // another worker's claim
		p := fetchParams(f.at(time.Second), 2, "a", "b")
		first := f.fetchWith(p)
		checkSlice(t, "first fetch", ids(tasks[0], tasks[1]), taskIDs(first.Tasks))

		p.Retry = true
		again := f.fetchWith(p)
		checkSet(t, "retry with the same limit", ids(tasks[0], tasks[1]), taskIDs(again.Tasks))
		for _, r := range again.Tasks {
			check(t, "Attempt of "+r.ID, 1, r.Attempt)
			check(t, "LeaseToken of "+r.ID, p.LeaseToken, r.LeaseToken)
			checkStored(t, tasks[slices.IndexFunc(tasks, func(x *ebbtype.TaskInfo) bool { return x.ID == r.ID })], r)
		}

		f.completeOK(succeed(first.Tasks[0], f.at(2*time.Second), ""))
		p.Limit = 4
		more := f.fetchWith(p)
		rest := []string{tasks[3].ID, tasks[4].ID}
		if other.ID == tasks[3].ID {
			rest = rest[1:]
		} else {
			rest = rest[:1]
		}
		checkSet(t, "retry with a higher limit", append(ids(tasks[1], tasks[2]), rest...), taskIDs(more.Tasks))
		check(t, "the other worker's claim", other.LeaseToken, f.get(other.ID).LeaseToken)
		for _, r := range more.Tasks {
			check(t, "State of "+r.ID, ebbtype.StateRunning, f.get(r.ID).State)
		}
	})

	t.Run("ConcurrentFetchersClaimEachTaskOnce", func(t *testing.T) {
		f := setup(t, newDriver)
		const (
			n        = 2000
			fetchers = 8
		)
		tasks := make([]*ebbtype.TaskInfo, n)
		for i := range tasks {
			tasks[i] = f.task("a", withPriority(ebbtype.Priority(1+i%3)))
		}
		for i := 0; i < n; i += 500 {
			f.enqueue(tasks[i : i+500]...)
		}

		var (
			mu      sync.Mutex
			claimed = make(map[string]string, n) // id → worker
			wg      sync.WaitGroup
			start   = make(chan struct{})
		)
		for w := range fetchers {
			worker := fmt.Sprintf("worker-%d", w)
			wg.Go(func() {
				<-start
				for {
					p := fetchParams(f.now, 25, "a")
					p.WorkerID = worker
					res, err := f.d.Fetch(f.ctx, p)
					if err != nil {
						t.Errorf("%s: Fetch: %v", worker, err)
						return
					}
					if len(res.Tasks) == 0 {
						return
					}
					mu.Lock()
					for _, r := range res.Tasks {
						if prev, dup := claimed[r.ID]; dup {
							t.Errorf("task %s claimed by %s and again by %s", r.ID, prev, worker)
						}
						claimed[r.ID] = worker
						if r.WorkerID != worker || r.LeaseToken != p.LeaseToken {
							t.Errorf("task %s fetched by %s with token %s came back as worker %s token %s",
								r.ID, worker, p.LeaseToken, r.WorkerID, r.LeaseToken)
						}
					}
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		for _, task := range tasks {
			if _, ok := claimed[task.ID]; !ok {
				t.Errorf("task %s never claimed", task.ID)
			}
		}
		check(t, "claimed", n, len(claimed))
		st := queueStats(t, f.stats(), "a")
		check(t, "Queued", int64(0), st.Queued)
		check(t, "InFlight", int64(n), st.InFlight)
	})

	t.Run("Empty", func(t *testing.T) {
		f := setup(t, newDriver)
		res := f.fetchNone(f.now, "a", "b")
		checkTime(t, "NextDueAt", time.Time{}, res.NextDueAt)
	})

	t.Run("Limit", func(t *testing.T) {
		f := setup(t, newDriver)
		var tasks []*ebbtype.TaskInfo
		for range 5 {
			tasks = append(tasks, f.task("a"))
		}
		f.enqueue(tasks...)
		first := f.fetch(f.now, 3, "a").Tasks
		check(t, "first fetch", 3, len(first))
		second := f.fetch(f.now, 3, "a").Tasks
		check(t, "second fetch", 2, len(second))
		f.fetchNone(f.now, "a")
		checkSet(t, "fetched", ids(tasks...), append(taskIDs(first), taskIDs(second)...))
	})

	t.Run("NextDueAt", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(
			f.task("a", withRunAt(f.at(2*time.Minute))),
			f.task("b", withRunAt(f.at(time.Minute))),
			f.task("b", withRunAt(f.at(3*time.Minute))),
			f.task("c", withRunAt(f.at(30*time.Second))), // not fetched below
		)
		res := f.fetchNone(f.now, "a", "b")
		checkTime(t, "NextDueAt of a, b", f.at(time.Minute), res.NextDueAt)
		res = f.fetchNone(f.now, "a")
		checkTime(t, "NextDueAt of a", f.at(2*time.Minute), res.NextDueAt)
		res = f.fetchNone(f.now, "d")
		checkTime(t, "NextDueAt of empty d", time.Time{}, res.NextDueAt)

		// After b's first task is claimed the next one is the earliest left.
		r := f.fetchOne(f.at(90*time.Second), "b")
		checkTime(t, "claimed RunAt", f.at(time.Minute), r.RunAt)
		res = f.fetchNone(f.at(90*time.Second), "a", "b")
		checkTime(t, "NextDueAt after claim", f.at(2*time.Minute), res.NextDueAt)
	})

	t.Run("NotYetDue", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a", withRunAt(f.at(time.Hour))))[0]
		f.fetchNone(f.now, "a")
		f.fetchNone(f.at(59*time.Minute), "a")
		f.requireState(task.ID, ebbtype.StateScheduled)
	})

	t.Run("PriorityThenRunAtThenID", func(t *testing.T) {
		f := setup(t, newDriver)
		high, normal, low := ebbtype.PriorityHigh, ebbtype.PriorityNormal, ebbtype.PriorityLow
		// Ids increase in creation order; n1…n3 share priority and RunAt so
		// only their ids order them.
		n1 := f.task("a", withPriority(normal), withRunAt(f.at(-2*time.Second)))
		n2 := f.task("a", withPriority(normal), withRunAt(f.at(-2*time.Second)))
		n3 := f.task("a", withPriority(normal), withRunAt(f.at(-2*time.Second)))
		nLate := f.task("a", withPriority(normal), withRunAt(f.at(-time.Second)))
		hLate := f.task("a", withPriority(high), withRunAt(f.at(-time.Second)))
		hEarly := f.task("a", withPriority(high), withRunAt(f.at(-2*time.Second)))
		lLate := f.task("a", withPriority(low), withRunAt(f.at(-3*time.Second)))
		lEarly := f.task("a", withPriority(low), withRunAt(f.at(-10*time.Second)))
		// Enqueued scrambled so insertion order cannot pass for the rule.
		f.enqueue(lLate, n3, hLate, nLate, n1, lEarly, n2, hEarly)

		want := ids(hEarly, hLate, n1, n2, n3, nLate, lEarly, lLate)
		var got []string
		for range want {
			got = append(got, f.fetchOne(f.now, "a").ID)
		}
		checkSlice(t, "fetch order", want, got)
	})

	t.Run("PromotedTasksCompeteByPriority", func(t *testing.T) {
		f := setup(t, newDriver)
		// Promotion happens before the claim, so a due high-priority task
		// overtakes a normal one that was queued all along.
		queued := f.task("a", withRunAt(f.at(-time.Minute)))
		scheduled := f.task("a", withPriority(ebbtype.PriorityHigh), withRunAt(f.at(time.Minute)))
		f.enqueue(queued, scheduled)
		check(t, "first claim", scheduled.ID, f.fetchOne(f.at(2*time.Minute), "a").ID)
		check(t, "second claim", queued.ID, f.fetchOne(f.at(2*time.Minute), "a").ID)
	})

	t.Run("PromotesDueScheduled", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a", withRunAt(f.at(time.Minute))))[0]
		res := f.fetchNone(f.now, "a")
		checkTime(t, "NextDueAt", f.at(time.Minute), res.NextDueAt)
		r := f.fetchOne(f.at(time.Minute+time.Second), "a")
		check(t, "ID", task.ID, r.ID)
		check(t, "State", ebbtype.StateRunning, r.State)
		check(t, "Attempt", 1, r.Attempt)
		checkTime(t, "RunAt", task.RunAt, r.RunAt)
	})

	t.Run("QueueOrder", func(t *testing.T) {
		f := setup(t, newDriver)
		a1 := f.task("a", withPriority(ebbtype.PriorityHigh))
		a2 := f.task("a", withPriority(ebbtype.PriorityNormal))
		b1 := f.task("b", withPriority(ebbtype.PriorityLow), withRunAt(f.at(-2*time.Second)))
		b2 := f.task("b", withPriority(ebbtype.PriorityLow), withRunAt(f.at(-time.Second)))
		c1 := f.task("c", withPriority(ebbtype.PriorityHigh))
		f.enqueue(a1, a2, b1, b2, c1)

		// Queue order beats priority: b's low tasks go before a's high one.
		res := f.fetch(f.now, 3, "b", "a")
		checkSet(t, "first fetch of [b a]", ids(b1, b2, a1), taskIDs(res.Tasks))
		check(t, "next of [b a]", a2.ID, f.fetchOne(f.now, "b", "a").ID)
		f.fetchNone(f.now, "b", "a")
		f.requireState(c1.ID, ebbtype.StateQueued)
	})

	t.Run("ReturnsNothingToSecondFetch", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a"))[0]
		p := fetchParams(f.now, 1, "a")
		p.WorkerID, p.LeaseToken = "first", tid.New()
		check(t, "first fetch", 1, len(f.fetchWith(p).Tasks))
		f.fetchNone(f.now, "a")
		r := f.get(task.ID)
		check(t, "WorkerID", "first", r.WorkerID)
		check(t, "LeaseToken", p.LeaseToken, r.LeaseToken)
	})
}
