package controlplane_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/target"
	"github.com/ebbq/ebb/internal/testwait"
)

// platformTarget plays a platform that owns the replica count (ECS, a
// Deployment): it records retirements and reports a failure for the pool's
// status.
type platformTarget struct {
	nullTarget
	mu      sync.Mutex
	retired []string
	failing error
}

func (p *platformTarget) Retire(_ context.Context, ids []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retired = append(p.retired, ids...)
	return nil
}

// Instances: the platform runs the pool's three workers, and a fourth that
// is drained but already stopping (the platform picked it), which must not
// be retired again.
func (p *platformTarget) Instances(context.Context) ([]target.Instance, error) {
	return []target.Instance{
		{ID: "drained", State: target.StateRunning}, {ID: "draining", State: target.StateRunning},
		{ID: "busy", State: target.StateRunning}, {ID: "stopping", State: target.StateStopping},
	}, nil
}

func (p *platformTarget) Status() string { return "service s: desired 1" }

func (p *platformTarget) LastError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failing
}

func (p *platformTarget) retiredIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.retired)
}

// TestDrainedWorkersAreRetired: on a platform-owned target the leader lowers
// the replica count only for workers that report Drained, never for one that
// is still draining or busy, and the target's status reaches the pool view.
func TestDrainedWorkersAreRetired(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	tg := &platformTarget{failing: errors.New("ThrottlingException: rate exceeded")}
	drv, replica := fastReplica(t, "p", tg)
	now := time.Now()
	for _, w := range []ebbtype.WorkerInfo{
		{ID: "drained", Pool: "p", Draining: true, Drained: true},
		{ID: "draining", Pool: "p", Draining: true, Busy: 1},
		{ID: "busy", Pool: "p", Busy: 1},
		{ID: "other-pool", Pool: "q", Draining: true, Drained: true},
		{ID: "stopping", Pool: "p", Draining: true, Drained: true},
	} {
		w.HeartbeatAt, w.StartedAt, w.Concurrency = now, now, 1
		if _, err := drv.WorkerHeartbeat(ctx, w, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- replica.Run(runCtx) }()
	stopped := false
	defer func() {
		if !stopped {
			stop()
			<-done
		}
	}()
	testwait.Eventually(t, 10*time.Second, "the drained worker to be retired", func() (bool, error) {
		return len(tg.retiredIDs()) > 0, nil
	})
	for _, id := range tg.retiredIDs() {
		if id != "drained" {
			t.Errorf("retired %q, want only the drained worker of the pool", id)
		}
	}
	testwait.Eventually(t, 10*time.Second, "the target's status on the pool", func() (bool, error) {
		v, _ := replica.Pool("p")
		return v.TargetStatus == "service s: desired 1" && v.TargetError == "ThrottlingException: rate exceeded", nil
	})
	stop()
	<-done
	stopped = true
	if _, shutdowns := tg.counts(); shutdowns != 1 {
		t.Errorf("target shut down %d times, want once", shutdowns)
	}
	// A platform-owned fleet is not drained when the replica stops.
	ws, _ := drv.WorkerList(ctx, time.Now())
	for _, w := range ws {
		if w.ID == "busy" && w.Draining {
			t.Error("stopping the replica asked the platform's workers to drain")
		}
	}
}
