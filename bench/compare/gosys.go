package compare

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebbq/ebb/internal/clock"
)

// goBackend is what an in-process Go system provides; goSystem builds the
// workloads on it, so ebb, asynq and River run literally the same workload
// code. The producer side and the worker side never share a client or a
// connection pool, as if they were separate processes: a shared in-process
// client could take notification shortcuts a real deployment does not have.
type goBackend interface {
	name() string
	broker() string
	open(ctx context.Context) error
	// reset empties the broker: nothing queued, nothing recorded, and a fresh
	// producer client (cached broker state would survive a flush otherwise).
	reset(ctx context.Context) error
	// enqueue stores one task with a single-task call; ts (unix ns, 0 for
	// none) travels in the task's args.
	enqueue(ctx context.Context, ts int64) error
	// fill stores n tasks with the system's fastest API and names it.
	fill(ctx context.Context, n int) (api string, err error)
	// startWorker starts consuming the bench queue with the configured
	// concurrency; onStart runs first thing in every handler.
	startWorker(ctx context.Context, onStart func(ts int64)) (stop func() error, err error)
	// completed is the number of tasks the system has recorded as done.
	completed(ctx context.Context) (int64, error)
	// idle measures the broker traffic of a waiting worker over window.
	idle(ctx context.Context, window time.Duration) (*IdleResult, error)
	close(ctx context.Context) error
}

type goSystem struct {
	b          goBackend
	cfg        Config
	stopWorker func() error // the Steady worker, kept for Idle
}

func (s *goSystem) Name() string   { return s.b.name() }
func (s *goSystem) Broker() string { return s.b.broker() }

func (s *goSystem) Setup(ctx context.Context) error { return s.b.open(ctx) }

func (s *goSystem) Teardown(ctx context.Context) error {
	var errs []error
	if s.stopWorker != nil {
		errs = append(errs, s.stopWorker())
		s.stopWorker = nil
	}
	errs = append(errs, s.b.close(ctx))
	return errors.Join(errs...)
}

func (s *goSystem) EnqueueRate(ctx context.Context, producers int, window time.Duration) (float64, error) {
	if err := s.b.reset(ctx); err != nil {
		return 0, err
	}
	return enqueueRate(ctx, producers, window, func(ctx context.Context) error { return s.b.enqueue(ctx, 0) })
}

// enqueueRate runs producers loops of enqueue for window. Each producer makes
// one call before the clock starts, so connection set-up is not measured.
func enqueueRate(ctx context.Context, producers int, window time.Duration, enqueue func(context.Context) error) (float64, error) {
	var (
		ready, done sync.WaitGroup
		start       = make(chan struct{})
		deadline    time.Time
		total       atomic.Int64
		firstErr    atomic.Pointer[error]
	)
	ready.Add(producers)
	for range producers {
		done.Go(func() {
			err := enqueue(ctx)
			ready.Done()
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			<-start
			n := int64(0)
			for time.Now().Before(deadline) {
				if err := enqueue(ctx); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					break
				}
				n++
			}
			total.Add(n)
		})
	}
	ready.Wait()
	t0 := time.Now()
	deadline = t0.Add(window)
	close(start)
	done.Wait()
	elapsed := time.Since(t0)
	if p := firstErr.Load(); p != nil {
		return 0, *p
	}
	return float64(total.Load()) / elapsed.Seconds(), nil
}

func (s *goSystem) BurnDown(ctx context.Context, n int) (*BurnResult, error) {
	if err := s.b.reset(ctx); err != nil {
		return nil, err
	}
	t := time.Now()
	api, err := s.b.fill(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("fill: %w", err)
	}
	fillS := time.Since(t).Seconds()
	var ran atomic.Int64
	t0 := time.Now()
	stop, err := s.b.startWorker(ctx, func(int64) { ran.Add(1) })
	if err != nil {
		return nil, err
	}
	// The handler count only says when to start asking; the clock stops when
	// the system's own record (ebb: succeeded count, asynq: processed total,
	// River: completed rows) has every task.
	var elapsed time.Duration
	deadline := t0.Add(10 * time.Minute)
	for {
		if !clock.Sleep(ctx, 5*time.Millisecond) {
			_ = stop()
			return nil, ctx.Err()
		}
		if ran.Load() < int64(n) {
			if time.Now().After(deadline) {
				_ = stop()
				return nil, fmt.Errorf("only %d of %d tasks ran in 10 minutes", ran.Load(), n)
			}
			continue
		}
		c, err := s.b.completed(ctx)
		if err != nil {
			_ = stop()
			return nil, err
		}
		if c >= int64(n) {
			elapsed = time.Since(t0)
			break
		}
	}
	if err := stop(); err != nil {
		return nil, fmt.Errorf("stop worker: %w", err)
	}
	return &BurnResult{Tasks: n, Seconds: round(elapsed.Seconds(), 3), PerS: round(float64(n)/elapsed.Seconds(), 0),
		FillAPI: api, FillPerS: round(float64(n)/fillS, 0), ClockStarts: "worker start call"}, nil
}

// steadyProducers is how many goroutines share the paced sends: one call
// may take longer than the 1 ms between sends, and a lagging single
// producer would lower the rate instead of measuring the queue.
const steadyProducers = 8

func (s *goSystem) Steady(ctx context.Context, rate int, d, drain time.Duration) (*SteadyResult, error) {
	// A worker left from an earlier workload would compete with this one.
	if s.stopWorker != nil {
		stop := s.stopWorker
		s.stopWorker = nil
		if err := stop(); err != nil {
			return nil, fmt.Errorf("stop the previous worker: %w", err)
		}
	}
	if err := s.b.reset(ctx); err != nil {
		return nil, err
	}
	total := int(float64(rate) * d.Seconds())
	lat := newLatencies(total)
	stop, err := s.b.startWorker(ctx, func(ts int64) {
		if ts != 0 {
			lat.add(time.Duration(time.Now().UnixNano() - ts))
		}
	})
	if err != nil {
		return nil, err
	}
	s.stopWorker = stop
	// Let the worker reach its waiting state (subscriptions, leader
	// election) before the first send.
	if !clock.Sleep(ctx, 500*time.Millisecond) {
		return nil, ctx.Err()
	}
	sent, elapsed, err := paced(ctx, rate, total, d, func(ctx context.Context) error {
		return s.b.enqueue(ctx, time.Now().UnixNano())
	})
	if err != nil {
		return nil, err
	}
	if _, err := waitCount(ctx, sent, drain, func() (int, error) { return lat.count(), nil }); err != nil {
		return nil, err
	}
	return steadyResult(lat.drain(), sent, float64(sent)/elapsed.Seconds(), fmt.Sprintf("%d goroutines, paced", steadyProducers))
}

// paced makes total calls of send at rate per second, spread over
// steadyProducers goroutines; the timestamp in each task is taken when its
// call starts, so a producer that falls behind shows as a lower SentPerS,
// not as queue latency; it stops at steadyDeadline(d) whatever it sent.
func paced(ctx context.Context, rate, total int, d time.Duration, send func(context.Context) error) (int, time.Duration, error) {
	slots := make(chan struct{})
	var (
		wg       sync.WaitGroup
		sent     atomic.Int64
		firstErr atomic.Pointer[error]
	)
	for range steadyProducers {
		wg.Go(func() {
			for range slots {
				if err := send(ctx); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				sent.Add(1)
			}
		})
	}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	stopAt := steadyDeadline(start, d)
	timeout := time.NewTimer(time.Until(stopAt))
	defer timeout.Stop()
send:
	for i := range total {
		if w := time.Until(start.Add(time.Duration(i) * interval)); w > 0 {
			time.Sleep(w)
		}
		if ctx.Err() != nil || firstErr.Load() != nil {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-timeout.C:
			break send
		}
	}
	close(slots)
	wg.Wait()
	elapsed := time.Since(start)
	if p := firstErr.Load(); p != nil {
		return int(sent.Load()), elapsed, *p
	}
	return int(sent.Load()), elapsed, ctx.Err()
}

func (s *goSystem) Idle(ctx context.Context, settle, window time.Duration) (*IdleResult, error) {
	if s.stopWorker == nil {
		if err := s.b.reset(ctx); err != nil {
			return nil, err
		}
		stop, err := s.b.startWorker(ctx, func(int64) {})
		if err != nil {
			return nil, err
		}
		s.stopWorker = stop
	}
	if !clock.Sleep(ctx, settle) {
		return nil, ctx.Err()
	}
	// Only this system's worker (and its idle producer client) live in the
	// process now, so the process's CPU time is the worker's.
	cpu0 := selfCPU()
	t0 := time.Now()
	res, err := s.b.idle(ctx, window)
	if err != nil {
		return nil, err
	}
	res.CPUPercent = round(100*(selfCPU()-cpu0).Seconds()/time.Since(t0).Seconds(), 2)
	res.CPUScope = "harness process (only this system's worker running)"
	res.WindowS = window.Seconds()
	stop := s.stopWorker
	s.stopWorker = nil
	return res, stop()
}
