package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbtype"
)

// The scale-in test's knobs. The policy delays are far below the defaults so
// that a 60 s run sees many cycles of up, down and back to zero:
// scale_down_delay 1s lets the pool shrink one second after its backlog
// does, idle_before_zero 2s sends it to zero two seconds after the last
// task, max_wait 1s adds a worker whenever a task has waited a second. The
// pool reconciles every second while it has workers whatever
// reconcile_interval says; reconcile_interval 1s makes the backstop at zero
// just as quick. The leader lease (ttl 3s, renew 1s) is the failover test's;
// with one server it only needs to be valid (renew < ttl/2).
const (
	scaleInRun         = 60 * time.Second
	scaleInMinDowns    = 10
	scaleInMax         = 4
	scaleInConcurrency = 2
	scaleInIdle        = 2 * time.Second
)

// TestScaleInSafety runs `ebb server` with one pool (0 to 4 workers of 2
// slots) for a minute of random bursts of 1–3 s sleep tasks, so the pool
// scales up, down and to zero again and again, and checks that scale-in
// never interrupted a task: every task succeeded in its first attempt with
// no error, was started once (never handed back, never rescued), and ran its
// full sleep; every worker left because the autoscaler asked it to drain,
// and exited 0.
func TestScaleInSafety(t *testing.T) {
	t.Parallel()
	eachBroker(t, testScaleInSafety)
}

// taskWatch is what the test saw of one task while it ran.
type taskWatch struct {
	id       string
	ms       int
	firstRun time.Time // StartedAt when first seen running
	worker   string    // WorkerID when first seen running
	done     bool
	restarts []string // evidence of a second start
}

// observe reads the unfinished tasks and notes when each was first seen
// running; a task seen running again with another start time or worker, or
// back in the queue after running, was handed back or rescued.
func observe(t *testing.T, b *broker, watches []*taskWatch) {
	t.Helper()
	for _, w := range watches {
		if w.done {
			continue
		}
		r := b.task(t, w.id)
		switch r.State {
		case ebb.StateRunning, ebb.StateSucceeded:
			if r.State == ebb.StateSucceeded {
				w.done = true
			}
			switch {
			case w.firstRun.IsZero():
				if r.State == ebb.StateRunning {
					w.firstRun, w.worker = r.StartedAt, r.WorkerID
				}
			case !r.StartedAt.Equal(w.firstRun) || r.WorkerID != w.worker:
				w.restarts = append(w.restarts, fmt.Sprintf("first seen running on %s since %s, then %s on %s since %s",
					w.worker, w.firstRun.Format(time.StampMilli), r.State, r.WorkerID, r.StartedAt.Format(time.StampMilli)))
				w.firstRun, w.worker = r.StartedAt, r.WorkerID
			}
		case ebb.StateQueued, ebb.StateScheduled, ebb.StateRetrying:
			if !w.firstRun.IsZero() {
				w.restarts = append(w.restarts, fmt.Sprintf("ran on %s, then back to %s (attempt %d)", w.worker, r.State, r.Attempt))
				w.firstRun, w.worker = time.Time{}, ""
			}
		default:
			w.done = true
		}
	}
}

// burstWatch enqueues bursts of sleep tasks and watches them (every task
// enqueued so far, in watches) while server stays alive.
type burstWatch struct {
	t      *testing.T
	b      *broker
	server *proc
	tick   func() // when set, called after each observation
	// straggler, when set, is the length in ms of one more task at the
	// head of each burst: it outlasts the rest, so the pool scales in while
	// a worker is still busy.
	straggler int
	watches   []*taskWatch
}

// enqueue enqueues a burst of 4–12 sleep tasks of 1–3 s, drawn from rng, on
// queue (after the straggler, if set), and watches them.
func (w *burstWatch) enqueue(rng *rand.Rand, queue string) []*taskWatch {
	w.t.Helper()
	var ms []int
	if w.straggler > 0 {
		ms = append(ms, w.straggler)
	}
	for range 4 + rng.IntN(9) {
		ms = append(ms, 1000+rng.IntN(2001))
	}
	n := len(ms)
	ids := w.b.enqueueSleeps(w.t, queue, ms)
	burst := make([]*taskWatch, n)
	for i, id := range ids {
		burst[i] = &taskWatch{id: id, ms: ms[i]}
	}
	w.watches = append(w.watches, burst...)
	return burst
}

// until observes the tasks (and calls tick) every 100 ms until done says so
// or limit passes (then it reports false); the server exiting fails the
// test.
func (w *burstWatch) until(limit time.Duration, done func() bool) bool {
	w.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		observe(w.t, w.b, w.watches)
		if w.tick != nil {
			w.tick()
		}
		if done() {
			return true
		}
		if err := checkAlive(w.server); err != nil {
			w.t.Fatal(err)
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pause watches for the pause between bursts: 2–6 s, drawn from rng.
func (w *burstWatch) pause(rng *rand.Rand) {
	w.t.Helper()
	w.until(2*time.Second+time.Duration(rng.IntN(4001))*time.Millisecond, func() bool { return false })
}

// allDone reports whether every task of ws has finished.
func allDone(ws []*taskWatch) func() bool {
	return func() bool { return !slices.ContainsFunc(ws, func(w *taskWatch) bool { return !w.done }) }
}

func testScaleInSafety(t *testing.T, b *broker) {
	const pool = "burst"
	dir := t.TempDir()
	logDir := filepath.Join(dir, "workers")
	port := freePort(t)
	cfg := writeConfig(t, serverConfig{
		broker: b.url, listen: fmt.Sprintf("127.0.0.1:%d", port),
		leaderTTL: "3s", leaderRenew: "1s", reconcile: "1s",
		pools: []poolConfig{{name: pool, min: 0, max: scaleInMax, concurrency: scaleInConcurrency, logDir: logDir,
			drainTimeout: "5s", stopGrace: "10s",
			maxWait: "1s", scaleDownDelay: "1s", idleBeforeZero: scaleInIdle.String()}},
	})
	s := startServer(t, "server-"+b.kind, cfg, port, "")
	s.waitLeading(t, 20*time.Second)

	seed := uint64(20240611)
	rng := rand.New(rand.NewPCG(seed, uint64(len(b.kind))))
	maxCurrent, maxInstances, maxBusy := 0, 0, 0
	watchPool := func() {
		p := s.pool(t, pool)
		maxCurrent, maxInstances, maxBusy = max(maxCurrent, p.Current), max(maxInstances, len(p.Instances)), max(maxBusy, p.Busy)
		if p.Current > scaleInMax {
			t.Errorf("pool %s has %d workers, above its max %d: %+v", pool, p.Current, scaleInMax, p)
		}
	}
	bw := &burstWatch{t: t, b: b, server: s.proc, tick: watchPool}

	start := time.Now()
	bursts := 0
	for time.Since(start) < scaleInRun {
		burst := bw.enqueue(rng, pool)
		bursts++
		if !bw.until(time.Minute, allDone(burst)) {
			t.Fatalf("burst %d (%d tasks) did not finish within a minute; pool: %+v", bursts, len(burst), s.pool(t, pool))
		}
		bw.pause(rng)
	}
	watches := bw.watches
	ran := time.Since(start)
	waitPoolAtZero(t, s, b, pool, 30*time.Second)

	// The decision log, through the API and through `ebb inspect scaling`.
	decisions := s.decisions(t)
	var viaCLI []ebbtype.Decision
	mustEbbJSON(t, dir, &viaCLI, "inspect", "scaling", "--json", "--limit", "1000", "--broker", b.url)
	if len(viaCLI) != len(decisions) {
		t.Errorf("`ebb inspect scaling --json` lists %d decisions, GET /api/v1/scaling %d", len(viaCLI), len(decisions))
	}
	s.stop(30 * time.Second)

	// Every task: succeeded once, in attempt 1, with its full sleep, started
	// exactly once.
	ids := make([]string, len(watches))
	for i, w := range watches {
		ids[i] = w.id
	}
	recs := b.tasks(t, ids)
	byWorker := map[string][]*ebbtype.TaskInfo{}
	for i, r := range recs {
		w := watches[i]
		var res struct {
			SleptMS int `json:"slept_ms"`
		}
		_ = json.Unmarshal(r.Result, &res)
		ranFor := r.FinishedAt.Sub(r.StartedAt)
		switch {
		case r.State != ebb.StateSucceeded:
			t.Errorf("task %s (%d ms) did not succeed: %s", r.ID, w.ms, describe(r))
		case r.Attempt != 1 || len(r.Errors) != 0:
			t.Errorf("task %s (%d ms) was interrupted or retried: attempt %d, errors %+v", r.ID, w.ms, r.Attempt, r.Errors)
		case len(w.restarts) > 0:
			t.Errorf("task %s (%d ms) was started more than once: %s", r.ID, w.ms, strings.Join(w.restarts, "; "))
		case !w.firstRun.IsZero() && (!r.StartedAt.Equal(w.firstRun) || r.WorkerID != w.worker):
			t.Errorf("task %s (%d ms) was seen running on %s since %s but finished on %s started at %s",
				r.ID, w.ms, w.worker, w.firstRun.Format(time.StampMilli), r.WorkerID, r.StartedAt.Format(time.StampMilli))
		case res.SleptMS != w.ms || ranFor < time.Duration(w.ms)*time.Millisecond || ranFor > time.Duration(w.ms)*time.Millisecond+2*time.Second:
			t.Errorf("task %s: result %s after %s from its start, want one uninterrupted %d ms sleep", r.ID, r.Result, ranFor, w.ms)
		}
		byWorker[r.WorkerID] = append(byWorker[r.WorkerID], r)
	}
	if st := b.stats(t, pool); st.Succeeded != int64(len(ids)) || st.Retried != 0 || st.Failed != 0 || st.Dead != 0 {
		t.Errorf("queue %s counts %+v, want %d succeeded and no retry, failure or dead task", pool, st, len(ids))
	}

	// Decisions: enough scale-ins to mean something; each drained worker was
	// asked by a down decision. Draining a worker that was running a task is
	// safe (a requested drain waits for it) but means the registry's busy
	// count was stale: counted, not failed.
	var ups, downs, launched, drainedBusy int
	drainedBy := map[string]ebbtype.Decision{}
	for _, d := range decisions {
		switch d.Action {
		case "up":
			ups++
			launched += d.To - d.From
		case "down":
			downs++
			for _, id := range d.Drained {
				drainedBy[id] = d
				for _, r := range byWorker[id] {
					if r.StartedAt.Before(d.At) && r.FinishedAt.After(d.At) {
						drainedBusy++
						t.Logf("note: decision %d drained %s while it ran task %s (%s to %s): the registry still showed it idle",
							d.Seq, id, r.ID, r.StartedAt.Format(time.StampMilli), r.FinishedAt.Format(time.StampMilli))
						break
					}
				}
			}
		default:
			t.Errorf("decision %d has action %q, want up or down (holds are not recorded)", d.Seq, d.Action)
		}
		if d.To > scaleInMax || d.To < 0 {
			t.Errorf("decision %d goes %d→%d, outside 0..%d", d.Seq, d.From, d.To, scaleInMax)
		}
	}
	if downs < scaleInMinDowns {
		t.Errorf("only %d scale-in decisions in %s; want at least %d for the run to say anything about scale-in", downs, ran.Round(time.Second), scaleInMinDowns)
	}

	// Processes: every worker the server started exited 0 after a drain the
	// autoscaler requested, and never handed a task back.
	started, exits, unclean := instanceEvents(s.output())
	for _, line := range unclean {
		t.Errorf("a worker process did not exit cleanly: %s", line)
	}
	logs := readWorkerLogs(t, logDir)
	if len(logs) != len(started) || len(started) == 0 {
		t.Errorf("the server started %d worker processes, the log directory has %d logs", len(started), len(logs))
	}
	for _, id := range started {
		code, ok := exits[id]
		if !ok {
			t.Errorf("worker %s: the server logged its start but not its exit", id)
		} else if code != 0 {
			t.Errorf("worker %s exited with code %d, want 0", id, code)
		}
		log := logs[id]
		for _, bad := range []string{"handing back", "lease lost", "shutdown requested", "level=ERROR"} {
			if strings.Contains(log, bad) {
				t.Errorf("worker %s's log contains %q:\n%s", id, bad, lastLine(log, bad))
			}
		}
		if !strings.Contains(log, "drain requested") || !strings.Contains(log, "worker stopped") {
			t.Errorf("worker %s did not stop through a requested drain; its log:\n%s", id, log)
		}
		if _, ok := drainedBy[id]; !ok {
			t.Errorf("worker %s stopped, but no scale-in decision names it", id)
		}
	}
	if strings.Contains(s.output(), "killing workers") {
		t.Errorf("the server had to kill workers:\n%s", lastLine(s.output(), "killing workers"))
	}

	t.Logf("%s: %s of bursts (seed %d): %d bursts, %d tasks, %d scale-ups (%d workers launched), %d scale-downs, max %d workers (max %d processes incl. draining); the API showed at most %d busy workers; %d workers drained while running a task",
		b.kind, ran.Round(time.Second), seed, bursts, len(ids), ups, launched, downs, maxCurrent, maxInstances, maxBusy, drainedBusy)
}

// TestBackToZero checks that a pool returns to zero workers within
// idle_before_zero + 5 s of its last task finishing: zero in the server's
// view (GET /api/v1/pools: current and instances) and in the worker
// registry. It also checks the pool does not go to zero before
// idle_before_zero.
func TestBackToZero(t *testing.T) {
	t.Parallel()
	eachBroker(t, testBackToZero)
}

func testBackToZero(t *testing.T, b *broker) {
	const (
		pool   = "zero"
		rounds = 3
		idle   = 2 * time.Second
		bound  = idle + 5*time.Second
	)
	dir := t.TempDir()
	port := freePort(t)
	// Default leader and reconcile settings: the pool reconciles every
	// second while it has workers whatever reconcile_interval says.
	cfg := writeConfig(t, serverConfig{
		broker: b.url, listen: fmt.Sprintf("127.0.0.1:%d", port),
		pools: []poolConfig{{name: pool, min: 0, max: 2, concurrency: 4, logDir: filepath.Join(dir, "workers"),
			scaleDownDelay: "1s", idleBeforeZero: idle.String()}},
	})
	s := startServer(t, "server-"+b.kind, cfg, port, "")
	s.waitLeading(t, 20*time.Second)

	var took []string
	for round := 1; round <= rounds; round++ {
		ids := b.enqueueSleeps(t, pool, []int{1000, 1000, 1000, 1000, 1000, 500})
		recs := waitSucceeded(t, b, ids, 30*time.Second, s.proc)
		var last time.Time
		for _, r := range recs {
			if r.FinishedAt.After(last) {
				last = r.FinishedAt
			}
		}
		at := waitPoolAtZero(t, s, b, pool, bound+5*time.Second)
		d := at.Sub(last)
		if d > bound {
			t.Errorf("round %d: the pool was back at zero %s after its last task finished, want at most idle_before_zero + 5s = %s", round, d, bound)
		}
		// The decision that took the last worker away must not come before
		// idle_before_zero, give or take the one-second reconcile period the
		// policy samples the load at.
		var toZero *ebbtype.Decision
		for _, dec := range s.decisions(t) {
			if dec.Action == "down" && dec.To == 0 && dec.At.After(last) {
				toZero = &dec
			}
		}
		if toZero == nil {
			t.Fatalf("round %d: the pool is at zero but no scale-in decision to 0 came after the last task", round)
		}
		decided := toZero.At.Sub(last)
		if decided < idle-time.Second {
			t.Errorf("round %d: decision %d took the pool to zero %s after its last task finished, before idle_before_zero %s (%s)", round, toZero.Seq, decided, idle, toZero.Reason)
		}
		took = append(took, fmt.Sprintf("%s (decided after %s)", d.Round(10*time.Millisecond), decided.Round(10*time.Millisecond)))
	}
	s.stop(30 * time.Second)
	t.Logf("%s: back to zero (GET /api/v1/pools and the registry) after the last task finished, idle_before_zero %s: %s", b.kind, idle, strings.Join(took, ", "))
}
