package controlplane_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/clock"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/controlplane"
	"github.com/ebbq/ebb/internal/target"
	"github.com/ebbq/ebb/internal/testwait"
)

// launchingTarget launches one instance, "w1", and runs it from then on.
type launchingTarget struct {
	nullTarget
	mu       sync.Mutex
	launched bool
}

func (l *launchingTarget) Launch(context.Context, int) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.launched {
		return nil, nil
	}
	l.launched = true
	return []string{"w1"}, nil
}

func (l *launchingTarget) Instances(context.Context) ([]target.Instance, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.launched {
		return nil, nil
	}
	return []target.Instance{{ID: "w1", State: target.StateRunning}}, nil
}

func (l *launchingTarget) wasLaunched() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.launched
}

// TestPoolMeasuresStartup: before any launch has registered, a pool assumes
// its target's default start-up, and its derived idle before zero is that;
// once the launched worker registers, the pool shows the measured launch →
// start time (read on a stub clock) and derives its delays from it.
func TestPoolMeasuresStartup(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	drv, err := ebbsqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	clk := clock.NewStub(time.Date(2100, 1, 2, 3, 4, 5, 0, time.UTC))
	cfg := config.Default()
	cfg.Leader = config.Leader{TTL: 5 * time.Second, RenewInterval: 100 * time.Millisecond}
	cfg.Autoscaler.ReconcileInterval = 50 * time.Millisecond
	pc := config.DefaultPool("p")
	pc.Min = 1 // the pool launches its one worker at once
	cfg.Pools = []config.Pool{pc}
	tg := &launchingTarget{}
	replica, err := controlplane.New(controlplane.Options{
		Config: cfg, Driver: drv, Logger: slog.New(slog.DiscardHandler), ID: "startup-replica", Executable: "/bin/false",
		Clock: clk, Targets: func(*config.Pool) (target.Target, error) { return tg, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- replica.Run(runCtx) }()
	defer func() { stop(); <-done }()

	testwait.Eventually(t, 10*time.Second, "the pool to launch its worker", func() (bool, error) {
		v, _ := replica.Pool("p")
		return tg.wasLaunched() && v.Starting == 1, nil
	})
	v, _ := replica.Pool("p")
	if v.StartupSamples != 0 || v.StartupS != 30 || v.IdleBeforeZeroS != 30 || v.ScaleDownDelayS != 0 {
		t.Errorf("before a measurement: start-up %v s (%d samples), idle before zero %v s, scale-down delay %v s; want the default 30 s, 0 samples, 30 s, 0 s",
			v.StartupS, v.StartupSamples, v.IdleBeforeZeroS, v.ScaleDownDelayS)
	}

	launchedAt := clk.Now() // the stub has not moved since the launch
	clk.Advance(1500 * time.Millisecond)
	w := ebbtype.WorkerInfo{ID: "w1", Pool: "p", Queues: []string{"p"}, Concurrency: 10,
		StartedAt: launchedAt.Add(1200 * time.Millisecond), HeartbeatAt: clk.Now()}
	if _, err := drv.WorkerHeartbeat(ctx, w, time.Minute); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, "the pool to measure the start-up", func() (bool, error) {
		v, _ := replica.Pool("p")
		return v.StartupSamples == 1, nil
	})
	v, _ = replica.Pool("p")
	if v.StartupS != 1.2 || v.IdleBeforeZeroS != 1.2 || v.ScaleDownDelayS != 0 {
		t.Errorf("after one launch: start-up %v s, idle before zero %v s, scale-down delay %v s; want 1.2 s (launch → the worker's start), 1.2 s, 0 s",
			v.StartupS, v.IdleBeforeZeroS, v.ScaleDownDelayS)
	}
}
