package ebbsqlite_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ebbq/ebb"
)

type noopArgs struct{}

func (noopArgs) Kind() string { return "bench.noop" }

// BenchmarkWorkerBurnDown runs one ebb worker (the root package) over
// 50,000 queued no-op tasks.
func BenchmarkWorkerBurnDown(b *testing.B) {
	const n = 50000
	d := newDriver(b)
	client, err := ebb.NewClient(d, nil)
	if err != nil {
		b.Fatal(err)
	}
	total := 0
	for b.Loop() {
		b.StopTimer()
		ctx := context.Background()
		params := make([]ebb.EnqueueParams, 1000)
		for i := range params {
			params[i] = ebb.EnqueueParams{Args: noopArgs{}}
		}
		for range n / len(params) {
			if _, err := client.EnqueueMany(ctx, params); err != nil {
				b.Fatal(err)
			}
		}
		handlers := ebb.NewHandlers()
		done := make(chan struct{})
		var count int
		ebb.Handle(handlers, func(ctx context.Context, t *ebb.Task[noopArgs]) (any, error) { return nil, nil })
		w, err := ebb.NewWorker(d, &ebb.WorkerConfig{Handlers: handlers, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			DisableMaintenance: true})
		if err != nil {
			b.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		go func() { w.Run(runCtx); close(done) }()
		b.StartTimer()
		for {
			st, err := d.QueueStats(ctx, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			if st[0].Queued == 0 && st[0].InFlight == 0 {
				count = n
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.StopTimer()
		cancel()
		<-done
		total += count
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "tasks/s")
}
