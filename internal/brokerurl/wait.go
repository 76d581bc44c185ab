package brokerurl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
	"github.com/ebbq/ebb/internal/clock"
)

// Backoff between attempts of OpenWait: quick at first, since a broker that
// is starting alongside usually answers within a second, then no slower than
// BackoffMax, so a broker that comes back is noticed within seconds.
const (
	BackoffMin = 250 * time.Millisecond
	BackoffMax = 10 * time.Second
)

// OpenWait opens the broker named by url like Open, but keeps trying while a
// network broker cannot be reached, for up to maxWait, with capped
// exponential backoff and one warning per failed attempt. Long-running
// commands use it because on Kubernetes, ECS or Compose the broker often
// starts after its workers, and a crash loop is a poor way to wait.
//
// maxWait 0 makes one attempt, as Open. A bad URL, a rejected password and
// every SQLite failure are returned at once: waiting does not fix a typo,
// and a local file that cannot be opened now (permissions, a missing
// directory, a newer schema) will not open later either. When ctx ends
// during the wait, the error wraps ctx's error.
func OpenWait(ctx context.Context, url string, maxWait time.Duration, logger *slog.Logger) (*Broker, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	deadline := start.Add(maxWait)
	delay := BackoffMin
	for attempt := 1; ; attempt++ {
		b, err := Open(ctx, url, logger)
		if err == nil {
			if attempt > 1 {
				logger.Info("broker reachable", "broker", Redact(url), "attempt", attempt,
					"waited", time.Since(start).Round(time.Millisecond))
			}
			return b, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("stopped while waiting for broker %s: %w", Redact(url), ctx.Err())
		}
		if maxWait <= 0 || !retryable(url, err) {
			return nil, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("broker %s still unreachable after %s (%d attempts): %w",
				Redact(url), maxWait, attempt, err)
		}
		// The last sleep is cut short so the final attempt falls on the
		// deadline instead of giving up up to BackoffMax early.
		next := min(delay, left.Round(time.Millisecond))
		logger.Warn("broker unreachable, retrying", "broker", Redact(url), "err", err,
			"attempt", attempt, "next_delay", next)
		if !clock.Sleep(ctx, next) {
			return nil, fmt.Errorf("stopped while waiting for broker %s: %w", Redact(url), ctx.Err())
		}
		delay = min(2*delay, BackoffMax)
	}
}

// retryable reports whether waiting might make err go away.
func retryable(url string, err error) bool {
	if errors.Is(err, ErrBadURL) || errors.Is(err, errPermanent) {
		return false
	}
	scheme, _, _ := strings.Cut(url, ":")
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
		return true
	case "postgres", "postgresql":
		return !ebbpostgres.IsPermanent(err)
	}
	return false
}
