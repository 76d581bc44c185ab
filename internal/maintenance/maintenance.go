// Package maintenance runs the broker housekeeping that keeps tasks moving when
// nobody else does: rescuing tasks whose lease expired (their worker died),
// promoting due scheduled and retrying tasks, and deleting finished and dead
// tasks past their retention. Workers run it for their own queues so a
// single worker is self-sufficient; the control plane runs it for every queue
// so it goes on while pools are at zero. Running it in several processes at
// once is safe: every step is one atomic broker operation.
package maintenance

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/clock"
)

// Defaults.
const (
	RescueIntervalDefault  = 5 * time.Second
	CleanupIntervalDefault = time.Minute
	DeadRetentionDefault   = 30 * 24 * time.Hour
	batchLimit             = 1000
)

// Config configures a Maintainer.
type Config struct {
	Driver ebbdriver.Driver
	// Queues are the queues to maintain; nil means every queue the broker
	// knows (the control plane's leader).
	Queues []string
	// Stats reads the queue counts a pass is driven by; nil reads them from
	// Driver. The control plane passes its shared cache, so maintenance
	// costs no broker read of its own.
	Stats func(ctx context.Context) ([]ebbtype.QueueStats, error)
	// RescueInterval is how often a pass runs: expired leases are looked
	// for where tasks are in flight, due tasks promoted where some are due.
	RescueInterval time.Duration
	// CleanupInterval is how often finished and dead tasks past their
	// retention are deleted.
	CleanupInterval time.Duration
	DeadRetention   time.Duration
	Logger          *slog.Logger
	// Clock defaults to the wall clock; tests move time with a stub.
	Clock ebbtype.Clock
}

// Maintainer runs maintenance passes on a timer. Workers run one for their
// own queues and the control plane's leader one for every queue: the same
// code, so both cost the same and behave the same.
type Maintainer struct {
	c           Config
	lastCleanup time.Time
}

// New returns a Maintainer with defaults filled in.
func New(c Config) *Maintainer {
	if c.RescueInterval <= 0 {
		c.RescueInterval = RescueIntervalDefault
	}
	if c.CleanupInterval <= 0 {
		c.CleanupInterval = CleanupIntervalDefault
	}
	if c.DeadRetention <= 0 {
		c.DeadRetention = DeadRetentionDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Clock = clock.Or(c.Clock)
	if c.Stats == nil {
		c.Stats = func(ctx context.Context) ([]ebbtype.QueueStats, error) {
			return c.Driver.QueueStats(ctx, c.Clock.Now())
		}
	}
	return &Maintainer{c: c, lastCleanup: c.Clock.Now()}
}

// Run runs a pass at once and then every RescueInterval until ctx is done.
// The first pass does not wait a whole interval: a worker that starts is
// often the replacement of one that died, whose expired leases are due for
// rescue now, and a process in a crash loop that lives less than an interval
// would otherwise never rescue anything.
func (m *Maintainer) Run(ctx context.Context) {
	t := time.NewTicker(m.c.RescueInterval)
	defer t.Stop()
	m.Pass(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Pass(ctx)
		}
	}
}

// PassResult says what one pass moved.
type PassResult struct {
	Rescued, Promoted int
	Deleted           int64
}

// Pass runs one maintenance pass, driven by the queue counts so a quiet
// broker costs almost nothing: rescue only where tasks are in flight,
// promote only where scheduled tasks are due, clean up once per cleanup
// interval.
func (m *Maintainer) Pass(ctx context.Context) PassResult {
	var res PassResult
	stats, err := m.c.Stats(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.c.Logger.Warn("maintenance: cannot read queue counts", "error", err)
		}
		return res
	}
	var rescueQs, promoteQs, all []string
	for _, q := range stats {
		if m.c.Queues != nil && !slices.Contains(m.c.Queues, q.Name) {
			continue
		}
		all = append(all, q.Name)
		if q.InFlight > 0 {
			rescueQs = append(rescueQs, q.Name)
		}
		if q.DueScheduled > 0 {
			promoteQs = append(promoteQs, q.Name)
		}
	}
	res.Rescued = m.RescueQueues(ctx, rescueQs)
	res.Promoted = m.PromoteQueues(ctx, promoteQs)
	if now := m.c.Clock.Now(); now.Sub(m.lastCleanup) >= m.c.CleanupInterval {
		m.lastCleanup = now
		res.Deleted = m.CleanupQueues(ctx, all)
	}
	return res
}

// RescueQueues returns the expired leases of the given queues to them.
func (m *Maintainer) RescueQueues(ctx context.Context, queues []string) (rescued int) {
	return inBatches(m, queues, "rescue expired leases", func(q string) (int, error) {
		res, err := m.c.Driver.RescueExpired(ctx, q, m.c.Clock.Now(), batchLimit)
		if err != nil {
			return 0, err
		}
		if n := len(res.Requeued) + len(res.Dead); n > 0 {
			m.c.Logger.Info("maintenance: rescued tasks whose worker stopped heartbeating",
				"queue", q, "requeued", len(res.Requeued), "dead", len(res.Dead))
		}
		return len(res.Requeued) + len(res.Dead), nil
	})
}

// PromoteQueues moves the due scheduled and retrying tasks of the given queues
// to queued.
func (m *Maintainer) PromoteQueues(ctx context.Context, queues []string) (promoted int) {
	return inBatches(m, queues, "promote due tasks", func(q string) (int, error) {
		return m.c.Driver.PromoteDue(ctx, q, m.c.Clock.Now(), batchLimit)
	})
}

// CleanupQueues deletes the finished tasks past retention and the old dead
// tasks of the given queues.
func (m *Maintainer) CleanupQueues(ctx context.Context, queues []string) (deleted int64) {
	return inBatches(m, queues, "cleanup", func(q string) (int64, error) {
		return m.c.Driver.Cleanup(ctx, ebbdriver.CleanupParams{
			Queue: q, Now: m.c.Clock.Now(), DeadRetention: m.c.DeadRetention, Limit: batchLimit,
		})
	})
}

// inBatches runs step on each queue until a call moves less than a full
// batch, so one pass clears a backlog without one call holding the broker
// for long, and returns how much moved in all. A queue whose call fails is
// logged and left for the next pass.
func inBatches[N int | int64](m *Maintainer, queues []string, what string, step func(queue string) (N, error)) (total N) {
	for _, q := range queues {
		for {
			n, err := step(q)
			if err != nil {
				m.c.Logger.Warn("maintenance: "+what+" failed", "queue", q, "error", err)
				break
			}
			total += n
			if n < batchLimit {
				break
			}
		}
	}
	return total
}
