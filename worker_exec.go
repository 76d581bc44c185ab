package ebb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// Causes a worker gives when it cancels a handler's context.
var (
	errHandBack  = errors.New("worker draining: task handed back")
	errLeaseLost = errors.New("lease lost: another worker owns the task now")
	// errLeaseExpired is the same loss, found by the worker's own clock
	// because no renewal reached the broker before the lease ran out.
	errLeaseExpired = fmt.Errorf("lease expired while the broker could not be reached: %w", errLeaseLost)
)

// start runs one claimed task on its own goroutine; its slot is already
// taken and is released once the task's outcome is stored (or dropped).
func (w *Worker) start(rec *ebbtype.TaskInfo) {
	// Handlers get a context that does not end with the worker's: shutdown
	// lets them finish (drain) and cancels them explicitly when it must. It
	// keeps the values of Run's context (trace ids, tenants, loggers), and
	// carries the worker's clock for the middleware that times attempts.
	ctx, cancel := context.WithCancelCause(w.values)
	t := &inflightTask{queue: rec.Queue, id: rec.ID, token: rec.LeaseToken, cancel: cancel, leaseUntil: rec.LeaseExpiresAt}
	if t.leaseUntil.IsZero() {
		t.leaseUntil = w.clock.Now().Add(w.config.LeaseDuration)
	}
	w.inflightMu.Lock()
	w.inflight[rec.ID] = t
	w.inflightMu.Unlock()
	if w.busy.Add(1) == 1 {
		w.busyEdge()
	}
	// Debug lines that bracket the time the worker holds the task, for
	// checks (the Kubernetes scale-in test) that no replica is stopped while
	// it holds one. Guarded because building their arguments allocates on
	// every task even when the level is off.
	if w.logger.Enabled(context.Background(), slog.LevelDebug) {
		w.logger.Debug("task started", "task", rec.ID, "kind", rec.Kind, "attempt", rec.Attempt)
	}
	w.handlersWG.Add(1)
	go func() {
		slotHeld := true
		defer func() {
			cancel(nil)
			if w.busy.Add(-1) == 0 {
				w.busyEdge()
			}
			if slotHeld {
				w.release(1)
			}
			w.handlersWG.Done()
		}()
		c, ok := w.execute(ctx, rec)
		if w.logger.Enabled(context.Background(), slog.LevelDebug) {
			w.logger.Debug("task finished", "task", rec.ID, "outcome", int(c.Outcome), "stored", ok)
		}
		w.inflightMu.Lock()
		if t.done {
			// Drain already handed it back for us.
			ok = false
		}
		t.done = true
		if !ok {
			delete(w.inflight, rec.ID)
		}
		w.inflightMu.Unlock()
		if ok {
			// Until its outcome is stored the broker still counts the task
			// as this worker's, so it keeps its slot: a worker then never
			// holds more leases than its concurrency, and a crash strands
			// at most that many tasks.
			w.completer.submitHoldingSlot(c)
			slotHeld = false
		}
	}()
}

// execute runs the handler and decides the outcome. ok is false when no
// outcome may be recorded (the lease was lost).
func (w *Worker) execute(ctx context.Context, rec *ebbtype.TaskInfo) (c ebbdriver.Completion, ok bool) {
	c = ebbdriver.Completion{Queue: rec.Queue, ID: rec.ID, LeaseToken: rec.LeaseToken}
	dead := func(msg string) (ebbdriver.Completion, bool) {
		c.Outcome, c.Now = ebbdriver.OutcomeDead, w.clock.Now()
		c.Error = &AttemptError{Attempt: rec.Attempt, At: c.Now, Error: msg, WorkerID: w.config.ID}
		w.logger.Error("task cannot run; moved to dead", "id", rec.ID, "queue", rec.Queue, "kind", rec.Kind, "reason", msg)
		return c, true
	}
	if rec.Malformed != "" {
		return dead("malformed task: " + rec.Malformed)
	}
	if rec.CancelRequested {
		// Cancelled while an earlier attempt ran and came back (rescue or
		// hand-back) before the cancel took effect: honour it now.
		c.Outcome, c.Now = ebbdriver.OutcomeCancelled, w.clock.Now()
		return c, true
	}
	h := w.config.Handlers.lookup(rec.Kind)
	if h == nil {
		return dead(fmt.Sprintf("unknown task kind %q: worker %s has no handler for it (it handles %s); deploy a worker that handles it, then run `ebb dead retry --queue %s`",
			rec.Kind, w.config.ID, strings.Join(w.config.Handlers.Kinds(), ", "), rec.Queue))
	}
	// The handler gets its own copy: what it changes must not reach the
	// completion the worker sends, which is fenced by the lease token.
	copied := *rec
	info := &copied
	timeout := rec.Timeout
	if h.opts.Timeout > 0 {
		timeout = h.opts.Timeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, taskTimeout(timeout))
		defer cancel()
	}

	run := &handlerRun{w: w, queue: rec.Queue, id: rec.ID, token: rec.LeaseToken}
	result, err := w.call(context.WithValue(ctx, handlerRunKey{}, run), h.fn, info)
	c.Now = w.clock.Now()
	if err == nil && run.completeTx.Load() {
		// The handler's transaction holds the outcome (CompleteTx).
		return c, false
	}
	if err == nil {
		encoded := nullJSON
		var mErr error
		if result != nil {
			encoded, mErr = json.Marshal(result)
		}
		if mErr == nil {
			c.Outcome, c.Result = ebbdriver.OutcomeSucceeded, encoded
			return c, true
		}
		err = NoRetry(fmt.Errorf("result of type %T cannot be stored as JSON: %w", result, mErr))
	}

	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errLeaseLost):
		w.logger.Warn("task outcome discarded: lease lost", "id", rec.ID, "queue", rec.Queue)
		return c, false
	case errors.Is(cause, errHandBack):
		c.Outcome = ebbdriver.OutcomeHandBack
		return c, true
	}

	msg := err.Error()
	if ctx.Err() != nil && cause != nil && !errors.Is(err, cause) {
		msg = cause.Error() + ": " + msg
	}
	ae := &AttemptError{Attempt: rec.Attempt, At: c.Now, Error: msg, WorkerID: w.config.ID}
	var pe *panicError
	if errors.As(err, &pe) {
		ae.Stack = pe.stack
	}
	c.Error = ae

	var nr *noRetryError
	var ra *retryAfterError
	switch {
	case errors.Is(cause, ErrTaskCancelled):
		c.Outcome = ebbdriver.OutcomeCancelled
	case errors.As(err, &nr) || rec.Attempt >= rec.MaxAttempts:
		c.Outcome = ebbdriver.OutcomeDead
	case errors.As(err, &ra):
		c.Outcome, c.RetryAt = ebbdriver.OutcomeRetry, c.Now.Add(ra.after)
	default:
		policy := w.config.RetryPolicy
		if h.opts.RetryPolicy != nil {
			policy = h.opts.RetryPolicy
		}
		c.Outcome, c.RetryAt = ebbdriver.OutcomeRetry, c.Now.Add(policy.NextRetry(info, err))
	}
	return c, true
}

// nullJSON is what json.Marshal makes of a nil result, the result of most
// handlers, without its call and allocation. Nothing writes to a result.
var nullJSON = []byte("null")

// panicError is a recovered handler panic with its stack.
type panicError struct {
	value any
	stack string
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// call runs the handler through the middleware, turning a panic into an
// error that keeps the stack.
func (w *Worker) call(ctx context.Context, fn HandlerFunc, info *TaskInfo) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			result, err = nil, &panicError{value: r, stack: string(debug.Stack())}
		}
	}()
	return w.chain(fn)(ctx, info)
}

// taskTimeout is the cause of a task's context when its timeout passes. A
// type rather than a formatted error: every task run makes one, and almost
// none is ever read.
type taskTimeout time.Duration

func (t taskTimeout) Error() string { return "task timed out after " + time.Duration(t).String() }
