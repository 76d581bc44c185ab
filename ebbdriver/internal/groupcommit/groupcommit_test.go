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

// A shared commit must not see the leading caller give up: the other calls
// of its batch would fail with it. A commit of one call alone runs under
// that call's own context, so its deadline still bounds it.
func TestLeaderCommitOutlivesItsCallersContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	var sawCancel []bool
	g := New(8, func(cctx context.Context, batch []*call) {
		started <- struct{}{}
		if len(batch) == 1 && batch[0].n == 0 {
			<-release // the first, lone commit holds the group
			return
		}
		cancel() // the leading caller gives up mid-commit
		sawCancel = append(sawCancel, cctx.Err() != nil)
	})
	first := make(chan error, 1)
	go func() { first <- g.Do(context.Background(), &call{n: 0}) }()
	<-started
	// The first to wait leads the next batch.
	lead := make(chan error, 1)
	go func() { lead <- g.Do(ctx, &call{n: 1}) }()
	waitPending(t, g, 1)
	follower := make(chan error, 1)
	go func() { follower <- g.Do(context.Background(), &call{n: 2}) }()
	waitPending(t, g, 2)
	close(release)
	for _, ch := range []chan error{first, follower, lead} {
		if err := <-ch; err != nil {
			t.Fatalf("a call whose commit ran: %v, want nil", err)
		}
	}
	if len(sawCancel) != 1 || sawCancel[0] {
		t.Fatalf("shared commits %v: the commit saw the leading caller's cancellation; the other calls of its batch would fail with it", sawCancel)
	}
	if err := g.Do(ctx, &call{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call cancelled before it started: %v, want context.Canceled", err)
	}
}

func TestLoneCommitRunsUnderItsCallersContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	var deadline bool
	g := New(8, func(cctx context.Context, batch []*call) { _, deadline = cctx.Deadline() })
	if err := g.Do(ctx, &call{}); err != nil {
		t.Fatal(err)
	}
	if !deadline {
		t.Fatal("a lone commit lost its caller's deadline")
	}
}

var errBad = errors.New("bad task")

// store doubles each task, refusing negative ones, and counts its calls.
func doubling(calls *int) func([]int) ([]int, error) {
	return func(ts []int) ([]int, error) {
		*calls++
		out := make([]int, len(ts))
		for i, v := range ts {
			if v < 0 {
				return nil, errBad
			}
			out[i] = 2 * v
		}
		return out, nil
	}
}

func TestMergedSplitsResults(t *testing.T) {
	var n int
	a, b := &Call[int, int]{Tasks: []int{1, 2}}, &Call[int, int]{Tasks: []int{3}}
	Merged([]*Call[int, int]{a, b}, doubling(&n), func(error) bool { return true })
	if n != 1 || a.Err != nil || b.Err != nil || len(a.Results) != 2 || a.Results[1] != 4 || len(b.Results) != 1 || b.Results[0] != 6 {
		t.Fatalf("one store expected, got %d; a %+v, b %+v", n, a, b)
	}
	a.Results = append(a.Results, 99) // a's slice must not reach into b's
	if b.Results[0] != 6 {
		t.Fatalf("appending to one call's results changed another's: %v", b.Results)
	}
}

func TestMergedRetriesAloneWhenOneCallIsBad(t *testing.T) {
	var n int
	good, bad := &Call[int, int]{Tasks: []int{1}}, &Call[int, int]{Tasks: []int{-1}}
	Merged([]*Call[int, int]{good, bad}, doubling(&n), func(err error) bool { return errors.Is(err, errBad) })
	if n != 3 || good.Err != nil || len(good.Results) != 1 || good.Results[0] != 2 || !errors.Is(bad.Err, errBad) {
		t.Fatalf("stores %d (want 3: shared, then each alone); good %+v, bad %+v", n, good, bad)
	}
}

func TestMergedFailsEveryoneOnTheirCommonError(t *testing.T) {
	down := errors.New("server down")
	var n int
	a, b := &Call[int, int]{Tasks: []int{1}}, &Call[int, int]{Tasks: []int{2}}
	Merged([]*Call[int, int]{a, b}, func([]int) ([]int, error) { n++; return nil, down }, func(err error) bool { return errors.Is(err, errBad) })
	if n != 1 || !errors.Is(a.Err, down) || !errors.Is(b.Err, down) {
		t.Fatalf("stores %d (want 1); a %v, b %v", n, a.Err, b.Err)
	}
}
