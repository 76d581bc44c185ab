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
	"time"

	"github.com/ebbq/ebb/ebbdriver"
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
	// Queues returns the queues to maintain; nil means every queue the
	// broker knows.
	Queues []string
	// RescueInterval is how often expired leases are looked for and due
	// tasks promoted.
	RescueInterval  time.Duration
	CleanupInterval time.Duration
	DeadRetention   time.Duration
	Logger          *slog.Logger
	// Now defaults to time.Now; tests move time with it.
	Now func() time.Time
}

// Maintainer runs maintenance passes on a timer.
type Maintainer struct {
	c Config
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
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Maintainer{c: c}
}

// Run runs passes until ctx is done.
func (m *Maintainer) Run(ctx context.Context) {
	rescue := time.NewTicker(m.c.RescueInterval)
	defer rescue.Stop()
	cleanup := time.NewTicker(m.c.CleanupInterval)
	defer cleanup.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rescue.C:
			m.Rescue(ctx)
		case <-cleanup.C:
			m.Cleanup(ctx)
		}
	}
}

func (m *Maintainer) queues(ctx context.Context) []string {
	if m.c.Queues != nil {
		return m.c.Queues
	}
	stats, err := m.c.Driver.QueueStats(ctx, m.c.Now())
	if err != nil {
		m.c.Logger.Warn("maintenance: cannot list queues", "error", err)
		return nil
	}
	names := make([]string, len(stats))
	for i, s := range stats {
		names[i] = s.Name
	}
	return names
}

// Rescue returns expired leases to their queues and promotes due tasks. It
// reports how many tasks it moved.
func (m *Maintainer) Rescue(ctx context.Context) (rescued, promoted int) {
	qs := m.queues(ctx)
	return m.RescueQueues(ctx, qs), m.PromoteQueues(ctx, qs)
}

// RescueQueues returns the expired leases of the given queues to them.
func (m *Maintainer) RescueQueues(ctx context.Context, queues []string) (rescued int) {
	for _, q := range queues {
		for {
			res, err := m.c.Driver.RescueExpired(ctx, q, m.c.Now(), batchLimit)
			if err != nil {
				m.c.Logger.Warn("maintenance: rescue expired leases failed", "queue", q, "error", err)
				break
			}
			n := len(res.Requeued) + len(res.Dead)
			if n > 0 {
				m.c.Logger.Info("maintenance: rescued tasks whose worker stopped heartbeating",
					"queue", q, "requeued", len(res.Requeued), "dead", len(res.Dead))
			}
			rescued += n
			if n < batchLimit {
				break
			}
		}
	}
	return rescued
}

// PromoteQueues moves the due scheduled and retrying tasks of the given queues
// to queued.
func (m *Maintainer) PromoteQueues(ctx context.Context, queues []string) (promoted int) {
	for _, q := range queues {
		for {
			n, err := m.c.Driver.PromoteDue(ctx, q, m.c.Now(), batchLimit)
			if err != nil {
				m.c.Logger.Warn("maintenance: promote due tasks failed", "queue", q, "error", err)
				break
			}
			promoted += n
			if n < batchLimit {
				break
			}
		}
	}
	return promoted
}

// Cleanup deletes finished tasks past retention and old dead tasks.
func (m *Maintainer) Cleanup(ctx context.Context) (deleted int64) {
	return m.CleanupQueues(ctx, m.queues(ctx))
}

// CleanupQueues is Cleanup for the given queues.
func (m *Maintainer) CleanupQueues(ctx context.Context, queues []string) (deleted int64) {
	for _, q := range queues {
		for {
			n, err := m.c.Driver.Cleanup(ctx, ebbdriver.CleanupParams{
				Queue: q, Now: m.c.Now(), DeadRetention: m.c.DeadRetention, Limit: batchLimit,
			})
			if err != nil {
				m.c.Logger.Warn("maintenance: cleanup failed", "queue", q, "error", err)
				break
			}
			deleted += n
			if n < batchLimit {
				break
			}
		}
	}
	return deleted
}
