package ebbdrivertest

import (
	"context"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// deadFixture makes n dead tasks in queue "a" (plus one in queue "other"),
// returned in enqueue order; task i died at base+i minutes.
func deadFixture(t *testing.T, newDriver Factory, n int) (*fixture, []*ebbtype.TaskInfo) {
	t.Helper()
	f := setup(t, newDriver)
	tasks := make([]*ebbtype.TaskInfo, n)
	for i := range tasks {
		tasks[i] = f.task("a", withRunAt(f.at(time.Duration(i-n)*time.Second)))
	}
	f.enqueue(tasks...)
	for i, task := range tasks {
		f.kill(task, f.at(time.Duration(i)*time.Minute))
	}
	f.kill(f.enqueue(f.task("other"))[0], f.now)
	return f, tasks
}

// deadOp runs op (DeadRetry or DeadPurge, named what) and fails on error.
func (f *fixture) deadOp(what string, op deadOpFunc, p ebbdriver.DeadParams) int64 {
	f.t.Helper()
	n, err := op(f.d, f.ctx, p)
	if err != nil {
		f.t.Fatalf("%s: %v", what, err)
	}
	return n
}

type deadOpFunc = func(ebbdriver.Driver, context.Context, ebbdriver.DeadParams) (int64, error)

// deadAll makes a deadFixture of three tasks and runs op over all of queue
// "a" an hour after the base time, returning what op reports it changed.
func deadAll(t *testing.T, newDriver Factory, what string, op deadOpFunc) (*fixture, []*ebbtype.TaskInfo, int64) {
	t.Helper()
	f, tasks := deadFixture(t, newDriver, 3)
	return f, tasks, f.deadOp(what, op, ebbdriver.DeadParams{Queue: "a", Now: f.at(time.Hour)})
}

// checkDeadLeftAll checks that a deadFixture's queue "a" holds no dead task
// and queue "other" still holds its one.
func (f *fixture) checkDeadLeftAll() {
	f.t.Helper()
	_, total := f.deadList("a", 0, 10)
	check(f.t, "dead left in a", int64(0), total)
	_, total = f.deadList("other", 0, 10)
	check(f.t, "dead left in other", int64(1), total)
}

func testDeadList(t *testing.T, newDriver Factory) {
	t.Run("Empty", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"))
		l, total := f.deadList("a", 0, 10)
		check(t, "total", int64(0), total)
		check(t, "len", 0, len(l))
		l, total = f.deadList("never-used", 0, 10)
		check(t, "total of unknown queue", int64(0), total)
		check(t, "len of unknown queue", 0, len(l))
	})

	t.Run("NewestDeathFirstWithPaging", func(t *testing.T) {
		f := setup(t, newDriver)
		tasks, byID := f.claimOrdered("a", 5)
		// Death order differs from id and enqueue order.
		deathMinute := []int{3, 1, 4, 0, 2}
		for i, task := range tasks {
			f.completeOK(dead(byID[task.ID], f.at(time.Duration(deathMinute[i])*time.Minute), "fatal"))
		}
		f.kill(f.enqueue(f.task("other"))[0], f.at(time.Hour))

		want := ids(tasks[2], tasks[0], tasks[4], tasks[1], tasks[3])
		for _, page := range []struct{ offset, limit, from, to int }{
			{0, 10, 0, 5}, {0, 2, 0, 2}, {2, 2, 2, 4}, {4, 2, 4, 5}, {5, 2, 5, 5},
		} {
			l, total := f.deadList("a", page.offset, page.limit)
			check(t, "total", int64(5), total)
			checkSlice(t, "page", want[page.from:page.to], taskIDs(l))
		}
		l, _ := f.deadList("a", 0, 10)
		for _, r := range l {
			check(t, r.ID+" State", ebbtype.StateDead, r.State)
			check(t, r.ID+" Queue", "a", r.Queue)
			check(t, r.ID+" error count", 1, len(r.Errors))
		}
	})
}

func testDeadRetry(t *testing.T, newDriver Factory) {
	t.Run("All", func(t *testing.T) {
		f, tasks, n := deadAll(t, newDriver, "DeadRetry", ebbdriver.Driver.DeadRetry)
		check(t, "moved", int64(3), n)
		for _, task := range tasks {
			got := f.requireState(task.ID, ebbtype.StateQueued)
			check(t, "Attempt", 0, got.Attempt)
			check(t, "error count", 1, len(got.Errors))
		}
		f.checkDeadLeftAll()
		st := queueStats(t, f.stats(), "a")
		check(t, "Queued", int64(3), st.Queued)
		check(t, "Dead", int64(0), st.Dead)
		check(t, "fetched", 3, len(f.fetch(f.at(time.Hour), 10, "a").Tasks))
	})

	t.Run("IDs", func(t *testing.T) {
		f, tasks := deadFixture(t, newDriver, 3)
		queued := f.enqueue(f.task("a", withRunAt(f.at(time.Hour))))[0]
		unknown := newTask("a", f.now).ID
		n := f.deadOp("DeadRetry", ebbdriver.Driver.DeadRetry, ebbdriver.DeadParams{
			Queue: "a", IDs: []string{tasks[0].ID, tasks[2].ID, queued.ID, unknown}, Now: f.at(time.Minute),
		})
		check(t, "moved", int64(2), n)
		for _, task := range []*ebbtype.TaskInfo{tasks[0], tasks[2]} {
			got := f.requireState(task.ID, ebbtype.StateQueued)
			check(t, "Attempt", 0, got.Attempt)
			if len(got.Errors) != 1 || got.Errors[0].Error != "fatal: "+task.ID {
				t.Errorf("Errors = %+v, want the history kept", got.Errors)
			}
		}
		f.requireState(tasks[1].ID, ebbtype.StateDead)
		f.requireState(queued.ID, ebbtype.StateScheduled)
		l, total := f.deadList("a", 0, 10)
		check(t, "dead total", int64(1), total)
		checkSlice(t, "dead list", ids(tasks[1]), taskIDs(l))

		r := f.fetchOne(f.at(time.Minute), "a")
		check(t, "Attempt on refetch", 1, r.Attempt)
	})
}

func testDeadPurge(t *testing.T, newDriver Factory) {
	t.Run("All", func(t *testing.T) {
		f, tasks, n := deadAll(t, newDriver, "DeadPurge", ebbdriver.Driver.DeadPurge)
		check(t, "deleted", int64(3), n)
		for _, task := range tasks {
			f.requireNotFound(task.ID)
		}
		f.checkDeadLeftAll()
		check(t, "Dead", int64(0), queueStats(t, f.stats(), "a").Dead)
	})

	t.Run("IDs", func(t *testing.T) {
		f, tasks := deadFixture(t, newDriver, 3)
		queued := f.enqueue(f.task("a"))[0]
		n := f.deadOp("DeadPurge", ebbdriver.Driver.DeadPurge, ebbdriver.DeadParams{
			Queue: "a", IDs: []string{tasks[1].ID, queued.ID, newTask("a", f.now).ID}, Now: f.at(time.Hour),
		})
		check(t, "deleted", int64(1), n)
		f.requireNotFound(tasks[1].ID)
		f.requireState(tasks[0].ID, ebbtype.StateDead)
		f.requireState(tasks[2].ID, ebbtype.StateDead)
		f.requireState(queued.ID, ebbtype.StateQueued)
		l, total := f.deadList("a", 0, 10)
		check(t, "dead total", int64(2), total)
		checkSlice(t, "dead list", ids(tasks[2], tasks[0]), taskIDs(l))
	})
}
