package ebbsqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// TestConcurrentEnqueueGroups has many goroutines enqueue at once, so their
// calls share transactions, each with a unique key another goroutine also
// asks for and an id one other goroutine repeats: every call must get its
// own results, every task is stored once and every queue counts exactly
// what was stored.
func TestConcurrentEnqueueGroups(t *testing.T) {
	t.Parallel()
	d := openAt(t, filepath.Join(t.TempDir(), "q.db"))
	ctx := context.Background()
	now := time.Now()
	const producers, rounds = 16, 40
	type outcome struct {
		res []ebbdriver.EnqueueResult
		err error
	}
	out := make([][]outcome, producers)
	var wg sync.WaitGroup
	for p := range producers {
		out[p] = make([]outcome, rounds)
		wg.Go(func() {
			for r := range rounds {
				plain := task(fmt.Sprintf("q%d", p%3), now)
				plain.ID = fmt.Sprintf("t-%d-%d", p/2, r) // goroutines 2k and 2k+1 share ids
				uniq := task("u", now)
				uniq.ID = fmt.Sprintf("u-%d-%d", p, r)
				uniq.UniqueKey = fmt.Sprintf("key-%d-%d", p/2, r)
				res, err := d.Enqueue(ctx, []*ebbtype.TaskInfo{plain, uniq})
				out[p][r] = outcome{res, err}
			}
		})
	}
	wg.Wait()

	stored := map[string]int{}
	for p := range producers {
		for r := range rounds {
			o := out[p][r]
			if o.err != nil {
				t.Fatalf("producer %d round %d: %v", p, r, o.err)
			}
			if len(o.res) != 2 {
				t.Fatalf("producer %d round %d: %d results for 2 tasks", p, r, len(o.res))
			}
			if want := fmt.Sprintf("t-%d-%d", p/2, r); o.res[0].ID != want {
				t.Fatalf("producer %d round %d: result 0 is %q, want %q", p, r, o.res[0].ID, want)
			}
			for _, res := range o.res {
				if !res.Duplicate {
					stored[res.ID]++
				}
			}
		}
	}
	// Of each pair of goroutines, exactly one stored the shared id and one
	// took the shared unique key.
	if want := producers / 2 * rounds * 2; len(stored) != want {
		t.Errorf("%d tasks stored, want %d", len(stored), want)
	}
	for id, n := range stored {
		if n != 1 {
			t.Errorf("task %s reported stored %d times", id, n)
		}
		if _, err := d.TaskGet(ctx, id); err != nil {
			t.Errorf("stored task %s: %v", id, err)
		}
	}
	stats, err := d.QueueStats(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, s := range stats {
		total += int(s.Queued)
	}
	if total != len(stored) {
		t.Errorf("queues count %d queued tasks, %d were stored: %+v", total, len(stored), stats)
	}
}

// TestEnqueueCancelledContext: a call whose context has ended stores
// nothing and says why.
func TestEnqueueCancelledContext(t *testing.T) {
	t.Parallel()
	d := openAt(t, filepath.Join(t.TempDir(), "q.db"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tk := task("q", time.Now())
	if _, err := d.Enqueue(ctx, []*ebbtype.TaskInfo{tk}); err == nil {
		t.Fatal("Enqueue with an ended context succeeded")
	}
	if _, err := d.TaskGet(context.Background(), tk.ID); err == nil {
		t.Fatal("the task of a refused Enqueue was stored")
	}
}
