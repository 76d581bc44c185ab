package ebb_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/internal/testwait"
)

// cutDriver is a broker the worker cannot renew leases on while cut, as
// in a network partition; everything else goes through.
type cutDriver struct {
	ebbdriver.Driver
	cut     atomic.Bool
	renewed atomic.Int32
}

var errCut = errors.New("broker unreachable (test)")

func (d *cutDriver) ExtendLeases(ctx context.Context, p ebbdriver.ExtendLeasesParams) (*ebbdriver.ExtendLeasesResult, error) {
	if d.cut.Load() {
		return nil, errCut
	}
	d.renewed.Add(1)
	return d.Driver.ExtendLeases(ctx, p)
}

// TestLeaseExpiresWithoutRenewal: a worker whose renewals cannot reach the
// broker cancels a handler once the lease it was last granted runs out by
// its own clock, since another worker may hold the task by then, and
// stores no outcome for it; while renewals get through, the same handler
// runs on however long past the first lease.
func TestLeaseExpiresWithoutRenewal(t *testing.T) {
	t.Parallel()
	base := newRig(t, withStubClock())
	drv := &cutDriver{Driver: base.drv}
	r := newRig(t, withDriver(drv))
	r.clock = base.clock
	r.client = base.client

	started := newSignal()
	cause := make(chan error, 1)
	ebb.Handle(r.handlers, func(ctx context.Context, task *ebb.Task[jobArgs]) (string, error) {
		started.fire()
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return "", ctx.Err()
	})
	logs := newLogRecorder()
	const lease = 3 * time.Second
	r.start(&ebb.WorkerConfig{LeaseDuration: lease, HeartbeatInterval: 100 * time.Millisecond, Logger: logs.logger()})
	id := r.enqueue(jobArgs{}, nil)
	started.wait(t, "the handler to start")

	// Renewals get through: the worker's clock passes the first lease
	// twice over and the handler is left alone.
	for range 6 {
		n := drv.renewed.Load()
		r.clock.Advance(lease / 3)
		testwait.Eventually(t, waitTimeout, "a renewal after the clock moved", func() (bool, error) { return drv.renewed.Load() > n, nil })
	}
	select {
	case err := <-cause:
		t.Fatalf("handler cancelled (%v) while its lease was being renewed", err)
	default:
	}

	drv.cut.Store(true)
	r.clock.Advance(lease / 2)
	select {
	case err := <-cause:
		t.Fatalf("handler cancelled (%v) before its lease ran out", err)
	case <-time.After(300 * time.Millisecond): // a few watch ticks; the point is what does NOT happen
	}
	r.clock.Advance(lease)
	select {
	case err := <-cause:
		if err == nil || !strings.Contains(err.Error(), "lease expired while the broker could not be reached") {
			t.Fatalf("handler cancelled with %v, want the expired lease as the cause", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the handler was not cancelled after its lease ran out without a renewal")
	}
	logs.wait(t, "task outcome discarded: lease lost", id)
	if got := r.task(id); got.State != ebb.StateRunning || len(got.Result) != 0 {
		t.Fatalf("task %s after its outcome was discarded: state %s result %s, want it left running for a rescue", id, got.State, got.Result)
	}
}
