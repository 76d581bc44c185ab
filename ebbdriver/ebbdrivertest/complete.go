package ebbdrivertest

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

func testComplete(t *testing.T, newDriver Factory) {
	t.Run("Cancelled", func(t *testing.T) {
		f := setup(t, newDriver)
		withErr := f.enqueue(f.task("a"))[0]
		noErr := f.enqueue(f.task("a"))[0]
		rs := f.fetch(f.now, 2, "a").Tasks
		check(t, "fetched", 2, len(rs))
		byID := map[string]*ebbtype.TaskInfo{rs[0].ID: rs[0], rs[1].ID: rs[1]}

		c1 := completion(byID[withErr.ID], ebbdriver.OutcomeCancelled, f.at(time.Second))
		c1.Error = attemptError(byID[withErr.ID], f.at(time.Second), "context canceled")
		c2 := completion(byID[noErr.ID], ebbdriver.OutcomeCancelled, f.at(time.Second))
		f.completeOK(c1, c2)

		r := f.requireState(withErr.ID, ebbtype.StateCancelled)
		checkErrors(t, "Errors with error", []ebbtype.AttemptError{*c1.Error}, r.Errors)
		checkTime(t, "FinishedAt", f.at(time.Second), r.FinishedAt)
		r = f.requireState(noErr.ID, ebbtype.StateCancelled)
		checkErrors(t, "Errors without error", nil, r.Errors)
		checkTime(t, "FinishedAt", f.at(time.Second), r.FinishedAt)
		f.fetchNone(f.at(time.Hour), "a")
	})

	t.Run("CompleteTwiceIsLeaseLost", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"))
		r := f.fetchOne(f.now, "a")
		f.completeOK(succeed(r, f.at(time.Second), `"first"`))
		errs := f.complete(succeed(r, f.at(2*time.Second), `"second"`))
		checkErrIs(t, "second completion", errs[0], ebbtype.ErrLeaseLost)
		errs = f.complete(dead(r, f.at(2*time.Second), "late"))
		checkErrIs(t, "late dead completion", errs[0], ebbtype.ErrLeaseLost)
		got := f.requireState(r.ID, ebbtype.StateSucceeded)
		checkJSON(t, "Result", []byte(`"first"`), got.Result)
		checkTime(t, "FinishedAt", f.at(time.Second), got.FinishedAt)
		checkErrors(t, "Errors", nil, got.Errors)
	})

	t.Run("ConcurrentCompletionsApplyOnce", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"))
		r := f.fetchOne(f.now, "a")
		const n = 8
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			applied atomic.Int32
		)
		for i := range n {
			wg.Go(func() {
				<-start
				errs, err := f.d.Complete(f.ctx, []ebbdriver.Completion{succeed(r, f.now, strconv.Itoa(i))})
				switch {
				case err != nil:
					t.Errorf("Complete: %v", err)
				case errs[0] == nil:
					applied.Add(1)
				case !errors.Is(errs[0], ebbtype.ErrLeaseLost):
					t.Errorf("losing completion: %v, want ErrLeaseLost", errs[0])
				}
			})
		}
		close(start)
		wg.Wait()
		check(t, "completions applied", int32(1), applied.Load())
		check(t, "Succeeded total", int64(1), queueStats(t, f.stats(), "a").Succeeded)
	})

	t.Run("Dead", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"))
		r := f.fetchOne(f.now, "a")
		c := dead(r, f.at(time.Second), "permanent failure")
		f.completeOK(c)
		got := f.requireState(r.ID, ebbtype.StateDead)
		checkErrors(t, "Errors", []ebbtype.AttemptError{*c.Error}, got.Errors)
		checkTime(t, "FinishedAt", f.at(time.Second), got.FinishedAt)
		check(t, "Attempt", 1, got.Attempt)
		l, total := f.deadList("a", 0, 10)
		check(t, "dead total", int64(1), total)
		checkSlice(t, "dead list", ids(r), taskIDs(l))
		f.fetchNone(f.at(time.Hour), "a")
	})

	t.Run("HandBack", func(t *testing.T) {
		f := setup(t, newDriver)
		first := f.task("a", withRunAt(f.at(-2*time.Second)))
		second := f.task("a", withRunAt(f.at(-time.Second)))
		f.enqueue(first, second)
		r := f.fetchOne(f.now, "a")
		check(t, "first fetched", first.ID, r.ID)
		f.completeOK(completion(r, ebbdriver.OutcomeHandBack, f.at(time.Second)))

		got := f.requireState(first.ID, ebbtype.StateQueued)
		check(t, "Attempt after hand-back", 0, got.Attempt)
		checkErrors(t, "Errors after hand-back", nil, got.Errors)
		checkTime(t, "RunAt after hand-back", first.RunAt, got.RunAt)
		st := queueStats(t, f.stats(), "a")
		check(t, "Queued", int64(2), st.Queued)
		check(t, "InFlight", int64(0), st.InFlight)
		check(t, "Retried", int64(0), st.Retried)

		// Back in its old place: ahead of the task enqueued after it.
		again := f.fetchOne(f.at(time.Second), "a")
		check(t, "refetched", first.ID, again.ID)
		check(t, "Attempt on refetch", 1, again.Attempt)
		f.completeOK(succeed(again, f.at(2*time.Second), `1`))
	})

	t.Run("MixedBatch", func(t *testing.T) {
		f := setup(t, newDriver)
		tasks, byID := f.claimOrdered("a", 5)
		now := f.at(time.Second)
		f.completeOK(
			succeed(byID[tasks[0].ID], now, `{"ok":1}`),
			retry(byID[tasks[1].ID], now, f.at(time.Hour), "later"),
			retry(byID[tasks[2].ID], now, now, "now"),
			dead(byID[tasks[3].ID], now, "fatal"),
			completion(byID[tasks[4].ID], ebbdriver.OutcomeHandBack, now),
		)
		states := []ebbtype.State{
			ebbtype.StateSucceeded, ebbtype.StateRetrying, ebbtype.StateQueued,
			ebbtype.StateDead, ebbtype.StateQueued,
		}
		for i, want := range states {
			f.requireState(tasks[i].ID, want)
		}
		// None of them holds a lease any more, so none is rescued.
		res, err := f.d.RescueExpired(f.ctx, "a", f.at(24*time.Hour), 10)
		if err != nil {
			t.Fatalf("RescueExpired: %v", err)
		}
		if len(res.Requeued)+len(res.Dead) != 0 {
			t.Errorf("RescueExpired after completion = %+v, want nothing", res)
		}
		for i, want := range states {
			f.requireState(tasks[i].ID, want)
		}
	})

	t.Run("RetryDue", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"))
		r := f.fetchOne(f.now, "a")
		// RetryAt ≤ Now: straight back to Queued, no promotion needed.
		c := retry(r, f.at(time.Second), f.at(time.Second), "flaky")
		f.completeOK(c)
		got := f.requireState(r.ID, ebbtype.StateQueued)
		checkErrors(t, "Errors", []ebbtype.AttemptError{*c.Error}, got.Errors)
		check(t, "Queued", int64(1), queueStats(t, f.stats(), "a").Queued)
		if n, err := f.d.PromoteDue(f.ctx, "a", f.at(time.Second), 10); err != nil || n != 0 {
			t.Errorf("PromoteDue after immediate retry = %d, %v; want 0 (already queued)", n, err)
		}

		again := f.fetchOne(f.at(time.Second), "a")
		check(t, "Attempt", 2, again.Attempt)

		// A RetryAt already in the past behaves the same.
		f.completeOK(retry(again, f.at(5*time.Second), f.at(time.Second), "flaky again"))
		f.requireState(r.ID, ebbtype.StateQueued)
	})

	t.Run("RetryLater", func(t *testing.T) {
		f := setup(t, newDriver)
		_, r := f.enqueueClaimAs("worker-r")
		retryAt := f.at(time.Minute)
		c := retry(r, f.at(time.Second), retryAt, "connection refused")
		f.completeOK(c)

		got := f.requireState(r.ID, ebbtype.StateRetrying)
		checkTime(t, "RunAt", retryAt, got.RunAt)
		check(t, "Attempt", 1, got.Attempt)
		want := []ebbtype.AttemptError{{
			Attempt: 1, At: f.at(time.Second), Error: "connection refused",
			Stack: c.Error.Stack, WorkerID: "worker-r",
		}}
		checkErrors(t, "Errors", want, got.Errors)
		st := queueStats(t, f.stats(), "a")
		check(t, "Scheduled", int64(1), st.Scheduled)
		check(t, "Retried", int64(1), st.Retried)
		check(t, "InFlight", int64(0), st.InFlight)

		res := f.fetchNone(f.at(30*time.Second), "a")
		checkTime(t, "NextDueAt", retryAt, res.NextDueAt)

		again := f.fetchOne(retryAt.Add(time.Second), "a")
		check(t, "ID", r.ID, again.ID)
		check(t, "Attempt", 2, again.Attempt)
		checkErrors(t, "Errors on refetch", want, again.Errors)

		c2 := retry(again, retryAt.Add(2*time.Second), retryAt.Add(time.Hour), "still refused")
		f.completeOK(c2)
		want = append(want, *c2.Error)
		checkErrors(t, "Errors after second retry", want, f.get(r.ID).Errors)
	})

	t.Run("StaleTokenIsLeaseLost", func(t *testing.T) {
		f := setup(t, newDriver)
		stale := f.task("a", withRunAt(f.at(-time.Second)))
		other := f.task("a")
		f.enqueue(stale, other)

		p1 := fetchParams(f.now, 1, "a")
		p1.LeaseDuration = 30 * time.Second
		r1 := f.fetchWith(p1).Tasks[0]
		check(t, "first claim", stale.ID, r1.ID)
		p2 := fetchParams(f.now, 1, "a")
		p2.LeaseDuration = time.Hour
		r2 := f.fetchWith(p2).Tasks[0]
		check(t, "second claim", other.ID, r2.ID)

		// r1's lease expires, it is rescued and claimed again under a new token.
		rescued, err := f.d.RescueExpired(f.ctx, "a", f.at(time.Minute), 10)
		if err != nil {
			t.Fatalf("RescueExpired: %v", err)
		}
		checkSlice(t, "requeued", ids(r1), rescued.Requeued)
		p3 := fetchParams(f.at(time.Minute), 1, "a")
		p3.WorkerID = "worker-3"
		r3 := f.fetchWith(p3).Tasks[0]
		check(t, "third claim", stale.ID, r3.ID)

		errs := f.complete(
			succeed(r1, f.at(2*time.Minute), `"stale"`),
			succeed(r2, f.at(2*time.Minute), `"fresh"`),
		)
		checkErrIs(t, "stale item", errs[0], ebbtype.ErrLeaseLost)
		if errs[1] != nil {
			t.Errorf("fresh item in the same batch: %v", errs[1])
		}

		got := f.requireState(stale.ID, ebbtype.StateRunning)
		check(t, "LeaseToken after stale completion", p3.LeaseToken, got.LeaseToken)
		check(t, "WorkerID after stale completion", "worker-3", got.WorkerID)
		check(t, "Attempt after stale completion", 2, got.Attempt)
		checkJSON(t, "Result after stale completion", nil, got.Result)
		check(t, "Errors after stale completion", 1, len(got.Errors))
		checkJSON(t, "fresh Result", []byte(`"fresh"`), f.requireState(other.ID, ebbtype.StateSucceeded).Result)

		// The new owner's completion still applies.
		f.completeOK(succeed(r3, f.at(2*time.Minute), `"owner"`))
		checkJSON(t, "owner Result", []byte(`"owner"`), f.requireState(stale.ID, ebbtype.StateSucceeded).Result)
	})

	t.Run("Succeeded", func(t *testing.T) {
		f := setup(t, newDriver)
		task, r := f.enqueueClaimAs("worker-s")
		f.completeOK(succeed(r, f.at(3*time.Second), `{"answer":42,"list":["x"]}`))

		got := f.requireState(task.ID, ebbtype.StateSucceeded)
		checkStored(t, task, got)
		checkJSON(t, "Result", []byte(`{"answer":42,"list":["x"]}`), got.Result)
		checkTime(t, "FinishedAt", f.at(3*time.Second), got.FinishedAt)
		checkTime(t, "StartedAt", f.now, got.StartedAt)
		check(t, "Attempt", 1, got.Attempt)
		check(t, "WorkerID", "worker-s", got.WorkerID)
		checkErrors(t, "Errors", nil, got.Errors)
		f.fetchNone(f.at(time.Hour), "a")
		st := queueStats(t, f.stats(), "a")
		check(t, "Succeeded", int64(1), st.Succeeded)
		check(t, "InFlight", int64(0), st.InFlight)
	})

	// A worker must be able to tell a routine lost lease from a task that is
	// gone (deleted, or a broker that lost its data): the first is fenced,
	// the second is not found, and neither is mistaken for the other.
	t.Run("UnknownTaskIsNotFound", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"))
		r := f.fetchOne(f.now, "a")
		ghost := *r
		ghost.ID = newTask("a", f.now).ID
		wrong := *r
		wrong.LeaseToken = "not-the-token"
		errs := f.complete(succeed(&ghost, f.now, `1`), succeed(&wrong, f.now, `1`), succeed(r, f.now, `1`))
		checkErrIs(t, "unknown task", errs[0], ebbtype.ErrTaskNotFound)
		if errors.Is(errs[0], ebbtype.ErrLeaseLost) {
			t.Errorf("unknown task: %v also matches ErrLeaseLost", errs[0])
		}
		checkErrIs(t, "wrong token", errs[1], ebbtype.ErrLeaseLost)
		if errors.Is(errs[1], ebbtype.ErrTaskNotFound) {
			t.Errorf("wrong token: %v also matches ErrTaskNotFound", errs[1])
		}
		if errs[2] != nil {
			t.Errorf("right token: %v", errs[2])
		}
		f.requireNotFound(ghost.ID)
	})

	t.Run("DeletedTaskIsNotFound", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"))
		r := f.fetchOne(f.now, "a")
		f.completeOK(succeed(r, f.at(time.Second), `1`))
		// Still there, finished: a late completion is fenced.
		for _, o := range []ebbdriver.Outcome{ebbdriver.OutcomeSucceeded, ebbdriver.OutcomeHandBack} {
			errs := f.complete(completion(r, o, f.at(2*time.Second)))
			checkErrIs(t, "late completion of a finished task", errs[0], ebbtype.ErrLeaseLost)
		}
		if err := f.d.TaskDelete(f.ctx, r.ID); err != nil {
			t.Fatalf("TaskDelete: %v", err)
		}
		for _, o := range []ebbdriver.Outcome{ebbdriver.OutcomeSucceeded, ebbdriver.OutcomeRetry, ebbdriver.OutcomeDead,
			ebbdriver.OutcomeCancelled, ebbdriver.OutcomeHandBack} {
			c := completion(r, o, f.at(3*time.Second))
			if o != ebbdriver.OutcomeSucceeded && o != ebbdriver.OutcomeHandBack {
				c.Error = attemptError(r, c.Now, "late")
			}
			errs := f.complete(c)
			checkErrIs(t, "completion of a deleted task", errs[0], ebbtype.ErrTaskNotFound)
		}
		f.requireNotFound(r.ID)
	})
}
