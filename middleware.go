package ebb

import (
	"context"
	"log/slog"
	"time"

	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/clock"
)

// Middleware wraps the handler of every task a worker runs: logging, metrics,
// tracing (read trace context from task.Headers), auth, …. The first
// middleware in WorkerConfig.Middleware is the outermost.
type Middleware func(next HandlerFunc) HandlerFunc

// LoggingMiddleware logs each attempt's end at Info (success) or Warn
// (failure) with kind, id, queue, attempt and duration. Args and results are
// not logged: they may hold secrets.
func LoggingMiddleware(logger *slog.Logger) Middleware {
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, task *TaskInfo) (any, error) {
			clk := clockFrom(ctx)
			start := clk.Now()
			res, err := next(ctx, task)
			attrs := []slog.Attr{
				slog.String("kind", task.Kind), slog.String("id", task.ID), slog.String("queue", task.Queue),
				slog.Int("attempt", task.Attempt), slog.Duration("took", clock.Since(clk, start)),
			}
			if err != nil {
				logger.LogAttrs(ctx, slog.LevelWarn, "task failed", append(attrs, slog.String("error", err.Error()))...)
			} else {
				logger.LogAttrs(ctx, slog.LevelInfo, "task done", attrs...)
			}
			return res, err
		}
	}
}

// ObserveMiddleware calls observe after each attempt with its duration and
// error: the hook for metrics and tracing exporters.
func ObserveMiddleware(observe func(ctx context.Context, task *TaskInfo, took time.Duration, err error)) Middleware {
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, task *TaskInfo) (any, error) {
			clk := clockFrom(ctx)
			start := clk.Now()
			res, err := next(ctx, task)
			observe(ctx, task, clock.Since(clk, start), err)
			return res, err
		}
	}
}

// clockKey carries the worker's clock in a handler's context. Middleware is
// built before, and apart from, the worker that runs it, so the context is
// its only way to the clock the rest of the attempt is timed with.
type clockKey struct{}

func withClock(ctx context.Context, c ebbtype.Clock) context.Context {
	return context.WithValue(ctx, clockKey{}, c)
}

// clockFrom is the worker's clock, or the wall clock for middleware called
// outside a worker.
func clockFrom(ctx context.Context) ebbtype.Clock {
	if c, ok := ctx.Value(clockKey{}).(ebbtype.Clock); ok {
		return c
	}
	return clock.Wall
}
