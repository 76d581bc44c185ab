package ebb_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

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
