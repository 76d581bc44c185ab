package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/internal/builtin"
	"github.com/ebbq/ebb/internal/clock"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/controlplane"
	"github.com/ebbq/ebb/internal/tid"
)

// ScalingParams configure `ebb bench scaling`.
type ScalingParams struct {
	Trials int
	// BrokerURL is what the launched workers connect to (the same broker as
	// the driver).
	BrokerURL string
	// Executable is the ebb binary the local target runs workers from.
	Executable string
	// LogDir receives the workers' logs.
	LogDir   string
	Progress func(done, total int)
	Logger   *slog.Logger
}

// ScalingResult is `ebb bench scaling --json`'s output.
type ScalingResult struct {
	Broker          string  `json:"broker"`
	Trials          int     `json:"trials"`
	DecisionMSP50   float64 `json:"decision_ms_p50"`
	DecisionMSP99   float64 `json:"decision_ms_p99"`
	FirstStartMSP50 float64 `json:"first_start_ms_p50"`
	FirstStartMSP99 float64 `json:"first_start_ms_p99"`
	BackToZeroMSP50 float64 `json:"back_to_zero_ms_p50"`
}

// RunScaling measures scale-from-zero on the local target: an in-process
// control plane with one pool (min 0, max 1) on a fresh queue. Each trial
// waits until the pool is at zero, enqueues one task, and measures the time to
// the scaling decision (as recorded in the decision log) and to the task's
// start on the newly launched worker process.
func RunScaling(ctx context.Context, drv ebbdriver.Driver, p ScalingParams) (*ScalingResult, error) {
	if p.Trials < 1 {
		return nil, fmt.Errorf("bench scaling: trials must be at least 1")
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	name := "bench-scaling-" + strings.ToLower(tid.New()[18:])
	cfg := config.Default()
	cfg.Broker = p.BrokerURL
	pool := config.DefaultPool(name)
	pool.Max, pool.Concurrency = 1, 1
	pool.LogDir = p.LogDir
	pool.DrainTimeout, pool.StopGrace = 5*time.Second, 10*time.Second
	pool.Policy.IdleBeforeZero = 200 * time.Millisecond
	pool.Policy.ScaleDownDelay = 100 * time.Millisecond
	cfg.Pools = []config.Pool{pool}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	srv, err := controlplane.New(controlplane.Options{Config: cfg, Driver: drv, Logger: p.Logger, Executable: p.Executable})
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	defer func() {
		stop()
		<-done
	}()
	if err := waitFor(ctx, 30*time.Second, "the server to lead", func() (bool, error) { return srv.Leading(), nil }); err != nil {
		return nil, err
	}
	client, err := ebb.NewClient(drv, nil)
	if err != nil {
		return nil, err
	}
	atZero := func() (bool, error) {
		v, ok := srv.Pool(name)
		if !ok {
			return false, fmt.Errorf("pool %s vanished", name)
		}
		ws, err := drv.WorkerList(ctx, time.Now())
		if err != nil {
			return false, err
		}
		for _, w := range ws {
			if w.Pool == name {
				return false, nil
			}
		}
		return v.Current == 0 && len(v.Instances) == 0, nil
	}

	res := &ScalingResult{Broker: drv.Name(), Trials: p.Trials}
	var decisions, starts, zeros []float64
	for i := range p.Trials {
		zeroStart := time.Now()
		if err := waitFor(ctx, 60*time.Second, "the pool to return to zero", atZero); err != nil {
			return nil, err
		}
		if i > 0 {
			zeros = append(zeros, ms(time.Since(zeroStart)))
		}
		t0 := time.Now()
		// The workers are `ebb worker` processes: the built-in noop kind.
		enq, err := client.Enqueue(ctx, builtin.NoopArgs{}, &ebb.EnqueueOpts{Queue: name, Retention: time.Minute})
		if err != nil {
			return nil, err
		}
		var decidedAt time.Time
		err = waitFor(ctx, 30*time.Second, "the scale-up decision", func() (bool, error) {
			ds, err := drv.DecisionList(ctx, name, 5)
			if err != nil {
				return false, err
			}
			for _, d := range ds {
				if d.Action == "up" && !d.At.Before(t0.Truncate(time.Millisecond)) {
					decidedAt = d.At
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		info, err := client.Wait(wctx, enq.ID)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("bench scaling: trial %d: %w", i+1, err)
		}
		decisions = append(decisions, ms(decidedAt.Sub(t0)))
		starts = append(starts, ms(info.StartedAt.Sub(t0)))
		if p.Progress != nil {
			p.Progress(i+1, p.Trials)
		}
	}
	slices.Sort(decisions)
	slices.Sort(starts)
	slices.Sort(zeros)
	res.DecisionMSP50, res.DecisionMSP99 = round3(percentile(decisions, .5)), round3(percentile(decisions, .99))
	res.FirstStartMSP50, res.FirstStartMSP99 = round3(percentile(starts, .5)), round3(percentile(starts, .99))
	res.BackToZeroMSP50 = round3(percentile(zeros, .5))
	return res, nil
}

func ms(d time.Duration) float64 { return math.Max(0, float64(d)/float64(time.Millisecond)) }

// waitFor polls cond every 5 ms until it holds, fails, or the deadline passes.
func waitFor(ctx context.Context, limit time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("bench scaling: waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench scaling: %s did not happen within %s", what, limit)
		}
		if !clock.Sleep(ctx, 5*time.Millisecond) {
			return ctx.Err()
		}
	}
}
