package ebbdrivertest

import (
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
)

func testQueueStats(t *testing.T, newDriver Factory) {
	t.Run("Empty", func(t *testing.T) {
		f := setup(t, newDriver)
		if st := f.stats(); len(st) != 0 {
			t.Errorf("QueueStats of an empty broker = %+v, want none", st)
		}
	})

	t.Run("KnownSequence", func(t *testing.T) {
		f := setup(t, newDriver)
		// Enqueued in reverse name order: the result must still be sorted.
		f.enqueue(f.task("d", withRunAt(f.at(time.Hour))))
		c1 := f.enqueue(f.task("c"))[0]
		b1 := f.enqueue(f.task("b", withRunAt(f.at(-30*time.Second))))[0]
		var q []*ebbdriver.TaskRecord
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
		if st, err := f.d.TaskCancel(f.ctx, c1.ID, f.now); err != nil || st != ebbdriver.StateCancelled {
			t.Fatalf("TaskCancel = %q, %v", st, err)
		}

		byID := map[string]*ebbdriver.TaskRecord{}
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

		want := []ebbdriver.QueueStats{
			{Name: "a", Queued: 2, Scheduled: 3, InFlight: 1, Dead: 1, Succeeded: 1, Failed: 1, Retried: 1,
				OldestQueuedAt: q[4].RunAt},
			{Name: "b", Queued: 1, OldestQueuedAt: b1.RunAt},
			{Name: "c"},
			{Name: "d", Scheduled: 1},
		}
		checkAllStats(t, "after first completions", want, f.stats())

		// An immediate retry counts as retried and lands in Queued; a dead
		// retry empties Dead but Failed is a running total.
		f.completeOK(retry(byID[q[3].ID], f.now, f.now, "now"))
		if n, err := f.d.DeadRetry(f.ctx, ebbdriver.DeadParams{Queue: "a", Now: f.now}); err != nil || n != 1 {
			t.Fatalf("DeadRetry = %d, %v; want 1", n, err)
		}
		st := queueStats(t, f.stats(), "a")
		want[0] = ebbdriver.QueueStats{Name: "a", Queued: 4, Scheduled: 3, InFlight: 0, Dead: 0,
			Succeeded: 1, Failed: 1, Retried: 2, OldestQueuedAt: st.OldestQueuedAt}
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
		want[0] = ebbdriver.QueueStats{Name: "a", Scheduled: 3, Succeeded: 5, Failed: 1, Retried: 2}
		checkAllStats(t, "after draining a", want, f.stats())
	})
}

func checkAllStats(t *testing.T, when string, want, got []ebbdriver.QueueStats) {
	t.Helper()
	names := func(st []ebbdriver.QueueStats) []string {
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
