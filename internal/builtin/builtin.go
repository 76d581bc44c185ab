// Package builtin holds the task kinds every `ebb worker` runs out of the box,
// for demos, smoke tests and benchmarks: noop, sleep and fail. None of them
// runs commands or touches the network.
package builtin

import (
	"context"
	"errors"
	"time"

	"github.com/ebbq/ebb"
)

// NoopArgs is a task that does nothing: the unit of throughput benchmarks.
type NoopArgs struct{}

// Kind implements ebb.Args.
func (NoopArgs) Kind() string { return "noop" }

// SleepArgs sleeps MS milliseconds (or until cancelled): a stand-in for real
// work in scaling demos and drain tests.
type SleepArgs struct {
	MS int `json:"ms"`
}

// Kind implements ebb.Args.
func (SleepArgs) Kind() string { return "sleep" }

// FailArgs always fails with Message: to exercise retries and dead letters.
type FailArgs struct {
	Message string `json:"message"`
}

// Kind implements ebb.Args.
func (FailArgs) Kind() string { return "fail" }

// SleepResult is what a sleep task returns.
type SleepResult struct {
	SleptMS int `json:"slept_ms"`
}

// Register adds the built-in kinds to h.
func Register(h *ebb.Handlers) {
	ebb.Handle(h, func(ctx context.Context, t *ebb.Task[NoopArgs]) (any, error) {
		return nil, nil
	})
	ebb.Handle(h, func(ctx context.Context, t *ebb.Task[SleepArgs]) (SleepResult, error) {
		if t.Args.MS < 0 {
			return SleepResult{}, ebb.NoRetry(errors.New(`sleep: "ms" must not be negative`))
		}
		timer := time.NewTimer(time.Duration(t.Args.MS) * time.Millisecond)
		defer timer.Stop()
		select {
		case <-timer.C:
			return SleepResult{SleptMS: t.Args.MS}, nil
		case <-ctx.Done():
			return SleepResult{}, context.Cause(ctx)
		}
	})
	ebb.Handle(h, func(ctx context.Context, t *ebb.Task[FailArgs]) (any, error) {
		msg := t.Args.Message
		if msg == "" {
			msg = "fail: failing as asked"
		}
		return nil, errors.New(msg)
	})
}
