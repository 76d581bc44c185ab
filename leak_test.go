package ebb_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
)

// TestWorkerLeavesNoGoroutines runs workers through every path that starts
// goroutines (handlers, retries, a timeout, a cancel, a drain by signal with a
// hand-back, a drain requested through the broker) and checks that once Run
// has returned nothing of the worker runs on: a worker is started and
// stopped many times in one process by `ebb up` and by embedders' tests.
//
// It is not parallel on purpose: goleak sees every goroutine of the process,
// and sequential tests never overlap with the parallel ones.
//
// The check runs twice. With the driver still open, goroutines the driver
// started for the worker (its subscription) must be gone too, since drivers
// are shared and outlive workers; the driver's own are then ignored only by
// being there before the worker started. After Close, nothing at all may be
// left of either.
func TestWorkerLeavesNoGoroutines(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) ebbdriver.Driver
	}{
		{"SQLite", func(t *testing.T) ebbdriver.Driver {
			drv, err := ebbsqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ebb.db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			return drv
		}},
		{"Redis", func(t *testing.T) ebbdriver.Driver {
			drv, err := ebbredis.Open(t.Context(), testredis.URL(), &ebbredis.Config{Prefix: testredis.Prefix(t)})
			if err != nil {
				t.Fatal(err)
			}
			return drv
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			drv := tc.open(t)
			defer drv.Close()
			withDriverOpen := warmUp(t, drv)

			exerciseWorker(t, drv, "leak-"+tc.name)
			goleak.VerifyNone(t, withDriverOpen)

			if err := drv.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			goleak.VerifyNone(t, before)
		})
	}
}

func exerciseWorker(t *testing.T, drv ebbdriver.Driver, queue string) {
	t.Helper()
	r := newRig(t, withDriver(drv))
	h := r.handlers
	ebb.HandleRaw(h, "ok", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) { return "ok", nil })
	ebb.HandleRaw(h, "flaky", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) {
		if task.Attempt == 1 {
			return nil, errors.New("first attempt fails")
		}
		return nil, nil
	})
	ebb.HandleRaw(h, "slow", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}, ebb.HandlerOpts{Timeout: 20 * time.Millisecond})
	started := newSignal()
	ebb.HandleRaw(h, "wait", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) {
		started.fire()
		<-ctx.Done()
		return nil, ctx.Err()
	})
	opts := &ebb.EnqueueOpts{Queue: queue, MaxAttempts: 2}
	cfg := &ebb.WorkerConfig{Queues: []ebb.QueueConfig{{Name: queue}}, DrainTimeout: 50 * time.Millisecond,
		HeartbeatInterval: 20 * time.Millisecond, LeaseDuration: time.Second, PollInterval: 10 * time.Millisecond,
		RetryPolicy: ebb.RetryPolicyFunc(func(*ebb.TaskInfo, error) time.Duration { return 0 }),
		Middleware:  []ebb.Middleware{ebb.LoggingMiddleware(quiet)}}

	w := r.start(cfg)
	ids := map[string]ebb.State{}
	for kind, want := range map[string]ebb.State{"ok": ebb.StateSucceeded, "flaky": ebb.StateSucceeded, "slow": ebb.StateDead} {
		ids[r.enqueueRaw(kind, opts)] = want
	}
	cancelled := r.enqueueRaw("wait", opts)
	started.wait(t, "handler start")
	if _, err := r.client.Cancel(r.ctx, cancelled); err != nil {
		t.Fatal(err)
	}
	ids[cancelled] = ebb.StateCancelled
	for id, want := range ids {
		r.waitState(id, want)
	}
	// Drain by signal with a task in hand: it is handed back.
	started = newSignal()
	handedBack := r.enqueueRaw("wait", opts)
	started.wait(t, "handler start")
	if err := w.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if info := r.task(handedBack); info.State != ebb.StateQueued {
		t.Fatalf("task after drain: %s, want handed back", info.State)
	}

	// Drain requested through the broker, after the hand-back ran again.
	started = newSignal()
	w = r.start(cfg)
	started.wait(t, "handler start")
	testwait.Eventually(t, waitTimeout, "worker registered", func() (bool, error) {
		ws, err := r.client.WorkerList(r.ctx)
		return len(ws) == 1, err
	})
	if err := r.client.WorkerDrain(r.ctx, w.w.ID()); err != nil {
		t.Fatal(err)
	}
	// A requested drain waits for running tasks: end this one.
	if _, err := r.client.Cancel(r.ctx, handedBack); err != nil {
		t.Fatal(err)
	}
	if err := w.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	r.waitState(handedBack, ebb.StateCancelled)
}

// warmUp makes one subscription and one round trip, which start whatever the
// driver keeps for its own use (a notifier, pooled connections), and returns
// a snapshot holding those, so that only the worker's goroutines are judged.
func warmUp(t *testing.T, drv ebbdriver.Driver) goleak.Option {
	t.Helper()
	warm, stopWarm := context.WithCancel(t.Context())
	if _, err := drv.Listen(warm, ebbdriver.ListenParams{Queues: []string{"warm-up"}}); err != nil {
		t.Fatal(err)
	}
	stopWarm()
	if _, err := drv.QueueStats(t.Context(), time.Now()); err != nil {
		t.Fatal(err)
	}
	return goleak.IgnoreCurrent()
}
