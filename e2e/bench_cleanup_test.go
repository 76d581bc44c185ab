package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// TestBenchCleanup: `ebb bench` runs in a queue of its own and deletes every
// task it made when it ends, leaving other queues' tasks alone.
func TestBenchCleanup(t *testing.T) {
	t.Parallel()
	eachBroker(t, func(t *testing.T, b *broker) {
		dir := t.TempDir()
		keep := enqueueOne(t, dir, "noop", "--broker", b.url)
		var res struct {
			Tasks          int `json:"tasks"`
			LatencySamples int `json:"latency_samples"`
		}
		mustEbbJSON(t, dir, &res, "bench", "--tasks", "2000", "--latency-samples", "20", "--json", "--broker", b.url)
		if res.Tasks != 2000 || res.LatencySamples != 20 {
			t.Errorf("bench printed %+v, want 2000 tasks and 20 latency samples", res)
		}
		q := benchQueue(t, dir, b)
		if q.Succeeded != 2020 {
			t.Errorf("bench queue %+v: want 2020 succeeded (2000 + 20 samples)", q)
		}
		checkBenchGone(t, b, q, keep)
	})
}

// TestBenchCleanupInterrupted: the same after SIGINT in the middle of a run,
// with a backlog no worker ran.
func TestBenchCleanupInterrupted(t *testing.T) {
	t.Parallel()
	eachBroker(t, func(t *testing.T, b *broker) {
		dir := t.TempDir()
		keep := enqueueOne(t, dir, "noop", "--broker", b.url)
		p := startEbb(t, dir, "bench", "bench", "--tasks", "200000", "--json", "--broker", b.url)
		// Interrupt once the bench is underway (its queue holds tasks), not
		// after a fixed time: on a loaded machine connecting alone can take
		// longer than any sleep we would pick.
		// `ebb inspect queues` runs as a fresh process: the test's own
		// driver would not see a queue it did not know of (Redis's list of
		// queues is cached).
		waitFor(t, 30*time.Second, "the bench to enqueue", func() (bool, string) {
			var rows []benchRow
			mustEbbJSON(t, dir, &rows, "inspect", "queues", "--json", "--broker", b.url)
			for _, r := range rows {
				if strings.HasPrefix(r.Name, "bench-") && r.Enqueued > 0 {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%d queues, no bench queue with tasks", len(rows))
		}, p)
		p.signal(syscall.SIGINT)
		// The cleanup after an interrupt is bounded by 30s.
		st := p.waitExit(45 * time.Second)
		out := p.output()
		if st.ExitCode() != 1 || !strings.Contains(out, "context canceled") {
			t.Errorf("interrupted bench exited %d, want 1 saying it was cancelled; output:\n%s", st.ExitCode(), out)
		}
		if strings.Contains(out, "cleanup of queue") {
			t.Errorf("the cleanup after the interrupt failed:\n%s", out)
		}
		q := benchQueue(t, dir, b)
		if q.Enqueued == 0 {
			t.Fatalf("bench queue %+v: the bench enqueued nothing before the interrupt", q)
		}
		checkBenchGone(t, b, q, keep)
	})
}

// benchRow is a queue row with the running total of enqueued tasks.
type benchRow struct {
	queueRow
	Enqueued int64 `json:"enqueued"`
}

// benchQueue finds the bench's queue in `ebb inspect queues --json`: a fresh
// process, so Redis's list of queues is read, not a cached copy.
func benchQueue(t *testing.T, dir string, b *broker) benchRow {
	t.Helper()
	var rows []benchRow
	mustEbbJSON(t, dir, &rows, "inspect", "queues", "--json", "--broker", b.url)
	var found []benchRow
	for _, r := range rows {
		if strings.HasPrefix(r.Name, "bench-") {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("inspect queues shows %d bench queues, want 1: %+v", len(found), rows)
	}
	return found[0]
}

// checkBenchGone checks that the bench queue q holds no task, counted and
// listed, and that the task keep of queue default is still there.
func checkBenchGone(t *testing.T, b *broker, q benchRow, keep string) {
	t.Helper()
	if q.Queued != 0 || q.InFlight != 0 || q.Scheduled != 0 || q.Dead != 0 {
		t.Errorf("after the bench, inspect queues shows its queue with %+v, want 0 queued, in flight, scheduled and dead", q)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var left []*ebbtype.TaskInfo
	for cursor := ""; ; {
		page, err := b.drv.TaskList(ctx, ebbdriver.TaskListParams{Queue: q.Name, Limit: 1000, Cursor: cursor})
		if err != nil {
			t.Fatalf("TaskList of %s: %v", q.Name, err)
		}
		left = append(left, page.Tasks...)
		if cursor = page.Cursor; cursor == "" {
			break
		}
	}
	if len(left) > 0 {
		first, _ := json.Marshal(left[0])
		t.Errorf("after the bench, %d of its tasks remain in queue %s, e.g. %s", len(left), q.Name, first)
	}
	if tk := b.task(t, keep); tk.State != ebb.StateQueued || tk.Queue != ebb.QueueDefault {
		t.Errorf("the bench touched task %s of queue default: %s", keep, describe(tk))
	}
	if s := inspectQueue(t, t.TempDir(), []string{"--broker", b.url}, ebb.QueueDefault); s.Queued != 1 {
		t.Errorf("after the bench, queue default shows %+v, want its 1 queued task", s)
	}
}
