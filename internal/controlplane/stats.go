package controlplane

import (
	"context"
	"sync"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/clock"
)

// statsCache shares one QueueStats read among the pools reconciling at the
// same moment, the maintenance pass and metric scrapes, and keeps the samples
// arrival and completion rates are computed from.
type statsCache struct {
	drv   ebbdriver.Driver
	clock ebbtype.Clock

	mu      sync.Mutex
	at      time.Time
	last    []ebbtype.QueueStats
	history map[string][]rateSample // per queue, oldest first, within rateWindow
}

type rateSample struct {
	at        time.Time
	enqueued  int64
	completed int64
}

// rateWindow is the span rates average over: long enough to smooth a burst
// read twice in one second, short enough to show a pool breathing.
const rateWindow = 30 * time.Second

func newStatsCache(drv ebbdriver.Driver, clk ebbtype.Clock) *statsCache {
	return &statsCache{drv: drv, clock: clk, history: map[string][]rateSample{}}
}

// get returns queue counts no older than maxAge (0: read now).
func (c *statsCache) get(ctx context.Context, maxAge time.Duration) ([]ebbtype.QueueStats, error) {
	c.mu.Lock()
	if maxAge > 0 && !c.at.IsZero() && clock.Since(c.clock, c.at) <= maxAge {
		out := c.last
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	now := c.clock.Now()
	stats, err := c.drv.QueueStats(ctx, now)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.After(c.at) {
		c.at, c.last = now, stats
		for _, q := range stats {
			h := append(c.history[q.Name], rateSample{at: now, enqueued: q.Enqueued, completed: q.Succeeded + q.Failed})
			cut := 0
			for cut < len(h)-1 && now.Sub(h[cut].at) > rateWindow {
				cut++
			}
			c.history[q.Name] = h[cut:]
		}
	}
	return stats, nil
}

// rates returns tasks/s in (enqueued) and out (succeeded or dead) of a queue
// over the samples kept; zero until two samples exist.
func (c *statsCache) rates(queue string) (in, out float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.history[queue]
	if len(h) < 2 {
		return 0, 0
	}
	first, last := h[0], h[len(h)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0, 0
	}
	return float64(last.enqueued-first.enqueued) / dt, float64(last.completed-first.completed) / dt
}

// workerCache shares one worker registry read among the pools reconciling at
// the same moment and the dashboard's samples, as statsCache does for queue
// counts.
type workerCache struct {
	drv   ebbdriver.Driver
	clock ebbtype.Clock

	mu   sync.Mutex
	at   time.Time
	last []ebbtype.WorkerInfo
}

// get returns the registry read no longer than maxAge ago (0: read now);
// now is what the registry is read as of.
func (c *workerCache) get(ctx context.Context, now time.Time, maxAge time.Duration) ([]ebbtype.WorkerInfo, error) {
	c.mu.Lock()
	if maxAge > 0 && !c.at.IsZero() && clock.Since(c.clock, c.at) <= maxAge {
		out := c.last
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	at := c.clock.Now()
	ws, err := c.drv.WorkerList(ctx, now)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if at.After(c.at) {
		c.at, c.last = at, ws
	}
	c.mu.Unlock()
	return ws, nil
}
