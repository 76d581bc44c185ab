package e2e

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
)

// failoverBound is how soon the surviving server must lead after the leader
// was SIGKILLed. With ttl 3s and renew 1s the lease runs out at most 3 s
// after the last renewal, and the survivor's next attempt comes at most 1 s
// later: about 4 s at worst.
const failoverBound = 10 * time.Second

// TestLeaderFailover runs two `ebb server` processes on one broker and one
// config, SIGKILLs whichever leads while its workers run tasks, and checks
// that the other leads within 10 s; that the decision log shows no two
// leaders deciding at once (terms never go back, each term has one leader,
// the one that held it, and a term's decisions all come before the next
// term's); and that no task is lost: the dead leader's workers drain on the
// parent-death signal and every task ends succeeded.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	eachBroker(t, testLeaderFailover)
}

// termWatcher polls GET /api/v1/leader on every server and records which
// leader each term had, as the servers themselves report it.
type termWatcher struct {
	mu        sync.Mutex
	leaders   map[int64]string
	conflicts []string
}

func watchTerms(ctx context.Context, servers ...*ebbServer) *termWatcher {
	w := &termWatcher{leaders: map[int64]string{}}
	go func() {
		for ctx.Err() == nil {
			for _, s := range servers {
				var l leaderJSON
				if s.exited() || s.tryGet("/api/v1/leader", &l) != nil || l.LeaderID == "" {
					continue
				}
				w.mu.Lock()
				if prev, ok := w.leaders[l.Term]; ok && prev != l.LeaderID {
					w.conflicts = append(w.conflicts, fmt.Sprintf("term %d: %s, then %s (reported by %s, %s)", l.Term, prev, l.LeaderID, s.name, l.Server))
				} else {
					w.leaders[l.Term] = l.LeaderID
				}
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *termWatcher) snapshot() (map[int64]string, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[int64]string, len(w.leaders))
	for k, v := range w.leaders {
		m[k] = v
	}
	return m, slices.Clone(w.conflicts)
}

func testLeaderFailover(t *testing.T, b *broker) {
	const pool = "failover"
	dir := t.TempDir()
	logDir := filepath.Join(dir, "workers")
	// Short lease so failover is quick; drain_timeout 2s is shorter than the
	// 3 s tasks, so the dead leader's workers hand back what they run (and
	// stop_grace is irrelevant: nobody is left to enforce it).
	cfg := writeConfig(t, serverConfig{
		broker: b.url, listen: "127.0.0.1:1", // overridden per server with --listen
		leaderTTL: "3s", leaderRenew: "1s", reconcile: "1s",
		pools: []poolConfig{{name: pool, min: 0, max: 3, concurrency: 2, logDir: logDir,
			drainTimeout: "2s", stopGrace: "5s",
			maxWait: "1s", scaleDownDelay: "1s", idleBeforeZero: "2s"}},
	})
	var servers []*ebbServer
	for _, name := range []string{"server-a", "server-b"} {
		port := freePort(t)
		servers = append(servers, startServer(t, name+"-"+b.kind, cfg, port, "", "--listen", fmt.Sprintf("127.0.0.1:%d", port)))
	}
	ctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	terms := watchTerms(ctx, servers...)

	// Exactly one leads, and the other agrees who.
	var leader, follower *ebbServer
	var first leaderJSON
	waitFor(t, 20*time.Second, "one server to lead and the other to know it", func() (bool, string) {
		var ls [2]leaderJSON
		for i, s := range servers {
			if err := s.tryGet("/api/v1/leader", &ls[i]); err != nil {
				return false, err.Error()
			}
		}
		switch {
		case ls[0].Leading == ls[1].Leading:
			return false, fmt.Sprintf("%+v / %+v", ls[0], ls[1])
		case ls[0].LeaderID != ls[1].LeaderID || ls[0].Term != ls[1].Term:
			return false, fmt.Sprintf("they disagree: %+v / %+v", ls[0], ls[1])
		case ls[0].Leading:
			leader, follower, first = servers[0], servers[1], ls[0]
		default:
			leader, follower, first = servers[1], servers[0], ls[1]
		}
		return true, ""
	}, servers[0].proc, servers[1].proc)

	// Work for the first leader: 3 s tasks, and wait until its workers run
	// some, so the kill strands running tasks, and until every worker it
	// launched (one log file each) has registered, so the test knows their
	// pids.
	ids := b.enqueueSleeps(t, pool, []int{3000, 3000, 3000, 3000, 3000, 3000})
	var orphans []ebbtype.WorkerInfo
	waitFor(t, 20*time.Second, "the leader's workers to run tasks", func() (bool, string) {
		running := 0
		for _, r := range b.tasks(t, ids) {
			if r.State == ebb.StateRunning {
				running++
			}
		}
		launched := len(readWorkerLogs(t, logDir))
		orphans = b.poolWorkers(t, pool)
		return running >= 2 && len(orphans) == launched, fmt.Sprintf("%d running, %d workers launched, %d registered", running, launched, len(orphans))
	}, leader.proc, follower.proc)

	killedAt := time.Now()
	leader.kill()
	var second leaderJSON
	waitFor(t, failoverBound, follower.name+" to lead after the leader was killed", func() (bool, string) {
		if err := follower.tryGet("/api/v1/leader", &second); err != nil {
			return false, err.Error()
		}
		return second.Leading && second.LeaderID == second.Server, fmt.Sprintf("%+v", second)
	}, follower.proc)
	failover := time.Since(killedAt)
	if second.Term <= first.Term {
		t.Errorf("the new leader's term %d is not above the killed leader's %d", second.Term, first.Term)
	}

	// Work for the new leader, then everything must finish.
	ids = append(ids, b.enqueueSleeps(t, pool, []int{1000, 1000, 1000, 1000, 1000, 1000})...)
	recs := waitSucceeded(t, b, ids, time.Minute, follower.proc)
	handedBack := 0
	for _, r := range recs {
		if r.Attempt != 1 || len(r.Errors) != 0 {
			t.Errorf("task %s: %s: the dead leader's workers must hand back, not lose, their tasks (no attempt counted, no error)", r.ID, describe(r))
		}
	}

	// The orphaned workers heard the parent-death signal, drained and left.
	waitFor(t, 20*time.Second, "the killed leader's workers to exit", func() (bool, string) {
		var left []string
		for _, w := range orphans {
			if !procGone(w.PID) {
				left = append(left, fmt.Sprintf("%s (pid %d)", w.ID, w.PID))
			}
		}
		return len(left) == 0, "still running: " + strings.Join(left, ", ")
	})
	logs := readWorkerLogs(t, logDir)
	for _, w := range orphans {
		log := logs[w.ID]
		if !strings.Contains(log, "shutdown requested") || !strings.Contains(log, "worker stopped") {
			t.Errorf("orphaned worker %s did not drain on SIGTERM and stop; its log:\n%s", w.ID, log)
		}
		if strings.Contains(log, "handing back") {
			handedBack++
		}
		if b.worker(t, w.ID) != nil {
			t.Errorf("orphaned worker %s exited but is still registered", w.ID)
		}
	}

	// The decision log.
	waitPoolAtZero(t, follower, b, pool, 30*time.Second)
	stopWatch()
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	decisions, err := b.drv.(ebbdriver.Control).DecisionList(dctx, "", 0)
	if err != nil {
		t.Fatalf("DecisionList: %v", err)
	}
	slices.SortFunc(decisions, func(a, b ebbtype.Decision) int { return cmp.Compare(a.Seq, b.Seq) })
	observed, conflicts := terms.snapshot()
	for _, c := range conflicts {
		t.Errorf("two leaders reported for one term: %s", c)
	}
	if observed[first.Term] != first.LeaderID || observed[second.Term] != second.LeaderID {
		t.Errorf("terms seen through the API %v do not include the two leaderships %d:%s and %d:%s",
			observed, first.Term, first.LeaderID, second.Term, second.LeaderID)
	}
	byTerm := map[int64]int{}
	termLeader := map[int64]string{}
	lastAt := map[int64]time.Time{}
	for i, d := range decisions {
		byTerm[d.Term]++
		if i > 0 {
			prev := decisions[i-1]
			if d.Seq <= prev.Seq {
				t.Errorf("decision seqs not increasing: %d after %d", d.Seq, prev.Seq)
			}
			if d.Term < prev.Term {
				t.Errorf("decision %d (term %d, %s) comes after decision %d of the later term %d (%s)", d.Seq, d.Term, d.LeaderID, prev.Seq, prev.Term, prev.LeaderID)
			}
			if d.Term > prev.Term && !d.At.After(lastAt[prev.Term]) {
				t.Errorf("decision %d of term %d at %s is not after the last decision of term %d at %s: two leaders decided at once",
					d.Seq, d.Term, d.At.Format(time.StampMicro), prev.Term, lastAt[prev.Term].Format(time.StampMicro))
			}
		}
		lastAt[d.Term] = d.At
		if l, ok := termLeader[d.Term]; ok && l != d.LeaderID {
			t.Errorf("term %d has decisions by two leaders: %s and %s (decision %d)", d.Term, l, d.LeaderID, d.Seq)
		}
		termLeader[d.Term] = d.LeaderID
		if l, ok := observed[d.Term]; !ok {
			t.Errorf("decision %d was recorded in term %d by %s, a term no server ever reported", d.Seq, d.Term, d.LeaderID)
		} else if l != d.LeaderID {
			t.Errorf("decision %d of term %d was recorded by %s, but %s held that term", d.Seq, d.Term, d.LeaderID, l)
		}
	}
	if byTerm[first.Term] == 0 || byTerm[second.Term] == 0 {
		t.Errorf("decisions per term %v: want decisions from both the killed leader (term %d) and its successor (term %d)", byTerm, first.Term, second.Term)
	}
	follower.stop(30 * time.Second)

	t.Logf("%s: the survivor led %s after SIGKILL of the leader (term %d → %d); %d tasks all succeeded; %d orphaned workers drained (%d handed tasks back); %d decisions by term %v",
		b.kind, failover.Round(time.Millisecond), first.Term, second.Term, len(ids), len(orphans), handedBack, len(decisions), byTerm)
}
