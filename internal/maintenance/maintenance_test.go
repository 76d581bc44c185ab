package maintenance_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/internal/clock"
	"github.com/ebbq/ebb/internal/maintenance"
	"github.com/ebbq/ebb/internal/testwait"
)

// epoch is far from the wall clock, so a step that read the wall instead of
// Config.Clock would find nothing expired, due or past retention.
var epoch = time.Date(2100, 1, 2, 3, 4, 5, 0, time.UTC)

type fixture struct {
	t      *testing.T
	ctx    context.Context
	drv    *ebbsqlite.Driver
	clock  *clock.Stub
	client *ebb.Client
}

func setup(t *testing.T) *fixture {
	t.Helper()
	t.Parallel()
	ctx := t.Context()
	drv, err := ebbsqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drv.Close() })
	stub := clock.NewStub(epoch)
	client, err := ebb.NewClient(drv, &ebb.ClientConfig{Clock: stub})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: ctx, drv: drv, clock: stub, client: client}
}

func (f *fixture) maintainer(c maintenance.Config) *maintenance.Maintainer {
	c.Driver, c.Clock, c.Logger = f.drv, f.clock, slog.New(slog.DiscardHandler)
	return maintenance.New(c)
}

func (f *fixture) enqueue(opts *ebb.EnqueueOpts) string {
	f.t.Helper()
	res, err := f.client.EnqueueRaw(f.ctx, "k", nil, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return res.ID
}

// claim fetches one task of queue a as a worker would, leased for lease.
func (f *fixture) claim(lease time.Duration) *ebb.TaskInfo {
	f.t.Helper()
	res, err := f.drv.Fetch(f.ctx, ebbdriver.FetchParams{Queues: []string{"a"}, Limit: 1, WorkerID: "w", LeaseToken: "w:1",
		LeaseDuration: lease, Now: f.clock.Now()})
	if err != nil || len(res.Tasks) != 1 {
		f.t.Fatalf("Fetch = %+v, %v; want one task", res, err)
	}
	return res.Tasks[0]
}

func (f *fixture) task(id string) *ebb.TaskInfo {
	f.t.Helper()
	info, err := f.client.Task(f.ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return info
}

func TestPassRescuesExpiredLeasesOnItsClock(t *testing.T) {
	f := setup(t)
	id := f.enqueue(&ebb.EnqueueOpts{Queue: "a"})
	f.claim(time.Minute)
	m := f.maintainer(maintenance.Config{})

	f.clock.Advance(59 * time.Second)
	if res := m.Pass(f.ctx); res.Rescued != 0 {
		t.Fatalf("rescued %d with a second of lease left", res.Rescued)
	}
	at := f.clock.Advance(2 * time.Second)
	if res := m.Pass(f.ctx); res.Rescued != 1 {
		t.Fatalf("rescued %d after the lease expired, want 1", res.Rescued)
	}
	info := f.task(id)
	if info.State != ebb.StateQueued || len(info.Errors) != 1 || info.Errors[0].Error != "lease expired" || !info.Errors[0].At.Equal(at) {
		t.Errorf("rescued task: %s with %+v; want queued with \"lease expired\" at %s", info.State, info.Errors, at)
	}
}

func TestPassPromotesDueTasksOnItsClock(t *testing.T) {
	f := setup(t)
	id := f.enqueue(&ebb.EnqueueOpts{Queue: "a", Delay: time.Hour})
	m := f.maintainer(maintenance.Config{Queues: []string{"a"}})
	if res := m.Pass(f.ctx); res.Promoted != 0 {
		t.Fatalf("promoted %d an hour early", res.Promoted)
	}
	f.clock.Advance(time.Hour)
	if res := m.Pass(f.ctx); res.Promoted != 1 {
		t.Fatalf("promoted %d when due, want 1", res.Promoted)
	}
	if st := f.task(id).State; st != ebb.StateQueued {
		t.Errorf("due task is %s, want queued", st)
	}
}

// Maintenance of one queue leaves the others alone: a worker maintains only
// the queues it serves.
func TestPassKeepsToItsQueues(t *testing.T) {
	f := setup(t)
	id := f.enqueue(&ebb.EnqueueOpts{Queue: "other", Delay: time.Minute})
	m := f.maintainer(maintenance.Config{Queues: []string{"a"}})
	f.clock.Advance(time.Hour)
	if res := m.Pass(f.ctx); res.Promoted != 0 {
		t.Fatalf("promoted %d tasks of a queue it does not maintain", res.Promoted)
	}
	if st := f.task(id).State; st != ebb.StateScheduled {
		t.Errorf("task of the other queue is %s, want still scheduled", st)
	}
}

// finished stores a task that succeeded now and is kept for retention.
func (f *fixture) finished(retention time.Duration) string {
	f.t.Helper()
	id := f.enqueue(&ebb.EnqueueOpts{Queue: "a", Retention: retention})
	r := f.claim(time.Minute)
	errs, err := f.drv.Complete(f.ctx, []ebbdriver.Completion{{Queue: "a", ID: id, LeaseToken: r.LeaseToken,
		Outcome: ebbdriver.OutcomeSucceeded, Result: []byte(`1`), Now: f.clock.Now()}})
	if err != nil || errs[0] != nil {
		f.t.Fatalf("Complete = %v, %v", errs, err)
	}
	return id
}

func TestCleanupEveryIntervalOnItsClock(t *testing.T) {
	f := setup(t)
	id := f.finished(time.Minute)
	m := f.maintainer(maintenance.Config{CleanupInterval: 10 * time.Minute})

	// Past retention, but the first cleanup is one interval after New.
	f.clock.Advance(5 * time.Minute)
	if res := m.Pass(f.ctx); res.Deleted != 0 {
		t.Fatalf("deleted %d before the cleanup interval passed", res.Deleted)
	}
	f.clock.Advance(5 * time.Minute)
	if res := m.Pass(f.ctx); res.Deleted != 1 {
		t.Fatalf("deleted %d once the interval passed, want the finished task", res.Deleted)
	}
	if _, err := f.client.Task(f.ctx, id); err == nil {
		t.Error("task still readable after cleanup")
	}
	// The next cleanup waits a whole interval again.
	f.finished(time.Minute)
	f.clock.Advance(9 * time.Minute)
	if res := m.Pass(f.ctx); res.Deleted != 0 {
		t.Fatalf("deleted %d within the interval after a cleanup", res.Deleted)
	}
	f.clock.Advance(time.Minute)
	if res := m.Pass(f.ctx); res.Deleted != 1 {
		t.Fatalf("deleted %d a whole interval after the last cleanup, want 1", res.Deleted)
	}
}

func TestRunStopsWithItsContext(t *testing.T) {
	f := setup(t)
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.maintainer(maintenance.Config{RescueInterval: time.Millisecond}).Run(ctx)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// A process that starts rescues at once, not one interval later: one that
// lives less than an interval (a crash loop) must still rescue what the
// incarnations before it left behind.
func TestRunRescuesAtStart(t *testing.T) {
	f := setup(t)
	id := f.enqueue(&ebb.EnqueueOpts{Queue: "a"})
	f.claim(time.Second)
	f.clock.Advance(2 * time.Second)
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The stub clock never ticks the interval: only a pass at start
		// can rescue.
		f.maintainer(maintenance.Config{Queues: []string{"a"}, RescueInterval: time.Hour}).Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	testwait.Eventually(t, 10*time.Second, "the expired lease rescued by the first pass", func() (bool, error) {
		return f.task(id).State == ebb.StateQueued, nil
	})
}
