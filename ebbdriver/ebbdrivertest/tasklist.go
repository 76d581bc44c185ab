package ebbdrivertest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

func withKind(kind string) taskOpt { return func(r *ebbtype.TaskInfo) { r.Kind = kind } }

// allStates lists every state, in lifecycle order.
var allStates = []ebbtype.State{
	ebbtype.StateScheduled, ebbtype.StateQueued, ebbtype.StateRunning, ebbtype.StateRetrying,
	ebbtype.StateSucceeded, ebbtype.StateDead, ebbtype.StateCancelled,
}

// everyState stores one task of kind in queue per state and returns them by
// state. The queue must hold no Queued task yet: the tasks that run are
// fetched one at a time.
func (f *fixture) everyState(queue, kind string) map[ebbtype.State]*ebbtype.TaskInfo {
	f.t.Helper()
	out := map[ebbtype.State]*ebbtype.TaskInfo{}
	run := func(st ebbtype.State, end func(r *ebbtype.TaskInfo) ebbdriver.Completion) {
		f.t.Helper()
		task := f.enqueue(f.task(queue, withKind(kind)))[0]
		r := f.fetchOne(f.now, queue)
		if r.ID != task.ID {
			f.t.Fatalf("fetched %s, want %s", r.ID, task.ID)
		}
		if end != nil {
			f.completeOK(end(r))
		}
		out[st] = task
	}
	run(ebbtype.StateSucceeded, func(r *ebbtype.TaskInfo) ebbdriver.Completion { return succeed(r, f.now, `"ok"`) })
	run(ebbtype.StateDead, func(r *ebbtype.TaskInfo) ebbdriver.Completion { return dead(r, f.now, "fatal") })
	run(ebbtype.StateRetrying, func(r *ebbtype.TaskInfo) ebbdriver.Completion {
		return retry(r, f.now, f.at(time.Hour), "again later")
	})
	run(ebbtype.StateRunning, nil)
	out[ebbtype.StateQueued] = f.enqueue(f.task(queue, withKind(kind)))[0]
	out[ebbtype.StateScheduled] = f.enqueue(f.task(queue, withKind(kind), withRunAt(f.at(time.Hour))))[0]
	cancelled := f.enqueue(f.task(queue, withKind(kind)))[0]
	if st, err := f.d.TaskCancel(f.ctx, cancelled.ID, f.now); err != nil || st != ebbtype.StateCancelled {
		f.t.Fatalf("TaskCancel = %q, %v; want cancelled", st, err)
	}
	out[ebbtype.StateCancelled] = cancelled
	for st, task := range out {
		f.requireState(task.ID, st)
	}
	return out
}

// checkSameRecord compares a listed task with the task as TaskGet returns
// it: a listing returns whole records.
func checkSameRecord(t *testing.T, want, got *ebbtype.TaskInfo) {
	t.Helper()
	checkStored(t, want, got)
	p := "task " + want.ID + " "
	check(t, p+"State", want.State, got.State)
	check(t, p+"Attempt", want.Attempt, got.Attempt)
	checkTime(t, p+"StartedAt", want.StartedAt, got.StartedAt)
	checkTime(t, p+"FinishedAt", want.FinishedAt, got.FinishedAt)
	check(t, p+"WorkerID", want.WorkerID, got.WorkerID)
	check(t, p+"LeaseToken", want.LeaseToken, got.LeaseToken)
	checkTime(t, p+"LeaseExpiresAt", want.LeaseExpiresAt, got.LeaseExpiresAt)
	check(t, p+"CancelRequested", want.CancelRequested, got.CancelRequested)
	checkErrors(t, p+"Errors", want.Errors, got.Errors)
	checkJSON(t, p+"Result", want.Result, got.Result)
}

// list runs one TaskList call and checks what every answer must keep to:
// the Limit, the ScanLimit, the filters.
func (f *fixture) list(p ebbdriver.TaskListParams) *ebbdriver.TaskListResult {
	f.t.Helper()
	res, err := f.d.TaskList(f.ctx, p)
	if err != nil {
		f.t.Fatalf("TaskList(%+v): %v", p, err)
	}
	if res == nil {
		f.t.Fatalf("TaskList(%+v) returned a nil result", p)
	}
	limit, scan := p.Limit, p.ScanLimit
	if limit <= 0 {
		limit = ebbdriver.TaskListLimitDefault
	}
	if scan <= 0 {
		scan = ebbdriver.TaskListScanDefault
	}
	if len(res.Tasks) > limit {
		f.t.Fatalf("TaskList(%+v) returned %d tasks, over the limit of %d", p, len(res.Tasks), limit)
	}
	if res.Scanned > scan || res.Scanned < len(res.Tasks) {
		f.t.Fatalf("TaskList(%+v) Scanned = %d with %d tasks returned; want between the two and at most ScanLimit %d",
			p, res.Scanned, len(res.Tasks), scan)
	}
	for _, r := range res.Tasks {
		if r == nil {
			f.t.Fatalf("TaskList(%+v) returned a nil task", p)
		}
		if p.Queue != "" && r.Queue != p.Queue || p.State != "" && r.State != p.State || p.Kind != "" && r.Kind != p.Kind {
			f.t.Errorf("TaskList(%+v) returned task %s of queue %q, state %q, kind %q", p, r.ID, r.Queue, r.State, r.Kind)
		}
	}
	return res
}

// listAll pages from the start until the cursor runs out, failing if a task
// comes twice or a call makes no progress. It returns the tasks, the number
// of calls and the sum of their Scanned.
func (f *fixture) listAll(p ebbdriver.TaskListParams) (tasks []*ebbtype.TaskInfo, calls, scanned int) {
	f.t.Helper()
	p.Cursor = ""
	seen := map[string]bool{}
	for {
		calls++
		if calls > 1000 {
			f.t.Fatalf("TaskList(%+v): still a cursor after 1000 calls", p)
		}
		res := f.list(p)
		for _, r := range res.Tasks {
			if seen[r.ID] {
				f.t.Errorf("TaskList(%+v) paging returned task %s twice", p, r.ID)
			}
			seen[r.ID] = true
			tasks = append(tasks, r)
		}
		scanned += res.Scanned
		if res.Cursor == "" {
			return tasks, calls, scanned
		}
		if res.Scanned == 0 {
			f.t.Fatalf("TaskList(%+v) examined nothing but returned cursor %q", p, res.Cursor)
		}
		p.Cursor = res.Cursor
	}
}

// listIDs is listAll's task ids.
func (f *fixture) listIDs(p ebbdriver.TaskListParams) []string {
	f.t.Helper()
	tasks, _, _ := f.listAll(p)
	return taskIDs(tasks)
}

func idsOf(m map[ebbtype.State]*ebbtype.TaskInfo, states ...ebbtype.State) []string {
	var out []string
	for _, st := range states {
		out = append(out, m[st].ID)
	}
	return out
}

func testTaskList(t *testing.T, newDriver Factory) {
	t.Run("Empty", func(t *testing.T) {
		f := setup(t, newDriver)
		res := f.list(ebbdriver.TaskListParams{})
		check(t, "tasks", 0, len(res.Tasks))
		check(t, "Cursor", "", res.Cursor)
		check(t, "Scanned", 0, res.Scanned)
		f.enqueue(f.task("a"))
		res = f.list(ebbdriver.TaskListParams{Queue: "never-used"})
		check(t, "tasks of an unknown queue", 0, len(res.Tasks))
		check(t, "Cursor of an unknown queue", "", res.Cursor)
	})

	t.Run("EveryState", func(t *testing.T) {
		f := setup(t, newDriver)
		a := f.everyState("a", "k.one")
		b := f.everyState("b", "k.two")
		got, _, _ := f.listAll(ebbdriver.TaskListParams{})
		checkSet(t, "all tasks", slices.Concat(idsOf(a, allStates...), idsOf(b, allStates...)), taskIDs(got))
		byID := map[string]*ebbtype.TaskInfo{}
		for _, r := range got {
			byID[r.ID] = r
		}
		for _, m := range []map[ebbtype.State]*ebbtype.TaskInfo{a, b} {
			for st, task := range m {
				if r := byID[task.ID]; r != nil { // a missing one is reported above
					check(t, task.ID+" State", st, r.State)
					checkSameRecord(t, f.get(task.ID), r)
				}
			}
		}
		if r := byID[a[ebbtype.StateSucceeded].ID]; r != nil {
			checkJSON(t, "Result", []byte(`"ok"`), r.Result)
		}
		if r := byID[a[ebbtype.StateDead].ID]; r != nil {
			check(t, "dead task's error count", 1, len(r.Errors))
		}
	})

	t.Run("Filters", func(t *testing.T) {
		f := setup(t, newDriver)
		a := f.everyState("a", "k.one")
		b := f.everyState("b", "k.two")
		// Kinds cross queues so every combination has an answer of its own.
		aTwo := f.enqueue(f.task("a", withKind("k.two")))[0]
		bOne := f.enqueue(f.task("b", withKind("k.one"), withRunAt(f.at(time.Minute))))[0]

		for _, st := range allStates {
			want := idsOf(a, st)
			want = append(want, idsOf(b, st)...)
			switch st {
			case ebbtype.StateQueued:
				want = append(want, aTwo.ID)
			case ebbtype.StateScheduled:
				want = append(want, bOne.ID)
			}
			checkSet(t, "state "+string(st), want, f.listIDs(ebbdriver.TaskListParams{State: st}))
		}
		checkSet(t, "queue a", append(idsOf(a, allStates...), aTwo.ID), f.listIDs(ebbdriver.TaskListParams{Queue: "a"}))
		checkSet(t, "kind k.two", append(idsOf(b, allStates...), aTwo.ID), f.listIDs(ebbdriver.TaskListParams{Kind: "k.two"}))
		checkSet(t, "queue a, kind k.two", []string{aTwo.ID},
			f.listIDs(ebbdriver.TaskListParams{Queue: "a", Kind: "k.two"}))
		checkSet(t, "queue a, state queued", []string{a[ebbtype.StateQueued].ID, aTwo.ID},
			f.listIDs(ebbdriver.TaskListParams{Queue: "a", State: ebbtype.StateQueued}))
		checkSet(t, "state scheduled, kind k.one", []string{a[ebbtype.StateScheduled].ID, bOne.ID},
			f.listIDs(ebbdriver.TaskListParams{State: ebbtype.StateScheduled, Kind: "k.one"}))
		checkSet(t, "queue b, state dead, kind k.two", []string{b[ebbtype.StateDead].ID},
			f.listIDs(ebbdriver.TaskListParams{Queue: "b", State: ebbtype.StateDead, Kind: "k.two"}))
		checkSet(t, "queue b, state dead, kind k.one", nil,
			f.listIDs(ebbdriver.TaskListParams{Queue: "b", State: ebbtype.StateDead, Kind: "k.one"}))
		checkSet(t, "kind nobody uses", nil, f.listIDs(ebbdriver.TaskListParams{Kind: "k.none"}))
	})

	t.Run("Finished", func(t *testing.T) {
		f := setup(t, newDriver)
		// Every way a task ends: success, cancel before it ran, cancel while
		// it ran (the worker completes it as Cancelled), death.
		tasks := f.enqueue(f.task("a"), f.task("a"), f.task("a"), f.task("a", withRunAt(f.at(time.Hour))))
		rs := f.fetch(f.now, 3, "a").Tasks
		check(t, "fetched", 3, len(rs))
		f.completeOK(succeed(rs[0], f.now, `1`), completion(rs[1], ebbdriver.OutcomeCancelled, f.now),
			dead(rs[2], f.now, "fatal"))
		if _, err := f.d.TaskCancel(f.ctx, tasks[3].ID, f.now); err != nil {
			t.Fatalf("TaskCancel: %v", err)
		}
		checkSet(t, "succeeded", ids(rs[0]), f.listIDs(ebbdriver.TaskListParams{State: ebbtype.StateSucceeded}))
		checkSet(t, "cancelled", ids(rs[1], tasks[3]), f.listIDs(ebbdriver.TaskListParams{State: ebbtype.StateCancelled}))
		checkSet(t, "dead", ids(rs[2]), f.listIDs(ebbdriver.TaskListParams{Queue: "a", State: ebbtype.StateDead}))
		checkSet(t, "all", ids(tasks...), f.listIDs(ebbdriver.TaskListParams{Queue: "a"}))
	})

	t.Run("Limit", func(t *testing.T) {
		f := setup(t, newDriver)
		tasks := f.enqueueOrdered("a", 5)
		res := f.list(ebbdriver.TaskListParams{Limit: 2})
		check(t, "first page", 2, len(res.Tasks))
		if res.Cursor == "" {
			t.Fatal("first page of 2 of 5 tasks has no cursor")
		}
		got, calls, _ := f.listAll(ebbdriver.TaskListParams{Limit: 2})
		checkSet(t, "paged", ids(tasks...), taskIDs(got))
		if calls < 3 {
			t.Errorf("5 tasks came in %d pages of at most 2", calls)
		}
		got, _, _ = f.listAll(ebbdriver.TaskListParams{Limit: 1, Queue: "a", State: ebbtype.StateQueued})
		checkSet(t, "paged one by one with filters", ids(tasks...), taskIDs(got))
	})

	t.Run("NewestFirst", func(t *testing.T) {
		f := setup(t, newDriver)
		// Later RunAt and later id together: the newest by either measure.
		tasks := f.enqueueOrdered("a", 4)
		for _, limit := range []int{0, 1, 3} {
			got, _, _ := f.listAll(ebbdriver.TaskListParams{Queue: "a", State: ebbtype.StateQueued, Limit: limit})
			checkSlice(t, "order", ids(tasks[3], tasks[2], tasks[1], tasks[0]), taskIDs(got))
		}
	})

	t.Run("ScanLimit", func(t *testing.T) {
		f := setup(t, newDriver)
		common := f.everyState("a", "k.common")
		rare := f.everyState("b", "k.rare")
		var more, rareMore []*ebbtype.TaskInfo
		for i := range 6 {
			more = append(more, f.task("a", withKind("k.common"), withRunAt(f.at(time.Duration(i-10)*time.Second))))
		}
		rareMore = append(rareMore, f.task("c", withKind("k.rare")), f.task("c", withKind("k.rare")))
		f.enqueue(append(more, rareMore...)...)
		stored := len(common) + len(rare) + len(more) + len(rareMore)
		wantRare := append(idsOf(rare, allStates...), ids(rareMore...)...)

		res := f.list(ebbdriver.TaskListParams{Kind: "k.rare", ScanLimit: 4})
		check(t, "first call's Scanned", 4, res.Scanned)
		if res.Cursor == "" {
			t.Fatalf("a call that examined 4 of %d tasks has no cursor", stored)
		}

		for _, c := range []struct {
			name string
			p    ebbdriver.TaskListParams
			want []string
		}{
			{"rare kind", ebbdriver.TaskListParams{Kind: "k.rare", ScanLimit: 4}, wantRare},
			{"rare kind, limit 1", ebbdriver.TaskListParams{Kind: "k.rare", ScanLimit: 3, Limit: 1}, wantRare},
			{"everything", ebbdriver.TaskListParams{ScanLimit: 5}, nil},
		} {
			got, calls, scanned := f.listAll(c.p)
			if c.want != nil {
				checkSet(t, c.name, c.want, taskIDs(got))
			} else {
				check(t, c.name+": tasks", stored, len(got))
			}
			// With no queue or state filter every stored task is examined,
			// exactly once.
			check(t, c.name+": Scanned over all pages", stored, scanned)
			if least := (stored + c.p.ScanLimit - 1) / c.p.ScanLimit; calls < least {
				t.Errorf("%s: %d calls examined %d tasks at most %d at a time", c.name, calls, stored, c.p.ScanLimit)
			}
		}
		got, _, _ := f.listAll(ebbdriver.TaskListParams{State: ebbtype.StateDead, ScanLimit: 2})
		checkSet(t, "dead, scan limit 2", []string{common[ebbtype.StateDead].ID, rare[ebbtype.StateDead].ID}, taskIDs(got))
	})
}

func testTaskRetry(t *testing.T, newDriver Factory) {
	t.Run("NotAllowed", func(t *testing.T) {
		f := setup(t, newDriver)
		tasks := f.everyState("a", "k")
		for _, st := range []ebbtype.State{ebbtype.StateQueued, ebbtype.StateRunning,
			ebbtype.StateSucceeded, ebbtype.StateCancelled} {
			got, err := f.d.TaskRetry(f.ctx, tasks[st].ID, f.at(time.Second))
			if !errors.Is(err, ebbtype.ErrTaskState) {
				t.Errorf("TaskRetry of a %s task = %q, %v; want ErrTaskState", st, got, err)
			}
			f.requireState(tasks[st].ID, st)
		}
		st := queueStats(t, f.stats(), "a")
		check(t, "Queued", int64(1), st.Queued)
	})

	testTransitionNotFound(t, newDriver, "TaskRetry", ebbdriver.Driver.TaskRetry)

	for _, c := range []struct {
		name    string
		prepare func(f *fixture) *ebbtype.TaskInfo
		attempt int // after the retry
		errs    int
	}{
		{"Dead", func(f *fixture) *ebbtype.TaskInfo {
			task := f.enqueue(f.task("a", withMaxAttempts(1)))[0]
			f.kill(task, f.now)
			return task
		}, 0, 1},
		{"Retrying", func(f *fixture) *ebbtype.TaskInfo {
			task := f.enqueue(f.task("a"))[0]
			f.completeOK(retry(f.fetchOne(f.now, "a"), f.now, f.at(time.Hour), "boom"))
			return task
		}, 1, 1},
		{"Scheduled", func(f *fixture) *ebbtype.TaskInfo {
			return f.enqueue(f.task("a", withRunAt(f.at(time.Hour))))[0]
		}, 0, 0},
	} {
		t.Run("ToQueued/"+c.name, func(t *testing.T) {
			f := setup(t, newDriver)
			task := c.prepare(f)
			other := f.enqueue(f.task("b", withRunAt(f.at(time.Hour))))[0]
			ch := f.listen(ebbdriver.ListenParams{Queues: []string{"a"}})
			drainEvents(ch)

			now := f.at(time.Second)
			st, err := f.d.TaskRetry(f.ctx, task.ID, now)
			if err != nil {
				t.Fatalf("TaskRetry: %v", err)
			}
			check(t, "returned state", ebbtype.StateQueued, st)
			waitEvent(t, ch, "EventQueued after TaskRetry", isQueued("a"), nil)
			got := f.requireState(task.ID, ebbtype.StateQueued)
			check(t, "Attempt", c.attempt, got.Attempt)
			check(t, "error count (history kept)", c.errs, len(got.Errors))
			checkTime(t, "RunAt", now, got.RunAt)
			s := queueStats(t, f.statsAt(now), "a")
			check(t, "Queued", int64(1), s.Queued)
			check(t, "Scheduled", int64(0), s.Scheduled)
			check(t, "Dead", int64(0), s.Dead)
			f.requireState(other.ID, ebbtype.StateScheduled)

			r := f.fetchOne(now, "a")
			check(t, "fetched", task.ID, r.ID)
			check(t, "Attempt when fetched", c.attempt+1, r.Attempt)
		})
	}
}

func testTaskDelete(t *testing.T, newDriver Factory) {
	t.Run("KeepsAnotherTasksUniqueKey", func(t *testing.T) {
		f := setup(t, newDriver)
		// The first holder dies (releasing the key), a second takes it: the
		// first one's delete must leave the second's key alone.
		first := f.enqueue(f.task("a", withUnique("u", 0), withMaxAttempts(1)))[0]
		f.kill(first, f.now)
		second := f.enqueue(f.task("a", withUnique("u", 0)))[0]
		if err := f.d.TaskDelete(f.ctx, first.ID); err != nil {
			t.Fatalf("TaskDelete: %v", err)
		}
		res := f.enqueueResults(f.task("a", withUnique("u", 0)))
		if !res[0].Duplicate || res[0].ID != second.ID {
			t.Errorf("Enqueue = %+v, want a duplicate of %s, which holds the key", res[0], second.ID)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		f := setup(t, newDriver)
		checkErrIs(t, "TaskDelete(unknown)", f.d.TaskDelete(f.ctx, newTask("a", f.now).ID), ebbtype.ErrTaskNotFound)
	})

	for _, st := range allStates {
		if st == ebbtype.StateRunning {
			continue
		}
		t.Run("NotRunning/"+string(st), func(t *testing.T) {
			f := setup(t, newDriver)
			tasks := f.everyState("a", "k")
			before := queueStats(t, f.stats(), "a")
			if err := f.d.TaskDelete(f.ctx, tasks[st].ID); err != nil {
				t.Fatalf("TaskDelete: %v", err)
			}
			f.requireNotFound(tasks[st].ID)
			checkErrIs(t, "second TaskDelete", f.d.TaskDelete(f.ctx, tasks[st].ID), ebbtype.ErrTaskNotFound)
			for other, task := range tasks {
				if other != st {
					f.requireState(task.ID, other)
				}
			}
			// Gone from every index: not listed, not counted, not examined.
			var want []string
			for other, task := range tasks {
				if other != st {
					want = append(want, task.ID)
				}
			}
			got, _, scanned := f.listAll(ebbdriver.TaskListParams{})
			checkSet(t, "listed", want, taskIDs(got))
			check(t, "Scanned over all pages", len(want), scanned)
			after := queueStats(t, f.stats(), "a")
			wantStats := before
			switch st {
			case ebbtype.StateQueued:
				wantStats.Queued--
				wantStats.OldestQueuedAt = time.Time{}
			case ebbtype.StateScheduled, ebbtype.StateRetrying:
				wantStats.Scheduled--
			case ebbtype.StateDead:
				wantStats.Dead--
			}
			checkQueueStats(t, "after the delete", wantStats, after)
			if st == ebbtype.StateScheduled || st == ebbtype.StateRetrying || st == ebbtype.StateQueued {
				// The queue's Queued task, if not the deleted one, then nothing.
				res := f.fetch(f.at(2*time.Hour), 10, "a")
				for _, r := range res.Tasks {
					if r.ID == tasks[st].ID {
						t.Errorf("fetched the deleted task")
					}
				}
			}
		})
	}

	t.Run("ReleasesUniqueKey", func(t *testing.T) {
		f := setup(t, newDriver)
		for _, ttl := range []time.Duration{0, time.Hour} {
			key := "u-" + ttl.String()
			held := f.enqueue(f.task("a", withUnique(key, ttl), withRunAt(f.at(time.Minute))))[0]
			res := f.enqueueResults(f.task("a", withUnique(key, ttl)))
			check(t, key+": duplicate while held", true, res[0].Duplicate)
			if err := f.d.TaskDelete(f.ctx, held.ID); err != nil {
				t.Fatalf("TaskDelete: %v", err)
			}
			again := f.task("a", withUnique(key, ttl))
			res = f.enqueueResults(again)
			if res[0].Duplicate || res[0].ID != again.ID {
				t.Errorf("%s: Enqueue after the holder was deleted = %+v, want a new task", key, res[0])
			}
		}
	})

	t.Run("Running", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a", withUnique("u", 0)))[0]
		r := f.fetchOne(f.now, "a")
		checkErrIs(t, "TaskDelete(running)", f.d.TaskDelete(f.ctx, task.ID), ebbtype.ErrTaskState)
		got := f.requireState(task.ID, ebbtype.StateRunning)
		check(t, "LeaseToken", r.LeaseToken, got.LeaseToken)
		res := f.enqueueResults(f.task("a", withUnique("u", 0)))
		check(t, "unique key still held", true, res[0].Duplicate)
		f.completeOK(succeed(r, f.now, `1`))
	})

	t.Run("TotalsKept", func(t *testing.T) {
		f := setup(t, newDriver)
		tasks := f.everyState("a", "k")
		for st, task := range tasks {
			if st != ebbtype.StateRunning {
				if err := f.d.TaskDelete(f.ctx, task.ID); err != nil {
					t.Fatalf("TaskDelete(%s): %v", st, err)
				}
			}
		}
		s := queueStats(t, f.stats(), "a")
		check(t, "Enqueued", int64(7), s.Enqueued)
		check(t, "Succeeded", int64(1), s.Succeeded)
		check(t, "Failed", int64(1), s.Failed)
		check(t, "Retried", int64(1), s.Retried)
		check(t, "InFlight", int64(1), s.InFlight)
		checkSlice(t, "listed", ids(tasks[ebbtype.StateRunning]), f.listIDs(ebbdriver.TaskListParams{}))
	})
	t.Run("WakesAwait", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a"))[0]
		ctx, cancel := context.WithTimeout(f.ctx, awaitTimeout)
		defer cancel()
		done := f.startAwait(ctx, task.ID)
		if err := f.d.TaskDelete(f.ctx, task.ID); err != nil {
			t.Fatalf("TaskDelete: %v", err)
		}
		res := waitAwait(t, done, "TaskAwait of a deleted task")
		checkErrIs(t, "TaskAwait of a deleted task", res.err, ebbtype.ErrTaskNotFound)
	})
}
