package ebbpostgres_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
	"github.com/ebbq/ebb/internal/testpg"
	"github.com/ebbq/ebb/internal/testwait"
)

// TestRestartUnderLoad restarts a private PostgreSQL while a producer
// enqueues and a worker runs tasks: both reconnect on their own, and every
// task whose enqueue was acknowledged succeeds.
func TestRestartUnderLoad(t *testing.T) {
	t.Parallel()
	s := testpg.StartServer(t)
	ctx := t.Context()
	d, err := ebbpostgres.Open(ctx, s.URL()+"&schema=ebb", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	client, err := ebb.NewClient(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	runs := map[string]int{}
	h := ebb.NewHandlers()
	ebb.Handle(h, func(ctx context.Context, task *ebb.Task[noteArgs]) (any, error) {
		mu.Lock()
		runs[task.ID]++
		mu.Unlock()
		time.Sleep(time.Millisecond)
		return nil, nil
	})
	w, err := ebb.NewWorker(d, &ebb.WorkerConfig{Handlers: h, Concurrency: 8, LeaseDuration: 3 * time.Second,
		HeartbeatInterval: 500 * time.Millisecond, PollInterval: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(wctx) }()
	t.Cleanup(func() { stopWorker(); <-workerDone })

	const batches, batch = 60, 50
	var acked []string
	var failed int
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < batches; i++ {
			params := make([]ebb.EnqueueParams, batch)
			for j := range params {
				params[j] = ebb.EnqueueParams{Args: noteArgs{Note: "x"}}
			}
			for {
				res, err := client.EnqueueMany(ctx, params)
				if err == nil {
					for _, r := range res {
						acked = append(acked, r.ID)
					}
					break
				}
				failed++
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(400 * time.Millisecond)
	s.Stop(t)
	time.Sleep(time.Second)
	s.Start(t)
	<-produced
	if failed == 0 {
		t.Error("no enqueue failed while the server was down: the restart did not happen under load")
	}
	testwait.Eventually(t, 120*time.Second, "every acknowledged task succeeded", func() (bool, error) {
		var pending int
		err := d.Pool().QueryRow(ctx, `SELECT count(*) FROM ebb.ebb_tasks WHERE id = ANY($1) AND state <> 'succeeded'`, acked).Scan(&pending)
		return err == nil && pending == 0, nil // errors: the pool may still be reconnecting
	})
	var stored int
	if err := d.Pool().QueryRow(ctx, `SELECT count(*) FROM ebb.ebb_tasks WHERE id = ANY($1)`, acked).Scan(&stored); err != nil || stored != len(acked) {
		t.Errorf("%d of %d acknowledged tasks stored (%v)", stored, len(acked), err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range acked {
		if runs[id] == 0 {
			t.Errorf("task %s succeeded without running", id)
		}
	}
	t.Logf("%d tasks, %d enqueue attempts failed during the restart, all succeeded", len(acked), failed)
}
