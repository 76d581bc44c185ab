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

// GreetArgs are the arguments of a typed task: its Kind names the handler.
type GreetArgs struct {
	Name string `json:"name"`
}

func (GreetArgs) Kind() string { return "greet" }

// Enqueue a typed task, run it on a worker and wait for its result.
func Example_worker() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ebb-example")
	defer os.RemoveAll(dir)

	drv, err := ebbsqlite.Open(ctx, filepath.Join(dir, "ebb.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer drv.Close()

	handlers := ebb.NewHandlers()
	ebb.Handle(handlers, func(ctx context.Context, t *ebb.Task[GreetArgs]) (string, error) {
		return "hello, " + t.Args.Name, nil
	})
	worker, err := ebb.NewWorker(drv, &ebb.WorkerConfig{
		Handlers: handlers,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	workerCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- worker.Run(workerCtx) }()

	client, err := ebb.NewClient(drv, nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := client.Enqueue(ctx, GreetArgs{Name: "ebb"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	greeting, err := ebb.WaitResult[string](ctx, client, res.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(greeting)

	stop() // drains: in-flight tasks finish, the rest are handed back
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output: hello, ebb
}

type ChargeArgs struct {
	Cents int `json:"cents"`
}

func (ChargeArgs) Kind() string { return "charge" }

// Failures are retried with backoff until MaxAttempts; NoRetry sends a task
// straight to the dead state with its error history, where it can be
// inspected and retried by hand.
func Example_retries() {
	ctx := context.Background()
	drv, closeBroker := exampleBroker()
	defer closeBroker()

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
	defer startWorker(drv, ebb.WorkerConfig{Handlers: handlers})()

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

type ResizeArgs struct {
	Image string `json:"image"`
}

func (ResizeArgs) Kind() string { return "resize" }

// Middleware wraps every attempt of every task: here one that reports each
// attempt with the tenant its producer put in the headers, and one that
// counts failures (a metrics exporter would do this).
func Example_middleware() {
	ctx := context.Background()
	drv, closeBroker := exampleBroker()
	defer closeBroker()

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
	stop := startWorker(drv, ebb.WorkerConfig{
		Handlers: handlers,
		// The first is the outermost: report sees what count passed on.
		Middleware:  []ebb.Middleware{report, count},
		RetryPolicy: ebb.RetryPolicyFunc(func(*ebb.TaskInfo, error) time.Duration { return 0 }),
	})

	client, _ := ebb.NewClient(drv, nil)
	res, _ := client.Enqueue(ctx, ResizeArgs{Image: "cat.png"}, &ebb.EnqueueOpts{Headers: map[string]string{"tenant": "acme"}})
	out, err := ebb.WaitResult[string](ctx, client, res.ID)
	fmt.Println(out, err)
	fmt.Println("failed attempts:", failures.Load())
	stop()
	// Output:
	// resize for acme, attempt 1: failed: disk busy
	// resize for acme, attempt 2: ok
	// cat.png resized <nil>
	// failed attempts: 1
}
