package groupcommit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type call struct {
	n         int
	batchSize int // set by commit
}

// recorder commits batches, blocking each until release gets a value, and
// records their sizes.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	started chan int // a commit began, with its batch size
	release chan struct{}
}

func newRecorder() *recorder {
	return &recorder{started: make(chan int, 100), release: make(chan struct{})}
}

func (r *recorder) commit(_ context.Context, batch []*call) {
	ns := make([]int, len(batch))
	for i, c := range batch {
		ns[i] = c.n
		c.batchSize = len(batch)
	}
	r.mu.Lock()
	r.batches = append(r.batches, ns)
	r.mu.Unlock()
	r.started <- len(batch)
	<-r.release
}

func pendingLen[C any](g *Group[C]) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pending)
}

func waitPending[C any](t *testing.T, g *Group[C], n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pendingLen(g) != n {
		if time.Now().After(deadline) {
			t.Fatalf("pending calls: %d, want %d", pendingLen(g), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLoneCallCommitsAtOnce(t *testing.T) {
	r := newRecorder()
	close(r.release)
	g := New(8, r.commit)
	c := &call{n: 1}
	if err := g.Do(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if c.batchSize != 1 || len(r.batches) != 1 {
		t.Fatalf("batch size %d, batches %v", c.batchSize, r.batches)
	}
}

func TestCallsArrivingDuringACommitShareTheNext(t *testing.T) {
	r := newRecorder()
	g := New(3, r.commit)
	var wg sync.WaitGroup
	do := func(n int) {
		wg.Go(func() {
			if err := g.Do(context.Background(), &call{n: n}); err != nil {
				t.Error(err)
			}
		})
	}
	do(0)
	if got := <-r.started; got != 1 {
		t.Fatalf("first batch holds %d calls, want 1", got)
	}
	for n := 1; n <= 5; n++ {
		do(n)
	}
	waitPending(t, g, 5)
	r.release <- struct{}{}
	// The next leader takes at most max calls: itself and two more.
	if got := <-r.started; got != 3 {
		t.Fatalf("second batch holds %d calls, want 3 (the max)", got)
	}
	r.release <- struct{}{}
	if got := <-r.started; got != 2 {
		t.Fatalf("third batch holds %d calls, want the 2 left", got)
	}
	r.release <- struct{}{}
	wg.Wait()
	seen := map[int]bool{}
	for _, b := range r.batches {
		for _, n := range b {
			if seen[n] {
				t.Fatalf("call %d committed twice: %v", n, r.batches)
			}
			seen[n] = true
		}
	}
	if len(seen) != 6 {
		t.Fatalf("committed %v, want all 6 calls once", r.batches)
	}
}

func TestCancelledWhileWaitingIsNotCommitted(t *testing.T) {
	r := newRecorder()
	g := New(8, r.commit)
	done := make(chan error, 1)
	go func() { done <- g.Do(context.Background(), &call{n: 0}) }()
	<-r.started
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() { gone <- g.Do(ctx, &call{n: 1}) }()
	waitPending(t, g, 1)
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", err)
	}
	r.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(r.batches) != 1 || len(r.batches[0]) != 1 {
		t.Fatalf("batches %v: the cancelled call must not be committed", r.batches)
	}
	// The group is free again: the next call leads at once.
	close(r.release)
	if err := g.Do(context.Background(), &call{n: 2}); err != nil {
		t.Fatal(err)
	}
}

func TestLeaderCommitOutlivesItsCallersContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var sawCancel bool
	g := New(8, func(cctx context.Context, batch []*call) {
		cancel() // the leading caller gives up mid-commit
		sawCancel = cctx.Err() != nil
	})
	if err := g.Do(ctx, &call{}); err != nil {
		t.Fatalf("a call whose commit ran: %v, want nil", err)
	}
	if sawCancel {
		t.Fatal("the commit saw the leading caller's cancellation; the other calls of its batch would fail with it")
	}
	if err := g.Do(ctx, &call{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call cancelled before it started: %v, want context.Canceled", err)
	}
}
