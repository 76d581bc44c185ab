package ebbdrivertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// testAPI exercises the driver through the public client and worker: the
// behaviours users see (retries, dead letters, timeouts, cancellation,
// priorities, drain, the registry) must hold on every broker, not only the
// driver calls they are built from.
func testAPI(t *testing.T, newDriver Factory) {
	t.Run("ArgsTooLarge", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		big := json.RawMessage(`"` + strings.Repeat("x", 600<<10) + `"`)
		_, err := a.client.EnqueueRaw(a.ctx, "x", big, nil)
		checkErrIs(t, "enqueue of 600 KiB", err, ebb.ErrArgsTooLarge)
		check(t, "queues after a rejected enqueue", 0, len(a.stats()))
	})

	t.Run("CancelQueued", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		res, err := a.client.Enqueue(a.ctx, apiArgs{}, &ebb.EnqueueOpts{Delay: time.Hour})
		requireNoErr(t, "enqueue", err)
		st, err := a.client.Cancel(a.ctx, res.ID)
		requireNoErr(t, "cancel", err)
		check(t, "state after cancel", ebb.StateCancelled, st)
		_, err = a.client.Wait(a.ctx, res.ID)
		checkErrIs(t, "wait", err, ebb.ErrTaskCancelled)
	})

	t.Run("CancelRunning", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		started := make(chan struct{})
		cause := make(chan error, 1)
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) {
			close(started)
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return nil, ctx.Err()
		})
		a.startWorker(nil)
		res := a.enqueue(apiArgs{}, nil)
		waitClosed(t, started, "handler start")
		st, err := a.client.Cancel(a.ctx, res.ID)
		requireNoErr(t, "cancel", err)
		check(t, "state after cancel request", ebb.StateRunning, st)
		info, err := a.client.Wait(a.ctx, res.ID)
		checkErrIs(t, "wait", err, ebb.ErrTaskCancelled)
		checkErrIs(t, "handler context cause", <-cause, ebb.ErrTaskCancelled)
		check(t, "attempt", 1, info.Attempt)
	})

	t.Run("Delay", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		ran := make(chan time.Time, 1)
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) {
			ran <- time.Now()
			return nil, nil
		})
		// A long poll interval: the worker must wake for the due time it was
		// told by Fetch, not by polling.
		a.startWorker(&ebb.WorkerConfig{PollInterval: time.Hour})
		runAt := time.Now().Add(300 * time.Millisecond)
		res := a.enqueue(apiArgs{}, &ebb.EnqueueOpts{At: runAt})
		check(t, "first state", ebb.StateScheduled, res.State)
		select {
		case at := <-ran:
			if at.Before(runAt.Truncate(time.Millisecond)) {
				t.Errorf("task ran at %s, before its run-at %s", at.Format(time.StampMilli), runAt.Format(time.StampMilli))
			}
		case <-time.After(15 * time.Second):
			t.Fatal("delayed task did not run within 15s of its run-at")
		}
	})

	t.Run("DrainHandsBackUnfinished", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		started := make(chan struct{})
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		})
		stop := a.startWorker(&ebb.WorkerConfig{DrainTimeout: 50 * time.Millisecond})
		res := a.enqueue(apiArgs{}, nil)
		waitClosed(t, started, "handler start")
		requireNoErr(t, "Run after drain", stop())
		info, err := a.client.Task(a.ctx, res.ID)
		requireNoErr(t, "task", err)
		check(t, "state after hand-back", ebb.StateQueued, info.State)
		check(t, "attempt after hand-back (not counted)", 0, info.Attempt)
		check(t, "errors after hand-back", 0, len(info.Errors))
	})

	t.Run("DrainLetsInFlightFinish", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		started, release := make(chan struct{}), make(chan struct{})
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (string, error) {
			close(started)
			<-release
			return "finished", nil
		})
		stop := a.startWorker(&ebb.WorkerConfig{DrainTimeout: time.Minute})
		res := a.enqueue(apiArgs{}, nil)
		waitClosed(t, started, "handler start")
		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		select {
		case err := <-stopped:
			t.Fatalf("Run returned (%v) while a task was still running", err)
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		requireNoErr(t, "Run after drain", <-stopped)
		got, err := ebb.WaitResult[string](a.ctx, a.client, res.ID)
		requireNoErr(t, "wait", err)
		check(t, "result", "finished", got)
	})

	t.Run("DrainRequestThroughBroker", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) { return nil, nil })
		w, done, result, _ := a.runWorker(&ebb.WorkerConfig{ID: "drain-me"})
		poll(t, "worker registered", func() bool { return len(a.workers()) == 1 })
		requireNoErr(t, "request drain", a.driver.WorkerRequestDrain(a.ctx, w.ID(), time.Now()))
		select {
		case <-done:
			requireNoErr(t, "Run", result())
		case <-time.After(15 * time.Second):
			t.Fatal("worker did not drain within 15s of the request")
		}
		check(t, "workers after drain", 0, len(a.workers()))
	})

	t.Run("DrainRequestWaitsForRunningTasks", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		started, release := make(chan struct{}), make(chan struct{})
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (string, error) {
			close(started)
			select {
			case <-release:
				return "finished", nil
			case <-ctx.Done():
				return "", context.Cause(ctx)
			}
		})
		// A drain timeout far shorter than the task: a requested drain (the
		// autoscaler's scale-in) must ignore it and let the task finish.
		w, done, result, _ := a.runWorker(&ebb.WorkerConfig{DrainTimeout: 10 * time.Millisecond})
		res := a.enqueue(apiArgs{}, nil)
		waitClosed(t, started, "handler start")
		requireNoErr(t, "request drain", a.driver.WorkerRequestDrain(a.ctx, w.ID(), time.Now()))
		poll(t, "worker reported draining", func() bool {
			ws := a.workers()
			return len(ws) == 1 && ws[0].Draining
		})
		select {
		case <-done:
			t.Fatalf("worker exited (%v) while its task was still running", result())
		case <-time.After(100 * time.Millisecond):
		}
		close(release)
		requireNoErr(t, "Run", result())
		got, err := ebb.WaitResult[string](a.ctx, a.client, res.ID)
		requireNoErr(t, "wait", err)
		check(t, "result", "finished", got)
	})

	t.Run("IdleWorkerWakesOnEnqueue", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) { return task.Args.N * 2, nil })
		// With an hour-long backstop poll, only the enqueue notification can
		// wake the worker in time.
		a.startWorker(&ebb.WorkerConfig{PollInterval: time.Hour})
		poll(t, "worker registered", func() bool { return len(a.workers()) == 1 })
		for i := range 3 {
			res := a.enqueue(apiArgs{N: i}, nil)
			got, err := ebb.WaitResult[int](a.ctx, a.client, res.ID)
			requireNoErr(t, "wait", err)
			check(t, "result", i*2, got)
		}
	})

	t.Run("MaxAttemptsThenDead", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) {
			return nil, ebb.RetryAfter(time.Millisecond, fmt.Errorf("boom %d", task.Attempt))
		})
		a.startWorker(nil)
		res := a.enqueue(apiArgs{}, &ebb.EnqueueOpts{MaxAttempts: 3})
		info, err := a.client.Wait(a.ctx, res.ID)
		checkErrIs(t, "wait", err, ebb.ErrTaskDead)
		check(t, "attempts", 3, info.Attempt)
		var msgs []string
		for _, e := range info.Errors {
			msgs = append(msgs, e.Error)
		}
		checkSlice(t, "error history", []string{"boom 1", "boom 2", "boom 3"}, msgs)
		s := queueStats(t, a.stats(), ebb.QueueDefault)
		check(t, "dead count", int64(1), s.Dead)
		check(t, "failed total", int64(1), s.Failed)
		check(t, "retried total", int64(2), s.Retried)
	})

	t.Run("Middleware", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		var mu sync.Mutex
		var order []string
		mw := func(name string) ebb.Middleware {
			return func(next ebb.HandlerFunc) ebb.HandlerFunc {
				return func(ctx context.Context, task *ebb.TaskInfo) (any, error) {
					mu.Lock()
					order = append(order, name+":"+task.Headers["trace"])
					mu.Unlock()
					return next(ctx, task)
				}
			}
		}
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) { return nil, nil })
		a.startWorker(&ebb.WorkerConfig{Middleware: []ebb.Middleware{mw("outer"), mw("inner")}})
		res := a.enqueue(apiArgs{}, &ebb.EnqueueOpts{Headers: map[string]string{"trace": "t1"}})
		_, err := a.client.Wait(a.ctx, res.ID)
		requireNoErr(t, "wait", err)
		mu.Lock()
		defer mu.Unlock()
		checkSlice(t, "middleware order", []string{"outer:t1", "inner:t1"}, order)
	})

	t.Run("NoRetryGoesDead", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) {
			return nil, ebb.NoRetry(errors.New("bad input"))
		})
		a.startWorker(nil)
		res := a.enqueue(apiArgs{}, nil)
		info, err := a.client.Wait(a.ctx, res.ID)
		checkErrIs(t, "wait", err, ebb.ErrTaskDead)
		check(t, "attempts", 1, info.Attempt)
		check(t, "error", "bad input", info.Errors[0].Error)
	})

	t.Run("PanicRecordedWithStack", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) {
			panic("handler exploded")
		})
		a.startWorker(nil)
		res := a.enqueue(apiArgs{}, &ebb.EnqueueOpts{MaxAttempts: 1})
		info, err := a.client.Wait(a.ctx, res.ID)
		checkErrIs(t, "wait", err, ebb.ErrTaskDead)
		e := info.Errors[0]
		if !strings.Contains(e.Error, "handler exploded") || !strings.Contains(e.Stack, "ebbdrivertest") {
			t.Errorf("panic entry = %q with stack %q; want the panic value and a stack through the handler", e.Error, e.Stack)
		}
	})

	t.Run("PriorityWithinQueue", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		order := recordRuns(a, func(task *ebb.Task[apiArgs]) int { return task.Args.N })
		var last string
		for i, p := range []ebb.Priority{ebb.PriorityLow, ebb.PriorityNormal, ebb.PriorityHigh, ebb.PriorityLow, ebb.PriorityHigh} {
			last = a.enqueue(apiArgs{N: i}, &ebb.EnqueueOpts{Priority: p}).ID
		}
		a.startWorker(&ebb.WorkerConfig{Concurrency: 1})
		_, err := a.client.Wait(a.ctx, last)
		requireNoErr(t, "wait", err)
		poll(t, "all five ran", func() bool { return len(order.get()) == 5 })
		checkSlice(t, "run order", []int{2, 4, 1, 0, 3}, order.get())
	})

	t.Run("RetryThenSucceed", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		var policyCalls atomic.Int64
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (int, error) {
			if task.Attempt < 3 {
				return 0, fmt.Errorf("transient %d", task.Attempt)
			}
			return task.Attempt, nil
		}, ebb.HandlerOpts{RetryPolicy: ebb.RetryPolicyFunc(func(*ebb.TaskInfo, error) time.Duration {
			policyCalls.Add(1)
			return 10 * time.Millisecond
		})})
		a.startWorker(nil)
		res := a.enqueue(apiArgs{}, nil)
		got, err := ebb.WaitResult[int](a.ctx, a.client, res.ID)
		requireNoErr(t, "wait", err)
		check(t, "succeeded on attempt", 3, got)
		check(t, "kind retry policy calls", int64(2), policyCalls.Load())
		info, _ := a.client.Task(a.ctx, res.ID)
		check(t, "error history length", 2, len(info.Errors))
		check(t, "state", ebb.StateSucceeded, info.State)
	})

	t.Run("StrictQueueOrder", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		order := recordRuns(a, func(task *ebb.Task[apiArgs]) string { return task.Queue })
		for _, q := range []string{"low", "high", "low", "high"} {
			a.enqueue(apiArgs{}, &ebb.EnqueueOpts{Queue: q})
		}
		a.startWorker(&ebb.WorkerConfig{Concurrency: 1, Queues: []ebb.QueueConfig{{Name: "high"}, {Name: "low"}}})
		poll(t, "all four ran", func() bool { return len(order.get()) == 4 })
		checkSlice(t, "queue order", []string{"high", "high", "low", "low"}, order.get())
	})

	t.Run("Timeout", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		a.startWorker(nil)
		res := a.enqueue(apiArgs{}, &ebb.EnqueueOpts{Timeout: 20 * time.Millisecond, MaxAttempts: 1})
		info, err := a.client.Wait(a.ctx, res.ID)
		checkErrIs(t, "wait", err, ebb.ErrTaskDead)
		if msg := info.Errors[0].Error; !strings.Contains(msg, "timed out after 20ms") {
			t.Errorf("timeout error = %q, want it to say it timed out after 20ms", msg)
		}
	})

	t.Run("UndecodableArgsGoDead", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) { return nil, nil })
		a.startWorker(nil)
		res, err := a.client.EnqueueRaw(a.ctx, apiArgs{}.Kind(), json.RawMessage(`{"n":"not a number"}`), nil)
		requireNoErr(t, "enqueue", err)
		info, err := a.client.Wait(a.ctx, res.ID)
		checkErrIs(t, "wait", err, ebb.ErrTaskDead)
		check(t, "attempts", 1, info.Attempt)
		if msg := info.Errors[0].Error; !strings.Contains(msg, "cannot decode args") {
			t.Errorf("error = %q, want it to say the args cannot be decoded", msg)
		}
	})

	t.Run("UniqueThroughClient", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		opts := &ebb.EnqueueOpts{Unique: &ebb.UniqueOpts{Key: "report:42"}}
		first := a.enqueue(apiArgs{}, opts)
		second := a.enqueue(apiArgs{N: 1}, opts)
		check(t, "second is duplicate", true, second.Duplicate)
		check(t, "duplicate names the holder", first.ID, second.ID)
		explicit := a.enqueue(apiArgs{}, &ebb.EnqueueOpts{ID: "fixed-id"})
		again := a.enqueue(apiArgs{}, &ebb.EnqueueOpts{ID: "fixed-id"})
		check(t, "same id twice is duplicate", true, again.Duplicate)
		check(t, "explicit id kept", "fixed-id", explicit.ID)
	})

	t.Run("UnknownKindGoesDead", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) { return nil, nil })
		a.startWorker(nil)
		res, err := a.client.EnqueueRaw(a.ctx, "no.such.kind", nil, nil)
		requireNoErr(t, "enqueue", err)
		info, err := a.client.Wait(a.ctx, res.ID)
		checkErrIs(t, "wait", err, ebb.ErrTaskDead)
		if msg := info.Errors[0].Error; !strings.Contains(msg, `unknown task kind "no.such.kind"`) {
			t.Errorf("error = %q, want it to name the unknown kind", msg)
		}
	})

	t.Run("WorkerRegistry", func(t *testing.T) {
		a := apiSetup(t, newDriver)
		ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) { return nil, nil })
		stop := a.startWorker(&ebb.WorkerConfig{ID: "reg-1", Concurrency: 7, Pool: "p",
			Queues: []ebb.QueueConfig{{Name: "a"}, {Name: "b"}}})
		poll(t, "worker registered", func() bool { return len(a.workers()) == 1 })
		w := a.workers()[0]
		check(t, "id", "reg-1", w.ID)
		check(t, "concurrency", 7, w.Concurrency)
		check(t, "pool", "p", w.Pool)
		checkSlice(t, "queues", []string{"a", "b"}, w.Queues)
		requireNoErr(t, "stop", stop())
		check(t, "workers after stop", 0, len(a.workers()))
	})
}

type apiArgs struct {
	N int `json:"n"`
}

func (apiArgs) Kind() string { return "api.test" }

type apiBundle struct {
	t        *testing.T
	ctx      context.Context
	driver   ebbdriver.Driver
	client   *ebb.Client
	handlers *ebb.Handlers
}

func apiSetup(t *testing.T, newDriver Factory) *apiBundle {
	t.Helper()
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	drv := newDriver(t)
	client, err := ebb.NewClient(drv, nil)
	requireNoErr(t, "NewClient", err)
	return &apiBundle{t: t, ctx: ctx, driver: drv, client: client, handlers: ebb.NewHandlers()}
}

// runLog records, in run order, a key of each task a handler ran.
type runLog[T any] struct {
	mu    sync.Mutex
	order []T
}

// get is a copy of the keys recorded so far.
func (l *runLog[T]) get() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.order)
}

// recordRuns registers the handler for apiArgs: it succeeds with no result
// and records key(task) for each task it runs.
func recordRuns[T any](a *apiBundle, key func(*ebb.Task[apiArgs]) T) *runLog[T] {
	l := &runLog[T]{}
	ebb.Handle(a.handlers, func(ctx context.Context, task *ebb.Task[apiArgs]) (any, error) {
		l.mu.Lock()
		l.order = append(l.order, key(task))
		l.mu.Unlock()
		return nil, nil
	})
	return l
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// runWorker starts a worker; done is closed when Run returns, and result
// then holds Run's error. The worker is stopped when the test ends.
func (a *apiBundle) runWorker(config *ebb.WorkerConfig) (w *ebb.Worker, done <-chan struct{}, result func() error, shutdown context.CancelFunc) {
	a.t.Helper()
	c := ebb.WorkerConfig{}
	if config != nil {
		c = *config
	}
	c.Handlers = a.handlers
	if c.Logger == nil {
		c.Logger = quietLogger
	}
	w, err := ebb.NewWorker(a.driver, &c)
	requireNoErr(a.t, "NewWorker", err)
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	var runErr error
	go func() {
		runErr = w.Run(ctx)
		close(finished)
	}()
	a.t.Cleanup(func() {
		cancel()
		<-finished
	})
	return w, finished, func() error { <-finished; return runErr }, cancel
}

// startWorker starts a worker and returns a function that shuts it down as
// SIGTERM would (cancelling Run's context: drain with DrainTimeout) and
// returns Run's result.
func (a *apiBundle) startWorker(config *ebb.WorkerConfig) (stop func() error) {
	a.t.Helper()
	_, done, result, shutdown := a.runWorker(config)
	return func() error {
		shutdown()
		select {
		case <-done:
			return result()
		case <-time.After(30 * time.Second):
			return errors.New("worker did not stop within 30s of Drain")
		}
	}
}

func (a *apiBundle) enqueue(args ebb.Args, opts *ebb.EnqueueOpts) *ebb.EnqueueResult {
	a.t.Helper()
	res, err := a.client.Enqueue(a.ctx, args, opts)
	requireNoErr(a.t, "enqueue", err)
	return res
}

func (a *apiBundle) stats() []ebbtype.QueueStats {
	a.t.Helper()
	s, err := a.driver.QueueStats(a.ctx, time.Now())
	requireNoErr(a.t, "QueueStats", err)
	return s
}

func (a *apiBundle) workers() []ebbtype.WorkerInfo {
	a.t.Helper()
	ws, err := a.driver.WorkerList(a.ctx, time.Now())
	requireNoErr(a.t, "WorkerList", err)
	return ws
}

func requireNoErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not happen within 15s", what)
	}
}
