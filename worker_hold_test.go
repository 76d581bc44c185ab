package ebb_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/internal/testwait"
)

// fakeGuard is a ScaleInGuard that records its calls. protect and release,
// when set, answer the n-th call of each (from 1); nil succeeds.
type fakeGuard struct {
	renew   time.Duration
	protect func(n int) error
	release func(n int) error

	mu    sync.Mutex
	calls []guardCall
}

type guardCall struct {
	op  string // "protect" or "release"
	at  time.Time
	err error
}

func (c guardCall) String() string {
	if c.err != nil {
		return c.op + " (" + c.err.Error() + ")"
	}
	return c.op
}

func (g *fakeGuard) Protect(ctx context.Context) error { return g.call("protect", g.protect) }
func (g *fakeGuard) Release(ctx context.Context) error { return g.call("release", g.release) }
func (g *fakeGuard) RenewEvery() time.Duration         { return g.renew }

func (g *fakeGuard) call(op string, answer func(int) error) error {
	n := g.count(op, false) + 1
	var err error
	if answer != nil {
		err = answer(n)
	}
	g.mu.Lock()
	g.calls = append(g.calls, guardCall{op: op, at: time.Now(), err: err})
	g.mu.Unlock()
	return err
}

func (g *fakeGuard) snapshot() []guardCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]guardCall(nil), g.calls...)
}

// count is how many calls of op were made (only the successful ones if ok).
func (g *fakeGuard) count(op string, ok bool) int {
	n := 0
	for _, c := range g.snapshot() {
		if c.op == op && (!ok || c.err == nil) {
			n++
		}
	}
	return n
}

// holdConfig heartbeats often enough for the tests to see the hold's
// heartbeats go on, and no more: the registry entry lives three heartbeats,
// and a busy/idle edge holds the next heartbeat back for up to a second, so
// a shorter interval would let the entry lapse while a test reads it.
func holdConfig(guard ebb.ScaleInGuard) *ebb.WorkerConfig {
	return &ebb.WorkerConfig{ScaleInGuard: guard, HeartbeatInterval: 500 * time.Millisecond, LeaseDuration: 5 * time.Second}
}

// entry is the worker's registry entry, nil if it has none.
func (r *rig) entry(id string) (*ebb.WorkerInfo, error) {
	ws, err := r.client.WorkerList(r.ctx)
	for i := range ws {
		if ws[i].ID == id {
			return &ws[i], err
		}
	}
	return nil, err
}

// waitDrained waits until the registry says the worker is drained, holding
// nothing, and returns the entry.
func (r *rig) waitDrained(id string) *ebb.WorkerInfo {
	r.t.Helper()
	var e *ebb.WorkerInfo
	testwait.Eventually(r.t, waitTimeout, "worker "+id+" drained", func() (bool, error) {
		var err error
		e, err = r.entry(id)
		return e != nil && e.Drained, err
	})
	return e
}

func (r *rig) waitGone(id string) {
	r.t.Helper()
	testwait.Eventually(r.t, waitTimeout, "worker "+id+" deregistered", func() (bool, error) {
		e, err := r.entry(id)
		return e == nil, err
	})
}

func (r *rig) requestDrain(id string) {
	r.t.Helper()
	testwait.Eventually(r.t, waitTimeout, "worker "+id+" registered", func() (bool, error) {
		e, err := r.entry(id)
		return e != nil, err
	})
	if err := r.client.WorkerDrain(r.ctx, id); err != nil {
		r.t.Fatalf("WorkerDrain: %v", err)
	}
}

// returned reports whether Run has returned.
func (w *worker) returned() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func TestGuardProtectsBeforeTheFirstTask(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	// A slow Protect: a worker that did not wait for it would have run the
	// task meanwhile.
	guard := &fakeGuard{renew: time.Hour, protect: func(int) error {
		time.Sleep(200 * time.Millisecond)
		return nil
	}}
	seen := make(chan []guardCall, 1)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
		seen <- guard.snapshot()
		return nil, nil
	})
	// Ready before the worker starts, so its very first fetch takes it.
	id := r.enqueue(jobArgs{}, nil)
	r.start(holdConfig(guard))
	r.waitState(id, ebb.StateSucceeded)
	if calls := <-seen; len(calls) != 1 || calls[0].op != "protect" || calls[0].err != nil {
		t.Errorf("guard calls when the first task ran: %+v, want one successful Protect", calls)
	}
}

func TestGuardFailingFirstProtectDelaysFetching(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var mu sync.Mutex
	allow := false
	guard := &fakeGuard{renew: time.Hour, protect: func(int) error {
		mu.Lock()
		defer mu.Unlock()
		if !allow {
			return errors.New("agent unreachable")
		}
		return nil
	}}
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
		if n := guard.count("protect", true); n != 1 {
			t.Errorf("task ran after %d successful Protect calls, want 1", n)
		}
		return nil, nil
	})
	id := r.enqueue(jobArgs{}, nil)
	logs := newLogRecorder()
	cfg := holdConfig(guard)
	cfg.Logger = logs.logger()
	w := r.start(cfg)
	testwait.Eventually(t, waitTimeout, "two failed Protect calls", func() (bool, error) {
		return guard.count("protect", false) >= 2, nil
	})
	// An unguarded worker takes a ready task at once; this one has had two
	// backoffs' time and must not have touched it.
	if info := r.task(id); info.State != ebb.StateQueued || info.Attempt != 0 {
		t.Fatalf("task while Protect fails: %s at attempt %d, want queued and untouched", info.State, info.Attempt)
	}
	if err := w.w.ScaleInGuardErr(); err == nil || err.Error() != "agent unreachable" {
		t.Errorf("ScaleInGuardErr while Protect fails = %v, want its error", err)
	}
	for _, attempt := range []string{"attempt=1", "attempt=2"} {
		logs.wait(t, "WARN scale-in protection failed; taking no tasks until it succeeds", attempt, "error=agent unreachable")
	}
	mu.Lock()
	allow = true
	mu.Unlock()
	r.waitState(id, ebb.StateSucceeded)
	if err := w.w.ScaleInGuardErr(); err != nil {
		t.Errorf("ScaleInGuardErr after Protect succeeded = %v, want nil", err)
	}
}

func TestGuardRenewsPeriodicallyAndWorkGoesOnWhenRenewalFails(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const renew = 40 * time.Millisecond
	var mu sync.Mutex
	failing := false
	guard := &fakeGuard{renew: renew, protect: func(int) error {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return errors.New("ThrottlingException")
		}
		return nil
	}}
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) { return nil, nil })
	w := r.start(holdConfig(guard))
	testwait.Eventually(t, waitTimeout, "four renewals", func() (bool, error) {
		return guard.count("protect", true) >= 5, nil
	})
	calls := guard.snapshot()
	for i := 1; i < len(calls); i++ {
		// Renewals come on the timer, not in a tight loop.
		if gap := calls[i].at.Sub(calls[i-1].at); gap < renew*3/4 {
			t.Errorf("Protect %d came %s after the previous one, want about %s", i+1, gap, renew)
		}
	}

	mu.Lock()
	failing = true
	mu.Unlock()
	testwait.Eventually(t, waitTimeout, "a failed renewal reported", func() (bool, error) {
		return w.w.ScaleInGuardErr() != nil, nil
	})
	// The worker is still protected until expiry: it keeps working.
	id := r.enqueue(jobArgs{}, nil)
	r.waitState(id, ebb.StateSucceeded)
	mu.Lock()
	failing = false
	mu.Unlock()
	testwait.Eventually(t, waitTimeout, "renewal recovered", func() (bool, error) {
		return w.w.ScaleInGuardErr() == nil, nil
	})
	if guard.count("release", false) != 0 {
		t.Errorf("Release called without a drain: %+v", guard.snapshot())
	}
}

func TestRequestedDrainReleasesAndHoldsUntilStopped(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	guard := &fakeGuard{renew: 20 * time.Millisecond}
	started := newSignal()
	finish := make(chan struct{})
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (string, error) {
		started.fire()
		<-finish
		return "finished", nil
	})
	w := r.start(holdConfig(guard))
	id := r.enqueue(jobArgs{}, nil)
	started.wait(t, "handler start")
	r.requestDrain(w.w.ID())
	r.waitDraining(w.w.ID())

	// Still running its task: protected, not drained.
	renewalsBefore := guard.count("protect", true)
	testwait.Eventually(t, waitTimeout, "renewals during the drain", func() (bool, error) {
		return guard.count("protect", true) >= renewalsBefore+2, nil
	})
	if e, err := r.entry(w.w.ID()); err != nil || e == nil || e.Drained || e.Busy != 1 {
		t.Fatalf("entry while the task runs: %+v, %v; want draining, busy 1, not drained", e, err)
	}
	if n := guard.count("release", false); n != 0 {
		t.Fatalf("Release called %d times while a task was running", n)
	}

	close(finish)
	e := r.waitDrained(w.w.ID())
	if !e.Draining || e.Busy != 0 {
		t.Errorf("drained entry: %+v, want draining and busy 0", e)
	}
	if info := r.task(id); info.State != ebb.StateSucceeded || string(info.Result) != `"finished"` {
		t.Errorf("task: %s with result %s, want finished by the drain", info.State, info.Result)
	}
	calls := guard.snapshot()
	if last := calls[len(calls)-1]; last.op != "release" || last.err != nil || guard.count("release", false) != 1 {
		t.Fatalf("guard calls %+v, want one successful Release last", calls)
	}

	// Held: heartbeats go on (the entry does not expire), nothing is
	// fetched, protection stays off, and Run has not returned.
	beat := e.HeartbeatAt
	testwait.Eventually(t, waitTimeout, "heartbeats while held", func() (bool, error) {
		e, err := r.entry(w.w.ID())
		return e != nil && e.HeartbeatAt.After(beat), err
	})
	later := r.enqueue(jobArgs{}, nil)
	beat = time.Now()
	testwait.Eventually(t, waitTimeout, "more heartbeats while held", func() (bool, error) {
		e, err := r.entry(w.w.ID())
		return e != nil && e.HeartbeatAt.After(beat.Add(100*time.Millisecond)), err
	})
	if e, err := r.entry(w.w.ID()); err != nil || e == nil || !e.Drained || !e.Draining || e.Busy != 0 {
		t.Errorf("held entry: %+v, %v; want draining, drained, busy 0", e, err)
	}
	if info := r.task(later); info.State != ebb.StateQueued || info.Attempt != 0 {
		t.Errorf("task enqueued while held: %s at attempt %d, want untouched", info.State, info.Attempt)
	}
	if got := guard.snapshot(); len(got) != len(calls) {
		t.Errorf("guard called after Release: %+v", got[len(calls):])
	}
	if w.returned() {
		t.Fatalf("Run returned while held: %v", w.err)
	}

	// The platform stops it.
	if err := w.stop(t); err != nil {
		t.Fatalf("Run after the stop: %v", err)
	}
	if e, err := r.entry(w.w.ID()); err != nil || e != nil {
		t.Errorf("entry after Run returned: %+v, %v; want deregistered", e, err)
	}
}

func TestReleaseIsRetriedAndDrainedWaitsForIt(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) { return nil, nil })
	type atRelease struct {
		drained  bool
		guardErr error
	}
	var mu sync.Mutex
	var seen []atRelease
	var running atomic.Pointer[ebb.Worker]
	guard := &fakeGuard{renew: time.Hour}
	guard.release = func(n int) error {
		w := running.Load()
		e, err := r.entry(w.ID())
		if err != nil || e == nil {
			t.Errorf("entry at Release %d: %+v, %v", n, e, err)
			return err
		}
		mu.Lock()
		seen = append(seen, atRelease{e.Drained, w.ScaleInGuardErr()})
		mu.Unlock()
		if n <= 2 {
			return fmt.Errorf("release failure %d", n)
		}
		return nil
	}
	logs := newLogRecorder()
	cfg := holdConfig(guard)
	cfg.Logger = logs.logger()
	w := r.start(cfg)
	running.Store(w.w)
	r.requestDrain(w.w.ID())
	r.waitDrained(w.w.ID())

	mu.Lock()
	defer mu.Unlock()
	want := []atRelease{{false, nil}, {false, errors.New("release failure 1")}, {false, errors.New("release failure 2")}}
	if len(seen) != len(want) {
		t.Fatalf("Release called %d times, want 3 (two failures, then success)", len(seen))
	}
	for i := range want {
		if seen[i].drained || fmt.Sprint(seen[i].guardErr) != fmt.Sprint(want[i].guardErr) {
			t.Errorf("at Release %d: drained %t, ScaleInGuardErr %v; want not drained, %v", i+1, seen[i].drained, seen[i].guardErr, want[i].guardErr)
		}
	}
	if err := w.w.ScaleInGuardErr(); err != nil {
		t.Errorf("ScaleInGuardErr once released = %v, want nil", err)
	}
	logs.wait(t, "WARN releasing scale-in protection failed", "attempt=2", "error=release failure 2")
	if w.returned() {
		t.Fatalf("Run returned while held: %v", w.err)
	}
}

func TestDrainWhileFirstProtectFailsReleasesAndHolds(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
		t.Error("a task ran although Protect never succeeded")
		return nil, nil
	})
	guard := &fakeGuard{renew: time.Hour, protect: func(int) error { return errors.New("AccessDeniedException") }}
	id := r.enqueue(jobArgs{}, nil)
	w := r.start(holdConfig(guard))
	testwait.Eventually(t, waitTimeout, "a failed Protect", func() (bool, error) { return guard.count("protect", false) >= 1, nil })
	r.requestDrain(w.w.ID())
	r.waitDrained(w.w.ID())
	// Protect may have reached the platform even though it failed here.
	if n := guard.count("release", true); n != 1 {
		t.Errorf("Release called %d times, want once", n)
	}
	if info := r.task(id); info.State != ebb.StateQueued || info.Attempt != 0 {
		t.Errorf("task: %s at attempt %d, want untouched", info.State, info.Attempt)
	}
	if err := w.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestHoldTimeoutEndsTheHold(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) { return nil, nil })
	logs := newLogRecorder()
	// No guard: Kubernetes, where only the hold is wanted.
	cfg := holdConfig(nil)
	cfg.HoldAfterDrain, cfg.HoldTimeout, cfg.Logger = true, 400*time.Millisecond, logs.logger()
	w := r.start(cfg)
	r.requestDrain(w.w.ID())
	requestedAt := time.Now()
	r.waitDrained(w.w.ID())
	if err := w.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if held := time.Since(requestedAt); held < 300*time.Millisecond {
		t.Errorf("Run returned %s after the drain request, want a hold of about 400ms", held)
	}
	logs.wait(t, "WARN hold timeout: the platform did not stop this drained worker", "hold_timeout=400ms")
	r.waitGone(w.w.ID())
}

func TestHoldTimeoutWhileReleaseFails(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) { return nil, nil })
	logs := newLogRecorder()
	guard := &fakeGuard{renew: time.Hour, release: func(int) error { return errors.New("agent gone") }}
	cfg := holdConfig(guard)
	cfg.HoldTimeout, cfg.Logger = 300*time.Millisecond, logs.logger()
	w := r.start(cfg)
	r.requestDrain(w.w.ID())
	if err := w.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	logs.wait(t, "WARN hold timeout: scale-in protection could not be released", "error=agent gone")
	for _, l := range logs.matching("worker drained") {
		t.Errorf("worker said %q without releasing its protection", l)
	}
}

func TestRequestedDrainWithoutHoldStillExits(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) { return nil, nil })
	w := r.start(holdConfig(nil))
	r.requestDrain(w.w.ID())
	if err := w.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	r.waitGone(w.w.ID())
}

// TestPlatformStopWithGuardDrainsAsBefore: a SIGTERM (the platform stopping
// the replica, or a deploy) is not a requested drain: the worker hands back
// what outlives DrainTimeout and exits, without a hold or a Release.
func TestPlatformStopWithGuardDrainsAsBefore(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	started := newSignal()
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) {
		started.fire()
		<-ctx.Done()
		return nil, ctx.Err()
	})
	guard := &fakeGuard{renew: time.Hour}
	cfg := holdConfig(guard)
	cfg.DrainTimeout = 50 * time.Millisecond
	w := r.start(cfg)
	id := r.enqueue(jobArgs{}, nil)
	started.wait(t, "handler start")
	if err := w.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if info := r.task(id); info.State != ebb.StateQueued || info.Attempt != 0 {
		t.Errorf("task after the stop: %s at attempt %d, want handed back", info.State, info.Attempt)
	}
	if n := guard.count("release", false); n != 0 {
		t.Errorf("Release called %d times on a platform stop", n)
	}
	r.waitGone(w.w.ID())
}

func TestNewWorkerRejectsNegativeHoldTimeout(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (any, error) { return nil, nil })
	_, err := ebb.NewWorker(r.drv, &ebb.WorkerConfig{Handlers: r.handlers, HoldAfterDrain: true, HoldTimeout: -time.Second})
	if err == nil {
		t.Error("NewWorker accepted a negative hold timeout")
	}
}

// TestHeldWorkerLeavesNoGoroutines is TestWorkerLeavesNoGoroutines for the
// guard and the hold: the guard's loop, a release retry and the hold must
// all end with Run. Not parallel, for the same reason.
func TestHeldWorkerLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	drv, err := ebbsqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ebb.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close()
	withDriverOpen := warmUp(t, drv)

	r := newRig(t, withDriver(drv))
	started := newSignal()
	ebb.HandleRaw(r.handlers, "wait", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) {
		started.fire()
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ebb.HandleRaw(r.handlers, "ok", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) { return nil, nil })
	flaky := func(n int) error {
		if n == 1 {
			return errors.New("first call fails")
		}
		return nil
	}
	newCfg := func(g ebb.ScaleInGuard) *ebb.WorkerConfig {
		cfg := holdConfig(g)
		cfg.DrainTimeout, cfg.PollInterval = 50*time.Millisecond, 10*time.Millisecond
		return cfg
	}

	// Guarded, renewing, stopped by the platform with a task in hand.
	w := r.start(newCfg(&fakeGuard{renew: 10 * time.Millisecond, protect: flaky}))
	handedBack := r.enqueueRaw("wait", nil)
	started.wait(t, "handler start")
	if err := w.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Guarded: a requested drain with a release retry, held, then stopped.
	started = newSignal()
	w = r.start(newCfg(&fakeGuard{renew: 10 * time.Millisecond, protect: flaky, release: flaky}))
	started.wait(t, "handler start")
	r.requestDrain(w.w.ID())
	if _, err := r.client.Cancel(r.ctx, handedBack); err != nil {
		t.Fatal(err)
	}
	r.waitDrained(w.w.ID())
	if err := w.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Hold only, ended by its timeout.
	cfg := newCfg(nil)
	cfg.HoldAfterDrain, cfg.HoldTimeout = true, 50*time.Millisecond
	w = r.start(cfg)
	r.waitState(r.enqueueRaw("ok", nil), ebb.StateSucceeded)
	r.requestDrain(w.w.ID())
	if err := w.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	goleak.VerifyNone(t, withDriverOpen)

	if err := drv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	goleak.VerifyNone(t, before)
}
