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

type ImportArgs struct {
	File string `json:"file"`
}

func (ImportArgs) Kind() string { return "import" }

// The admin API is what an operator, a dashboard or the ebb CLI uses: queue
// counts, a search of stored tasks, the dead letters and what to do with
// them.
func Example_admin() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ebb-example")
	defer os.RemoveAll(dir)
	drv, err := ebbsqlite.Open(ctx, filepath.Join(dir, "ebb.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer drv.Close()

	handlers := ebb.NewHandlers()
	ebb.Handle(handlers, func(ctx context.Context, t *ebb.Task[ImportArgs]) (string, error) {
		if t.Args.File == "broken.csv" {
			return "", ebb.NoRetry(errors.New("line 3: not CSV"))
		}
		return "imported " + t.Args.File, nil
	})
	worker, _ := ebb.NewWorker(drv, &ebb.WorkerConfig{Handlers: handlers, Logger: slog.New(slog.DiscardHandler)})
	workerCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- worker.Run(workerCtx) }()

	client, _ := ebb.NewClient(drv, nil)
	enqueue := func(file string, opts *ebb.EnqueueOpts) string {
		res, err := client.Enqueue(ctx, ImportArgs{File: file}, opts)
		if err != nil {
			log.Fatal(err)
		}
		return res.ID
	}
	good := enqueue("users.csv", nil)
	broken := enqueue("broken.csv", nil)
	later := enqueue("orders.csv", &ebb.EnqueueOpts{Delay: time.Hour})
	_, _ = client.Wait(ctx, good)
	_, _ = client.Wait(ctx, broken)

	queues, _ := client.QueueList(ctx)
	for _, q := range queues {
		fmt.Printf("queue %s: queued %d, scheduled %d, dead %d, succeeded %d\n", q.Name, q.Queued, q.Scheduled, q.Dead, q.Succeeded)
	}

	page, _ := client.TaskList(ctx, &ebb.TaskListParams{State: ebb.StateScheduled})
	for _, t := range page.Tasks {
		fmt.Println("scheduled:", t.Kind, string(t.EncodedArgs), t.ID == later)
	}
	// Run the scheduled task now instead of in an hour.
	st, _ := client.TaskRetry(ctx, later)
	fmt.Println("retry the scheduled task:", st)
	info, _ := client.Wait(ctx, later)
	fmt.Println("scheduled task:", info.State)

	dead, total, _ := client.DeadList(ctx, ebb.QueueDefault, nil)
	fmt.Println("dead tasks:", total)
	for _, t := range dead {
		fmt.Printf("dead: %s after %d attempt: %s\n", string(t.EncodedArgs), t.Attempt, t.Errors[0].Error)
	}
	// Retrying a dead task resets its attempts and keeps its history.
	n, _ := client.DeadRetry(ctx, ebb.QueueDefault, broken)
	info, _ = client.Wait(ctx, broken)
	fmt.Printf("retried %d: %s again at attempt %d, %d errors in its history\n", n, info.State, info.Attempt, len(info.Errors))

	if err := client.TaskDelete(ctx, good); err != nil {
		log.Fatal(err)
	}
	_, err = client.Task(ctx, good)
	fmt.Println("deleted task found:", !errors.Is(err, ebb.ErrTaskNotFound))

	stop()
	<-done
	// Output:
	// queue default: queued 0, scheduled 1, dead 1, succeeded 1
	// scheduled: import {"file":"orders.csv"} true
	// retry the scheduled task: queued
	// scheduled task: succeeded
	// dead tasks: 1
	// dead: {"file":"broken.csv"} after 1 attempt: line 3: not CSV
	// retried 1: dead again at attempt 1, 2 errors in its history
	// deleted task found: false
}
