//go:build soak

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/redis/go-redis/v9"
)

// TestSoak (go test -tags soak, run by scripts/soak) pushes EBB_SOAK_TASKS
// (default 1,000,000) no-op tasks through four worker processes while one
// of them is SIGKILLed and replaced every 3 s and Redis is restarted once
// (a graceful restart that saves and reloads its data), and checks that
// every task succeeded: the queue counts exactly that many successes, and
// nothing is left queued, in flight or dead. Worker RSS and Redis memory
// are sampled throughout; with a short retention the finished tasks are
// cleaned up as they go, so memory must stay flat. The figures go to
// EBB_SOAK_OUT as JSON for the script to record.
func TestSoak(t *testing.T) {
	n := 1_000_000
	if s := os.Getenv("EBB_SOAK_TASKS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			t.Fatalf("EBB_SOAK_TASKS=%q: want a positive number", s)
		}
	}
	const (
		workers   = 4
		killEvery = 3 * time.Second
		batch     = 1000
	)
	srv := testredis.Start(t)
	ctx := context.Background()
	drv, err := ebbredis.Open(ctx, srv.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drv.Close() })
	client, err := ebb.NewClient(drv, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(srv.Port)})
	t.Cleanup(func() { _ = admin.Close() })
	usedMemory := func() int64 {
		info, err := admin.Info(ctx, "memory").Result()
		if err != nil {
			return -1
		}
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		return -1
	}

	start := time.Now()
	memStart := usedMemory()
	flags := []string{"--broker", srv.URL(), "--concurrency", "32", "--lease", "2s", "--heartbeat", "500ms"}
	procs := make([]*proc, workers)
	launch := func(i, gen int) {
		id := fmt.Sprintf("soak-%d-%d", i, gen)
		procs[i] = startEbb(t, "", id, append([]string{"worker", "--id", id}, flags...)...)
	}
	for i := range procs {
		launch(i, 0)
	}

	// Enqueue in the background while the workers burn down.
	enqErr := make(chan error, 1)
	go func() {
		params := make([]ebb.EnqueueParams, batch)
		for i := range params {
			params[i] = ebb.EnqueueParams{Kind: "noop", RawArgs: json.RawMessage(`{}`), Opts: &ebb.EnqueueOpts{Retention: time.Second}}
		}
		for done := 0; done < n; done += batch {
			k := min(batch, n-done)
			for attempt := 0; ; attempt++ {
				if _, err := client.EnqueueMany(ctx, params[:k]); err == nil {
					break
				} else if attempt == 200 { // 20 s: the restart takes well under that
					enqErr <- err
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		enqErr <- nil
	}()

	var maxRSS, minRSS int64 = 0, 1 << 62
	var memPeak int64
	kills, restarted, gen := 0, false, 1
	deadline := time.Now().Add(30 * time.Minute)
	tick := time.NewTicker(killEvery)
	defer tick.Stop()
	var enqueued bool
	for {
		if !enqueued {
			select {
			case err := <-enqErr:
				if err != nil {
					t.Fatalf("enqueue: %v", err)
				}
				enqueued = true
			default:
			}
		}
		var s ebb.QueueStats
		if qs, err := client.QueueList(ctx); err == nil {
			for _, q := range qs {
				if q.Name == ebb.QueueDefault {
					s = q
				}
			}
		}
		if enqueued && s.Succeeded >= int64(n) && s.Queued == 0 && s.InFlight == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 minutes: %+v", s)
		}
		<-tick.C
		m := usedMemory()
		memPeak = max(memPeak, m)
		for _, p := range procs {
			if rss := rssOf(p.pid()); rss > 0 {
				maxRSS, minRSS = max(maxRSS, rss), min(minRSS, rss)
			}
		}
		if !restarted && s.Succeeded > int64(n)/2 {
			// A graceful restart: Redis saves, stops and loads it again.
			srv.RestartSaved()
			restarted = true
			continue
		}
		victim := kills % workers
		procs[victim].kill()
		launch(victim, gen)
		kills++
		gen++
	}
	elapsed := time.Since(start)
	var final ebb.QueueStats
	qs, err := client.QueueList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Name == ebb.QueueDefault {
			final = q
		}
	}
	if final.Succeeded != int64(n) || final.Dead != 0 || final.Queued != 0 || final.InFlight != 0 {
		t.Errorf("after the soak the queue counts %+v, want exactly %d succeeded and nothing queued, in flight or dead", final, n)
	}
	if kills < 3 || !restarted {
		t.Errorf("%d kills and restarted=%v: the run was too short to say anything", kills, restarted)
	}
	// Retention cleanup catches up in bounded batches: wait (up to a
	// minute) for Redis to shrink back near where it started, and record how
	// long that took.
	cleanStart := time.Now()
	memEnd := usedMemory()
	for memEnd > memStart+16<<20 && time.Since(cleanStart) < time.Minute {
		time.Sleep(time.Second)
		memEnd = usedMemory()
	}
	cleanedIn := time.Since(cleanStart)
	out := map[string]any{
		"tasks": n, "seconds": elapsed.Seconds(), "kills": kills, "redis_restarts": 1,
		"succeeded": final.Succeeded, "dead": final.Dead, "retried": final.Retried,
		"worker_rss_min_mb": float64(minRSS) / (1 << 20), "worker_rss_max_mb": float64(maxRSS) / (1 << 20),
		"redis_used_memory_start_mb": float64(memStart) / (1 << 20), "redis_used_memory_peak_mb": float64(memPeak) / (1 << 20),
		"redis_used_memory_end_mb": float64(memEnd) / (1 << 20), "cleanup_seconds": cleanedIn.Seconds(),
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	t.Logf("soak: %s", b)
	if path := os.Getenv("EBB_SOAK_OUT"); path != "" {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		p.stop(20 * time.Second)
	}
}

// rssOf is a process's resident set in bytes, or 0 when it is gone.
func rssOf(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
