package ebb_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testwait"
)

// lateBeatDriver holds one heartbeat, on request, until released. If its
// caller gives up meanwhile, the heartbeat is still applied once released,
// as PostgreSQL finishes a statement whose client stopped waiting.
type lateBeatDriver struct {
	ebbdriver.Driver
	hold      atomic.Bool
	held      *signal
	release   chan struct{}
	abandoned atomic.Bool
	late      sync.WaitGroup
}

func (d *lateBeatDriver) WorkerHeartbeat(ctx context.Context, info ebbtype.WorkerInfo, ttl time.Duration) (*ebbdriver.WorkerControl, error) {
	if !d.hold.CompareAndSwap(true, false) {
		return d.Driver.WorkerHeartbeat(ctx, info, ttl)
	}
	d.held.fire()
	select {
	case <-d.release:
		return d.Driver.WorkerHeartbeat(ctx, info, ttl)
	case <-ctx.Done():
		d.abandoned.Store(true)
		d.late.Go(func() {
			<-d.release
			_, _ = d.Driver.WorkerHeartbeat(context.WithoutCancel(ctx), info, ttl)
		})
		return nil, ctx.Err()
	}
}

// TestStoppedWorkerLeavesTheRegistry: a heartbeat in flight when the worker
// shuts down is waited for, not abandoned, so it cannot reach the broker
// after the worker deregistered and put the exited worker back in the
// registry (seen on PostgreSQL as an exited worker still listed).
func TestStoppedWorkerLeavesTheRegistry(t *testing.T) {
	t.Parallel()
	base := newRig(t)
	drv := &lateBeatDriver{Driver: base.drv, held: newSignal(), release: make(chan struct{})}
	r := newRig(t, withDriver(drv))
	// A heartbeat is bounded by its interval (at least 1 s); 2 s leaves the
	// 300 ms hold below well inside that bound on a loaded machine.
	w := r.start(&ebb.WorkerConfig{HeartbeatInterval: 2 * time.Second})
	testwait.Eventually(t, waitTimeout, "the worker in the registry", func() (bool, error) {
		ws, err := r.client.WorkerList(r.ctx)
		return len(ws) == 1, err
	})
	drv.hold.Store(true)
	drv.held.wait(t, "a heartbeat in flight")

	// Released a little after shutdown began: long enough for a worker that
	// abandons the heartbeat to deregister first, well inside the
	// heartbeat's own bound.
	time.AfterFunc(300*time.Millisecond, func() { close(drv.release) })
	if err := w.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	drv.late.Wait()
	if drv.abandoned.Load() {
		t.Error("shutdown cancelled the heartbeat in flight instead of waiting for it")
	}
	ws, err := r.client.WorkerList(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 0 {
		t.Errorf("the stopped worker is still in the registry: %+v", ws[0])
	}
}
