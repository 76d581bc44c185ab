package ebb_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/internal/testpg"
	"github.com/ebbq/ebb/internal/testredis"
)

// Hot-path benchmarks through the public API, per broker:
//
//	go test -run '^$' -bench . -benchtime 20000x .
//
// BurnDown reports tasks/s for one worker draining a backlog; EnqueueBatch
// reports tasks/s for batched enqueues. `ebb bench` measures the same end to
// end, plus pickup latency.

type benchNoop struct{}

func (benchNoop) Kind() string { return "bench.noop" }

func benchDrivers(b *testing.B) map[string]func(b *testing.B) ebbdriver.Driver {
	return map[string]func(b *testing.B) ebbdriver.Driver{
		"redis": func(b *testing.B) ebbdriver.Driver {
			d, err := ebbredis.New(testredis.Client(b), &ebbredis.Config{Prefix: testredis.Prefix(b)})
			if err != nil {
				b.Fatal(err)
			}
			return d
		},
		"postgres": func(b *testing.B) ebbdriver.Driver {
			d, err := ebbpostgres.Open(context.Background(), testpg.SchemaURL(b), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { d.Close() })
			return d
		},
		"sqlite": func(b *testing.B) ebbdriver.Driver {
			d, err := ebbsqlite.Open(context.Background(), filepath.Join(b.TempDir(), "ebb.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { d.Close() })
			return d
		},
	}
}

func enqueueNoops(tb testing.TB, client *ebb.Client, n int) {
	tb.Helper()
	const batch = 1000
	for done := 0; done < n; {
		k := min(batch, n-done)
		params := make([]ebb.EnqueueParams, k)
		for i := range params {
			params[i] = ebb.EnqueueParams{Args: benchNoop{}}
		}
		if _, err := client.EnqueueMany(context.Background(), params); err != nil {
			tb.Fatal(err)
		}
		done += k
	}
}

// noopsUntil handles benchNoop and closes all when the n-th has run.
func noopsUntil(n int) (handlers *ebb.Handlers, all <-chan struct{}) {
	var ran atomic.Int64
	done := make(chan struct{})
	handlers = ebb.NewHandlers()
	ebb.Handle(handlers, func(ctx context.Context, t *ebb.Task[benchNoop]) (any, error) {
		if ran.Add(1) == int64(n) {
			close(done)
		}
		return nil, nil
	})
	return handlers, done
}

func BenchmarkEnqueueBatch(b *testing.B) {
	for name, open := range benchDrivers(b) {
		b.Run(name, func(b *testing.B) {
			client, _ := ebb.NewClient(open(b), nil)
			b.ResetTimer()
			enqueueNoops(b, client, b.N)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}

// BenchmarkEnqueue is the call most producers make: one task per
// Client.Enqueue, from one goroutine, so it is the round trip plus the CPU on
// both sides of it; cpu-ns/op is this process's share.
func BenchmarkEnqueue(b *testing.B) {
	for name, open := range benchDrivers(b) {
		b.Run(name, func(b *testing.B) {
			client, _ := ebb.NewClient(open(b), nil)
			ctx := context.Background()
			b.ReportAllocs()
			cpu0 := processCPU(b)
			b.ResetTimer()
			for b.Loop() {
				if _, err := client.Enqueue(ctx, benchNoop{}, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

func BenchmarkBurnDown(b *testing.B) {
	for name, open := range benchDrivers(b) {
		b.Run(name, func(b *testing.B) { burnDown(b, open(b), 1000, 0) })
	}
}

// BenchmarkBurnDownFetchBatch is the burn-down of bench/run's workers
// (concurrency 10,000) on Postgres, with the worker's default fetch cap and
// with the driver's own (ebbdriver.FetchBatcher).
func BenchmarkBurnDownFetchBatch(b *testing.B) {
	open := benchDrivers(b)["postgres"]
	for _, limit := range []int{ebb.FetchBatchMaxDefault, 0} {
		name := "fetch=driver"
		if limit > 0 {
			name = "fetch=" + strconv.Itoa(limit)
		}
		b.Run("postgres/"+name, func(b *testing.B) { burnDown(b, open(b), 10_000, limit) })
	}
}

// burnDown has one worker of the given concurrency and fetch cap (0: the
// default) drain b.N no-op tasks enqueued beforehand.
func burnDown(b *testing.B, drv ebbdriver.Driver, concurrency, fetchMax int) {
	client, _ := ebb.NewClient(drv, nil)
	enqueueNoops(b, client, b.N)
	handlers, all := noopsUntil(b.N)
	w, err := ebb.NewWorker(drv, &ebb.WorkerConfig{Handlers: handlers, Concurrency: concurrency, FetchBatchMax: fetchMax,
		Logger: quiet, DisableMaintenance: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	cpu0, rcpu0 := processCPU(b), brokerCPU(b, drv)
	b.ResetTimer()
	go func() { done <- w.Run(ctx) }()
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		b.Fatal("burn-down did not finish within 5 minutes")
	}
	cancel() // drain stores every outcome before Run returns
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	// CPU per task is what a change to the hot path moves; on a
	// shared machine wall-clock throughput swings with the load.
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/task")
	if rcpu0 >= 0 {
		b.ReportMetric(float64((brokerCPU(b, drv)-rcpu0).Nanoseconds())/float64(b.N), "redis-cpu-ns/task")
	}
}

// processCPU is the CPU time (user+sys) this process has used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// brokerCPU is the CPU time the Redis server has used so far, or -1 for
// the other brokers.
func brokerCPU(b *testing.B, drv ebbdriver.Driver) time.Duration {
	if drv.Name() != "redis" {
		return -1
	}
	info, err := testredis.Client(b).Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sec float64
	for line := range strings.Lines(info) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_user" || k == "used_cpu_sys" {
			f, _ := strconv.ParseFloat(v, 64)
			sec += f
		}
	}
	return time.Duration(sec * float64(time.Second))
}
