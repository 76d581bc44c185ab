package ebb_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
)

type ChargeArgs struct {
	Cents int `json:"cents"`
}

func (ChargeArgs) Kind() string { return "charge" }

// Failures are retried with backoff until MaxAttempts; NoRetry sends a task
// straight to the dead state with its error history, where it can be
// inspected and retried by hand.
func Example_retries() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ebb-example")
	defer os.RemoveAll(dir)
	drv, err := ebbsqlite.Open(ctx, filepath.Join(dir, "ebb.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer drv.Close()

	handlers := ebb.NewHandlers()
	ebb.Handle(handlers, func(ctx context.Context, t *ebb.Task[ChargeArgs]) (any, error) {
		if t.Args.Cents < 0 {
			return nil, ebb.NoRetry(errors.New("negative amount"))
		}
		if t.Attempt < 3 {
			return nil, fmt.Errorf("payment gateway timeout (attempt %d)", t.Attempt)
		}
		return "charged", nil
	}, ebb.HandlerOpts{
		// Retry quickly for the example; the default backs off from 1 s to 1 h.
		RetryPolicy: ebb.ExponentialBackoff{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond},
	})
	worker, _ := ebb.NewWorker(drv, &ebb.WorkerConfig{Handlers: handlers, Logger: slog.New(slog.DiscardHandler)})
	workerCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = worker.Run(workerCtx) }()

	client, _ := ebb.NewClient(drv, nil)
	ok, _ := client.Enqueue(ctx, ChargeArgs{Cents: 500}, &ebb.EnqueueOpts{MaxAttempts: 5})
	bad, _ := client.Enqueue(ctx, ChargeArgs{Cents: -1}, nil)

	info, err := client.Wait(ctx, ok.ID)
	fmt.Println(info.State, "after", info.Attempt, "attempts, errors:", len(info.Errors), err)

	info, err = client.Wait(ctx, bad.ID)
	fmt.Println(info.State, "after", info.Attempt, "attempt:", errors.Is(err, ebb.ErrTaskDead), info.Errors[0].Error)
	// Output:
	// succeeded after 3 attempts, errors: 2 <nil>
	// dead after 1 attempt: true negative amount
}
