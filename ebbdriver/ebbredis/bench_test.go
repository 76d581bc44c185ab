package ebbredis

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/tid"
)

// benchBatch is the batch size of the benchmarks, what an ebb worker uses.
const benchBatch = 500

func benchTasks(queue string, n int, now time.Time) []*ebbtype.TaskInfo {
	tasks := make([]*ebbtype.TaskInfo, n)
	for i := range tasks {
		tasks[i] = &ebbtype.TaskInfo{
			ID: tid.NewAt(now), Kind: "bench.noop", Queue: queue, EncodedArgs: []byte(`{"n":` + strconv.Itoa(i) + `}`),
			Priority: ebbtype.PriorityNormal, RunAt: now, MaxAttempts: 3, Retention: time.Hour, EnqueuedAt: now,
		}
	}
	return tasks
}

// redisCPU is the CPU time Redis has used so far (user+sys). Benchmarks
// report Redis CPU per task besides throughput: on a shared, busy machine
// wall-clock throughput is noisy, CPU time much less so.
func redisCPU(b *testing.B, rdb redis.UniversalClient) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sec float64
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if k == "used_cpu_user" || k == "used_cpu_sys" {
			f, _ := strconv.ParseFloat(v, 64)
			sec += f
		}
	}
	return time.Duration(sec * float64(time.Second))
}

// BenchmarkEnqueueBatch measures Enqueue in batches of benchBatch; one op is
// one task.
func BenchmarkEnqueueBatch(b *testing.B) {
	d := newTestDriver(b)
	ctx := context.Background()
	now := time.Now()
	tasks := benchTasks("bench", b.N, now)
	b.ReportAllocs()
	cpu0 := redisCPU(b, d.rdb)
	b.ResetTimer()
	for i := 0; i < b.N; i += benchBatch {
		if _, err := d.Enqueue(ctx, tasks[i:min(i+benchBatch, b.N)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	b.ReportMetric(float64((redisCPU(b, d.rdb)-cpu0).Nanoseconds())/float64(b.N), "redis-cpu-ns/task")
}

// BenchmarkFetchComplete is a worker's hot loop at the driver level: Fetch
// up to benchBatch tasks, complete them all as Succeeded, until b.N
// pre-enqueued tasks are done. One op is one task.
func BenchmarkFetchComplete(b *testing.B) {
	d := newTestDriver(b)
	ctx := context.Background()
	now := time.Now()
	tasks := benchTasks("bench", b.N, now)
	for i := 0; i < b.N; i += benchBatch {
		if _, err := d.Enqueue(ctx, tasks[i:min(i+benchBatch, b.N)]); err != nil {
			b.Fatal(err)
		}
	}
	completions := make([]ebbdriver.Completion, 0, benchBatch)
	b.ReportAllocs()
	cpu0 := redisCPU(b, d.rdb)
	b.ResetTimer()
	done := 0
	var fetchTime, completeTime time.Duration
	for done < b.N {
		t0 := time.Now()
		res, err := d.Fetch(ctx, ebbdriver.FetchParams{
			Queues: []string{"bench"}, Limit: benchBatch, WorkerID: "bench-worker",
			LeaseToken: tid.New(), LeaseDuration: time.Minute, Now: now,
		})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Tasks) == 0 {
			b.Fatalf("fetched nothing after %d of %d tasks", done, b.N)
		}
		t1 := time.Now()
		fetchTime += t1.Sub(t0)
		completions = completions[:0]
		for _, t := range res.Tasks {
			completions = append(completions, ebbdriver.Completion{
				Queue: t.Queue, ID: t.ID, LeaseToken: t.LeaseToken, Outcome: ebbdriver.OutcomeSucceeded, Now: now,
			})
		}
		t2 := time.Now()
		errs, err := d.Complete(ctx, completions)
		if err != nil {
			b.Fatal(err)
		}
		completeTime += time.Since(t2)
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		done += len(res.Tasks)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	b.ReportMetric(float64(fetchTime.Nanoseconds())/float64(b.N), "fetch-ns/task")
	b.ReportMetric(float64(completeTime.Nanoseconds())/float64(b.N), "complete-ns/task")
	b.ReportMetric(float64((redisCPU(b, d.rdb)-cpu0).Nanoseconds())/float64(b.N), "redis-cpu-ns/task")
}

// cmdCounter is a go-redis hook counting the commands a client sends
// (top-level ones, pipelined ones each).
type cmdCounter struct{ n atomic.Int64 }

func (c *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// BenchmarkQueueStats measures QueueStats over benchStatsQueues queues with a
// few tasks each, as the control plane calls it; one op is one call. It
// reports the commands sent per call.
func BenchmarkQueueStats(b *testing.B) {
	const benchStatsQueues = 8
	c := testredis.Client(b)
	d, err := New(c, &Config{Prefix: testredis.Prefix(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close() })
	ctx := context.Background()
	now := time.Now()
	for q := range benchStatsQueues {
		if _, err := d.Enqueue(ctx, benchTasks("q"+strconv.Itoa(q), 10, now)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := d.QueueStats(ctx, now); err != nil { // warm the script cache
		b.Fatal(err)
	}
	var cc cmdCounter
	c.AddHook(&cc)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		st, err := d.QueueStats(ctx, now)
		if err != nil || len(st) != benchStatsQueues || st[0].Queued != 10 {
			b.Fatalf("QueueStats = %+v, %v", st, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cc.n.Load())/float64(b.N), "cmds/op")
}

// BenchmarkEnqueueSingle is the producer most applications are: one Enqueue
// call per task, from 1 and from 16 goroutines, on a private Redis so that
// the Redis CPU per task is this benchmark's alone. One op is one task.
func BenchmarkEnqueueSingle(b *testing.B) {
	srv := testredis.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(srv.Port), PoolSize: 32})
	b.Cleanup(func() { _ = rdb.Close() })
	for _, producers := range []int{1, 16} {
		b.Run("producers="+strconv.Itoa(producers), func(b *testing.B) {
			d, err := New(rdb, &Config{Prefix: "bench" + strconv.Itoa(producers)})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			tasks := benchTasks("bench", b.N, time.Now())
			var next atomic.Int64
			errs := make(chan error, producers)
			b.ReportAllocs()
			cpu0 := redisCPU(b, rdb)
			b.ResetTimer()
			for range producers {
				go func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							errs <- nil
							return
						}
						if _, err := d.Enqueue(ctx, tasks[i:i+1]); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			for range producers {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
			b.ReportMetric(float64((redisCPU(b, rdb)-cpu0).Nanoseconds())/float64(b.N), "redis-cpu-ns/task")
		})
	}
}

// redisStats reads, from INFO, the commands Redis has run (scripts' inner
// calls included, INFO itself left out) and its used memory in bytes.
func redisStats(b *testing.B, rdb redis.UniversalClient) (calls, mem int64) {
	info, err := rdb.Info(context.Background(), "commandstats", "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			mem, _ = strconv.ParseInt(v, 10, 64)
		}
		if !strings.HasPrefix(line, "cmdstat_") || strings.HasPrefix(line, "cmdstat_info:") {
			continue
		}
		_, rest, _ := strings.Cut(line, "calls=")
		n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		calls += n
	}
	return calls, mem
}

// BenchmarkTaskCost counts what a task costs Redis, figures that, unlike
// times, do not depend on the machine's load: commands per task (a script
// call and every redis.call inside it each count one) to enqueue it in
// batches of benchBatch, and to fetch and complete it in batches, and the
// memory a queued task holds. It runs on a private Redis. One op is one task.
func BenchmarkTaskCost(b *testing.B) {
	srv := testredis.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(srv.Port)})
	b.Cleanup(func() { _ = rdb.Close() })
	d, err := New(rdb, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	tasks := benchTasks("bench", b.N, now)
	c0, m0 := redisStats(b, rdb)
	for i := 0; i < b.N; i += benchBatch {
		if _, err := d.Enqueue(ctx, tasks[i:min(i+benchBatch, b.N)]); err != nil {
			b.Fatal(err)
		}
	}
	c1, m1 := redisStats(b, rdb)
	for done := 0; done < b.N; {
		res, err := d.Fetch(ctx, ebbdriver.FetchParams{Queues: []string{"bench"}, Limit: benchBatch, WorkerID: "bench-worker",
			LeaseToken: tid.New(), LeaseDuration: time.Minute, Now: now})
		if err != nil || len(res.Tasks) == 0 {
			b.Fatalf("Fetch after %d of %d: %v", done, b.N, err)
		}
		cs := make([]ebbdriver.Completion, len(res.Tasks))
		for i, t := range res.Tasks {
			cs[i] = ebbdriver.Completion{Queue: t.Queue, ID: t.ID, LeaseToken: t.LeaseToken, Outcome: ebbdriver.OutcomeSucceeded, Now: now}
		}
		if _, err := d.Complete(ctx, cs); err != nil {
			b.Fatal(err)
		}
		done += len(res.Tasks)
	}
	c2, _ := redisStats(b, rdb)
	n := float64(b.N)
	b.ReportMetric(float64(c1-c0)/n, "enqueue-cmds/task")
	b.ReportMetric(float64(c2-c1)/n, "fetch+complete-cmds/task")
	b.ReportMetric(float64(m1-m0)/n, "queued-bytes/task")
}
