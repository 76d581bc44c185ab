package bench

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testredis"
)

func drivers(t *testing.T) map[string]func(t *testing.T) ebbdriver.Driver {
	return map[string]func(t *testing.T) ebbdriver.Driver{
		"sqlite": func(t *testing.T) ebbdriver.Driver {
			drv, err := ebbsqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ebb.db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { drv.Close() })
			return drv
		},
		"redis": func(t *testing.T) ebbdriver.Driver {
			drv, err := ebbredis.New(testredis.Client(t), &ebbredis.Config{Prefix: testredis.Prefix(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { drv.Close() })
			return drv
		},
	}
}

// onEachBroker runs test in parallel on each broker, with a bystander task
// already stored (keep).
func onEachBroker(t *testing.T, test func(t *testing.T, drv ebbdriver.Driver, keep string)) {
	for name, open := range drivers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			drv := open(t)
			test(t, drv, bystander(t, drv))
		})
	}
}

// bystander enqueues a task into "default" that the bench must not touch.
func bystander(t *testing.T, drv ebbdriver.Driver) string {
	t.Helper()
	c, err := ebb.NewClient(drv, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.EnqueueRaw(t.Context(), "noop", []byte(`{}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// benchLeftovers returns the bench queue (the only one besides "default")
// and every task still stored in it.
func benchLeftovers(t *testing.T, drv ebbdriver.Driver) (ebbtype.QueueStats, []*ebbtype.TaskInfo) {
	t.Helper()
	ctx := context.Background()
	stats, err := drv.QueueStats(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var q ebbtype.QueueStats
	for _, s := range stats {
		if strings.HasPrefix(s.Name, "bench-") {
			if q.Name != "" {
				t.Fatalf("two bench queues: %s and %s", q.Name, s.Name)
			}
			q = s
		}
	}
	if q.Name == "" {
		t.Fatalf("no bench queue among %+v", stats)
	}
	var left []*ebbtype.TaskInfo
	for cursor := ""; ; {
		page, err := drv.TaskList(ctx, ebbdriver.TaskListParams{Queue: q.Name, Limit: 1000, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, page.Tasks...)
		if cursor = page.Cursor; cursor == "" {
			return q, left
		}
	}
}

func checkClean(t *testing.T, drv ebbdriver.Driver, keep string) {
	t.Helper()
	q, left := benchLeftovers(t, drv)
	if q.Queued+q.Scheduled+q.InFlight+q.Dead != 0 || len(left) != 0 {
		t.Errorf("after the bench, its queue %s has counts %+v and %d stored tasks, want none", q.Name, q, len(left))
		for i, tk := range left[:min(len(left), 5)] {
			t.Logf("left %d: %s %s", i, tk.ID, tk.State)
		}
	}
	if tk, err := drv.TaskGet(context.Background(), keep); err != nil || tk.State != ebbtype.StateQueued {
		t.Errorf("the bench touched a task of queue default: %+v, %v", tk, err)
	}
}

func TestRunDeletesItsTasks(t *testing.T) {
	onEachBroker(t, func(t *testing.T, drv ebbdriver.Driver, keep string) {
		res, err := Run(t.Context(), drv, Params{Tasks: 1500, Concurrency: 50, EnqueueBatch: 200, LatencySamples: 5})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if res.Tasks != 1500 || res.LatencySamples != 5 {
			t.Errorf("result %+v, want 1500 tasks and 5 samples", res)
		}
		q, _ := benchLeftovers(t, drv)
		if q.Succeeded != 1505 {
			t.Errorf("bench queue counts %+v, want 1505 succeeded", q)
		}
		checkClean(t, drv, keep)
	})
}

func TestRunDeletesItsTasksWhenInterrupted(t *testing.T) {
	onEachBroker(t, func(t *testing.T, drv ebbdriver.Driver, keep string) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		// Stopped mid-enqueue, a backlog is left that no worker ran.
		p := Params{Tasks: 5000, Concurrency: 50, EnqueueBatch: 500, LatencySamples: 5,
			Progress: func(phase string, done, total int) {
				if phase == "enqueue" && done >= 2000 {
					cancel()
				}
			}}
		if _, err := Run(ctx, drv, p); err == nil {
			t.Fatal("Run finished although its context was cancelled")
		}
		q, _ := benchLeftovers(t, drv)
		if q.Enqueued < 2000 {
			t.Fatalf("bench queue %+v: want at least 2000 enqueued before the interrupt", q)
		}
		checkClean(t, drv, keep)
	})
}

func TestRunLeavesTasksWhenAbandoned(t *testing.T) {
	drv := drivers(t)["sqlite"](t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	abandon := make(chan struct{})
	close(abandon)
	p := Params{Tasks: 3000, Concurrency: 50, EnqueueBatch: 500, LatencySamples: 5, Abandon: abandon,
		Progress: func(phase string, done, total int) {
			if phase == "enqueue" && done >= 1000 {
				cancel()
			}
		}}
	_, err := Run(ctx, drv, p)
	if err == nil || !strings.Contains(err.Error(), "cleanup abandoned") {
		t.Fatalf("Run with Abandon closed returned %v, want it to say the cleanup was abandoned", err)
	}
}
