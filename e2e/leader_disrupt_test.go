package e2e

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

const (
	disruptFor        = 13 * time.Second
	disruptDownDelay  = 8 * time.Second
	disruptMaxWorkers = 4
	disruptPool       = "flap"
	disruptToken      = "e2e-disrupt-token-0123456789abcdef"
)

// TestFrozenLeaderDoesNotFlap freezes the leading `ebb server` (SIGSTOP)
// for 13 s while tasks flow, then thaws it (see testLeaderDisrupted).
func TestFrozenLeaderDoesNotFlap(t *testing.T) {
	t.Parallel()
	eachBroker(t, func(t *testing.T, b *broker) {
		a, other := startReplicaPair(t, b, b.url, nil)
		testLeaderDisrupted(t, b, a, other, "frozen (SIGSTOP)",
			func() { a.signal(syscall.SIGSTOP) }, func() { a.signal(syscall.SIGCONT) })
	})
}

// TestPartitionedLeader cuts the leading `ebb server` and the workers it
// launched off from Redis for 13 s (their own network namespace, its link
// taken down), then heals the network. The partitioned replica steps down
// by its own clock (it cannot renew) before a successor can be elected, the
// other takes over, and everything testLeaderDisrupted checks holds. (The
// cut-off workers' tasks stay in flight through the cut, so here the
// successor holds the pool for them anyway; the freeze is what tests the
// resumed history.)
func TestPartitionedLeader(t *testing.T) {
	t.Parallel()
	p := newPartitioned(t)
	a, other := startReplicaPair(t, p.b, p.nsURL, p.ns)
	testLeaderDisrupted(t, p.b, a, other, "partitioned", p.ns.cut, p.ns.heal)
	if !strings.Contains(a.output(), "could not renew leadership in time") {
		t.Errorf("the partitioned replica did not step down on its own clock; its log:\n%s", a.tail(4000))
	}
}

// startReplicaPair starts two `ebb server` replicas of one pool on one
// broker and returns them with the leader first: the first replica starts
// alone, reaching the broker at firstURL, inside ns when ns is not nil.
func startReplicaPair(t *testing.T, b *broker, firstURL string, ns *netns) (leader, other *ebbServer) {
	t.Helper()
	cfg := func(url, listen string) string {
		return writeConfig(t, serverConfig{
			broker: url, listen: listen, token: disruptToken,
			leaderTTL: "3s", leaderRenew: "1s", reconcile: "1s",
			pools: []poolConfig{{name: disruptPool, min: 0, max: disruptMaxWorkers, concurrency: 2, logDir: t.TempDir(),
				drainTimeout: "30s", stopGrace: "35s",
				maxWait: "1s", scaleDownDelay: disruptDownDelay.String(), idleBeforeZero: "3s"}},
		})
	}
	port := freePort(t)
	if ns == nil {
		leader = startServer(t, "replica-a-"+b.kind, cfg(firstURL, "127.0.0.1:"+strconv.Itoa(port)), port, disruptToken)
	} else {
		listen := ns.nsAddr + ":" + strconv.Itoa(port)
		p := ns.startEbb(t, "replica-a-"+b.kind, "server", "--config", cfg(firstURL, listen))
		leader = &ebbServer{proc: p, base: "http://" + listen, token: disruptToken}
	}
	leader.waitLeading(t, 20*time.Second)
	port = freePort(t)
	other = startServer(t, "replica-b-"+b.kind, cfg(b.url, "127.0.0.1:"+strconv.Itoa(port)), port, disruptToken)
	waitFor(t, 20*time.Second, other.name+" to follow", func() (bool, string) {
		var l leaderJSON
		if err := other.tryGet("/api/v1/leader", &l); err != nil {
			return false, err.Error()
		}
		return !l.Leading && l.LeaderID != "", fmt.Sprintf("%+v", l)
	}, other.proc)
	return leader, other
}

// testLeaderDisrupted disrupts the leader (disrupt … restore) for 13 s,
// right after it grew the pool for a burst, while bursts of 1.5 s tasks,
// max workers' worth, arrive every 4 s: shorter than the scale-down delay,
// so one leader holds the pool at max through the lulls, and a successor
// that forgot why would shrink it in the first lull and grow it again at the
// next burst. The successor resumes from the fenced decision log and the
// pool's current size, so no decision goes the opposite way of one made
// within the scale-down delay before it across the change of leader; the
// disrupted replica, restored, does not lead and decided nothing while
// disrupted; the pool never has more than max serving workers counting
// every replica's; and every task succeeds without an error.
func testLeaderDisrupted(t *testing.T, b *broker, leader, other *ebbServer, how string, disrupt, restore func()) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var mu sync.Mutex
	var ids, overMax []string
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			got := b.enqueueSleeps(t, disruptPool, slices.Repeat([]int{1500}, 2*disruptMaxWorkers))
			mu.Lock()
			ids = append(ids, got...)
			mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(4 * time.Second):
			}
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			n := 0
			for _, w := range b.poolWorkers(t, disruptPool) {
				if !w.Draining {
					n++
				}
			}
			if n > disruptMaxWorkers {
				mu.Lock()
				overMax = append(overMax, fmt.Sprintf("%s: %d serving workers", time.Now().Format(time.StampMilli), n))
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	})

	leaderID := leaderIDOf(t, leader)
	waitFor(t, 30*time.Second, "the leader to grow the pool to max", func() (bool, string) {
		ws := b.poolWorkers(t, disruptPool)
		return len(ws) >= disruptMaxWorkers, fmt.Sprintf("%d workers", len(ws))
	}, leader.proc, other.proc)
	disrupt()
	disruptedAt := time.Now()
	other.waitLeading(t, 15*time.Second)
	tookOver := time.Since(disruptedAt)
	if d := time.Until(disruptedAt.Add(disruptFor)); d > 0 {
		time.Sleep(d) // the disruption itself: the scenario, not synchronisation
	}
	restore()
	restoredAt := time.Now()
	waitFor(t, 15*time.Second, "the restored replica to know it does not lead", func() (bool, string) {
		var l leaderJSON
		if err := leader.tryGet("/api/v1/leader", &l); err != nil {
			return false, err.Error()
		}
		return !l.Leading && l.LeaderID != l.Server, fmt.Sprintf("%+v", l)
	}, leader.proc)
	time.Sleep(3 * time.Second) // a few more passes of the flow under the new leader
	stop()
	wg.Wait()

	mu.Lock()
	all := slices.Clone(ids)
	mu.Unlock()
	for _, r := range waitSucceeded(t, b, all, 2*time.Minute, leader.proc, other.proc) {
		if len(r.Errors) != 0 {
			t.Errorf("task %s: %s: no task may fail or be rescued across a %s leader", r.ID, describe(r), how)
		}
	}
	for _, o := range overMax {
		t.Errorf("more than max %d workers: %s", disruptMaxWorkers, o)
	}

	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := b.drv.(ebbdriver.Control).DecisionList(dctx, disruptPool, 0)
	if err != nil {
		t.Fatalf("DecisionList: %v", err)
	}
	slices.SortFunc(ds, func(a, b ebbtype.Decision) int { return cmp.Compare(a.Seq, b.Seq) })
	pairs := 0
	for i, d := range ds {
		for _, e := range ds[:i] {
			if e.Term == d.Term || d.At.Sub(e.At) >= disruptDownDelay {
				continue
			}
			pairs++
			if opposite(e.Action, d.Action) {
				t.Errorf("across a change of leader, %s (term %d at %s, %d→%d: %s) then %s (term %d at %s, %d→%d: %s) within the %s scale-down delay",
					e.Action, e.Term, e.At.Format(time.StampMilli), e.From, e.To, e.Reason,
					d.Action, d.Term, d.At.Format(time.StampMilli), d.From, d.To, d.Reason, disruptDownDelay)
			}
		}
		if d.LeaderID == leaderID && d.At.After(disruptedAt) && d.At.Before(restoredAt) {
			t.Errorf("decision %d by the %s replica while it was %s: %+v", d.Seq, how, how, d)
		}
	}
	t.Logf("%s leader on %s: %s took over %s after it; %d tasks succeeded; %d decisions, %d pairs across a leader change within the delay, none opposite",
		how, b.kind, other.name, tookOver.Round(time.Millisecond), len(all), len(ds), pairs)
	leader.stop(30 * time.Second)
	other.stop(30 * time.Second)
}

func opposite(a, b string) bool {
	return a == "up" && b == "down" || a == "down" && b == "up"
}

// leaderIDOf is the replica id s reports for itself.
func leaderIDOf(t *testing.T, s *ebbServer) string {
	t.Helper()
	var l leaderJSON
	if err := s.tryGet("/api/v1/leader", &l); err != nil {
		t.Fatalf("%s: GET /api/v1/leader: %v", s.name, err)
	}
	return l.Server
}
