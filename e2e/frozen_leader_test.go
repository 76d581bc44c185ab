package e2e

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

const (
	frozenFor        = 13 * time.Second
	frozenDownDelay  = 8 * time.Second
	frozenMaxWorkers = 4
)

// TestFrozenLeaderDoesNotFlap freezes the leading `ebb server` (SIGSTOP)
// for 13 s while tasks flow, so the other replica takes over while the
// frozen one's workers keep running, then thaws it. The successor resumes
// from the fenced decision log and the pool's current size, so no decision
// goes the opposite way of one made within the scale-down delay before it
// across the change of leader; the frozen replica, thawed, steps down and
// decides nothing; the pool never has more than max workers counting every
// replica's; and every task succeeds.
func TestFrozenLeaderDoesNotFlap(t *testing.T) {
	t.Parallel()
	eachBroker(t, testFrozenLeader)
}

func testFrozenLeader(t *testing.T, b *broker) {
	const pool = "frozen"
	cfg := writeConfig(t, serverConfig{
		broker: b.url, listen: "127.0.0.1:1",
		leaderTTL: "3s", leaderRenew: "1s", reconcile: "1s",
		pools: []poolConfig{{name: pool, min: 0, max: frozenMaxWorkers, concurrency: 2, logDir: t.TempDir(),
			drainTimeout: "30s", stopGrace: "35s",
			maxWait: "1s", scaleDownDelay: frozenDownDelay.String(), idleBeforeZero: "3s"}},
	})
	var servers []*ebbServer
	for _, name := range []string{"frozen-a", "frozen-b"} {
		port := freePort(t)
		servers = append(servers, startServer(t, name+"-"+b.kind, cfg, port, "", "--listen", fmt.Sprintf("127.0.0.1:%d", port)))
	}
	var leader, other *ebbServer
	waitFor(t, 20*time.Second, "one of the two servers to lead", func() (bool, string) {
		for i, s := range servers {
			var l leaderJSON
			if s.tryGet("/api/v1/leader", &l) == nil && l.Leading {
				leader, other = s, servers[1-i]
				return true, ""
			}
		}
		return false, "no leader yet"
	}, servers[0].proc, servers[1].proc)

	// Bursts of 1.5 s tasks, max workers' worth, every 4 s: shorter than
	// the scale-down delay, so one leader holds the pool at max through the
	// lulls; a successor that forgot why would shrink it in the first lull
	// and grow it again at the next burst. And a sampler of the pool's
	// registered workers, every replica's.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var mu sync.Mutex
	var ids []string
	var overMax []string
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			got := b.enqueueSleeps(t, pool, slices.Repeat([]int{1500}, 2*frozenMaxWorkers))
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
			for _, w := range b.poolWorkers(t, pool) {
				if !w.Draining {
					n++
				}
			}
			if n > frozenMaxWorkers {
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

	// Freeze right after the leader grew the pool for a burst: the lull
	// comes while the successor takes over.
	waitFor(t, 30*time.Second, "the leader to grow the pool to max", func() (bool, string) {
		ws := b.poolWorkers(t, pool)
		return len(ws) >= frozenMaxWorkers, fmt.Sprintf("%d workers", len(ws))
	}, leader.proc, other.proc)
	leader.signal(syscall.SIGSTOP)
	frozeAt := time.Now()
	other.waitLeading(t, 15*time.Second)
	tookOver := time.Since(frozeAt)
	if d := time.Until(frozeAt.Add(frozenFor)); d > 0 {
		time.Sleep(d) // the freeze itself: the scenario, not synchronisation
	}
	leader.signal(syscall.SIGCONT)
	waitFor(t, 10*time.Second, "the thawed replica to step down", func() (bool, string) {
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
	recs := waitSucceeded(t, b, all, 2*time.Minute, leader.proc, other.proc)
	for _, r := range recs {
		if len(r.Errors) != 0 {
			t.Errorf("task %s: %s: no task may fail or be rescued across a frozen leader", r.ID, describe(r))
		}
	}
	for _, o := range overMax {
		t.Errorf("more than max %d workers: %s", frozenMaxWorkers, o)
	}

	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := b.drv.(ebbdriver.Control).DecisionList(dctx, pool, 0)
	if err != nil {
		t.Fatalf("DecisionList: %v", err)
	}
	slices.SortFunc(ds, func(a, b ebbtype.Decision) int { return cmp.Compare(a.Seq, b.Seq) })
	changes := 0
	for i, d := range ds {
		for _, e := range ds[:i] {
			if e.Term == d.Term || d.At.Sub(e.At) >= frozenDownDelay {
				continue
			}
			changes++
			if opposite(e.Action, d.Action) {
				t.Errorf("across a change of leader, %s (term %d at %s, %d→%d: %s) then %s (term %d at %s, %d→%d: %s) within the %s scale-down delay",
					e.Action, e.Term, e.At.Format(time.StampMilli), e.From, e.To, e.Reason,
					d.Action, d.Term, d.At.Format(time.StampMilli), d.From, d.To, d.Reason, frozenDownDelay)
			}
		}
		if d.At.After(frozeAt) && d.LeaderID == leaderIDOf(t, leader) && d.At.Before(frozeAt.Add(frozenFor)) {
			t.Errorf("decision %d by the frozen replica while it was frozen: %+v", d.Seq, d)
		}
	}
	t.Logf("%s: %s took over %s after the freeze; %d tasks succeeded; %d decisions, %d pairs across a leader change within the delay, none opposite",
		b.kind, other.name, tookOver.Round(time.Millisecond), len(all), len(ds), changes)
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
