// Package bench measures a broker through the real client and worker: how
// fast tasks are enqueued in batches, how fast one worker process burns a
// backlog down, and how long an idle worker takes from enqueue to handler
// start. `ebb bench` prints its result; the comparison harness reuses it.
package bench

import (
	"context"
	"errors"
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
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/clock"
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
	// Retention is how long the run's finished tasks are kept; 0 means
	// RetentionDefault. See RetentionDefault.
	Retention time.Duration
	// Abandon, if set, is closed to give up the cleanup at once and leave
	// the run's tasks behind (`ebb bench` closes it on a second Ctrl-C).
	Abandon <-chan struct{}
	Logger  *slog.Logger
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

// Run runs the three phases on a fresh queue of drv, then deletes every
// task it made, also when ctx ends early (see cleanUp); other queues are
// never touched. A Result with an error means the figures are valid but
// the cleanup did not finish.
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
	if p.Retention <= 0 {
		p.Retention = RetentionDefault
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if p.Progress == nil {
		p.Progress = func(string, int, int) {}
	}
	queue := "bench-" + strings.ToLower(tid.New()[14:])
	res, err := run(ctx, drv, p, queue)
	if cerr := cleanUpBounded(ctx, drv, queue, p); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return res, err
}

// cleanUpBounded runs cleanUp within the budget that fits how run ended,
// or until p.Abandon is closed.
func cleanUpBounded(ctx context.Context, drv ebbdriver.Driver, queue string, p Params) error {
	abandoned := fmt.Errorf("bench: cleanup abandoned; the tasks of queue %q are left behind", queue)
	select {
	case <-p.Abandon:
		return abandoned
	default:
	}
	budget := CleanupTimeout
	if ctx.Err() != nil {
		budget = CleanupTimeoutInterrupted
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	defer cancel()
	go func() {
		select {
		case <-p.Abandon:
			cancel()
		case <-cctx.Done():
		}
	}()
	if err := cleanUp(cctx, drv, queue, p.Retention, p.Progress); err != nil {
		select {
		case <-p.Abandon:
			return abandoned
		default:
			return fmt.Errorf("bench: cleanup of queue %q: %w", queue, err)
		}
	}
	return nil
}

// How long Run may spend deleting its tasks. After a completed run the
// tasks are finished and go in bulk (hundreds of thousands a second on
// SQLite), so the bound only matters if the broker stalls. After an
// interrupt someone waits for the prompt while an unfinished backlog is
// cancelled in batches (tens of thousands a second on SQLite on a small
// machine), and can leave early with Abandon.
var (
	CleanupTimeout            = 2 * time.Minute
	CleanupTimeoutInterrupted = 30 * time.Second
)

// RetentionDefault is the retention of every bench task: short, so that the
// run's finished tasks can go in bulk soon after it ends (the driver seam
// has no bulk delete, only Cleanup of what is past its retention; see
// cleanUp for why Cleanup cannot just be told a later time), and longer
// than the measured phases of a typical run, so that the figures, like the
// peers' in bench/run, do not include deleting tasks while they are taken.
// Redis expires a finished task's hash by itself after its retention
// (PEXPIRE), and a shorter retention makes it do that work during the
// burn-down: at 1 ms the Redis burn-down measured about 15 % lower on the
// development machine. Nothing reads a bench task after it ran: the
// burn-down counts successes from the queue's running totals, which
// deletion does not change.
const RetentionDefault = 3 * time.Second

// RetentionMax is the longest retention a run accepts: its cleanup waits
// out the retention within CleanupTimeout, with time left to delete.
const RetentionMax = time.Minute

// run is the three phases; the worker has stopped when it returns.
func run(ctx context.Context, drv ebbdriver.Driver, p Params, queue string) (*Result, error) {
	progress := p.Progress
	opts := &ebb.EnqueueOpts{Queue: queue, Retention: p.Retention}
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
		if !clock.Sleep(ctx, 5*time.Millisecond) {
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
	st, err := queueStats(ctx, drv, queue)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	return st.Succeeded, nil
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

// cleanupBatch bounds one Cleanup call: each is one SQLite write
// transaction or one Redis script, and other processes sharing the broker
// wait behind it.
const cleanupBatch = 5000

// cleanUp deletes every task of queue, which only Run uses. Finished and
// dead tasks go in batches through Cleanup, which deletes whatever is past
// its retention and every dead task (DeadRetention 0). Its
// Now must be the true time, not a later one that would cover any
// retention: SQLite's Cleanup also frees expired unique keys of every
// queue, and a Now in the future would free other queues' keys early.
//
// What an interrupted run leaves unfinished has no bulk delete either, and
// deleting a large backlog one TaskDelete at a time runs at a few thousand
// tasks a second on SQLite, so the backlog is fetched and completed as
// cancelled in batches (a worker's own fast path, without handlers) for
// Cleanup to delete; only tasks Fetch cannot take (scheduled for later,
// none in a normal run) are deleted one by one. All bounded by ctx.
//
// On SQLite the deleted rows' pages stay in the file for later tasks to
// reuse: the file does not shrink (VACUUM would lock out every process
// sharing it, and the driver seam has none), but the queue holds no task.
// The queue's running totals stay, so `ebb inspect queues` still lists it,
// empty.
func cleanUp(ctx context.Context, drv ebbdriver.Driver, queue string, retention time.Duration, progress func(string, int, int)) error {
	st, err := queueStats(ctx, drv, queue)
	if err != nil {
		return err
	}
	total := st.Enqueued
	deleted := 0
	// A few passes: a Redis enqueue cut off by the interrupt may still land
	// after the first one.
	for pass := 1; ; pass++ {
		// The last completions' expiry (FinishedAt+retention, which Redis
		// rounds up to the next millisecond) must be behind Now: the run's
		// own on the first pass, cancelAll's on later ones.
		if !clock.Sleep(ctx, retention+10*time.Millisecond) {
			return ctx.Err()
		}
		for {
			n, err := drv.Cleanup(ctx, ebbdriver.CleanupParams{Queue: queue, Now: time.Now(), Limit: cleanupBatch})
			if err != nil {
				return fmt.Errorf("clean up: %w", err)
			}
			deleted += int(n)
			progress("cleanup", deleted, int(total))
			if n < cleanupBatch {
				break
			}
		}
		left, err := queueStats(ctx, drv, queue)
		if err != nil {
			return err
		}
		if n := left.Queued + left.Scheduled + left.InFlight + left.Dead; n == 0 {
			return nil
		} else if pass == 3 {
			return fmt.Errorf("%d tasks remain", n)
		}
		if err := cancelAll(ctx, drv, queue, left); err != nil {
			return err
		}
	}
}

// cancelAll moves every unfinished task of queue, which no worker serves
// any more, to Cancelled (or Dead) for Cleanup to delete.
func cancelAll(ctx context.Context, drv ebbdriver.Driver, queue string, left ebbtype.QueueStats) error {
	const batch = 1000
	if left.InFlight > 0 {
		// A task still running has no worker (its hand-back failed): rescue
		// it into a state Fetch takes. The queue is the bench's alone, so no
		// live lease is cut short.
		for {
			r, err := drv.RescueExpired(ctx, queue, time.Now().Add(24*time.Hour), batch)
			if err != nil {
				return fmt.Errorf("rescue running tasks: %w", err)
			}
			if len(r.Requeued)+len(r.Dead) < batch {
				break
			}
		}
	}
	for {
		now := time.Now()
		token := tid.New()
		f, err := drv.Fetch(ctx, ebbdriver.FetchParams{Queues: []string{queue}, Limit: batch,
			WorkerID: "ebb-bench-cleanup", LeaseToken: token, LeaseDuration: time.Minute, Now: now})
		if err != nil {
			return fmt.Errorf("fetch the backlog: %w", err)
		}
		if len(f.Tasks) == 0 {
			break
		}
		cs := make([]ebbdriver.Completion, len(f.Tasks))
		for i, t := range f.Tasks {
			cs[i] = ebbdriver.Completion{Queue: queue, ID: t.ID, LeaseToken: token, Outcome: ebbdriver.OutcomeCancelled, Now: now}
		}
		if _, err := drv.Complete(ctx, cs); err != nil {
			return fmt.Errorf("cancel the backlog: %w", err)
		}
	}
	if left.Scheduled == 0 {
		return nil
	}
	for _, st := range []ebbtype.State{ebbtype.StateScheduled, ebbtype.StateRetrying} {
		// Collect before deleting: Redis's cursor is a rank, which deletion
		// would shift.
		var ids []string
		for cursor := ""; ; {
			page, err := drv.TaskList(ctx, ebbdriver.TaskListParams{Queue: queue, State: st, Limit: 1000, ScanLimit: 20000, Cursor: cursor})
			if err != nil {
				return fmt.Errorf("list %s tasks: %w", st, err)
			}
			for _, t := range page.Tasks {
				ids = append(ids, t.ID)
			}
			if cursor = page.Cursor; cursor == "" {
				break
			}
		}
		for _, id := range ids {
			if err := drv.TaskDelete(ctx, id); err != nil && !errors.Is(err, ebbtype.ErrTaskNotFound) {
				return fmt.Errorf("delete task %s: %w", id, err)
			}
		}
	}
	return nil
}

// queueStats returns queue's counts, all zero if the broker has none.
func queueStats(ctx context.Context, drv ebbdriver.Driver, queue string) (ebbtype.QueueStats, error) {
	stats, err := drv.QueueStats(ctx, time.Now())
	if err != nil {
		return ebbtype.QueueStats{}, fmt.Errorf("queue stats: %w", err)
	}
	for _, s := range stats {
		if s.Name == queue {
			return s, nil
		}
	}
	return ebbtype.QueueStats{Name: queue}, nil
}
