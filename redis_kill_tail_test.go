package ebb_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
)

// TestRedisKillClaimTail SIGKILLs a Redis with appendfsync always while two
// workers run a batch, restarts it, and measures the tail: how long after
// the restart the last task of the batch ran. A fetch whose claims Redis
// stored but whose reply died with it used to leave those tasks leased to a
// worker that never heard of them for the whole lease (30 s here); the
// worker now repeats the fetch under the same token and gets them back.
// The test fails if a batch is not done within half a lease after the
// restart.
//
// EBB_CLAIM_TAIL_KILLS sets the number of kills (default 1);
// EBB_CLAIM_TAIL_REPORT names a file to write one JSON line to
// (scripts/bench-claim-tail reads it).
func TestRedisKillClaimTail(t *testing.T) {
	t.Parallel()
	kills := 1
	if s := os.Getenv("EBB_CLAIM_TAIL_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("EBB_CLAIM_TAIL_KILLS=%q: want a positive number", s)
		}
		kills = n
	}
	const (
		lease = 30 * time.Second
		batch = 3000
	)
	srv := testredis.StartWith(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	open := func() *ebbredis.Driver {
		d, err := ebbredis.Open(ctx, srv.URL(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return d
	}
	var ran sync.Map
	var ranN atomic.Int64
	h := ebb.NewHandlers()
	ebb.HandleRaw(h, "tail", func(ctx context.Context, task *ebb.Task[json.RawMessage]) (any, error) {
		time.Sleep(2 * time.Millisecond)
		if _, dup := ran.LoadOrStore(task.ID, true); !dup {
			ranN.Add(1)
		}
		return nil, nil
	})
	var workers sync.WaitGroup
	for i := range 2 {
		w, err := ebb.NewWorker(open(), &ebb.WorkerConfig{Handlers: h, ID: "tail-" + strconv.Itoa(i),
			Concurrency: 50, FetchBatchMax: 20, LeaseDuration: lease, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		workers.Go(func() { _ = w.Run(ctx) })
	}
	client, err := ebb.NewClient(open(), &ebb.ClientConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}

	var tails []string
	var worst time.Duration
	for k := range kills {
		params := make([]ebb.EnqueueParams, batch)
		for i := range params {
			params[i] = ebb.EnqueueParams{Kind: "tail"}
		}
		res, err := client.EnqueueMany(ctx, params)
		if err != nil {
			t.Fatalf("kill %d: enqueue: %v", k+1, err)
		}
		base := ranN.Load()
		if err := testwait.Until(30*time.Second, func() (bool, error) { return ranN.Load()-base >= batch/3, nil }); err != nil {
			t.Fatalf("kill %d: the workers did not start on the batch: %v", k+1, err)
		}
		srv.Kill()
		time.Sleep(100 * time.Millisecond)
		srv.Restart()
		restarted := time.Now()
		var last time.Time
		err = testwait.Until(lease/2, func() (bool, error) {
			for _, r := range res {
				if _, ok := ran.Load(r.ID); !ok {
					return false, nil
				}
			}
			last = time.Now()
			return true, nil
		})
		if err != nil {
			missing := 0
			for _, r := range res {
				if _, ok := ran.Load(r.ID); !ok {
					missing++
				}
			}
			t.Fatalf("kill %d: %d tasks of the batch had not run %s after the restart (lease %s): %v", k+1, missing, lease/2, lease, err)
		}
		tail := last.Sub(restarted)
		worst = max(worst, tail)
		tails = append(tails, tail.Round(time.Millisecond).String())
	}
	cancel()
	workers.Wait()
	t.Logf("claim-reply tail after %d Redis SIGKILLs (appendfsync always, lease %s): %v, worst %s", kills, lease, tails, worst.Round(time.Millisecond))
	if path := os.Getenv("EBB_CLAIM_TAIL_REPORT"); path != "" {
		line, _ := json.Marshal(map[string]any{"kills": kills, "tails": tails, "worst": worst.Round(time.Millisecond).String(),
			"batch": batch, "lease": lease.String()})
		if err := os.WriteFile(path, append(line, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
