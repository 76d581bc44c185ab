package ebb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
)

// packTrickle runs two workers of one queue, the older started first, and
// feeds them a trickle of tasks, one at a time, each held running until the
// end. It returns how many tasks each worker took, older first.
//
// Tasks arrive further apart than the pack delay, as a trickle does: the
// newer worker's deferral starts at a wake-up and its fetch at the end
// claims whatever is ready then, so a task enqueued a moment before that
// end (back to back, as a burst) could go to either worker, and CI saw
// two such strays in twelve.
func packTrickle(t *testing.T, drv ebbdriver.Driver, packDelay, tasks, concurrency int) (older, newer int) {
	t.Helper()
	watched := watch(drv, "pack-newer")
	r := newRig(t, withDriver(watched))
	release := make(chan struct{})
	defer close(release)
	type start struct{ worker string }
	started := make(chan start, tasks)
	handlers := func(name string) *ebb.Handlers {
		h := ebb.NewHandlers()
		ebb.HandleRaw(h, "hold", func(ctx context.Context, _ *ebb.Task[json.RawMessage]) (any, error) {
			started <- start{name}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, nil
		})
		return h
	}
	cfg := func(name string) *ebb.WorkerConfig {
		return &ebb.WorkerConfig{Handlers: handlers(name), ID: "pack-" + name, Concurrency: concurrency,
			PackDelay: packDelayFor(packDelay), DisableMaintenance: true}
	}
	registered := func(n int) func() (bool, error) {
		return func() (bool, error) {
			ws, err := r.client.WorkerList(r.ctx)
			return len(ws) == n, err
		}
	}
	r.start(cfg("older"))
	testwait.Eventually(t, waitTimeout, "the older worker to register", registered(1))
	r.start(cfg("newer"))
	testwait.Eventually(t, waitTimeout, "the newer worker to register", registered(2))
	// A worker's first fetch is never deferred (it starts because there is
	// work); the trickle is what arrives after it.
	select {
	case <-watched.fetched:
	case <-r.ctx.Done():
		t.Fatal("the newer worker never fetched")
	}

	counts := map[string]int{}
	var mu sync.Mutex
	for i := range tasks {
		if _, err := r.client.EnqueueRaw(r.ctx, "hold", []byte(`{}`), nil); err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
		select {
		case s := <-started:
			mu.Lock()
			counts[s.worker]++
			mu.Unlock()
		case <-r.ctx.Done():
			t.Fatalf("task %d never started", i)
		}
		// The same gap with packing off, so the control sees the same trickle.
		time.Sleep(packDelayFor(1) * 3 / 2)
	}
	return counts["older"], counts["newer"]
}

// watchedDriver counts the fetches of one worker and every registry read,
// and signals when that worker's first fetch has returned.
type watchedDriver struct {
	ebbdriver.Driver
	worker         string
	once           sync.Once
	fetched        chan struct{}
	fetches, lists atomic.Int64
}

func watch(drv ebbdriver.Driver, worker string) *watchedDriver {
	return &watchedDriver{Driver: drv, worker: worker, fetched: make(chan struct{})}
}

func (d *watchedDriver) Fetch(ctx context.Context, p ebbdriver.FetchParams) (*ebbdriver.FetchResult, error) {
	res, err := d.Driver.Fetch(ctx, p)
	if p.WorkerID == d.worker {
		d.fetches.Add(1)
		d.once.Do(func() { close(d.fetched) })
	}
	return res, err
}

func (d *watchedDriver) WorkerList(ctx context.Context, now time.Time) ([]ebbtype.WorkerInfo, error) {
	d.lists.Add(1)
	return d.Driver.WorkerList(ctx, now)
}

// TestIdleWorkerReadsNoRegistry: packing refreshes its view of the peers
// on notifications only, so a worker that hears of no work reads the
// registry once, at start, however many backstop polls it makes (a read per
// poll would be a broker call per worker every few seconds, forever).
func TestIdleWorkerReadsNoRegistry(t *testing.T) {
	t.Parallel()
	for _, tc := range packBrokers() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			drv := watch(tc.open(t), "idle")
			r := newRig(t, withDriver(drv))
			r.start(&ebb.WorkerConfig{ID: "idle", PollInterval: 10 * time.Millisecond, DisableMaintenance: true})
			// Past the one-second gap between reads that a poll asking for
			// one would have been granted.
			testwait.Eventually(t, waitTimeout, "150 backstop polls", func() (bool, error) {
				return drv.fetches.Load() >= 150, nil
			})
			if n := drv.lists.Load(); n != 1 {
				t.Errorf("an idle worker read the registry %d times in %d polls; want once, at start", n, drv.fetches.Load())
			}
		})
	}
}

// packDelayFor maps the test's switch to the config: -1 packing off, 1 on.
// On, the head start is far longer than the default's, so that a machine
// loaded enough to stall a goroutine for milliseconds cannot reorder the
// claims; the default is measured in docs/benchmarks.md.
func packDelayFor(v int) time.Duration {
	if v < 0 {
		return -1
	}
	return 100 * time.Millisecond
}

// TestWorkerPacksTrickle: with two workers of a queue and a trickle of
// tasks that fits one of them, the older worker takes them all and the
// newer stays idle, so the autoscaler (which drains idle workers, newest
// first) can remove it. Without packing the first worker to reach the
// broker wins each task, and the trickle spreads over both
// (TestWorkerWithoutPackingSpreads shows it), leaving neither idle. One
// stray task is tolerated: the registry view behind packing lags, and a
// loaded machine can reorder a 5 ms head start.
func TestWorkerPacksTrickle(t *testing.T) {
	t.Parallel()
	for _, tc := range packBrokers() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			drv := tc.open(t)
			older, newer := packTrickle(t, drv, 1, 12, 16)
			t.Logf("%s, packing: older worker took %d tasks, newer %d", tc.name, older, newer)
			if newer > 1 || older+newer != 12 {
				t.Errorf("with packing the newer worker took %d of 12 tasks (older %d); want at most 1, the older holding the rest", newer, older)
			}
		})
	}
}

// TestWorkerWithoutPackingSpreads is the control of TestWorkerPacksTrickle:
// with packing off, the same trickle lands on both workers, which is why
// packing exists (and what TestWorkerPacksTrickle would see without it).
// Which worker wins each task is then a race, and a loaded machine can let
// one worker win nearly every time for a whole run, so the control asks for
// a spread in one of a few runs: enough to show that the packing test's
// assertion fails without packing.
func TestWorkerWithoutPackingSpreads(t *testing.T) {
	t.Parallel()
	const runs = 3
	for _, tc := range packBrokers() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var seen []string
			for i := range runs {
				// A subtest per run: its workers stop before the next starts.
				spread := false
				t.Run(fmt.Sprint("run", i+1), func(t *testing.T) {
					older, newer := packTrickle(t, tc.open(t), -1, 12, 16)
					seen = append(seen, fmt.Sprintf("older %d, newer %d", older, newer))
					spread = min(older, newer) >= 2
				})
				if spread {
					t.Logf("%s, no packing: %s", tc.name, strings.Join(seen, "; "))
					return
				}
			}
			t.Errorf("without packing the trickle never spread over both workers (at least 2 tasks each) in %d runs: %s", runs, strings.Join(seen, "; "))
		})
	}
}

func packBrokers() []struct {
	name string
	open func(t *testing.T) ebbdriver.Driver
} {
	return []struct {
		name string
		open func(t *testing.T) ebbdriver.Driver
	}{
		{"SQLite", func(t *testing.T) ebbdriver.Driver {
			drv, err := ebbsqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ebb.db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = drv.Close() })
			return drv
		}},
		{"Redis", func(t *testing.T) ebbdriver.Driver {
			drv, err := ebbredis.Open(t.Context(), testredis.URL(), &ebbredis.Config{Prefix: testredis.Prefix(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = drv.Close() })
			return drv
		}},
	}
}
