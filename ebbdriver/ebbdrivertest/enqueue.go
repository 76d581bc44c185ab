package ebbdrivertest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

func testEnqueue(t *testing.T, newDriver Factory) {
	t.Run("Batch", func(t *testing.T) {
		f := setup(t, newDriver)
		const n = 500
		tasks := make([]*ebbtype.TaskInfo, n)
		for i := range tasks {
			q := "a"
			if i%3 == 0 {
				q = "b"
			}
			tasks[i] = f.task(q, withArgs(fmt.Sprintf(`{"i":%d}`, i)))
		}
		f.enqueue(tasks...) // checks one result per task, in order, none duplicate
		for _, i := range []int{0, 1, 2, n / 2, n - 1} {
			r := f.requireState(tasks[i].ID, ebbtype.StateQueued)
			checkStored(t, tasks[i], r)
		}
		st := f.stats()
		check(t, "queued in a", int64(n-(n+2)/3), queueStats(t, st, "a").Queued)
		check(t, "queued in b", int64((n+2)/3), queueStats(t, st, "b").Queued)
	})

	t.Run("DuplicateID", func(t *testing.T) {
		f := setup(t, newDriver)
		orig := f.enqueue(f.task("a", withArgs(`{"v":"original"}`)))[0]

		again := f.task("a", withArgs(`{"v":"second"}`))
		again.ID = orig.ID
		res := f.enqueueResults(again)
		check(t, "Duplicate", true, res[0].Duplicate)
		check(t, "ID", orig.ID, res[0].ID)
		checkJSON(t, "stored Args", orig.EncodedArgs, f.get(orig.ID).EncodedArgs)
		check(t, "queued after duplicate", int64(1), queueStats(t, f.stats(), "a").Queued)

		// Beat relies on an id colliding even after the first task finished.
		r := f.fetchOne(f.now, "a")
		f.completeOK(succeed(r, f.now, `1`))
		f.fetchNone(f.now, "a")
		res = f.enqueueResults(again)
		check(t, "Duplicate of finished task", true, res[0].Duplicate)
		check(t, "ID of finished task's duplicate", orig.ID, res[0].ID)
		f.requireState(orig.ID, ebbtype.StateSucceeded)
		f.fetchNone(f.now, "a")
	})

	t.Run("DuplicateIDInBatch", func(t *testing.T) {
		f := setup(t, newDriver)
		first := f.task("a")
		second := f.task("a", withArgs(`{"second":true}`))
		second.ID = first.ID
		other := f.task("a")
		res := f.enqueueResults(first, second, other)
		check(t, "first Duplicate", false, res[0].Duplicate)
		check(t, "second Duplicate", true, res[1].Duplicate)
		check(t, "second ID", first.ID, res[1].ID)
		check(t, "third Duplicate", false, res[2].Duplicate)
		check(t, "third ID", other.ID, res[2].ID)
		checkJSON(t, "stored Args", first.EncodedArgs, f.get(first.ID).EncodedArgs)
		check(t, "queued", int64(2), queueStats(t, f.stats(), "a").Queued)
	})

	t.Run("QueuedOrScheduledByRunAt", func(t *testing.T) {
		f := setup(t, newDriver)
		past := f.task("a", withRunAt(f.at(-time.Minute)))
		now := f.task("a")
		future := f.task("a", withRunAt(f.at(time.Minute)))
		f.enqueue(past, now, future)
		checkTime(t, "past RunAt", past.RunAt, f.requireState(past.ID, ebbtype.StateQueued).RunAt)
		checkTime(t, "now RunAt", now.RunAt, f.requireState(now.ID, ebbtype.StateQueued).RunAt)
		checkTime(t, "future RunAt", future.RunAt, f.requireState(future.ID, ebbtype.StateScheduled).RunAt)
		st := queueStats(t, f.stats(), "a")
		check(t, "Queued", int64(2), st.Queued)
		check(t, "Scheduled", int64(1), st.Scheduled)
	})

	t.Run("RoundTrip", func(t *testing.T) {
		f := setup(t, newDriver)
		full := f.task("emails",
			withArgs(`{"to":"a@example.com","n":[1,2,3],"nested":{"ok":true}}`),
			withPriority(ebbtype.PriorityHigh),
			withMaxAttempts(7),
			withRetention(36*time.Hour),
			withUnique("email:a@example.com", 45*time.Minute),
		)
		full.Kind = "email.send"
		full.Headers = map[string]string{"traceparent": "00-abc-def-01", "tenant": "t1"}
		full.Timeout = 1500 * time.Millisecond
		full.RunAt = f.at(-2 * time.Second)

		scheduled := f.task("reports", withPriority(ebbtype.PriorityLow), withRunAt(f.at(90*time.Minute)))
		scheduled.Kind = "report.build"

		f.enqueue(full, scheduled)
		for _, want := range []*ebbtype.TaskInfo{full, scheduled} {
			got := f.get(want.ID)
			checkStored(t, want, got)
			p := "task " + want.ID + " "
			check(t, p+"Attempt", 0, got.Attempt)
			checkTime(t, p+"StartedAt", time.Time{}, got.StartedAt)
			checkTime(t, p+"FinishedAt", time.Time{}, got.FinishedAt)
			check(t, p+"WorkerID", "", got.WorkerID)
			check(t, p+"LeaseToken", "", got.LeaseToken)
			checkTime(t, p+"LeaseExpiresAt", time.Time{}, got.LeaseExpiresAt)
			check(t, p+"CancelRequested", false, got.CancelRequested)
			checkErrors(t, p+"Errors", nil, got.Errors)
			checkJSON(t, p+"Result", nil, got.Result)
		}
		check(t, "full State", ebbtype.StateQueued, f.get(full.ID).State)
		check(t, "scheduled State", ebbtype.StateScheduled, f.get(scheduled.ID).State)
	})

	t.Run("UniqueKeyConcurrent", func(t *testing.T) {
		f := setup(t, newDriver)
		const n = 8
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			mu    sync.Mutex
			ids   = map[string]int{} // result id → how many enqueuers got it
			fresh int
		)
		for range n {
			task := f.task("a", withUnique("k", 0))
			wg.Go(func() {
				<-start
				res, err := f.d.Enqueue(f.ctx, []*ebbtype.TaskInfo{task})
				if err != nil {
					t.Errorf("Enqueue: %v", err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				ids[res[0].ID]++
				if !res[0].Duplicate {
					fresh++
				}
			})
		}
		close(start)
		wg.Wait()
		check(t, "enqueues that stored a task", 1, fresh)
		check(t, "distinct ids returned", 1, len(ids))
		check(t, "Queued", int64(1), queueStats(t, f.stats(), "a").Queued)
	})

	t.Run("UniqueKeyHeldWhileNotTerminal", func(t *testing.T) {
		f := setup(t, newDriver)
		holder := f.enqueue(f.task("a", withUnique("k", 0), withRunAt(f.at(time.Minute))))[0]

		requireHeld := func(when string) {
			t.Helper()
			rival := f.task("a", withUnique("k", 0))
			res := f.enqueueResults(rival)
			check(t, when+": Duplicate", true, res[0].Duplicate)
			check(t, when+": ID", holder.ID, res[0].ID)
			f.requireNotFound(rival.ID)
		}
		requireHeld("scheduled")

		r := f.fetchOne(f.at(2*time.Minute), "a")
		requireHeld("running")

		f.completeOK(retry(r, f.at(2*time.Minute), f.at(10*time.Minute), "boom"))
		f.requireState(holder.ID, ebbtype.StateRetrying)
		requireHeld("retrying")

		r = f.fetchOne(f.at(11*time.Minute), "a")
		f.completeOK(completion(r, ebbdriver.OutcomeHandBack, f.at(11*time.Minute)))
		f.requireState(holder.ID, ebbtype.StateQueued)
		requireHeld("queued after hand-back")

		// A different key is unaffected.
		f.enqueue(f.task("a", withUnique("other", 0)))
	})

	t.Run("UniqueKeyIsPerQueue", func(t *testing.T) {
		f := setup(t, newDriver)
		res := f.enqueueResults(f.task("a", withUnique("k", 0)), f.task("b", withUnique("k", 0)))
		check(t, "queue a Duplicate", false, res[0].Duplicate)
		check(t, "queue b Duplicate (keys are scoped to a queue)", false, res[1].Duplicate)
	})

	t.Run("UniqueKeyInBatch", func(t *testing.T) {
		f := setup(t, newDriver)
		first := f.task("a", withUnique("k", 0))
		second := f.task("a", withUnique("k", 0))
		res := f.enqueueResults(first, second)
		check(t, "first Duplicate", false, res[0].Duplicate)
		check(t, "second Duplicate", true, res[1].Duplicate)
		check(t, "second ID", first.ID, res[1].ID)
		f.requireNotFound(second.ID)
	})

	for _, c := range []struct {
		name   string
		finish func(f *fixture, task *ebbtype.TaskInfo)
	}{
		{"Cancelled", func(f *fixture, task *ebbtype.TaskInfo) {
			r := f.fetchOne(f.now, task.Queue)
			f.completeOK(completion(r, ebbdriver.OutcomeCancelled, f.now))
		}},
		{"Dead", func(f *fixture, task *ebbtype.TaskInfo) {
			r := f.fetchOne(f.now, task.Queue)
			f.completeOK(dead(r, f.now, "fatal"))
		}},
		{"Succeeded", func(f *fixture, task *ebbtype.TaskInfo) {
			r := f.fetchOne(f.now, task.Queue)
			f.completeOK(succeed(r, f.now, `{}`))
		}},
		{"TaskCancel", func(f *fixture, task *ebbtype.TaskInfo) {
			st, err := f.d.TaskCancel(f.ctx, task.ID, f.now)
			if err != nil || st != ebbtype.StateCancelled {
				f.t.Fatalf("TaskCancel = %q, %v; want cancelled", st, err)
			}
		}},
	} {
		t.Run("UniqueKeyReleasedOn"+c.name, func(t *testing.T) {
			f := setup(t, newDriver)
			holder := f.enqueue(f.task("a", withUnique("k", 0)))[0]
			c.finish(f, holder)
			next := f.task("a", withUnique("k", 0))
			res := f.enqueueResults(next)
			check(t, "Duplicate after "+c.name, false, res[0].Duplicate)
			check(t, "ID after "+c.name, next.ID, res[0].ID)
			f.requireState(next.ID, ebbtype.StateQueued)
		})
	}

	t.Run("UniqueKeyWithTTLReleasedOnTaskCancel", func(t *testing.T) {
		f := setup(t, newDriver)
		// TaskCancel's contract releases the key of a task cancelled before
		// it ran, whatever its UniqueTTL.
		holder := f.enqueue(f.task("a", withUnique("k", time.Hour)))[0]
		if st, err := f.d.TaskCancel(f.ctx, holder.ID, f.now); err != nil || st != ebbtype.StateCancelled {
			t.Fatalf("TaskCancel = %q, %v; want cancelled", st, err)
		}
		next := f.task("a", withUnique("k", time.Hour))
		res := f.enqueueResults(next)
		check(t, "Duplicate after TaskCancel", false, res[0].Duplicate)
		check(t, "ID after TaskCancel", next.ID, res[0].ID)
	})

	t.Run("UniqueTTL", func(t *testing.T) {
		f := setup(t, newDriver)
		// Unique-key expiry may rest on the broker's clock, so this test uses
		// wall-clock times throughout.
		const ttl = 500 * time.Millisecond
		start := msNow()
		holder := f.enqueue(newTask("a", start, withUnique("k", ttl)))[0]
		r := f.fetchOne(msNow(), "a")
		f.completeOK(succeed(r, msNow(), `1`))

		// With a TTL the key outlives the task.
		rival := newTask("a", msNow(), withUnique("k", ttl))
		res := f.enqueueResults(rival)
		if time.Now().Before(start.Add(ttl)) {
			check(t, "Duplicate within TTL after the holder succeeded", true, res[0].Duplicate)
			check(t, "ID within TTL", holder.ID, res[0].ID)
		} else {
			t.Logf("too slow to check the key within its TTL (%v elapsed)", time.Since(start))
			if !res[0].Duplicate {
				return // released after its TTL, as it should be
			}
		}

		var next *ebbtype.TaskInfo
		poll(t, "unique key released after its TTL", func() bool {
			next = newTask("a", msNow(), withUnique("k", ttl))
			res, err := f.d.Enqueue(f.ctx, []*ebbtype.TaskInfo{next})
			returned := time.Now()
			if err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
			if res[0].Duplicate {
				check(t, "duplicate's ID", holder.ID, res[0].ID)
				return false
			}
			if returned.Before(start.Add(ttl)) {
				t.Errorf("key released %v after enqueue, before its TTL %v", returned.Sub(start), ttl)
			}
			return true
		})
		f.requireState(next.ID, ebbtype.StateQueued)
	})
}
