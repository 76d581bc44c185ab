package ebb

import (
	"context"
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

func (w *Worker) sendHeartbeat(ctx context.Context) {
	ctl, err := w.driver.WorkerHeartbeat(ctx, w.info(w.draining.Load()), 3*w.config.HeartbeatInterval)
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
	res, err := w.driver.ExtendLeases(ctx, ebbdriver.ExtendLeasesParams{Leases: refs, Until: now.Add(w.config.LeaseDuration), Now: now})
	if err != nil {
		if ctx.Err() == nil {
			w.logger.Warn("lease renewal failed; tasks may be rescued and run again elsewhere if this persists", "tasks", len(refs), "error", err)
		}
		return
	}
	for _, id := range res.Lost {
		w.cancelTask(id, errLeaseLost)
	}
	for _, id := range res.CancelRequested {
		w.cancelTask(id, ErrTaskCancelled)
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
