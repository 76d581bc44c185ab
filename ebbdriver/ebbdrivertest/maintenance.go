package ebbdrivertest

import (
	"errors"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

func testPromoteDue(t *testing.T, newDriver Factory) {
	t.Run("DueScheduledAndRetrying", func(t *testing.T) {
		f := setup(t, newDriver)
		retrying := f.enqueue(f.task("a"))[0]
		r := f.fetchOne(f.now, "a")
		f.completeOK(retry(r, f.now, f.at(30*time.Second), "boom"))
		s1 := f.task("a", withRunAt(f.at(time.Minute)))
		s2 := f.task("a", withRunAt(f.at(2*time.Minute)))
		s3 := f.task("a", withRunAt(f.at(3*time.Minute)))
		later := f.task("a", withRunAt(f.at(time.Hour)))
		elsewhere := f.task("b", withRunAt(f.at(time.Minute)))
		f.enqueue(s1, s2, s3, later, elsewhere)

		promote := func(limit int) int {
			t.Helper()
			n, err := f.d.PromoteDue(f.ctx, "a", f.at(5*time.Minute), limit)
			if err != nil {
				t.Fatalf("PromoteDue: %v", err)
			}
			return n
		}
		check(t, "first PromoteDue(limit 2)", 2, promote(2))
		check(t, "second PromoteDue(limit 2)", 2, promote(2))
		check(t, "third PromoteDue(limit 2)", 0, promote(2))
		for _, task := range []*ebbtype.TaskInfo{retrying, s1, s2, s3} {
			f.requireState(task.ID, ebbtype.StateQueued)
		}
		f.requireState(later.ID, ebbtype.StateScheduled)
		f.requireState(elsewhere.ID, ebbtype.StateScheduled)
		st := queueStats(t, f.stats(), "a")
		check(t, "Queued", int64(4), st.Queued)
		check(t, "Scheduled", int64(1), st.Scheduled)
	})

	t.Run("NothingDue", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a", withRunAt(f.at(time.Hour))))[0]
		n, err := f.d.PromoteDue(f.ctx, "a", f.now, 100)
		if err != nil || n != 0 {
			t.Fatalf("PromoteDue = %d, %v; want 0", n, err)
		}
		f.requireState(task.ID, ebbtype.StateScheduled)
	})
}

func testRescueExpired(t *testing.T, newDriver Factory) {
	t.Run("DeadWhenAttemptsExhausted", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a", withMaxAttempts(1)))[0]
		f.fetchOne(f.now, "a")
		res, err := f.d.RescueExpired(f.ctx, "a", f.at(time.Minute), 10)
		if err != nil {
			t.Fatalf("RescueExpired: %v", err)
		}
		checkSlice(t, "Requeued", nil, res.Requeued)
		checkSlice(t, "Dead", ids(task), res.Dead)
		got := f.requireState(task.ID, ebbtype.StateDead)
		if len(got.Errors) != 1 || got.Errors[0].Error != "lease expired" || got.Errors[0].Attempt != 1 {
			t.Errorf("Errors = %+v, want one entry for attempt 1 saying \"lease expired\"", got.Errors)
		}
		l, total := f.deadList("a", 0, 10)
		check(t, "dead total", int64(1), total)
		checkSlice(t, "dead list", ids(task), taskIDs(l))
		f.fetchNone(f.at(time.Hour), "a")
	})

	t.Run("Limit", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"), f.task("a"), f.task("a"), f.task("b"))
		check(t, "fetched a", 3, len(f.fetch(f.now, 10, "a").Tasks))
		check(t, "fetched b", 1, len(f.fetch(f.now, 10, "b").Tasks))
		rescue := func() int {
			t.Helper()
			res, err := f.d.RescueExpired(f.ctx, "a", f.at(time.Minute), 2)
			if err != nil {
				t.Fatalf("RescueExpired: %v", err)
			}
			return len(res.Requeued) + len(res.Dead)
		}
		check(t, "first rescue (limit 2)", 2, rescue())
		check(t, "second rescue (limit 2)", 1, rescue())
		check(t, "third rescue (limit 2)", 0, rescue())
		st := f.stats()
		check(t, "a Queued", int64(3), queueStats(t, st, "a").Queued)
		check(t, "b InFlight (other queue untouched)", int64(1), queueStats(t, st, "b").InFlight)
	})

	t.Run("NotExpired", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a"))[0]
		f.fetchOne(f.now, "a") // lease until now+leaseDuration
		res, err := f.d.RescueExpired(f.ctx, "a", f.at(leaseDuration-time.Second), 10)
		if err != nil {
			t.Fatalf("RescueExpired: %v", err)
		}
		if len(res.Requeued)+len(res.Dead) != 0 {
			t.Errorf("RescueExpired before expiry = %+v, want nothing", res)
		}
		f.requireState(task.ID, ebbtype.StateRunning)
	})

	t.Run("Requeued", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a"))[0]
		first := f.fetchOne(f.now, "a")
		res, err := f.d.RescueExpired(f.ctx, "a", f.at(time.Minute), 10)
		if err != nil {
			t.Fatalf("RescueExpired: %v", err)
		}
		checkSlice(t, "Requeued", ids(task), res.Requeued)
		checkSlice(t, "Dead", nil, res.Dead)

		got := f.requireState(task.ID, ebbtype.StateQueued)
		check(t, "Attempt", 1, got.Attempt)
		if len(got.Errors) != 1 {
			t.Fatalf("Errors = %+v, want one entry", got.Errors)
		}
		e := got.Errors[0]
		check(t, "error", "lease expired", e.Error)
		check(t, "error Attempt", 1, e.Attempt)
		checkTime(t, "error At", f.at(time.Minute), e.At)

		again := f.fetchOne(f.at(time.Minute), "a")
		check(t, "Attempt on refetch", 2, again.Attempt)
		if again.LeaseToken == first.LeaseToken {
			t.Errorf("refetch kept the old lease token %q", first.LeaseToken)
		}
	})
}

func testCleanup(t *testing.T, newDriver Factory) {
	t.Run("DeadPastDeadRetention", func(t *testing.T) {
		f := setup(t, newDriver)
		// Long retention so only DeadRetention can remove them.
		old := f.task("a", withRetention(24*time.Hour), withRunAt(f.at(-time.Second)))
		recent := f.task("a", withRetention(24*time.Hour))
		f.enqueue(old, recent)
		f.kill(old, f.now)
		f.kill(recent, f.at(2*time.Hour))

		n, err := f.d.Cleanup(f.ctx, ebbdriver.CleanupParams{
			Queue: "a", Now: f.at(150 * time.Minute), DeadRetention: time.Hour, Limit: 100,
		})
		if err != nil {
			t.Fatalf("Cleanup: %v", err)
		}
		check(t, "deleted", int64(1), n)
		f.requireNotFound(old.ID)
		f.requireState(recent.ID, ebbtype.StateDead)
		l, total := f.deadList("a", 0, 10)
		check(t, "dead total", int64(1), total)
		checkSlice(t, "dead list", ids(recent), taskIDs(l))
		check(t, "Dead count", int64(1), queueStats(t, f.stats(), "a").Dead)
	})

	t.Run("FinishedPastRetention", func(t *testing.T) {
		f := setup(t, newDriver)
		// Retention may be native broker expiry, so this test runs on the
		// wall clock with a short retention and polls.
		const retention = time.Second
		now := msNow()
		succeeded := newTask("a", now, withRetention(retention), withPriority(ebbtype.PriorityHigh))
		died := newTask("a", now, withRetention(retention), withPriority(ebbtype.PriorityHigh))
		cancelled := newTask("a", now, withRetention(retention))
		waiting := newTask("a", now, withRetention(retention), withPriority(ebbtype.PriorityLow))
		kept := newTask("a", now, withPriority(ebbtype.PriorityHigh))
		f.enqueue(succeeded, died, cancelled, waiting, kept)

		if st, err := f.d.TaskCancel(f.ctx, cancelled.ID, now); err != nil || st != ebbtype.StateCancelled {
			t.Fatalf("TaskCancel = %q, %v", st, err)
		}
		rs := f.fetch(now, 3, "a").Tasks
		checkSet(t, "fetched", ids(succeeded, died, kept), taskIDs(rs))
		var cs []ebbdriver.Completion
		for _, r := range rs {
			if r.ID == died.ID {
				cs = append(cs, dead(r, now, "fatal"))
			} else {
				cs = append(cs, succeed(r, now, `1`))
			}
		}
		f.completeOK(cs...)

		cleanup := func() {
			t.Helper()
			if _, err := f.d.Cleanup(f.ctx, ebbdriver.CleanupParams{
				Queue: "a", Now: msNow(), DeadRetention: 24 * time.Hour, Limit: 100,
			}); err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
		}
		cleanup()
		// The outcomes were recorded at now, so retention runs from now: on
		// a loaded machine the steps above can take longer than it.
		if time.Since(now) < retention {
			f.requireState(succeeded.ID, ebbtype.StateSucceeded)
			f.requireState(cancelled.ID, ebbtype.StateCancelled)
		}

		for _, c := range []struct {
			name string
			id   string
		}{{"succeeded", succeeded.ID}, {"cancelled", cancelled.ID}} {
			poll(t, c.name+" task gone after its retention", func() bool {
				cleanup()
				_, err := f.d.TaskGet(f.ctx, c.id)
				if err == nil {
					return false
				}
				if !errors.Is(err, ebbtype.ErrTaskNotFound) {
					t.Fatalf("TaskGet(%s): %v", c.name, err)
				}
				if time.Now().Before(now.Add(retention)) {
					t.Errorf("%s task deleted before its retention ended", c.name)
				}
				return true
			})
		}
		// Dead tasks live by DeadRetention, unfinished ones are never
		// cleaned, and a long retention is honoured.
		f.requireState(died.ID, ebbtype.StateDead)
		f.requireState(waiting.ID, ebbtype.StateQueued)
		f.requireState(kept.ID, ebbtype.StateSucceeded)
	})
}
