package ebb_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
)

type ResizeArgs struct {
	Image string `json:"image"`
}

func (ResizeArgs) Kind() string { return "resize" }

// Middleware wraps every attempt of every task: here one that reports each
// attempt with the tenant its producer put in the headers, and one that
// counts failures (a metrics exporter would do this).
func Example_middleware() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ebb-example")
	defer os.RemoveAll(dir)
	drv, err := ebbsqlite.Open(ctx, filepath.Join(dir, "ebb.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer drv.Close()

	report := func(next ebb.HandlerFunc) ebb.HandlerFunc {
		return func(ctx context.Context, task *ebb.TaskInfo) (any, error) {
			res, err := next(ctx, task)
			outcome := "ok"
			if err != nil {
				outcome = "failed: " + err.Error()
			}
			fmt.Printf("%s for %s, attempt %d: %s\n", task.Kind, task.Headers["tenant"], task.Attempt, outcome)
			return res, err
		}
	}
	var failures atomic.Int64
	count := ebb.ObserveMiddleware(func(ctx context.Context, task *ebb.TaskInfo, _ time.Duration, err error) {
		if err != nil {
			failures.Add(1)
		}
	})

	handlers := ebb.NewHandlers()
	ebb.Handle(handlers, func(ctx context.Context, t *ebb.Task[ResizeArgs]) (string, error) {
		if t.Attempt == 1 {
			return "", errors.New("disk busy")
		}
		return t.Args.Image + " resized", nil
	})
	worker, _ := ebb.NewWorker(drv, &ebb.WorkerConfig{
		Handlers: handlers,
		// The first is the outermost: report sees what count passed on.
		Middleware:  []ebb.Middleware{report, count},
		RetryPolicy: ebb.RetryPolicyFunc(func(*ebb.TaskInfo, error) time.Duration { return 0 }),
		Logger:      slog.New(slog.DiscardHandler),
	})
	workerCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- worker.Run(workerCtx) }()

	client, _ := ebb.NewClient(drv, nil)
	res, _ := client.Enqueue(ctx, ResizeArgs{Image: "cat.png"}, &ebb.EnqueueOpts{Headers: map[string]string{"tenant": "acme"}})
	out, err := ebb.WaitResult[string](ctx, client, res.ID)
	fmt.Println(out, err)
	fmt.Println("failed attempts:", failures.Load())
	stop()
	<-done
	// Output:
	// resize for acme, attempt 1: failed: disk busy
	// resize for acme, attempt 2: ok
	// cat.png resized <nil>
	// failed attempts: 1
}
