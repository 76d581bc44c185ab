package ebbpostgres_test

import (
	"context"
	"strconv"
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
//	go test -run '^$' -bench . -benchtime 3x ./ebbdriver/ebbpostgres/

func benchTasks(queue string, n int, now time.Time) []*ebbtype.TaskInfo {
	tasks := make([]*ebbtype.TaskInfo, n)
	for i := range tasks {
		tasks[i] = &ebbtype.TaskInfo{
			ID: tid.NewAt(now), Kind: "k", Queue: queue, EncodedArgs: []byte(`{}`),
			Priority: ebbtype.PriorityNormal, RunAt: now, MaxAttempts: 3,
			Retention: time.Hour, EnqueuedAt: now,
		}
	}
	return tasks
}

func benchEnqueue(b *testing.B, d ebbdriver.Driver, tasks []*ebbtype.TaskInfo) {
	b.Helper()
	for len(tasks) > 0 {
		n := min(len(tasks), 1000)
		res, err := d.Enqueue(context.Background(), tasks[:n])
		if err != nil {
			b.Fatalf("Enqueue: %v", err)
		}
		for i, r := range res {
			if r.Duplicate {
				b.Fatalf("task %s: duplicate", tasks[i].ID)
			}
		}
		tasks = tasks[n:]
	}
}

// BenchmarkEnqueueBatch stores batches of 1,000 tasks, as EnqueueMany does.
func BenchmarkEnqueueBatch(b *testing.B) {
	d := newDriver(b)
	now := time.Now()
	total := 0
	for b.Loop() {
		b.StopTimer()
		tasks := benchTasks("bench", 1000, now)
		b.StartTimer()
		benchEnqueue(b, d, tasks)
		total += len(tasks)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkEnqueueSingle is single-task Enqueue calls from 1 and from 16
// concurrent producers, as request handlers make them.
func BenchmarkEnqueueSingle(b *testing.B) {
	for _, producers := range []int{1, 16} {
		b.Run("producers="+strconv.Itoa(producers), func(b *testing.B) {
			d := newDriver(b)
			tasks := benchTasks("bench", b.N, time.Now())
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for range producers {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						if _, err := d.Enqueue(context.Background(), tasks[i:i+1]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
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
	var inFetch, inComplete time.Duration // where the time goes
	for b.Loop() {
		b.StopTimer()
		now := time.Now()
		benchEnqueue(b, d, benchTasks("bench", n, now))
		b.StartTimer()
		done := 0
		for {
			t0 := time.Now()
			res, err := d.Fetch(context.Background(), ebbdriver.FetchParams{
				Queues: []string{"bench"}, Limit: limit, WorkerID: "bench-worker", LeaseToken: tid.New(),
				LeaseDuration: time.Minute, Now: now,
			})
			if err != nil {
				b.Fatalf("Fetch: %v", err)
			}
			t1 := time.Now()
			inFetch += t1.Sub(t0)
			if len(res.Tasks) == 0 {
				break
			}
			cs := make([]ebbdriver.Completion, len(res.Tasks))
			for i, r := range res.Tasks {
				cs[i] = ebbdriver.Completion{Queue: r.Queue, ID: r.ID, LeaseToken: r.LeaseToken,
					Outcome: ebbdriver.OutcomeSucceeded, Now: now}
			}
			errs, err := d.Complete(context.Background(), cs)
			if err != nil {
				b.Fatalf("Complete: %v", err)
			}
			inComplete += time.Since(t1)
			for _, err := range errs {
				if err != nil {
					b.Fatalf("Complete: %v", err)
				}
			}
			done += len(res.Tasks)
		}
		if done != n {
			b.Fatalf("burned %d tasks, want %d", done, n)
		}
		total += done
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "tasks/s")
	b.ReportMetric(inFetch.Seconds()*1000/float64(total/limit), "fetch-ms/batch")
	b.ReportMetric(inComplete.Seconds()*1000/float64(total/limit), "complete-ms/batch")
}
