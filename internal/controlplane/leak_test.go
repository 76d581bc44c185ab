package controlplane_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/controlplane"
	"github.com/ebbq/ebb/internal/target"
	"github.com/ebbq/ebb/internal/testwait"
)

// nullTarget launches nothing and records what it was asked, so a test can
// see the scaling loop at work without processes.
type nullTarget struct {
	mu        sync.Mutex
	launches  int
	shutdowns int
}

func (*nullTarget) Name() string { return "null" }

func (n *nullTarget) Launch(context.Context, int) ([]string, error) {
	n.mu.Lock()
	n.launches++
	n.mu.Unlock()
	return nil, nil
}

func (*nullTarget) Instances(context.Context) ([]target.Instance, error) { return nil, nil }

func (*nullTarget) Protect(context.Context, []string) error { return nil }

func (n *nullTarget) Shutdown(context.Context) error {
	n.mu.Lock()
	n.shutdowns++
	n.mu.Unlock()
	return nil
}

func (n *nullTarget) counts() (launches, shutdowns int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.launches, n.shutdowns
}

// fastReplica builds a replica on a fresh SQLite broker with one pool on tg
// and short intervals, so a second covers several rounds of everything.
// The broker closes when the test ends.
func fastReplica(t *testing.T, pool string, tg target.Target) (ebbdriver.Driver, *controlplane.Replica) {
	t.Helper()
	drv, err := ebbsqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ebb.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	cfg := config.Default()
	cfg.Leader = config.Leader{TTL: 2 * time.Second, RenewInterval: 100 * time.Millisecond}
	cfg.Maintenance.RescueInterval = 50 * time.Millisecond
	cfg.Autoscaler.ReconcileInterval = 50 * time.Millisecond
	cfg.Pools = []config.Pool{config.DefaultPool(pool)}
	replica, err := controlplane.New(controlplane.Options{
		Config: cfg, Driver: drv, Logger: slog.New(slog.DiscardHandler), ID: pool + "-replica", Executable: "/bin/false",
		Targets: func(*config.Pool) (target.Target, error) { return tg, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return drv, replica
}

// TestReplicaLeavesNoGoroutines: once Run returns, nothing of the replica
// runs on: not its subscription, the election, a term's pool loops,
// maintenance or beat. `ebb up` and the e2e tests start and stop replicas in
// one process, and embedders do in theirs.
//
// Not parallel: goleak sees the whole process.
func TestReplicaLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	ctx := t.Context()
	tg := &nullTarget{}
	drv, replica := fastReplica(t, "leak", tg)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- replica.Run(runCtx) }()

	testwait.Eventually(t, 10*time.Second, "replica leading", func() (bool, error) { return replica.Leading(), nil })
	// Work for the pool: its loop reconciles and asks the target for a
	// worker, which proves the term's goroutines are all up.
	client, err := ebb.NewClient(drv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.EnqueueRaw(ctx, "noop", nil, &ebb.EnqueueOpts{Queue: "leak"}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, "a launch asked of the target", func() (bool, error) {
		l, _ := tg.counts()
		return l > 0, nil
	})
	// About a second as leader: renewals, reconciles, maintenance passes and
	// beat rounds all come around several times.
	time.Sleep(time.Second)
	if !replica.Leading() {
		t.Fatal("replica stopped leading while it was the only one")
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(replica.StopBudget()):
		t.Fatalf("Run did not return within its stop budget %s", replica.StopBudget())
	}
	if _, shutdowns := tg.counts(); shutdowns != 1 {
		t.Errorf("target shut down %d times, want once", shutdowns)
	}
	if err := drv.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
}
