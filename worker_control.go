package ebb

import (
	"context"
	"errors"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/internal/clock"
)

// busyEdgeMinGap limits registry updates on busy/idle edges, so a worker that
// flips between busy and idle many times a second costs the broker at most
// one extra command per second.
const busyEdgeMinGap = time.Second

// busyEdge asks for a registry update because the worker turned busy or idle:
// the autoscaler picks idle workers for scale-in and never goes below the busy
// ones, so it should not have to wait a whole heartbeat to see the change.
func (w *Worker) busyEdge() {
	select {
	case w.edge <- struct{}{}:
	default:
	}
}

// heartbeat renews the leases of every task the worker holds (until its
// outcome is stored) and refreshes the registry entry, on a timer and on
// busy/idle edges.
func (w *Worker) heartbeat(ctx context.Context) {
	t := time.NewTicker(w.config.HeartbeatInterval)
	defer t.Stop()
	last := w.clock.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.renewLeases(ctx)
		case <-w.edge:
			// Clamped: a clock set back (a test's stub, a stepped wall
			// clock) must not hold the heartbeat back for longer.
			if !clock.Sleep(ctx, min(busyEdgeMinGap-clock.Since(w.clock, last), busyEdgeMinGap)) {
				return
			}
		}
		w.sendHeartbeat(ctx)
		last = w.clock.Now()
	}
}

// controlCallBound bounds one heartbeat, lease renewal or registry read, so
// that a broker that stopped answering (a partition, where packets vanish
// rather than bounce) delays the next one by at most this, not by the
// client's own read timeout.
func (w *Worker) controlCallBound() time.Duration {
	return max(w.config.HeartbeatInterval, time.Second)
}

func (w *Worker) sendHeartbeat(ctx context.Context) {
	// Not cancelled with ctx, only bounded: a heartbeat abandoned mid-flight
	// can still be applied by the broker (PostgreSQL runs a statement whose
	// client went away), after the deregistration that follows shutdown, and
	// put the exited worker back in the registry. Shutdown waits for it.
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.controlCallBound())
	ctl, err := w.driver.WorkerHeartbeat(callCtx, w.info(w.draining.Load()), 3*w.config.HeartbeatInterval)
	cancel()
	w.beatTick.Store(w.clock.Now().UnixNano())
	if err == nil {
		w.beatOK.Store(w.clock.Now().UnixNano())
	}
	if err != nil {
		if ctx.Err() == nil {
			w.logger.Warn("worker heartbeat failed", "error", err)
		}
		return
	}
	if ctl.DrainRequested {
		w.Drain()
	}
}

func (w *Worker) renewLeases(ctx context.Context) {
	w.inflightMu.Lock()
	refs := make([]ebbdriver.LeaseRef, 0, len(w.inflight))
	for _, t := range w.inflight {
		refs = append(refs, ebbdriver.LeaseRef{Queue: t.queue, ID: t.id, Token: t.token})
	}
	w.inflightMu.Unlock()
	if len(refs) == 0 {
		return
	}
	now := w.clock.Now()
	until := now.Add(w.config.LeaseDuration)
	callCtx, cancel := context.WithTimeout(ctx, w.controlCallBound())
	res, err := w.driver.ExtendLeases(callCtx, ebbdriver.ExtendLeasesParams{Leases: refs, Until: until, Now: now})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			w.logger.Warn("lease renewal failed; tasks may be rescued and run again elsewhere if this persists", "tasks", len(refs), "error", err)
		}
		return
	}
	lost := make(map[string]bool, len(res.Lost))
	for _, id := range res.Lost {
		lost[id] = true
		w.cancelTask(id, errLeaseLost)
	}
	w.inflightMu.Lock()
	for _, r := range refs {
		if t := w.inflight[r.ID]; t != nil && t.token == r.Token && !lost[r.ID] {
			t.leaseUntil = until
		}
	}
	w.inflightMu.Unlock()
	for _, id := range res.CancelRequested {
		w.cancelTask(id, ErrTaskCancelled)
	}
}

// watchLeases cancels every handler whose lease ran out by the worker's own
// clock. Renewals normally keep leases far ahead; this matters when they
// cannot reach the broker: past the lease another worker may run the task,
// and this one must stop and discard its outcome (which the broker would
// refuse anyway) rather than go on doing the work twice.
func (w *Worker) watchLeases(ctx context.Context) {
	t := time.NewTicker(min(max(w.config.LeaseDuration/10, 50*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := w.clock.Now()
		var expired []*inflightTask
		w.inflightMu.Lock()
		for _, it := range w.inflight {
			if !it.done && !it.leaseUntil.IsZero() && !now.Before(it.leaseUntil) {
				expired = append(expired, it)
			}
		}
		w.inflightMu.Unlock()
		for _, it := range expired {
			w.logger.Warn("lease expired without a renewal reaching the broker; cancelling the task here, another worker may run it",
				"id", it.id, "queue", it.queue)
			it.cancel(errLeaseExpired)
		}
	}
}

func (w *Worker) cancelTask(id string, cause error) {
	w.inflightMu.Lock()
	t := w.inflight[id]
	w.inflightMu.Unlock()
	if t != nil {
		t.cancel(cause)
	}
}

// listen turns broker notifications into wake-ups, cancellations and drain
// requests. If the subscription drops it resubscribes, and fetches once in
// case a notification was missed in between.
func (w *Worker) listen(ctx context.Context, events <-chan ebbdriver.Event) {
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		for ev := range events {
			switch ev.Kind {
			case ebbdriver.EventQueued:
				w.poke()
			case ebbdriver.EventCancel:
				w.cancelTask(ev.TaskID, ErrTaskCancelled)
			case ebbdriver.EventDrain:
				if ev.WorkerID == w.config.ID {
					w.Drain()
				}
			}
		}
		for {
			if ctx.Err() != nil {
				return
			}
			var err error
			events, err = w.driver.Listen(ctx, ebbdriver.ListenParams{Queues: w.queues, WorkerID: w.config.ID})
			if err == nil {
				backoff.reset()
				w.poke()
				break
			}
			d := backoff.next()
			w.logger.Warn("broker subscription lost; resubscribing", "error", err, "retry_in", d)
			if !clock.Sleep(ctx, d) {
				return
			}
		}
	}
}

// Retry bounds of the scale-in guard's calls: the first retry comes quickly,
// for a platform endpoint that blinked, and the cap keeps a persistent
// failure (missing permissions, throttling) to a couple of calls a minute.
const (
	guardRetryMin = 250 * time.Millisecond
	guardRetryMax = 30 * time.Second
)

// ScaleInGuardErr is the error of the scale-in guard's last call if it
// failed, nil if it succeeded or there is no guard. While it is set the
// worker is not fetching yet (the first Protect), its protection may lapse
// (a renewal; work goes on), or it is not reported drained (Release).
func (w *Worker) ScaleInGuardErr() error {
	w.guardMu.Lock()
	defer w.guardMu.Unlock()
	return w.guardErr
}

func (w *Worker) setGuardErr(err error) {
	w.guardMu.Lock()
	w.guardErr = err
	w.guardMu.Unlock()
}

// guard turns scale-in protection on, opens the fetch loop's gate once it
// is, and renews it until ctx ends (when a drain has finished, or the worker
// exits).
func (w *Worker) guard(ctx context.Context, g ScaleInGuard) {
	b := newBackoff(guardRetryMin, guardRetryMax)
	for attempt := 1; ; attempt++ {
		err := g.Protect(ctx)
		if err == nil {
			if attempt > 1 {
				w.logger.Info("scale-in protection on; taking tasks", "attempts", attempt)
			}
			break
		}
		if ctx.Err() != nil {
			return
		}
		w.setGuardErr(err)
		d := b.next()
		w.logger.Warn("scale-in protection failed; taking no tasks until it succeeds", "attempt", attempt, "error", err, "retry_in", d)
		if !clock.Sleep(ctx, d) {
			return
		}
	}
	w.setGuardErr(nil)
	close(w.protected)
	every := g.RenewEvery()
	if every <= 0 {
		return
	}
	b.reset()
	failures := 0
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := g.Protect(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if failures > 0 {
				w.logger.Info("scale-in protection renewed", "failed_attempts", failures)
			}
			failures = 0
			b.reset()
			w.setGuardErr(nil)
			t.Reset(every)
			continue
		}
		failures++
		w.setGuardErr(err)
		// Tasks keep running: stopping them would not make the replica any
		// safer, and protection is still on until it expires.
		d := min(b.next(), every)
		w.logger.Warn("renewing scale-in protection failed; retrying, work goes on (protection lapses at its expiry if this persists)",
			"attempt", failures, "error", err, "retry_in", d)
		t.Reset(d)
	}
}

// releaseGuard lifts scale-in protection after a requested drain, retrying
// until it succeeds or ctx ends, and reports whether it did. Without a guard
// there is nothing to lift. Release runs even if no Protect ever succeeded:
// one that timed out may still have reached the platform.
func (w *Worker) releaseGuard(ctx context.Context) bool {
	g := w.config.ScaleInGuard
	if g == nil {
		return true
	}
	b := newBackoff(guardRetryMin, guardRetryMax)
	for attempt := 1; ; attempt++ {
		err := g.Release(ctx)
		if err == nil {
			w.setGuardErr(nil)
			w.logger.Info("scale-in protection released", "attempts", attempt)
			return true
		}
		if ctx.Err() != nil {
			if !errors.Is(err, ctx.Err()) {
				w.setGuardErr(err)
			}
			return false
		}
		w.setGuardErr(err)
		d := b.next()
		w.logger.Warn("releasing scale-in protection failed; retrying (the worker is not reported drained until it succeeds)",
			"attempt", attempt, "error", err, "retry_in", d)
		if !clock.Sleep(ctx, d) {
			return false
		}
	}
}
