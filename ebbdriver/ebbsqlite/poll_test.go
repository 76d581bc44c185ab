package ebbsqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testwait"
	"github.com/ebbq/ebb/internal/tid"
)

func pollEnqueue(t *testing.T, d *Driver) {
	t.Helper()
	now := time.Now()
	if _, err := d.Enqueue(t.Context(), []*ebbtype.TaskInfo{{ID: tid.NewAt(now), Kind: "k", Queue: "q",
		EncodedArgs: []byte("{}"), Priority: ebbtype.PriorityNormal, RunAt: now, EnqueuedAt: now, MaxAttempts: 1}}); err != nil {
		t.Fatal(err)
	}
}

// TestPollBackoff: a quiet poller backs off to PollIntervalMax, a
// notification from another driver still arrives (within about the cap),
// and the poller is fast again right after it.
func TestPollBackoff(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ebb.db")
	cfg := &Config{PollIntervalMax: 50 * time.Millisecond}
	a, err := Open(t.Context(), path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b, err := Open(t.Context(), path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx := t.Context()
	events, err := b.Listen(ctx, ebbdriver.ListenParams{Queues: []string{"q"}})
	if err != nil {
		t.Fatal(err)
	}
	waitSlow := func(want bool) {
		t.Helper()
		testwait.Eventually(t, 5*time.Second, fmt.Sprintf("poller backed off = %v", want),
			func() (bool, error) { return b.notify.slow.Load() == want, nil })
	}
	waitSlow(true)
	// Heartbeats commit but announce nothing: the poller stays slow.
	if _, err := a.WorkerHeartbeat(ctx, ebbtype.WorkerInfo{ID: "w", HeartbeatAt: time.Now()}, time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if !b.notify.slow.Load() {
		t.Error("a heartbeat of another driver made the poller fast")
	}
	for i := range 3 {
		start := time.Now()
		pollEnqueue(t, a)
		for ev := range events {
			if ev.Kind == ebbdriver.EventQueued && ev.Queue == "q" {
				break
			}
		}
		if lat := time.Since(start); lat > time.Second {
			t.Errorf("notification %d took %v with PollIntervalMax 50ms", i, lat)
		}
		waitSlow(false) // set right after the poll that announced it
		if i == 0 {
			waitSlow(true)
		}
	}
	// Activity in this process (a Listen, an await, an enqueue) speeds the
	// poller up too.
	waitSlow(true)
	pollEnqueue(t, b)
	waitSlow(false)
}
