// Package bench measures a broker through the real client and worker: how
// fast tasks are enqueued in batches, how fast one worker process burns a
// backlog down, and how long an idle worker takes from enqueue to handler
// start. `ebb bench` prints its result; the comparison harness reuses it.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/internal/tid"
)

// Params configure a run.
type Params struct {
	Tasks          int // tasks in the burn-down
	Concurrency    int // worker concurrency
	EnqueueBatch   int // tasks per enqueue call
	LatencySamples int // sequential enqueue→start samples on an idle worker
	// Progress, if set, receives phase updates for a terminal.
	Progress func(phase string, done, total int)
	Logger   *slog.Logger
}

// Result is one run's figures. Its JSON form is `ebb bench --json`'s output.
type Result struct {
	Broker         string  `json:"broker"`
	Tasks          int     `json:"tasks"`
	Concurrency    int     `json:"concurrency"`
	EnqueuePerS    float64 `json:"enqueue_per_s"`
	ProcessPerS    float64 `json:"process_per_s"`
	LatencyP50MS   float64 `json:"latency_p50_ms"`
	LatencyP99MS   float64 `json:"latency_p99_ms"`
	LatencyMaxMS   float64 `json:"latency_max_ms"`
	LatencySamples int     `json:"latency_samples"`
}

// benchArgs is the no-op task of the run. Its own kind keeps the benchmark's
// handler from colliding with a real worker's noop on the same broker.
type benchArgs struct {
	Seq int64 `json:"seq,omitempty"`
}

func (benchArgs) Kind() string { return "ebb.bench.noop" }

// Run runs the three phases on a fresh queue of drv and removes nothing it
// did not make: bench tasks have a short retention and expire on their own.
func Run(ctx context.Context, drv ebbdriver.Driver, p Params) (*Result, error) {
	if p.Tasks < 1 || p.Concurrency < 1 {
		return nil, fmt.Errorf("bench: tasks and concurrency must be at least 1")
	}
	if p.EnqueueBatch <= 0 {
		p.EnqueueBatch = 1000
	}
	if p.LatencySamples <= 0 {
		p.LatencySamples = 200
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	progress := p.Progress
	if progress == nil {
		progress = func(string, int, int) {}
	}
	queue := "bench-" + strings.ToLower(tid.New()[14:])
	opts := &ebb.EnqueueOpts{Queue: queue, Retention: time.Minute}
	client, err := ebb.NewClient(drv, &ebb.ClientConfig{Logger: p.Logger})
	if err != nil {
		return nil, err
	}
	res := &Result{Broker: drv.Name(), Tasks: p.Tasks, Concurrency: p.Concurrency}

	// Phase 1: enqueue the backlog in batches.
	start := time.Now()
	for done := 0; done < p.Tasks; {
		n := min(p.EnqueueBatch, p.Tasks-done)
		batch := make([]ebb.EnqueueParams, n)
		for i := range batch {
			batch[i] = ebb.EnqueueParams{Args: benchArgs{}, Opts: opts}
		}
		if _, err := client.EnqueueMany(ctx, batch); err != nil {
			return nil, fmt.Errorf("bench: enqueue: %w", err)
		}
		done += n
		progress("enqueue", done, p.Tasks)
	}
	res.EnqueuePerS = float64(p.Tasks) / time.Since(start).Seconds()

	// Phase 2: one worker burns the backlog down. The clock stops when the
	// broker has recorded every success, not when the last handler returned.
	var ran atomic.Int64
	started := make(chan startSignal, 1)
	var sampling atomic.Bool
	handlers := ebb.NewHandlers()
	ebb.Handle(handlers, func(ctx context.Context, t *ebb.Task[benchArgs]) (any, error) {
		if sampling.Load() {
			started <- startSignal{seq: t.Args.Seq, at: time.Now()}
		} else {
			ran.Add(1)
		}
		return nil, nil
	})
	worker, err := ebb.NewWorker(drv, &ebb.WorkerConfig{
		Handlers: handlers, Queues: []ebb.QueueConfig{{Name: queue}}, Concurrency: p.Concurrency,
		Logger: p.Logger, DisableMaintenance: true,
	})
	if err != nil {
		return nil, err
	}
	wctx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	start = time.Now()
	go func() { workerDone <- worker.Run(wctx) }()
	defer func() {
		stopWorker()
		<-workerDone
	}()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-workerDone:
			return nil, fmt.Errorf("bench: worker stopped: %v", err)
		case <-tick.C:
		}
		n := ran.Load()
		progress("process", int(n), p.Tasks)
		if n < int64(p.Tasks) {
			continue
		}
		succeeded, err := queueSucceeded(ctx, drv, queue)
		if err != nil {
			return nil, err
		}
		if succeeded >= int64(p.Tasks) {
			break
		}
	}
	res.ProcessPerS = float64(p.Tasks) / time.Since(start).Seconds()

	// Phase 3: the worker is idle; send one task at a time and time the
	// enqueue→handler-start gap. The pause between samples lets the worker
	// settle into waiting for a notification, which is the case measured.
	sampling.Store(true)
	lat := make([]float64, 0, p.LatencySamples)
	for i := range p.LatencySamples {
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return nil, ctx.Err()
		}
		seq := int64(i + 1)
		t0 := time.Now()
		if _, err := client.Enqueue(ctx, benchArgs{Seq: seq}, opts); err != nil {
			return nil, fmt.Errorf("bench: enqueue latency sample: %w", err)
		}
		select {
		case s := <-started:
			if s.seq != seq {
				return nil, fmt.Errorf("bench: latency sample %d started task %d", seq, s.seq)
			}
			lat = append(lat, float64(s.at.Sub(t0))/float64(time.Millisecond))
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("bench: latency sample %d did not start within 10s", seq)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		progress("latency", i+1, p.LatencySamples)
	}
	slices.Sort(lat)
	res.LatencySamples = len(lat)
	res.LatencyP50MS = round3(percentile(lat, 0.50))
	res.LatencyP99MS = round3(percentile(lat, 0.99))
	res.LatencyMaxMS = round3(lat[len(lat)-1])
	res.EnqueuePerS = math.Round(res.EnqueuePerS)
	res.ProcessPerS = math.Round(res.ProcessPerS)
	return res, nil
}

type startSignal struct {
	seq int64
	at  time.Time
}

func queueSucceeded(ctx context.Context, drv ebbdriver.Driver, queue string) (int64, error) {
	stats, err := drv.QueueStats(ctx, time.Now())
	if err != nil {
		return 0, fmt.Errorf("bench: queue stats: %w", err)
	}
	for _, s := range stats {
		if s.Name == queue {
			return s.Succeeded, nil
		}
	}
	return 0, nil
}

// percentile of sorted values, nearest-rank.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
