package ebbdrivertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

func testQueueStats(t *testing.T, newDriver Factory) {
	t.Run("DueScheduled", func(t *testing.T) {
		f := setup(t, newDriver)
		retrying := f.enqueue(f.task("a"))[0]
		f.completeOK(retry(f.fetchOne(f.now, "a"), f.now, f.at(90*time.Second), "later"))
		s1 := f.task("a", withRunAt(f.at(time.Minute)))
		s2 := f.task("a", withRunAt(f.at(2*time.Minute)))
		s3 := f.task("a", withRunAt(f.at(time.Hour)))
		f.enqueue(s1, s2, s3, f.task("a"), f.task("b"))

		waiting := func(when string, now time.Time, scheduled, due int64, next time.Time) {
			t.Helper()
			st := queueStats(t, f.statsAt(now), "a")
			p := when + " (at " + fmtTime(now) + "): "
			check(t, p+"Scheduled", scheduled, st.Scheduled)
			check(t, p+"DueScheduled", due, st.DueScheduled)
			checkTime(t, p+"NextDueAt", next, st.NextDueAt)
		}
		// Retrying tasks wait in the same place as Scheduled ones, and are
		// as much work waiting for promotion once due.
		waiting("before anything is due", f.now, 4, 0, f.at(time.Minute))
		waiting("just before s2 is due", f.at(2*time.Minute-time.Millisecond), 4, 2, f.at(time.Minute))
		waiting("when s2 is due", f.at(2*time.Minute), 4, 3, f.at(time.Minute))
		st := queueStats(t, f.statsAt(f.at(2*time.Minute)), "b")
		check(t, "b DueScheduled", int64(0), st.DueScheduled)
		checkTime(t, "b NextDueAt", time.Time{}, st.NextDueAt)

		if n, err := f.d.PromoteDue(f.ctx, "a", f.at(2*time.Minute), 100); err != nil || n != 3 {
			t.Fatalf("PromoteDue = %d, %v; want 3", n, err)
		}
		f.requireState(retrying.ID, ebbtype.StateQueued)
		waiting("after promotion", f.at(2*time.Minute), 1, 0, s3.RunAt)
		waiting("after promotion, later", f.at(2*time.Hour), 1, 1, s3.RunAt)
		if n, err := f.d.PromoteDue(f.ctx, "a", f.at(2*time.Hour), 100); err != nil || n != 1 {
			t.Fatalf("second PromoteDue = %d, %v; want 1", n, err)
		}
		waiting("with nothing waiting", f.at(2*time.Hour), 0, 0, time.Time{})
		check(t, "Queued", int64(5), queueStats(t, f.stats(), "a").Queued)
	})

	t.Run("Empty", func(t *testing.T) {
		f := setup(t, newDriver)
		if st := f.stats(); len(st) != 0 {
			t.Errorf("QueueStats of an empty broker = %+v, want none", st)
		}
	})

	t.Run("Enqueued", func(t *testing.T) {
		f := setup(t, newDriver)
		enqueued := func(when string, want int64) {
			t.Helper()
			check(t, when+": Enqueued", want, queueStats(t, f.stats(), "a").Enqueued)
		}
		first := f.task("a")
		holder := f.task("a", withUnique("k", 0))
		f.enqueue(first, holder, f.task("a", withRunAt(f.at(time.Hour))), f.task("b"))
		enqueued("after the first batch", 3)

		// Duplicates by id (in a batch and of a stored task) and by unique
		// key store nothing and count nothing.
		again := f.task("a")
		again.ID = first.ID
		fresh := f.task("a")
		twin := f.task("a")
		twin.ID = fresh.ID
		res := f.enqueueResults(again, fresh, twin, f.task("a", withUnique("k", 0)))
		for i, dup := range []bool{true, false, true, true} {
			check(t, fmt.Sprintf("result %d Duplicate", i), dup, res[i].Duplicate)
		}
		enqueued("after duplicates", 4)
		check(t, "b Enqueued", int64(1), queueStats(t, f.stats(), "b").Enqueued)

		// A running total: finishing, dying, retrying and purging tasks
		// leave it alone.
		var cs []ebbdriver.Completion
		for _, r := range f.fetch(f.now, 10, "a").Tasks {
			if r.ID == first.ID {
				cs = append(cs, dead(r, f.now, "fatal"))
			} else {
				cs = append(cs, succeed(r, f.now, `1`))
			}
		}
		check(t, "fetched", 3, len(cs))
		f.completeOK(cs...)
		if n, err := f.d.DeadRetry(f.ctx, ebbdriver.DeadParams{Queue: "a", Now: f.now}); err != nil || n != 1 {
			t.Fatalf("DeadRetry = %d, %v; want 1", n, err)
		}
		f.kill(first, f.now)
		if n, err := f.d.DeadPurge(f.ctx, ebbdriver.DeadParams{Queue: "a", Now: f.now}); err != nil || n != 1 {
			t.Fatalf("DeadPurge = %d, %v; want 1", n, err)
		}
		enqueued("after finishing, retrying and purging", 4)
	})

	t.Run("KnownSequence", func(t *testing.T) {
		f := setup(t, newDriver)
		// Enqueued in reverse name order: the result must still be sorted.
		f.enqueue(f.task("d", withRunAt(f.at(time.Hour))))
		c1 := f.enqueue(f.task("c"))[0]
		b1 := f.enqueue(f.task("b", withRunAt(f.at(-30*time.Second))))[0]
		var q []*ebbtype.TaskInfo
		for i := range 6 {
			q = append(q, f.task("a", withRunAt(f.at(time.Duration(i-6)*time.Second))))
		}
		f.enqueue(q...)
		f.enqueue(f.task("a", withRunAt(f.at(time.Hour))), f.task("a", withRunAt(f.at(2*time.Hour))))
		// A duplicate adds nothing.
		dup := f.task("a")
		dup.ID = q[0].ID
		if res := f.enqueueResults(dup); !res[0].Duplicate {
			t.Fatalf("re-enqueue of %s not a duplicate", dup.ID)
		}
		if st, err := f.d.TaskCancel(f.ctx, c1.ID, f.now); err != nil || st != ebbtype.StateCancelled {
			t.Fatalf("TaskCancel = %q, %v", st, err)
		}

		byID := map[string]*ebbtype.TaskInfo{}
		for _, r := range f.fetch(f.now, 4, "a").Tasks {
			byID[r.ID] = r
		}
		for _, task := range q[:4] {
			if byID[task.ID] == nil {
				t.Fatalf("fetch did not claim %s (claimed %v)", task.ID, byID)
			}
		}
		f.completeOK(
			succeed(byID[q[0].ID], f.now, `1`),
			retry(byID[q[1].ID], f.now, f.at(10*time.Minute), "later"),
			dead(byID[q[2].ID], f.now, "fatal"),
		) // q[3] stays running

		// a's earliest waiting task is q[1], retrying in 10 minutes.
		want := []ebbtype.QueueStats{
			{Name: "a", Queued: 2, Scheduled: 3, NextDueAt: f.at(10 * time.Minute), InFlight: 1, Dead: 1,
				Enqueued: 8, Succeeded: 1, Failed: 1, Retried: 1, OldestQueuedAt: q[4].RunAt},
			{Name: "b", Queued: 1, Enqueued: 1, OldestQueuedAt: b1.RunAt},
			{Name: "c", Enqueued: 1},
			{Name: "d", Scheduled: 1, NextDueAt: f.at(time.Hour), Enqueued: 1},
		}
		checkAllStats(t, "after first completions", want, f.stats())

		// An immediate retry counts as retried and lands in Queued; a dead
		// retry empties Dead but Failed is a running total.
		f.completeOK(retry(byID[q[3].ID], f.now, f.now, "now"))
		if n, err := f.d.DeadRetry(f.ctx, ebbdriver.DeadParams{Queue: "a", Now: f.now}); err != nil || n != 1 {
			t.Fatalf("DeadRetry = %d, %v; want 1", n, err)
		}
		st := queueStats(t, f.stats(), "a")
		want[0] = ebbtype.QueueStats{Name: "a", Queued: 4, Scheduled: 3, NextDueAt: f.at(10 * time.Minute),
			InFlight: 0, Dead: 0, Enqueued: 8, Succeeded: 1, Failed: 1, Retried: 2, OldestQueuedAt: st.OldestQueuedAt}
		checkQueueStats(t, "after immediate retry and dead retry", want[0], st)
		if st.OldestQueuedAt.IsZero() {
			t.Errorf("OldestQueuedAt is zero with 4 queued tasks")
		}

		// Draining a leaves nothing queued: OldestQueuedAt goes back to zero.
		var cs []ebbdriver.Completion
		for _, r := range f.fetch(f.now, 10, "a").Tasks {
			cs = append(cs, succeed(r, f.now, `1`))
		}
		check(t, "drained", 4, len(cs))
		f.completeOK(cs...)
		want[0] = ebbtype.QueueStats{Name: "a", Scheduled: 3, NextDueAt: f.at(10 * time.Minute),
			Enqueued: 8, Succeeded: 5, Failed: 1, Retried: 2}
		checkAllStats(t, "after draining a", want, f.stats())
	})
}

func checkAllStats(t *testing.T, when string, want, got []ebbtype.QueueStats) {
	t.Helper()
	names := func(st []ebbtype.QueueStats) []string {
		var n []string
		for _, s := range st {
			n = append(n, s.Name)
		}
		return n
	}
	checkSlice(t, when+": queues", names(want), names(got))
	for _, w := range want {
		checkQueueStats(t, when, w, queueStats(t, got, w.Name))
	}
}
