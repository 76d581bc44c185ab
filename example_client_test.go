package ebb_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/ebbq/ebb"
)

type WelcomeArgs struct {
	UserID int `json:"user_id"`
}

func (WelcomeArgs) Kind() string { return "welcome-email" }

// A unique key keeps a second task with the same key out while the first is
// pending: a producer that retries, or two that race, still send one welcome
// email. The duplicate enqueue returns the holder's id.
func Example_unique() {
	ctx := context.Background()
	drv, closeBroker := exampleBroker()
	defer closeBroker()
	client, _ := ebb.NewClient(drv, nil)

	welcome := func(user int) *ebb.EnqueueResult {
		res, err := client.Enqueue(ctx, WelcomeArgs{UserID: user}, &ebb.EnqueueOpts{
			// Held until the task succeeds, dies or is cancelled; set TTL to
			// hold it for a fixed time instead.
			Unique: &ebb.UniqueOpts{Key: fmt.Sprintf("welcome:%d", user)},
		})
		if err != nil {
			log.Fatal(err)
		}
		return res
	}
	first := welcome(42)
	again := welcome(42)
	other := welcome(7)
	fmt.Println("first:", first.State, "duplicate:", first.Duplicate)
	fmt.Println("again:", "duplicate:", again.Duplicate, "same task:", again.ID == first.ID)
	fmt.Println("other user:", "duplicate:", other.Duplicate, "same task:", other.ID == first.ID)

	qs, _ := client.QueueList(ctx)
	fmt.Println("tasks stored:", qs[0].Queued)
	// Output:
	// first: queued duplicate: false
	// again: duplicate: true same task: true
	// other user: duplicate: false same task: false
	// tasks stored: 2
}

type ThumbnailArgs struct {
	Image string `json:"image"`
	Width int    `json:"width"`
}

func (ThumbnailArgs) Kind() string { return "thumbnail" }

// EnqueueMany stores a batch in one round trip per queue. A batch is checked
// whole before anything is sent: one bad task names itself and stores none.
func Example_enqueueMany() {
	ctx := context.Background()
	drv, closeBroker := exampleBroker()
	defer closeBroker()
	client, _ := ebb.NewClient(drv, nil)

	_, err := client.EnqueueMany(ctx, []ebb.EnqueueParams{
		{Args: ThumbnailArgs{Image: "a.png", Width: 64}},
		{Args: ThumbnailArgs{Image: "b.png", Width: 64}, Opts: &ebb.EnqueueOpts{Priority: 7}},
	})
	fmt.Println(err)
	qs, _ := client.QueueList(ctx)
	fmt.Println("queues after the rejected batch:", len(qs))

	batch := []ebb.EnqueueParams{
		{Args: ThumbnailArgs{Image: "a.png", Width: 64}},
		{Args: ThumbnailArgs{Image: "b.png", Width: 128}, Opts: &ebb.EnqueueOpts{Priority: ebb.PriorityHigh}},
		// Raw JSON for producers without the Go type.
		{Kind: "thumbnail", RawArgs: json.RawMessage(`{"image":"c.png","width":256}`)},
	}
	results, err := client.EnqueueMany(ctx, batch)
	if err != nil {
		log.Fatal(err)
	}
	for i, res := range results {
		task, _ := client.Task(ctx, res.ID)
		fmt.Printf("%d: %s %s priority %d args %s\n", i, task.Kind, res.State, task.Priority, task.EncodedArgs)
	}
	// Output:
	// ebb: enqueue task 2 of 2: invalid enqueue options: priority 7: use PriorityHigh (1), PriorityNormal (2) or PriorityLow (3)
	// queues after the rejected batch: 0
	// 0: thumbnail queued priority 2 args {"image":"a.png","width":64}
	// 1: thumbnail queued priority 1 args {"image":"b.png","width":128}
	// 2: thumbnail queued priority 2 args {"image":"c.png","width":256}
}

// Schedules live in the broker, so every control-plane replica sees the same
// set and the leader fires them (while every worker pool is at zero, too).
// ScheduleList says when each runs next; a paused schedule does not run.
func Example_schedule() {
	ctx := context.Background()
	drv, closeBroker := exampleBroker()
	defer closeBroker()
	client, _ := ebb.NewClient(drv, nil)

	s, err := client.ScheduleUpsert(ctx, &ebb.Schedule{
		Name:  "hourly-report",
		Every: time.Hour,
		Kind:  "report",
		Args:  json.RawMessage(`{"format":"pdf"}`),
		Queue: "reports",
	})
	if err != nil {
		log.Fatal(err)
	}
	// Intervals tick from the schedule's creation, to the second.
	anchor := s.CreatedAt.Truncate(time.Second)
	show := func(when string) {
		list, err := client.ScheduleList(ctx)
		if err != nil {
			log.Fatal(err)
		}
		for _, s := range list {
			spec, _, _ := strings.Cut(s.Spec, " from ")
			next := "never"
			if !s.NextRun.IsZero() {
				next = s.NextRun.Sub(anchor).String() + " after creation"
			}
			fmt.Printf("%s: %s %s to queue %s, paused %v, next run %s\n", when, s.Name, spec, s.Queue, s.Paused, next)
		}
	}
	show("added")
	if err := client.SchedulePause(ctx, "hourly-report"); err != nil {
		log.Fatal(err)
	}
	show("paused")
	// Resuming does not catch up on ticks missed while paused.
	if err := client.ScheduleResume(ctx, "hourly-report"); err != nil {
		log.Fatal(err)
	}
	show("resumed")
	// Output:
	// added: hourly-report @every 1h0m0s to queue reports, paused false, next run 1h0m0s after creation
	// paused: hourly-report @every 1h0m0s to queue reports, paused true, next run never
	// resumed: hourly-report @every 1h0m0s to queue reports, paused false, next run 1h0m0s after creation
}

type ImportArgs struct {
	File string `json:"file"`
}

func (ImportArgs) Kind() string { return "import" }

// The admin API is what an operator, a dashboard or the ebb CLI uses: queue
// counts, a search of stored tasks, the dead letters and what to do with
// them.
func Example_admin() {
	ctx := context.Background()
	drv, closeBroker := exampleBroker()
	defer closeBroker()

	handlers := ebb.NewHandlers()
	ebb.Handle(handlers, func(ctx context.Context, t *ebb.Task[ImportArgs]) (string, error) {
		if t.Args.File == "broken.csv" {
			return "", ebb.NoRetry(errors.New("line 3: not CSV"))
		}
		return "imported " + t.Args.File, nil
	})
	stop := startWorker(drv, ebb.WorkerConfig{Handlers: handlers})

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
	_, err := client.Task(ctx, good)
	fmt.Println("deleted task found:", !errors.Is(err, ebb.ErrTaskNotFound))

	stop()
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
