package ebbdrivertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

type awaitResult struct {
	r   *ebbtype.TaskInfo
	err error
}

// startAwait runs TaskAwait in a goroutine and returns once the goroutine is
// about to call it; the answer arrives on the returned channel.
func (f *fixture) startAwait(ctx context.Context, id string) <-chan awaitResult {
	started := make(chan struct{})
	done := make(chan awaitResult, 1)
	go func() {
		close(started)
		r, err := f.d.TaskAwait(ctx, id)
		done <- awaitResult{r, err}
	}()
	<-started
	return done
}

func waitAwait(t *testing.T, done <-chan awaitResult, what string) awaitResult {
	t.Helper()
	select {
	case res := <-done:
		return res
	case <-time.After(awaitTimeout + 5*time.Second):
		t.Fatalf("%s: TaskAwait did not return", what)
		return awaitResult{}
	}
}

func testTaskAwait(t *testing.T, newDriver Factory) {
	t.Run("AlreadyTerminal", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"))
		r := f.fetchOne(f.now, "a")
		f.completeOK(succeed(r, f.now, `"done"`))
		// "Immediately": well before any backstop poll would matter.
		ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
		defer cancel()
		got, err := f.d.TaskAwait(ctx, r.ID)
		if err != nil {
			t.Fatalf("TaskAwait of a succeeded task: %v", err)
		}
		check(t, "State", ebbtype.StateSucceeded, got.State)
		checkJSON(t, "Result", []byte(`"done"`), got.Result)
	})

	t.Run("ContextCancelled", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a"))[0]
		ctx, cancel := context.WithCancel(f.ctx)
		done := f.startAwait(ctx, task.ID)
		cancel()
		select {
		case res := <-done:
			if !errors.Is(res.err, context.Canceled) {
				t.Errorf("TaskAwait after cancel = %v, %v; want context.Canceled", describe(res.r), res.err)
			}
		case <-time.After(eventTimeout):
			t.Fatalf("TaskAwait still blocked %v after its context was cancelled", eventTimeout)
		}
		f.requireState(task.ID, ebbtype.StateQueued)
	})

	t.Run("NotFound", func(t *testing.T) {
		f := setup(t, newDriver)
		ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
		defer cancel()
		r, err := f.d.TaskAwait(ctx, newTask("a", f.now).ID)
		if !errors.Is(err, ebbtype.ErrTaskNotFound) {
			t.Errorf("TaskAwait(unknown) = %v, %v; want ErrTaskNotFound", describe(r), err)
		}
	})

	for _, c := range []struct {
		name   string
		want   ebbtype.State
		errs   int // the retry's, plus the dead completion's
		finish func(f *fixture, id string)
	}{
		{"ReturnsOnCancel", ebbtype.StateCancelled, 1, func(f *fixture, id string) {
			if _, err := f.d.TaskCancel(f.ctx, id, f.now); err != nil {
				f.t.Errorf("TaskCancel: %v", err)
			}
		}},
		{"ReturnsOnDead", ebbtype.StateDead, 2, func(f *fixture, id string) {
			f.completeOK(dead(f.fetchOne(f.now, "a"), f.now, "fatal"))
		}},
		{"ReturnsOnSuccess", ebbtype.StateSucceeded, 1, func(f *fixture, id string) {
			f.completeOK(succeed(f.fetchOne(f.now, "a"), f.now, `{"v":1}`))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := setup(t, newDriver)
			task := f.enqueue(f.task("a"))[0]
			ctx, cancel := context.WithTimeout(f.ctx, awaitTimeout)
			defer cancel()
			done := f.startAwait(ctx, task.ID)
			// A retry is not terminal: Await must keep waiting through it.
			f.completeOK(retry(f.fetchOne(f.now, "a"), f.now, f.now, "transient"))
			c.finish(f, task.ID)
			res := waitAwait(t, done, c.name)
			if res.err != nil {
				t.Fatalf("TaskAwait: %v", res.err)
			}
			check(t, "ID", task.ID, res.r.ID)
			check(t, "State", c.want, res.r.State)
			check(t, "error count", c.errs, len(res.r.Errors))
		})
	}
}

func testTaskCancel(t *testing.T, newDriver Factory) {
	testTransitionNotFound(t, newDriver, "TaskCancel", ebbdriver.Driver.TaskCancel)

	for _, c := range []struct {
		name    string
		prepare func(f *fixture) *ebbtype.TaskInfo
		from    ebbtype.State
	}{
		{"Queued", func(f *fixture) *ebbtype.TaskInfo {
			return f.enqueue(f.task("a"))[0]
		}, ebbtype.StateQueued},
		{"Retrying", func(f *fixture) *ebbtype.TaskInfo {
			task := f.enqueue(f.task("a"))[0]
			f.completeOK(retry(f.fetchOne(f.now, "a"), f.now, f.at(time.Minute), "boom"))
			return task
		}, ebbtype.StateRetrying},
		{"Scheduled", func(f *fixture) *ebbtype.TaskInfo {
			return f.enqueue(f.task("a", withRunAt(f.at(time.Minute))))[0]
		}, ebbtype.StateScheduled},
	} {
		// Named Pending/… so the subtests stay alphabetized.
		t.Run("Pending/"+c.name, func(t *testing.T) {
			f := setup(t, newDriver)
			task := c.prepare(f)
			f.requireState(task.ID, c.from)
			st, err := f.d.TaskCancel(f.ctx, task.ID, f.at(time.Second))
			if err != nil {
				t.Fatalf("TaskCancel: %v", err)
			}
			check(t, "returned state", ebbtype.StateCancelled, st)
			got := f.requireState(task.ID, ebbtype.StateCancelled)
			checkTime(t, "FinishedAt", f.at(time.Second), got.FinishedAt)
			// Not fetchable, not even once it would have been due.
			res := f.fetchNone(f.at(time.Hour), "a")
			checkTime(t, "NextDueAt", time.Time{}, res.NextDueAt)
			s := queueStats(t, f.stats(), "a")
			check(t, "Queued", int64(0), s.Queued)
			check(t, "Scheduled", int64(0), s.Scheduled)
		})
	}

	t.Run("Running", func(t *testing.T) {
		f := setup(t, newDriver)
		task, r := f.enqueueClaimAs("worker-c")
		ch := f.listen(ebbdriver.ListenParams{Queues: []string{"a"}, WorkerID: "worker-c"})

		st, err := f.d.TaskCancel(f.ctx, task.ID, f.at(time.Second))
		if err != nil {
			t.Fatalf("TaskCancel: %v", err)
		}
		check(t, "returned state", ebbtype.StateRunning, st)
		waitEvent(t, ch, "EventCancel for "+task.ID, func(ev ebbdriver.Event) bool {
			return ev.Kind == ebbdriver.EventCancel && ev.TaskID == task.ID
		}, nil)
		got := f.requireState(task.ID, ebbtype.StateRunning)
		check(t, "CancelRequested", true, got.CancelRequested)
		check(t, "LeaseToken", r.LeaseToken, got.LeaseToken)

		// The worker then completes it as Cancelled.
		c := completion(r, ebbdriver.OutcomeCancelled, f.at(2*time.Second))
		f.completeOK(c)
		f.requireState(task.ID, ebbtype.StateCancelled)
	})

	t.Run("Terminal", func(t *testing.T) {
		f := setup(t, newDriver)
		task := f.enqueue(f.task("a"))[0]
		r := f.fetchOne(f.now, "a")
		f.completeOK(succeed(r, f.now, `1`))
		st, err := f.d.TaskCancel(f.ctx, task.ID, f.at(time.Second))
		if err != nil {
			t.Fatalf("TaskCancel: %v", err)
		}
		check(t, "returned state", ebbtype.StateSucceeded, st)
		got := f.requireState(task.ID, ebbtype.StateSucceeded)
		checkTime(t, "FinishedAt", f.now, got.FinishedAt)
		check(t, "CancelRequested", false, got.CancelRequested)
	})
}

func testTaskGet(t *testing.T, newDriver Factory) {
	t.Run("NotFound", func(t *testing.T) {
		f := setup(t, newDriver)
		f.enqueue(f.task("a"))
		f.requireNotFound(newTask("a", f.now).ID)
	})
}

func testName(t *testing.T, newDriver Factory) {
	t.Run("NotEmpty", func(t *testing.T) {
		f := setup(t, newDriver)
		if f.d.Name() == "" {
			t.Error("Name() is empty")
		}
	})
}

// testTransitionNotFound checks that op (TaskCancel or TaskRetry) of an id
// never enqueued fails with ErrTaskNotFound.
func testTransitionNotFound(t *testing.T, newDriver Factory, name string,
	op func(ebbdriver.Driver, context.Context, string, time.Time) (ebbtype.State, error)) {
	t.Run("NotFound", func(t *testing.T) {
		f := setup(t, newDriver)
		_, err := op(f.d, f.ctx, newTask("a", f.now).ID, f.now)
		checkErrIs(t, name+"(unknown)", err, ebbtype.ErrTaskNotFound)
	})
}
