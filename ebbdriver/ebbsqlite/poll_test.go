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

// listeningPair opens two Drivers on one new file, with the poller's
// interval capped at pollMax, and a Listen on queue "q" of the second: the
// first plays another process.
func listeningPair(t *testing.T, pollMax time.Duration) (a, b *Driver, events <-chan ebbdriver.Event) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ebb.db")
	cfg := &Config{PollIntervalMax: pollMax}
	open := func() *Driver {
		d, err := Open(t.Context(), path, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return d
	}
	a, b = open(), open()
	events, err := b.Listen(t.Context(), ebbdriver.ListenParams{Queues: []string{"q"}})
	if err != nil {
		t.Fatal(err)
	}
	return a, b, events
}

// TestPollBackoff: a quiet poller backs off to PollIntervalMax, a
// notification from another driver still arrives (within about the cap),
// and the poller is fast again right after it.
func TestPollBackoff(t *testing.T) {
	t.Parallel()
	a, b, events := listeningPair(t, 50*time.Millisecond)
	ctx := t.Context()
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

// TestPollSkipsSQLWhileNothingCommits: an idle poller reads the WAL-index
// header and runs no statement until some connection commits; a commit of
// another driver, even one that announces nothing, makes it query, and the
// notification of an enqueue still arrives.
func TestPollSkipsSQLWhileNothingCommits(t *testing.T) {
	t.Parallel()
	a, b, events := listeningPair(t, 10*time.Millisecond)
	ctx := t.Context()
	n := b.notify
	// quiet waits for 20 polls and returns how many of them queried.
	quiet := func() uint64 {
		t.Helper()
		p0, q0 := n.polls.Load(), n.queries.Load()
		testwait.Eventually(t, 10*time.Second, "20 polls", func() (bool, error) { return n.polls.Load() >= p0+20, nil })
		return n.queries.Load() - q0
	}
	quiet() // the first polls may still see Open's own commits
	if q := quiet(); q != 0 {
		t.Fatalf("%d of 20 polls ran SQL with nothing committed", q)
	}
	q0 := n.queries.Load()
	if _, err := a.WorkerHeartbeat(ctx, ebbtype.WorkerInfo{ID: "w", HeartbeatAt: time.Now()}, time.Minute); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, "a query after another driver's commit",
		func() (bool, error) { return n.queries.Load() > q0, nil })
	if q := quiet(); q != 0 {
		t.Fatalf("%d of 20 polls ran SQL after the heartbeat's commit was seen", q)
	}
	pollEnqueue(t, a)
	for ev := range events {
		if ev.Kind == ebbdriver.EventQueued && ev.Queue == "q" {
			break
		}
	}
}
