package ebb_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
)

type jobArgs struct {
	N int `json:"n"`
}

func (jobArgs) Kind() string { return "test.job" }

// probeArgs are run to know the worker has fetched at least once since a
// point in time: if a task had been due then, that fetch would have taken it.
type probeArgs struct{}

func (probeArgs) Kind() string { return "test.probe" }

// probe enqueues a probe task and waits for it, so every fetch before it has
// seen the state of the broker at the time of the call. Its handler must be
// registered (handleProbe).
func (r *rig) probe() {
	r.t.Helper()
	id := r.enqueue(probeArgs{}, &ebb.EnqueueOpts{Priority: ebb.PriorityLow})
	r.waitState(id, ebb.StateSucceeded)
}

func handleProbe(h *ebb.Handlers) {
	ebb.Handle(h, func(context.Context, *ebb.Task[probeArgs]) (any, error) { return nil, nil })
}

// policyRecorder is a retry policy that answers attempt × unit and keeps
// the attempts it was asked about.
type policyRecorder struct {
	unit time.Duration
	mu   sync.Mutex
	asks []string
}

func (p *policyRecorder) NextRetry(task *ebb.TaskInfo, err error) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asks = append(p.asks, fmt.Sprintf("%d:%v", task.Attempt, err))
	return time.Duration(task.Attempt) * p.unit
}

func (p *policyRecorder) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.asks...)
}

func checkAttemptError(t *testing.T, got ebb.AttemptError, attempt int, at time.Time, msg, workerID string) {
	t.Helper()
	if got.Attempt != attempt || !got.At.Equal(at) || got.Error != msg || got.WorkerID != workerID {
		t.Errorf("attempt error = {attempt %d, at %s, %q, worker %q}, want {attempt %d, at %s, %q, worker %q}",
			got.Attempt, got.At, got.Error, got.WorkerID, attempt, at, msg, workerID)
	}
}

func TestWorkerStoresResult(t *testing.T) {
	t.Parallel()
	r := newRig(t, withStubClock())
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (map[string]int, error) {
		return map[string]int{"double": 2 * task.Args.N}, nil
	})
	w := r.start(nil)
	id := r.enqueue(jobArgs{N: 21}, nil)

	got, err := ebb.WaitResult[map[string]int](r.ctx, r.client, id)
	if err != nil || got["double"] != 42 {
		t.Fatalf("WaitResult = %v, %v; want double 42", got, err)
	}
	info := r.task(id)
	if info.State != ebb.StateSucceeded || info.Attempt != 1 || len(info.Errors) != 0 || string(info.Result) != `{"double":42}` {
		t.Errorf("task = %s after %d attempt(s), errors %v, result %s; want succeeded after 1 with {\"double\":42}",
			info.State, info.Attempt, info.Errors, info.Result)
	}
	// Every time the worker stored is the worker's clock's.
	if !info.StartedAt.Equal(stubEpoch) || !info.FinishedAt.Equal(stubEpoch) {
		t.Errorf("started %s, finished %s; want both at the stub clock's %s", info.StartedAt, info.FinishedAt, stubEpoch)
	}
	if info.WorkerID != w.w.ID() {
		t.Errorf("worker id %q, want %q", info.WorkerID, w.w.ID())
	}
	ws, err := r.client.WorkerList(r.ctx)
	if err != nil || len(ws) != 1 {
		t.Fatalf("WorkerList = %v, %v; want the one worker", ws, err)
	}
	if !ws[0].StartedAt.Equal(stubEpoch) || !ws[0].HeartbeatAt.Equal(stubEpoch) {
		t.Errorf("registry entry started %s, heartbeat %s; want the stub clock's %s", ws[0].StartedAt, ws[0].HeartbeatAt, stubEpoch)
	}
}

func TestWorkerResultThatIsNotJSONGoesDead(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
		return make(chan int), nil
	})
	r.start(nil)
	id := r.enqueue(jobArgs{}, &ebb.EnqueueOpts{MaxAttempts: 5})
	info := r.waitState(id, ebb.StateDead)
	// Another attempt would produce another unencodable result.
	if info.Attempt != 1 || len(info.Errors) != 1 || !strings.Contains(info.Errors[0].Error, "result of type chan int cannot be stored as JSON") {
		t.Errorf("dead after %d attempt(s) with %v; want 1 attempt, a JSON encoding error", info.Attempt, info.Errors)
	}
}

func TestWorkerRetriesWithBackoffThenDead(t *testing.T) {
	t.Parallel()
	r := newRig(t, withStubClock())
	policy := &policyRecorder{unit: time.Hour}
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
		return nil, fmt.Errorf("boom %d", task.Attempt)
	})
	handleProbe(r.handlers)
	// A short backstop poll stands in for the wake-up that a due time on the
	// wall clock would give: the stub clock moves without the worker knowing.
	w := r.start(&ebb.WorkerConfig{RetryPolicy: policy, PollInterval: 5 * time.Millisecond})
	wid := w.w.ID()
	id := r.enqueue(jobArgs{}, &ebb.EnqueueOpts{MaxAttempts: 3})

	t1 := r.clock.Now()
	info := r.waitAttempt(id, 1, ebb.StateRetrying)
	if !info.RunAt.Equal(t1.Add(time.Hour)) {
		t.Errorf("after attempt 1: runs at %s, want the policy's 1h later, %s", info.RunAt, t1.Add(time.Hour))
	}
	checkAttemptError(t, info.Errors[0], 1, t1, "boom 1", wid)

	// Not due a minute early.
	r.clock.Advance(59 * time.Minute)
	r.probe()
	if info = r.task(id); info.Attempt != 1 || info.State != ebb.StateRetrying {
		t.Fatalf("a minute before its retry: %s at attempt %d, want still retrying at 1", info.State, info.Attempt)
	}

	t2 := r.clock.Advance(time.Minute)
	info = r.waitAttempt(id, 2, ebb.StateRetrying)
	if !info.RunAt.Equal(t2.Add(2 * time.Hour)) {
		t.Errorf("after attempt 2: runs at %s, want the policy's 2h later, %s", info.RunAt, t2.Add(2*time.Hour))
	}

	t3 := r.clock.Advance(2 * time.Hour)
	info = r.waitAttempt(id, 3, ebb.StateDead)
	if len(info.Errors) != 3 {
		t.Fatalf("dead with %d errors, want the history of 3 attempts: %+v", len(info.Errors), info.Errors)
	}
	for i, at := range []time.Time{t1, t2, t3} {
		checkAttemptError(t, info.Errors[i], i+1, at, fmt.Sprintf("boom %d", i+1), wid)
	}
	if !info.FinishedAt.Equal(t3) {
		t.Errorf("finished at %s, want %s", info.FinishedAt, t3)
	}
	// The last attempt is not retried, so the policy is not asked about it.
	if got := policy.asked(); strings.Join(got, ",") != "1:boom 1,2:boom 2" {
		t.Errorf("policy asked about %v, want attempts 1 and 2 with their errors", got)
	}
	_, err := r.client.Wait(r.ctx, id)
	if !errors.Is(err, ebb.ErrTaskDead) || !strings.Contains(err.Error(), "boom 3") {
		t.Errorf("Wait = %v, want ErrTaskDead naming the last error", err)
	}
}

func TestHandlerRetryPolicyOverridesWorkers(t *testing.T) {
	t.Parallel()
	r := newRig(t, withStubClock())
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
		return nil, errors.New("flaky")
	}, ebb.HandlerOpts{RetryPolicy: ebb.RetryPolicyFunc(func(*ebb.TaskInfo, error) time.Duration { return 7 * time.Minute })})
	r.start(&ebb.WorkerConfig{RetryPolicy: &policyRecorder{unit: time.Hour}})
	id := r.enqueue(jobArgs{}, nil)
	info := r.waitAttempt(id, 1, ebb.StateRetrying)
	if want := stubEpoch.Add(7 * time.Minute); !info.RunAt.Equal(want) {
		t.Errorf("retry at %s, want the handler's policy's %s", info.RunAt, want)
	}
}

func TestNoRetryGoesStraightToDead(t *testing.T) {
	t.Parallel()
	r := newRig(t, withStubClock())
	policy := &policyRecorder{unit: time.Millisecond}
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
		return nil, ebb.NoRetry(errors.New("bad input"))
	})
	w := r.start(&ebb.WorkerConfig{RetryPolicy: policy})
	id := r.enqueue(jobArgs{}, &ebb.EnqueueOpts{MaxAttempts: 5})
	info := r.waitState(id, ebb.StateDead)
	if info.Attempt != 1 || len(info.Errors) != 1 {
		t.Fatalf("dead after %d attempt(s) with %d error(s), want 1 and 1", info.Attempt, len(info.Errors))
	}
	checkAttemptError(t, info.Errors[0], 1, stubEpoch, "bad input", w.w.ID())
	if got := policy.asked(); len(got) != 0 {
		t.Errorf("policy asked about %v for a NoRetry error", got)
	}
}

func TestRetryAfterOverridesThePolicy(t *testing.T) {
	t.Parallel()
	r := newRig(t, withStubClock())
	policy := &policyRecorder{unit: time.Hour}
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (string, error) {
		if task.Attempt == 1 {
			return "", ebb.RetryAfter(90*time.Second, errors.New("rate limited"))
		}
		return "ok", nil
	})
	handleProbe(r.handlers)
	r.start(&ebb.WorkerConfig{RetryPolicy: policy, PollInterval: 5 * time.Millisecond})
	id := r.enqueue(jobArgs{}, nil)

	info := r.waitAttempt(id, 1, ebb.StateRetrying)
	if want := stubEpoch.Add(90 * time.Second); !info.RunAt.Equal(want) {
		t.Errorf("retry at %s, want RetryAfter's %s", info.RunAt, want)
	}
	r.clock.Advance(89 * time.Second)
	r.probe()
	if info = r.task(id); info.Attempt != 1 {
		t.Fatalf("a second before RetryAfter: at attempt %d (%s), want still 1", info.Attempt, info.State)
	}
	r.clock.Advance(time.Second)
	info = r.waitAttempt(id, 2, ebb.StateSucceeded)
	if len(info.Errors) != 1 || info.Errors[0].Error != "rate limited" {
		t.Errorf("errors %+v, want the one of attempt 1", info.Errors)
	}
	if got := policy.asked(); len(got) != 0 {
		t.Errorf("policy asked about %v although the handler said when to retry", got)
	}
}

// panicky is a named function so the recorded stack can be checked for it.
func panicky() { panic("kaboom") }

func TestPanicIsRecordedWithStackAndRetried(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (string, error) {
		if task.Attempt == 1 {
			panicky()
		}
		return "recovered", nil
	})
	r.start(&ebb.WorkerConfig{RetryPolicy: ebb.RetryPolicyFunc(func(*ebb.TaskInfo, error) time.Duration { return 0 })})
	id := r.enqueue(jobArgs{}, nil)
	info := r.waitAttempt(id, 2, ebb.StateSucceeded)
	if len(info.Errors) != 1 {
		t.Fatalf("errors %+v, want the panic of attempt 1", info.Errors)
	}
	e := info.Errors[0]
	if e.Attempt != 1 || e.Error != "panic: kaboom" {
		t.Errorf("error {attempt %d, %q}, want {1, \"panic: kaboom\"}", e.Attempt, e.Error)
	}
	if !strings.Contains(e.Stack, "ebb_test.panicky") || !strings.Contains(e.Stack, "worker_test.go") {
		t.Errorf("stack does not show where the handler panicked:\n%s", e.Stack)
	}
}

func TestTimeoutCancelsHandlerWithCause(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		handlerOpts ebb.HandlerOpts
		taskTimeout time.Duration
		want        string
	}{
		{name: "TaskTimeout", taskTimeout: 40 * time.Millisecond, want: "task timed out after 40ms"},
		{name: "HandlerTimeoutOverrides", handlerOpts: ebb.HandlerOpts{Timeout: 30 * time.Millisecond}, taskTimeout: time.Hour,
			want: "task timed out after 30ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			causes := make(chan error, 1)
			ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return nil, ctx.Err()
			}, tc.handlerOpts)
			r.start(nil)
			id := r.enqueue(jobArgs{}, &ebb.EnqueueOpts{MaxAttempts: 1, Timeout: tc.taskTimeout})
			info := r.waitState(id, ebb.StateDead)
			if cause := <-causes; cause == nil || cause.Error() != tc.want {
				t.Errorf("handler context cause %v, want %q", cause, tc.want)
			}
			if len(info.Errors) != 1 || info.Errors[0].Error != tc.want+": context deadline exceeded" {
				t.Errorf("errors %+v, want %q with the handler's error", info.Errors, tc.want+": context deadline exceeded")
			}
		})
	}
}

func TestUnknownKindGoesDead(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) { return nil, nil })
	r.start(nil)
	res, err := r.client.EnqueueRaw(r.ctx, "nobody.handles.this", nil, &ebb.EnqueueOpts{MaxAttempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	info := r.waitState(res.ID, ebb.StateDead)
	if info.Attempt != 1 || len(info.Errors) != 1 {
		t.Fatalf("dead after %d attempt(s) with %d error(s), want 1 and 1", info.Attempt, len(info.Errors))
	}
	msg := info.Errors[0].Error
	for _, want := range []string{`unknown task kind "nobody.handles.this"`, "it handles test.job", "ebb dead retry --queue default"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
}

func (r *rig) enqueueRaw(kind string, opts *ebb.EnqueueOpts) string {
	r.t.Helper()
	res, err := r.client.EnqueueRaw(r.ctx, kind, nil, opts)
	if err != nil {
		r.t.Fatalf("enqueue %s: %v", kind, err)
	}
	return res.ID
}

// waitDraining waits until the worker has told the registry it drains.
func (r *rig) waitDraining(id string) {
	r.t.Helper()
	testwait.Eventually(r.t, waitTimeout, "worker "+id+" draining", func() (bool, error) {
		ws, err := r.client.WorkerList(r.ctx)
		for _, w := range ws {
			if w.ID == id {
				return w.Draining, err
			}
		}
		return false, err
	})
}

func TestDrainHandsBackUnfinishedWithoutCountingTheAttempt(t *testing.T) {
	t.Parallel()
	r := newRig(t, withStubClock())
	quickStarted, stuckStarted := newSignal(), newSignal()
	release := make(chan struct{})
	stuckCause := make(chan error, 1)
	ebb.HandleRaw(r.handlers, "quick", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) {
		quickStarted.fire()
		<-release
		return "done", ctx.Err()
	})
	ebb.HandleRaw(r.handlers, "stuck", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) {
		stuckStarted.fire()
		<-ctx.Done()
		stuckCause <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	ebb.HandleRaw(r.handlers, "later", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) {
		t.Error("a task beyond the worker's concurrency ran")
		return nil, nil
	})
	// Stored before the worker starts, so its first fetch takes the two
	// high-priority tasks and its two slots leave the third alone.
	quick := r.enqueueRaw("quick", &ebb.EnqueueOpts{Priority: ebb.PriorityHigh})
	stuck := r.enqueueRaw("stuck", &ebb.EnqueueOpts{Priority: ebb.PriorityHigh})
	later := r.enqueueRaw("later", &ebb.EnqueueOpts{Priority: ebb.PriorityLow})

	// The drain timeout only has to outlast the test noticing the drain.
	w := r.start(&ebb.WorkerConfig{Concurrency: 2, DrainTimeout: time.Second})
	quickStarted.wait(t, "quick handler start")
	stuckStarted.wait(t, "stuck handler start")
	w.cancel()
	r.waitDraining(w.w.ID())
	close(release) // within the drain timeout
	if err := w.wait(t); err != nil {
		t.Fatalf("Run after drain: %v", err)
	}

	if info := r.task(quick); info.State != ebb.StateSucceeded || info.Attempt != 1 {
		t.Errorf("task finished during the drain: %s at attempt %d, want succeeded at 1", info.State, info.Attempt)
	}
	if cause := <-stuckCause; cause == nil || !strings.Contains(cause.Error(), "handed back") {
		t.Errorf("unfinished handler's context cause %v, want the hand-back", cause)
	}
	for _, id := range []string{stuck, later} {
		info := r.task(id)
		if info.State != ebb.StateQueued || info.Attempt != 0 || len(info.Errors) != 0 {
			t.Errorf("task %s after drain: %s at attempt %d with errors %v; want queued, attempt 0, no errors",
				info.Kind, info.State, info.Attempt, info.Errors)
		}
	}

	// The next worker's attempt is the task's first.
	next := ebb.NewHandlers()
	for _, kind := range []string{"stuck", "later"} {
		ebb.HandleRaw(next, kind, func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) { return task.Attempt, nil })
	}
	r.start(&ebb.WorkerConfig{Handlers: next})
	for _, id := range []string{stuck, later} {
		if info := r.waitState(id, ebb.StateSucceeded); info.Attempt != 1 || string(info.Result) != "1" {
			t.Errorf("task %s on the next worker: attempt %d (result %s), want 1", info.Kind, info.Attempt, info.Result)
		}
	}
}

func TestDrainHandsBackTaskWhoseHandlerIgnoresItsContext(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	started := newSignal()
	release := make(chan struct{})
	returned := make(chan struct{})
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (string, error) {
		defer close(returned)
		started.fire()
		<-release
		return "too late", nil
	})
	w := r.start(&ebb.WorkerConfig{DrainTimeout: 20 * time.Millisecond})
	id := r.enqueue(jobArgs{}, nil)
	started.wait(t, "handler start")
	if err := w.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	info := r.task(id)
	if info.State != ebb.StateQueued || info.Attempt != 0 {
		t.Errorf("after drain: %s at attempt %d, want handed back (queued, attempt 0)", info.State, info.Attempt)
	}
	// The handler's late result must not overwrite the hand-back.
	close(release)
	<-returned
	if info = r.task(id); info.State != ebb.StateQueued || len(info.Result) != 0 {
		t.Errorf("after the late return: %s with result %s, want still queued without one", info.State, info.Result)
	}
}

func TestCancelRunningTaskCancelsHandler(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	started := newSignal()
	causes := make(chan error, 1)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
		started.fire()
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	r.start(nil)
	id := r.enqueue(jobArgs{}, nil)
	started.wait(t, "handler start")
	st, err := r.client.Cancel(r.ctx, id)
	if err != nil || st != ebb.StateRunning {
		t.Fatalf("Cancel = %s, %v; want running (cancellation requested)", st, err)
	}
	info, err := r.client.Wait(r.ctx, id)
	if !errors.Is(err, ebb.ErrTaskCancelled) {
		t.Fatalf("Wait = %v, want ErrTaskCancelled", err)
	}
	if cause := <-causes; !errors.Is(cause, ebb.ErrTaskCancelled) {
		t.Errorf("handler context cause %v, want ErrTaskCancelled", cause)
	}
	if info.Attempt != 1 || len(info.Errors) != 1 || info.Errors[0].Error != "task cancelled: context canceled" {
		t.Errorf("cancelled at attempt %d with %+v; want 1, with the cause and the handler's error", info.Attempt, info.Errors)
	}
}

type traceKey struct{}

func TestHandlerContextKeepsRunContextValues(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	started := newSignal()
	release := make(chan struct{})
	seen := make(chan any, 2)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
		seen <- ctx.Value(traceKey{})
		started.fire()
		<-release
		// Still running after Run's context was cancelled: the drain lets it
		// finish, so its own context must not be done.
		return nil, ctx.Err()
	})
	mw := func(next ebb.HandlerFunc) ebb.HandlerFunc {
		return func(ctx context.Context, task *ebb.TaskInfo) (any, error) {
			seen <- ctx.Value(traceKey{})
			return next(ctx, task)
		}
	}
	runCtx := context.WithValue(context.Background(), traceKey{}, "trace-42")
	w := r.startCtx(runCtx, &ebb.WorkerConfig{Middleware: []ebb.Middleware{mw}, DrainTimeout: time.Minute})
	id := r.enqueue(jobArgs{}, nil)
	started.wait(t, "handler start")
	for _, who := range []string{"middleware", "handler"} {
		if v := <-seen; v != "trace-42" {
			t.Errorf("%s saw %v in its context, want Run's context's value trace-42", who, v)
		}
	}
	w.cancel()
	r.waitDraining(w.w.ID())
	close(release)
	if err := w.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if info := r.task(id); info.State != ebb.StateSucceeded {
		t.Errorf("task %s with errors %+v, want succeeded: a drain must not cancel a handler within DrainTimeout", info.State, info.Errors)
	}
}

func TestWorkerMaintenanceRunsOnTheWorkersClock(t *testing.T) {
	t.Parallel()
	r := newRig(t, withStubClock())
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (string, error) { return "rescued", nil })
	id := r.enqueue(jobArgs{}, nil)
	// A worker that claimed the task and died: nobody renews its lease.
	res, err := r.drv.Fetch(r.ctx, ebbdriver.FetchParams{Queues: []string{ebb.QueueDefault}, Limit: 1, WorkerID: "dead-worker",
		LeaseToken: "dead-worker:1", LeaseDuration: time.Minute, Now: r.clock.Now()})
	if err != nil || len(res.Tasks) != 1 {
		t.Fatalf("Fetch = %v, %v", res, err)
	}
	// Rescue runs every half lease: every 500 ms here.
	r.start(&ebb.WorkerConfig{LeaseDuration: time.Second, HeartbeatInterval: 300 * time.Millisecond})
	rescueAt := r.clock.Advance(2 * time.Minute)
	info := r.waitState(id, ebb.StateSucceeded)
	if info.Attempt != 2 || len(info.Errors) != 1 || info.Errors[0].Error != "lease expired" || !info.Errors[0].At.Equal(rescueAt) {
		t.Errorf("attempt %d, errors %+v; want attempt 2 after a rescue recorded at %s", info.Attempt, info.Errors, rescueAt)
	}
}

func TestMiddlewareOrderAndTiming(t *testing.T) {
	t.Parallel()
	r := newRig(t, withStubClock())
	var mu sync.Mutex
	var trail []string
	note := func(s string) {
		mu.Lock()
		trail = append(trail, s)
		mu.Unlock()
	}
	named := func(name string) ebb.Middleware {
		return func(next ebb.HandlerFunc) ebb.HandlerFunc {
			return func(ctx context.Context, task *ebb.TaskInfo) (any, error) {
				note(name + ">")
				defer note("<" + name)
				return next(ctx, task)
			}
		}
	}
	took := make(chan time.Duration, 1)
	observe := ebb.ObserveMiddleware(func(ctx context.Context, task *ebb.TaskInfo, d time.Duration, err error) { took <- d })
	logs := newLogRecorder()
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
		note("handler")
		r.clock.Advance(3 * time.Second) // the attempt "takes" 3 s on the worker's clock
		return nil, nil
	})
	r.start(&ebb.WorkerConfig{Middleware: []ebb.Middleware{named("outer"), ebb.LoggingMiddleware(logs.logger()), observe, named("inner")}})
	id := r.enqueue(jobArgs{}, nil)
	r.waitState(id, ebb.StateSucceeded)

	mu.Lock()
	got := strings.Join(trail, " ")
	mu.Unlock()
	if got != "outer> inner> handler <inner <outer" {
		t.Errorf("middleware ran as %q, want the first outermost", got)
	}
	if d := <-took; d != 3*time.Second {
		t.Errorf("ObserveMiddleware measured %s, want the worker clock's 3s", d)
	}
	logs.wait(t, "INFO task done", "kind=test.job", "id="+id, "attempt=1", "took=3s")
}

// TestOutcomeRejectionSaysWhatHappened: a completion the broker refuses
// because the task is gone (deleted, or a broker that lost its data) must
// not be reported as a lost lease, which is routine and points elsewhere.
func TestOutcomeRejectionSaysWhatHappened(t *testing.T) {
	t.Parallel()
	const (
		vanished = "task outcome not stored: the task no longer exists in the broker"
		leaseMsg = "lease lost"
	)
	for _, tc := range []struct {
		name      string
		redis     bool
		interfere func(t *testing.T, r *rig, id, prefix string)
		want      string
		notWant   string
	}{
		{name: "SQLiteRowDeleted", want: vanished, notWant: leaseMsg, interfere: func(t *testing.T, r *rig, id, _ string) {
			db, err := sql.Open("sqlite", r.path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.ExecContext(r.ctx, `DELETE FROM tasks WHERE id = ?`, id); err != nil {
				t.Fatalf("delete the task's row: %v", err)
			}
		}},
		{name: "RedisLostItsData", redis: true, want: vanished, notWant: leaseMsg, interfere: func(t *testing.T, r *rig, _, prefix string) {
			// What a Redis restarted without persistence looks like: every key
			// of the deployment is gone.
			c := testredis.Client(t)
			keys, err := c.Keys(r.ctx, prefix+":*").Result()
			if err != nil || len(keys) == 0 {
				t.Fatalf("keys of %s: %v, %v", prefix, keys, err)
			}
			if err := c.Del(r.ctx, keys...).Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "SQLiteRescuedElsewhere", want: leaseMsg, notWant: "no longer exists", interfere: rescueElsewhere},
		{name: "RedisRescuedElsewhere", redis: true, want: leaseMsg, notWant: "no longer exists", interfere: rescueElsewhere},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var opts []rigOpt
			prefix := ""
			queue := ebb.QueueDefault
			if tc.redis {
				prefix = testredis.Prefix(t)
				drv, err := ebbredis.Open(t.Context(), testredis.URL(), &ebbredis.Config{Prefix: prefix})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = drv.Close() })
				opts = append(opts, withDriver(drv))
				queue = "outcome-" + tc.name
			}
			r := newRig(t, append(opts, withStubClock())...)
			started := newSignal()
			release := make(chan struct{})
			ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (string, error) {
				started.fire()
				<-release
				return "late", nil
			})
			logs := newLogRecorder()
			// One slot, held by the handler, so this worker cannot claim the
			// task again itself; no lease renewal or rescue within the test,
			// so the completion is the first the worker hears of it.
			r.start(&ebb.WorkerConfig{Queues: []ebb.QueueConfig{{Name: queue}}, Concurrency: 1, Logger: logs.logger(),
				LeaseDuration: time.Hour, HeartbeatInterval: 30 * time.Minute, DisableMaintenance: true})
			id := r.enqueue(jobArgs{}, &ebb.EnqueueOpts{Queue: queue})
			started.wait(t, "handler start")
			tc.interfere(t, r, id, prefix)
			close(release)
			line := logs.wait(t, tc.want, "id="+id)
			if strings.Contains(line, tc.notWant) {
				t.Errorf("worker said %q, which claims %q", line, tc.notWant)
			}
			for _, l := range logs.matching(tc.notWant) {
				t.Errorf("worker also said %q", l)
			}
			if strings.Contains(logs.String(), "another worker owns it") {
				t.Errorf("worker blamed another worker:\n%s", logs)
			}
		})
	}
}

// rescueElsewhere expires the task's lease, rescues it and has another
// worker claim it, as maintenance and a second worker would.
func rescueElsewhere(t *testing.T, r *rig, id, _ string) {
	t.Helper()
	info := r.task(id)
	now := r.clock.Advance(2 * time.Hour)
	res, err := r.drv.RescueExpired(r.ctx, info.Queue, now, 10)
	if err != nil || len(res.Requeued) != 1 {
		t.Fatalf("RescueExpired = %+v, %v; want the task requeued", res, err)
	}
	got, err := r.drv.Fetch(r.ctx, ebbdriver.FetchParams{Queues: []string{info.Queue}, Limit: 1, WorkerID: "other-worker",
		LeaseToken: "other-worker:1", LeaseDuration: time.Hour, Now: now})
	if err != nil || len(got.Tasks) != 1 || got.Tasks[0].ID != id {
		t.Fatalf("other worker's Fetch = %+v, %v; want the task", got, err)
	}
}

func TestExponentialBackoff(t *testing.T) {
	t.Parallel()
	b := ebb.ExponentialBackoff{Base: time.Second, Max: 5 * time.Second}
	for attempt, want := range map[int]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 5 * time.Second, 30: 5 * time.Second} {
		if got := b.NextRetry(&ebb.TaskInfo{Attempt: attempt}, nil); got != want {
			t.Errorf("attempt %d: %s, want %s", attempt, got, want)
		}
	}
	j := ebb.ExponentialBackoff{Base: 10 * time.Second, Jitter: 0.2}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := j.NextRetry(&ebb.TaskInfo{Attempt: 1}, nil)
		if d < 8*time.Second || d > 12*time.Second {
			t.Fatalf("jittered delay %s outside 10s ± 20%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("jitter gave only %d distinct delays in 200", len(seen))
	}
}

func TestNewWorkerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) { return nil, nil })
	for _, tc := range []struct {
		name string
		drv  ebbdriver.Driver
		cfg  *ebb.WorkerConfig
		want string
	}{
		{"NoDriver", nil, &ebb.WorkerConfig{Handlers: r.handlers}, "needs a driver"},
		{"NoHandlers", r.drv, &ebb.WorkerConfig{}, "needs WorkerConfig.Handlers"},
		{"BadQueue", r.drv, &ebb.WorkerConfig{Handlers: r.handlers, Queues: []ebb.QueueConfig{{Name: "a b"}}}, `queue "a b"`},
		{"QueueTwice", r.drv, &ebb.WorkerConfig{Handlers: r.handlers, Queues: []ebb.QueueConfig{{Name: "a"}, {Name: "a"}}}, "listed twice"},
		{"NegativeWeight", r.drv, &ebb.WorkerConfig{Handlers: r.handlers, Queues: []ebb.QueueConfig{{Name: "a", Weight: -1}}}, "negative"},
		{"SomeWeights", r.drv, &ebb.WorkerConfig{Handlers: r.handlers, Queues: []ebb.QueueConfig{{Name: "a", Weight: 2}, {Name: "b"}}}, "no weight while others do"},
		{"NegativeConcurrency", r.drv, &ebb.WorkerConfig{Handlers: r.handlers, Concurrency: -1}, "concurrency -1"},
		{"HeartbeatNotShorterThanLease", r.drv, &ebb.WorkerConfig{Handlers: r.handlers, LeaseDuration: time.Second, HeartbeatInterval: time.Second}, "must be shorter than the lease"},
		{"BadID", r.drv, &ebb.WorkerConfig{Handlers: r.handlers, ID: "w/1"}, `worker id "w/1"`},
	} {
		if _, err := ebb.NewWorker(tc.drv, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewWorker = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestRunTwiceIsRefused(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) { return nil, nil })
	w := r.start(nil)
	testwait.Eventually(t, waitTimeout, "worker registered", func() (bool, error) {
		ws, err := r.client.WorkerList(r.ctx)
		return len(ws) == 1, err
	})
	if err := w.w.Run(r.ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run = %v, want already running", err)
	}
}
