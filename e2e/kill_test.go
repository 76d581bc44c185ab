package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/builtin"
	"github.com/ebbq/ebb/internal/testpg"
)

const (
	killTasks       = 20_000
	killWorkers     = 4
	killConcurrency = 16
	killEvery       = 500 * time.Millisecond
	killLease       = "2s"
	killHeartbeat   = "500ms"
	// killMinKills guards against a vacuous pass: if the queue empties before
	// this many kills landed, the run was too short to say anything.
	killMinKills = 4
	// killMaxKills ends the killing on a slow machine, where the queue would
	// take minutes to empty between kills: by then every kind of stranding
	// has happened many times over, and the survivors still have to finish
	// the rest without losing or repeating anything.
	killMaxKills = 40
)

// TestNoLossUnderKill pushes 20,000 short sleep tasks through four worker
// processes while SIGKILLing one of them every half second, and checks that
// every task succeeded exactly once, and that the only tasks that ran more
// than once are the ones a killed worker held.
func TestNoLossUnderKill(t *testing.T) {
	t.Parallel()
	eachBroker(t, testNoLossUnderKill)
}

func testNoLossUnderKill(t *testing.T, b *broker) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, 0, killTasks)
	sleeps := make(map[string]int, killTasks)
	for len(ids) < killTasks {
		batch := make([]ebb.EnqueueParams, min(1000, killTasks-len(ids)))
		ms := make([]int, len(batch))
		for i := range batch {
			// 5–20 ms: long enough that every kill catches tasks mid-run,
			// short enough that the whole run takes seconds.
			ms[i] = 5 + rng.IntN(16)
			batch[i] = ebb.EnqueueParams{Args: builtin.SleepArgs{MS: ms[i]}}
		}
		res, err := b.client.EnqueueMany(ctx, batch)
		if err != nil {
			t.Fatalf("enqueue batch at %d: %v", len(ids), err)
		}
		for i, r := range res {
			if r.Duplicate {
				t.Fatalf("fresh task %s reported as duplicate", r.ID)
			}
			ids = append(ids, r.ID)
			sleeps[r.ID] = ms[i]
		}
	}

	gen := 0
	workers := make([]*proc, killWorkers)
	workerIDs := make([]string, killWorkers)
	startWorker := func(slot int) {
		gen++
		// A new id per incarnation, so error entries tell which incarnation
		// held a task when it was killed.
		id := fmt.Sprintf("kill-%s-w%d-g%d", b.kind, slot, gen)
		workerIDs[slot] = id
		workers[slot] = startEbb(t, "", id, "worker", "--broker", b.url, "--id", id,
			"--concurrency", fmt.Sprint(killConcurrency), "--lease", killLease, "--heartbeat", killHeartbeat)
	}
	start := time.Now()
	for slot := range workers {
		startWorker(slot)
	}

	// Kill round-robin while work is still queued (at most killMaxKills
	// times): every kill then strands tasks mid-run. Once nothing is queued
	// the remaining rescues are left to the survivors.
	killed := map[string]bool{}
	var killedOrder []string
	var succeededAtKill int64
	skipped := 0
	ticker := time.NewTicker(killEvery)
	defer ticker.Stop()
	deadline := start.Add(2 * time.Minute)
	for slot := 0; ; slot = (slot + 1) % killWorkers {
		<-ticker.C
		if err := checkAlive(workers...); err != nil {
			t.Fatalf("after %d kills: %v", len(killedOrder), err)
		}
		st := b.stats(t, ebb.QueueDefault)
		if st.Queued == 0 || len(killedOrder) >= killMaxKills {
			break
		}
		if time.Now().After(deadline) {
			diag := ""
			if b.kind == "postgres" {
				diag = "\n" + testpg.Activity()
			}
			t.Fatalf("still %d tasks queued after %s and %d kills (stats %+v)%s", st.Queued, time.Since(start), len(killedOrder), st, diag)
		}
		// Kill only a worker that is up, and only once the fleet finished
		// something since the last kill: on a slow machine a fixed cadence
		// would otherwise kill every incarnation before it did any work,
		// and the run would measure the machine instead of the recovery.
		if !strings.Contains(workers[slot].output(), "worker started") || st.Succeeded == succeededAtKill {
			skipped++
			continue
		}
		succeededAtKill = st.Succeeded
		workers[slot].kill()
		killed[workerIDs[slot]] = true
		killedOrder = append(killedOrder, workerIDs[slot])
		startWorker(slot)
	}
	kills := len(killedOrder)

	var last ebbtype.QueueStats
	waitFor(t, 3*time.Minute, fmt.Sprintf("all %d tasks to succeed", killTasks), func() (bool, string) {
		last = b.stats(t, ebb.QueueDefault)
		done := last.Succeeded >= killTasks && last.Queued == 0 && last.InFlight == 0 && last.Scheduled == 0
		return done || last.Dead > 0, fmt.Sprintf("%+v", last)
	}, workers...)
	took := time.Since(start)
	for _, w := range workers {
		w.stop(30 * time.Second)
	}
	if last.Dead != 0 || last.Failed != 0 {
		t.Fatalf("tasks went dead: %+v", last)
	}
	// Succeeded is a running total: more than one per task would mean some
	// task's outcome was recorded twice.
	if st := b.stats(t, ebb.QueueDefault); st.Succeeded != killTasks {
		t.Fatalf("queue counts %d successes for %d tasks, want exactly one each (stats %+v)", st.Succeeded, killTasks, st)
	}

	recs := getAll(t, b, ids)
	var (
		problems    []string
		rerun       int
		extraRuns   int
		perKilled   = map[string]int{}
		maxAttempts int
	)
	for _, r := range recs {
		prob := func(format string, args ...any) {
			problems = append(problems, describe(r)+": "+fmt.Sprintf(format, args...))
		}
		if r.State != ebb.StateSucceeded {
			prob("state %s, want succeeded", r.State)
			continue
		}
		var res builtin.SleepResult
		if err := json.Unmarshal(r.Result, &res); err != nil || res.SleptMS != sleeps[r.ID] {
			prob("result %s, want slept_ms %d", r.Result, sleeps[r.ID])
		}
		if r.Attempt < 1 {
			prob("attempt %d on a succeeded task", r.Attempt)
			continue
		}
		maxAttempts = max(maxAttempts, r.Attempt)
		if len(r.Errors) != r.Attempt-1 {
			prob("%d error entries for %d attempts: every earlier attempt must have ended by a rescue, and only by one (%+v)", len(r.Errors), r.Attempt, r.Errors)
		}
		if r.Attempt > 1 {
			rerun++
			extraRuns += r.Attempt - 1
		}
		for i, e := range r.Errors {
			switch {
			case !strings.HasPrefix(e.Error, "lease expired"):
				prob("error entry %d is %q, want only lease expiries (the worker was killed, nothing failed)", i, e.Error)
			case !killed[e.WorkerID]:
				prob("error entry %d names worker %q, which was never killed: a live worker lost its lease", i, e.WorkerID)
			case e.Attempt != i+1:
				prob("error entry %d is for attempt %d, want %d", i, e.Attempt, i+1)
			default:
				perKilled[e.WorkerID]++
			}
		}
	}
	if len(problems) > 0 {
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Sprintf("… and %d more", len(problems)-20))
		}
		t.Fatalf("%d of %d tasks are wrong:\n%s", len(problems), killTasks, strings.Join(problems, "\n"))
	}
	maxPerKill := 0
	for _, n := range perKilled {
		maxPerKill = max(maxPerKill, n)
	}
	t.Logf("%s: %d tasks, %d kills (%d ticks without one: no worker up or no progress since the last), %d re-run tasks (%d extra runs, at most %d attempts, at most %d rescued from one kill), all succeeded in %s",
		b.kind, killTasks, kills, skipped, rerun, extraRuns, maxAttempts, maxPerKill, took.Round(time.Millisecond))

	if kills < killMinKills {
		t.Fatalf("only %d kills landed before the queue emptied (want at least %d): the run was too short to test anything; raise killTasks", kills, killMinKills)
	}
	if rerun == 0 {
		t.Fatalf("%d kills but no task ran twice: the kills never caught a task in flight, so this run proves nothing", kills)
	}
	// A worker holds at most --concurrency leases (a finished task keeps its
	// slot until its outcome is stored), so a kill strands at most that many.
	if limit := kills * killConcurrency; rerun > limit {
		t.Fatalf("%d tasks re-ran, more than kills × concurrency = %d × %d = %d", rerun, kills, killConcurrency, limit)
	}
	for id, n := range perKilled {
		if n > killConcurrency {
			t.Errorf("%d tasks were rescued from killed worker %s, more than its concurrency %d", n, id, killConcurrency)
		}
	}
}

// getAll reads every task, several at a time.
func getAll(t *testing.T, b *broker, ids []string) []*ebbtype.TaskInfo {
	t.Helper()
	out := make([]*ebbtype.TaskInfo, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	const readers = 8
	for r := range readers {
		wg.Go(func() {
			for i := r; i < len(ids); i += readers {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				out[i], errs[i] = b.drv.TaskGet(ctx, ids[i])
				cancel()
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("TaskGet %s: %v", ids[i], err)
		}
	}
	return out
}
