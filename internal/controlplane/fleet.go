package controlplane

import (
	"context"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// fleet is where a pool's counts and workers come from and how an idle
// worker is asked to leave: ebb's own broker and registry (ebbFleet), or a
// Celery fleet's broker and events (celeryFleet). The scaling loop is the
// same for both.
type fleet interface {
	// counts returns the pool's queue counts no older than maxAge (0: now).
	counts(ctx context.Context, now time.Time, maxAge time.Duration) (poolCounts, error)
	// workers returns the pool's workers as registry entries (Pool set to
	// the pool's name for those that belong to it).
	workers(ctx context.Context, now time.Time, maxAge time.Duration) ([]ebbtype.WorkerInfo, error)
	// drain asks one idle worker to finish what it holds and exit.
	drain(ctx context.Context, id string, now time.Time) error
}

// fleetReporter is implemented by fleets with something to say in the
// pool's status: how they are watched, and warnings.
type fleetReporter interface {
	status(now time.Time) (string, []string)
}

// fleetStopper is implemented by fleets whose workers are stopped their
// own way when the server stops, busy or not, before the target's SIGTERM.
type fleetStopper interface {
	stopAll(ctx context.Context)
}

// poolCounts are what the policy needs from the pool's queues.
type poolCounts struct {
	Queued    int64
	InFlight  int64
	OldestAge time.Duration
}

func (c poolCounts) work() bool { return c.Queued+c.InFlight > 0 }

// ebbFleet is a pool of ebb workers: counts from the shared queue-stats
// cache, workers from the broker's registry, drain through the broker.
type ebbFleet struct{ p *pool }

func (f ebbFleet) counts(ctx context.Context, now time.Time, maxAge time.Duration) (poolCounts, error) {
	stats, err := f.p.s.stats.get(ctx, maxAge)
	if err != nil {
		return poolCounts{}, err
	}
	var c poolCounts
	for _, q := range stats {
		if !f.p.serves(q.Name) {
			continue
		}
		c.Queued += q.Queued + q.DueScheduled
		c.InFlight += q.InFlight
		if !q.OldestQueuedAt.IsZero() {
			c.OldestAge = max(c.OldestAge, now.Sub(q.OldestQueuedAt))
		}
	}
	return c, nil
}

func (f ebbFleet) workers(ctx context.Context, now time.Time, maxAge time.Duration) ([]ebbtype.WorkerInfo, error) {
	return f.p.s.workers.get(ctx, now, maxAge)
}

func (f ebbFleet) drain(ctx context.Context, id string, now time.Time) error {
	return f.p.s.drv.WorkerRequestDrain(ctx, id, now)
}
