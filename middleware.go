package ebb

import (
	"context"
	"log/slog"
	"time"
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
			start := time.Now()
			res, err := next(ctx, task)
			attrs := []slog.Attr{
				slog.String("kind", task.Kind), slog.String("id", task.ID), slog.String("queue", task.Queue),
				slog.Int("attempt", task.Attempt), slog.Duration("took", time.Since(start)),
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
			start := time.Now()
			res, err := next(ctx, task)
			observe(ctx, task, time.Since(start), err)
			return res, err
		}
	}
}
