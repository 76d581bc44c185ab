package ebbsqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/tid"
)

// Run with, for example:
//
//	go test -run '^$' -bench . -benchtime 3x ./ebbdriver/ebbsqlite/

func makeTasks(queue string, n int, now time.Time) []*ebbtype.TaskInfo {
	tasks := make([]*ebbtype.TaskInfo, n)
	for i := range tasks {
		tasks[i] = task(queue, now)
		tasks[i].EncodedArgs = []byte(`{"user_id":12345,"template":"welcome"}`)
		tasks[i].Headers = map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	}
	return tasks
}

// BenchmarkEnqueueBatch stores batches of 500 tasks.
func BenchmarkEnqueueBatch(b *testing.B) {
	d := newDriver(b)
	const batch = 500
	now := time.Now()
	total := 0
	for b.Loop() {
		if _, err := d.Enqueue(context.Background(), makeTasks("bench", batch, now)); err != nil {
			b.Fatal(err)
		}
		total += batch
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkEnqueueSingle stores one task per call, from 1 and from 16
// goroutines: the call most producers make, where concurrent calls share a
// transaction.
func BenchmarkEnqueueSingle(b *testing.B) {
	for _, producers := range []int{1, 16} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			d := newDriver(b)
			now := time.Now()
			var wg sync.WaitGroup
			var next atomic.Int64
			b.ResetTimer()
			for range producers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := d.Enqueue(context.Background(), makeTasks("bench", 1, now)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}

// BenchmarkFetchComplete burns down 50,000 queued tasks with
// Fetch(Limit 500) + Complete, as a worker with no-op handlers would.
func BenchmarkFetchComplete(b *testing.B) {
	d := newDriver(b)
	const (
		n     = 50000
		limit = 500
	)
	total := 0
	for b.Loop() {
		b.StopTimer()
		now := time.Now()
		enqueue(b, d, makeTasks("bench", n, now)...)
		b.StartTimer()
		done := 0
		for {
			rs := fetch(b, d, limit, "bench-worker", now, "bench")
			if len(rs) == 0 {
				break
			}
			cs := make([]ebbdriver.Completion, len(rs))
			for i, r := range rs {
				cs[i] = ebbdriver.Completion{Queue: r.Queue, ID: r.ID, LeaseToken: r.LeaseToken,
					Outcome: ebbdriver.OutcomeSucceeded, Result: []byte(`{"ok":true}`), Now: now}
			}
			errs, err := d.Complete(context.Background(), cs)
			if err != nil {
				b.Fatal(err)
			}
			for _, err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
			done += len(rs)
		}
		if done != n {
			b.Fatalf("burned down %d tasks, want %d", done, n)
		}
		total += done
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkQueueStats1M reads stats with a million finished tasks kept for
// their retention beside 10,000 active ones.
func BenchmarkQueueStats1M(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ebb.db")
	d := openAt(b, path)
	now := time.Now()
	enqueue(b, d, makeTasks("a", 10000, now)...)
	enqueue(b, d, makeTasks("b", 1000, now)...)
	// The finished rows are written directly: through the driver it would
	// take a minute.
	_, err := rawDB(b, path).Exec(`
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
		INSERT INTO tasks (id, queue, kind, args, priority, run_at, attempt, max_attempts, timeout,
			retention, unique_ttl, state, enqueued_at, started_at, finished_at, result, expires_at)
		SELECT printf('done-%07d', i), 'a', 'k', '{}', 2, ?1, 1, 3, 0, 3600000000000, 0, 'succeeded',
			?1, ?1, ?1, 'true', ?1 + 3600000000000 FROM n`, now.UnixNano())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		st, err := d.QueueStats(context.Background(), now)
		if err != nil {
			b.Fatal(err)
		}
		if len(st) != 2 || st[0].Queued != 10000 {
			b.Fatalf("stats = %+v", st)
		}
	}
}

// BenchmarkEnqueueToClaim measures the latency from Enqueue returning in one
// Driver to another Driver having claimed the task after the notification:
// what a worker in another process (CrossDriver) or the same one
// (InProcess) adds before a handler starts.
func BenchmarkEnqueueToClaim(b *testing.B) {
	for _, cross := range []bool{false, true} {
		name := "InProcess"
		if cross {
			name = "CrossDriver"
		}
		b.Run(name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "ebb.db")
			producer := openAt(b, path)
			consumer := producer
			if cross {
				consumer = openAt(b, path)
			}
			ctx := b.Context()
			events, err := consumer.Listen(ctx, ebbdriver.ListenParams{Queues: []string{"lat"}})
			if err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			for b.Loop() {
				now := time.Now()
				tk := task("lat", now)
				start := time.Now()
				enqueue(b, producer, tk)
				got := false
				for !got {
					select {
					case <-events:
					case <-time.After(10 * time.Second):
						b.Fatal("no event within 10s")
					}
					res, err := consumer.Fetch(ctx, ebbdriver.FetchParams{Queues: []string{"lat"}, Limit: 10,
						WorkerID: "w", LeaseToken: tid.New(), LeaseDuration: time.Minute, Now: time.Now()})
					if err != nil {
						b.Fatal(err)
					}
					got = len(res.Tasks) > 0
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))]) / float64(time.Millisecond)
			}
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(pct(1), "max-ms")
		})
	}
}
