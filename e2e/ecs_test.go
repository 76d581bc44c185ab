package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/ecsfake"
)

// The ECS tests run `ebb server` with an ecs pool against internal/ecsfake:
// the server scales the fake's service through the real AWS SDK, the fake's
// scheduler runs each task as an `ebb worker` process that protects itself
// through the fake agent, and the fake records every stop, asking the broker
// (BusyAtStop) whether the stopped worker held a task at that moment.

// ecsMonitor follows a service's desired count through the fake's change
// notifications: its maximum and when each value was first reached.
type ecsMonitor struct {
	mu      sync.Mutex
	max     int
	reached map[int]time.Time
}

func monitorECS(t *testing.T, f *ecsfake.Fake, service string) *ecsMonitor {
	t.Helper()
	m := &ecsMonitor{reached: map[int]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Wait(ctx, func() bool {
			d := f.DesiredCount(service)
			now := time.Now()
			m.mu.Lock()
			defer m.mu.Unlock()
			m.max = max(m.max, d)
			if _, ok := m.reached[d]; !ok {
				m.reached[d] = now
			}
			return false
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return m
}

func (m *ecsMonitor) maxDesired() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.max
}

// firstAtLeast is when the desired count first was n or more after since.
func (m *ecsMonitor) firstAtLeast(n int, since time.Time) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var first time.Time
	for d, at := range m.reached {
		if d >= n && !at.Before(since) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first, !first.IsZero()
}

const (
	ecsZeroMax         = 4
	ecsZeroConcurrency = 4
	ecsZeroTasks       = 200
	ecsZeroIdle        = 2 * time.Second
	ecsMaxLatency      = 5 * time.Second
)

// TestECSFromZeroAndBack scales an ecs pool from zero to its max for a burst
// of 200 short tasks and back to zero: the desired count reaches max soon
// after the first enqueue (the latency is logged and recorded by
// scripts/bench-ecs; well under a second on an idle machine), every task succeeds in its first attempt, the
// service returns to desired 0 with no task process left, and every stop
// ECS made was of an unprotected, idle (drained) task.
func TestECSFromZeroAndBack(t *testing.T) {
	t.Parallel()
	eachBroker(t, testECSFromZeroAndBack)
}

func testECSFromZeroAndBack(t *testing.T, b *broker) {
	const pool, service = "ecszero", "ebb-ecszero"
	log := &ecsLog{}
	f := newECSFake(t, service, ecsWorkerCommand(b, pool, ecsZeroConcurrency), 1, log, busyOnBroker(b.drv, pool, log))
	mon := monitorECS(t, f, service)
	s := startECSPoolServer(t, b, f, service, "server-"+b.kind, "250ms", poolConfig{name: pool, min: 0, max: ecsZeroMax, concurrency: ecsZeroConcurrency,
		maxWait: "1s", scaleDownDelay: "1s", idleBeforeZero: ecsZeroIdle.String()})
	// The pool has read the service once (desired 0) before the clock starts.
	waitFor(t, 20*time.Second, "the pool to read the ECS service", func() (bool, string) {
		p := s.pool(t, pool)
		return p.Target == "ecs" && strings.Contains(p.TargetStatus, "desired 0"), fmt.Sprintf("%+v", p)
	}, s.proc)

	ms := make([]int, ecsZeroTasks)
	for i := range ms {
		ms[i] = 200
	}
	// The clock starts at the first enqueue: one task alone, then the rest.
	enqueueAt := time.Now()
	ids := b.enqueueSleeps(t, pool, ms[:1])
	ids = append(ids, b.enqueueSleeps(t, pool, ms[1:])...)
	enqueued := time.Since(enqueueAt)

	var atMax time.Time
	waitFor(t, 20*time.Second, fmt.Sprintf("desired count %d", ecsZeroMax), func() (bool, string) {
		var ok bool
		atMax, ok = mon.firstAtLeast(ecsZeroMax, enqueueAt)
		return ok, fmt.Sprintf("desired %d", f.DesiredCount(service))
	}, s.proc)
	latency := atMax.Sub(enqueueAt)
	t.Logf("ECS decision latency: %s from the first enqueue to desiredCount %d on the fake (%d tasks enqueued in %s) [%s]",
		latency.Round(time.Millisecond), ecsZeroMax, len(ids), enqueued.Round(time.Millisecond), b.kind)
	// Speed is recorded (scripts/bench-ecs), not asserted: this bound only
	// tells a wake on the enqueue from a wait for a backstop poll.
	if latency > ecsMaxLatency {
		t.Errorf("the desired count reached %d %s after the first enqueue, want within %s", ecsZeroMax, latency, ecsMaxLatency)
	}

	recs := waitSucceeded(t, b, ids, 90*time.Second, s.proc)
	var last time.Time
	workers := map[string]int{}
	for _, r := range recs {
		if r.Attempt != 1 || len(r.Errors) != 0 {
			t.Errorf("task %s was retried or interrupted: %s %+v", r.ID, describe(r), r.Errors)
		}
		if r.FinishedAt.After(last) {
			last = r.FinishedAt
		}
		workers[r.WorkerID]++
	}
	if st := b.stats(t, pool); st.Succeeded != int64(len(ids)) || st.Retried != 0 || st.Failed != 0 || st.Dead != 0 {
		t.Errorf("queue %s counts %+v, want %d succeeded and no retry, failure or dead task", pool, st, len(ids))
	}
	for w := range workers {
		if _, ok := f.Task(w); !ok {
			t.Errorf("task ran on worker %q, which is no ECS task of the fake", w)
		}
	}

	zeroAt := waitECSAtZero(t, f, service, ecsZeroIdle+20*time.Second, s.proc)
	waitPoolAtZero(t, s, b, pool, 20*time.Second)
	if d := zeroAt.Sub(last); d < ecsZeroIdle-time.Second {
		t.Errorf("the service was back at zero %s after the last task finished, before idle_before_zero %s", d, ecsZeroIdle)
	}
	if m := mon.maxDesired(); m > ecsZeroMax {
		t.Errorf("desired count went up to %d, above the pool's max %d", m, ecsZeroMax)
	}
	events := f.Events()
	scaleIns := checkECSStops(t, events)
	if tasks := len(f.Tasks(service)); scaleIns != tasks {
		t.Errorf("the fake ran %d tasks and scaled in %d; want every task stopped by a scale-in", tasks, scaleIns)
	}
	if err := checkAlive(s.proc); err != nil {
		t.Fatal(err)
	}
	s.stop(30 * time.Second)
	t.Logf("%s: %d tasks on %d workers; back at zero %s after the last task finished (idle_before_zero %s); %d scale-in stops, all of drained unprotected tasks; %d UpdateService calls",
		b.kind, len(ids), len(workers), zeroAt.Sub(last).Round(10*time.Millisecond), ecsZeroIdle, scaleIns, f.Calls(ecsfake.OpUpdateService))
}

const (
	ecsBurstMax         = 4
	ecsBurstConcurrency = 2
	ecsBurstMinStops    = 10
	ecsBurstStraggler   = 8000
)

// TestECSScaleInNeverStopsABusyTask runs a minute of random bursts of 1–3 s
// sleep tasks through an ecs pool that scales in and to zero often, and
// checks that ECS never stopped a task whose worker held a task: every stop
// the fake recorded was of an unprotected idle task, and every task
// succeeded in its first attempt, started once. A negative control runs the
// same load against a fake that ignores scale-in protection (victims picked
// at random among all tasks, as ECS picks among unprotected ones) and must
// see busy tasks stopped: the assertions can fail.
func TestECSScaleInNeverStopsABusyTask(t *testing.T) {
	t.Parallel()
	t.Run("protected", func(t *testing.T) {
		t.Parallel()
		r := runECSBursts(t, newBroker(t, "redis"), 60*time.Second, 20240611, false)
		if r.scaleIns < ecsBurstMinStops {
			t.Errorf("only %d scale-in stops in %s; want at least %d for the run to say anything about scale-in", r.scaleIns, r.ran.Round(time.Second), ecsBurstMinStops)
		}
		for _, e := range r.events {
			if e.Busy {
				t.Errorf("ECS stopped task %s while its worker held a task (%s, protected %t)", e.TaskID, e.Time.Format(time.StampMilli), e.Protected)
			}
		}
		if len(r.interrupted) > 0 {
			t.Errorf("%d tasks were interrupted or retried:\n%s", len(r.interrupted), strings.Join(r.interrupted, "\n"))
		}
		checkECSStops(t, r.events)
	})
	t.Run("protection-ignored", func(t *testing.T) {
		t.Parallel()
		// Up to 90 s, ending at the first busy stop: which task a random
		// stop hits is luck (packing keeps most of the work on the oldest
		// tasks), so a fixed short run could see none by chance.
		r := runECSBursts(t, newBroker(t, "redis"), 90*time.Second, 20240612, true)
		busy := 0
		for _, e := range r.events {
			if e.Busy {
				busy++
			}
		}
		t.Logf("negative control: %d of %d scale-in stops hit a busy task; %d tasks interrupted or retried", busy, r.scaleIns, len(r.interrupted))
		if busy == 0 && len(r.interrupted) == 0 {
			t.Errorf("with protection ignored, ECS never stopped a busy task in %s (%d scale-ins): the protected run's assertions could not fail", r.ran.Round(time.Second), r.scaleIns)
		}
	})
}

type ecsBurstResult struct {
	ran         time.Duration
	bursts      int
	tasks       int
	scaleIns    int
	events      []ecsfake.Event
	interrupted []string
}

// runECSBursts is the scale-in run: bursts of 4–12 sleep tasks of 1–3 s
// behind one of ecsBurstStraggler ms, with pauses of 2–6 s, seeded, for run.
// The straggler keeps a worker busy while the others drain and ECS scales
// in, which is the moment protection is for: without it the pool could scale
// in only once every worker was idle, and an unprotected run would lose
// nothing either. With ignore the fake accepts and ignores every protection
// request.
func runECSBursts(t *testing.T, b *broker, run time.Duration, seed uint64, ignore bool) ecsBurstResult {
	const pool, service = "ecsburst", "ebb-ecsburst"
	log := &ecsLog{}
	f := newECSFake(t, service, ecsWorkerCommand(b, pool, ecsBurstConcurrency, "--drain-timeout", "4s"), seed, log, busyOnBroker(b.drv, pool, log))
	f.SetIgnoreProtection(ignore)
	mon := monitorECS(t, f, service)
	s := startECSPoolServer(t, b, f, service, "server", "500ms", poolConfig{name: pool, min: 0, max: ecsBurstMax, concurrency: ecsBurstConcurrency,
		maxWait: "1s", scaleDownDelay: "1s", idleBeforeZero: "2s"})

	rng := rand.New(rand.NewPCG(seed, 7))
	bw := &burstWatch{t: t, b: b, server: s.proc, straggler: ecsBurstStraggler}
	res := ecsBurstResult{}
	start := time.Now()
	for time.Since(start) < run {
		burst := bw.enqueue(rng, pool)
		res.bursts++
		if !bw.until(time.Minute, allDone(burst)) {
			if ignore {
				t.Logf("burst %d did not finish within a minute with protection ignored; pool: %+v", res.bursts, s.pool(t, pool))
				break
			}
			t.Fatalf("burst %d (%d tasks) did not finish within a minute; pool: %+v; desired %d", res.bursts, len(burst), s.pool(t, pool), f.DesiredCount(service))
		}
		if ignore && slices.ContainsFunc(f.Events(), func(e ecsfake.Event) bool { return e.Busy }) {
			break
		}
		bw.pause(rng)
	}
	res.ran = time.Since(start)
	if !ignore {
		waitECSAtZero(t, f, service, 30*time.Second, s.proc)
		waitPoolAtZero(t, s, b, pool, 20*time.Second)
	} else {
		// Wait for the stragglers a stopped worker handed back or left to
		// be rescued, within bounds: their fate is evidence, not a failure.
		bw.until(20*time.Second, allDone(bw.watches))
	}
	watches := bw.watches

	for _, w := range watches {
		r := b.task(t, w.id)
		switch {
		case r.State != ebb.StateSucceeded:
			res.interrupted = append(res.interrupted, fmt.Sprintf("task %s (%d ms) did not succeed: %s", r.ID, w.ms, describe(r)))
		case r.Attempt != 1 || len(r.Errors) != 0:
			res.interrupted = append(res.interrupted, fmt.Sprintf("task %s (%d ms) was retried: %s %+v", r.ID, w.ms, describe(r), r.Errors))
		case len(w.restarts) > 0:
			res.interrupted = append(res.interrupted, fmt.Sprintf("task %s (%d ms) was started more than once: %s", r.ID, w.ms, strings.Join(w.restarts, "; ")))
		}
	}
	res.tasks = len(watches)
	res.events = f.Events()
	for _, e := range res.events {
		if e.Reason == ecsfake.StopScaleIn {
			res.scaleIns++
		}
	}
	var downs int
	for _, d := range s.decisions(t) {
		if d.Action == "down" {
			downs++
		}
	}
	if err := checkAlive(s.proc); err != nil {
		t.Fatal(err)
	}
	if !ignore {
		s.stop(30 * time.Second)
	}
	t.Logf("%s of bursts (seed %d, protection ignored %t): %d bursts, %d tasks, %d scale-down decisions, %d ECS scale-in stops, %d ECS tasks started, max desired %d",
		res.ran.Round(time.Second), seed, ignore, res.bursts, res.tasks, downs, res.scaleIns, len(f.Tasks(service)), mon.maxDesired())
	return res
}

// TestECSSurvivesThrottlingAndProtectionFailures runs a burst through an ecs
// pool while the fake throttles every third control-plane call and the
// agent fails the first protection requests: every task still succeeds in
// its first attempt, the pool scales up and back to zero, GET /api/v1/pools
// shows the target's status while throttled, and the target's error while
// every call is throttled (cleared once they pass again); the server never
// crashes.
func TestECSSurvivesThrottlingAndProtectionFailures(t *testing.T) {
	t.Parallel()
	eachBroker(t, testECSThrottling)
}

func testECSThrottling(t *testing.T, b *broker) {
	const pool, service = "ecsthrottle", "ebb-ecsthrottle"
	const agentFailures = 3
	log := &ecsLog{}
	f := newECSFake(t, service, ecsWorkerCommand(b, pool, 2), 3, log, busyOnBroker(b.drv, pool, log))
	f.SetThrottle(ecsfake.AllOps, ecsfake.Throttle{Every: 3})
	f.SetAgentFault(ecsfake.AgentFault{Mode: ecsfake.AgentHTTP500, Next: agentFailures})
	mon := monitorECS(t, f, service)
	s := startECSPoolServer(t, b, f, service, "server-"+b.kind, "500ms", poolConfig{name: pool, min: 0, max: 4, concurrency: 2,
		maxWait: "1s", scaleDownDelay: "1s", idleBeforeZero: "2s"})

	var statuses []string
	seeStatus := func() {
		p := s.pool(t, pool)
		if p.TargetStatus != "" && f.ThrottledCalls(ecsfake.OpDescribeServices)+f.ThrottledCalls(ecsfake.OpListTasks) > 0 {
			if len(statuses) == 0 || statuses[len(statuses)-1] != p.TargetStatus {
				statuses = append(statuses, p.TargetStatus)
			}
		}
	}
	ms := make([]int, 30)
	for i := range ms {
		ms[i] = 500
	}
	ids := b.enqueueSleeps(t, pool, ms)
	var recs []*ebbtype.TaskInfo
	waitFor(t, 90*time.Second, "the burst to succeed under throttling", func() (bool, string) {
		seeStatus()
		recs = b.tasks(t, ids)
		n := 0
		for _, r := range recs {
			if r.State == ebb.StateSucceeded {
				n++
			}
		}
		return n == len(ids), fmt.Sprintf("%d of %d succeeded; desired %d", n, len(ids), f.DesiredCount(service))
	}, s.proc)
	for _, r := range recs {
		if r.Attempt != 1 || len(r.Errors) != 0 {
			t.Errorf("task %s was retried or interrupted: %s %+v", r.ID, describe(r), r.Errors)
		}
	}
	waitFor(t, 90*time.Second, "the service back at zero under throttling", func() (bool, string) {
		seeStatus()
		d, active := f.DesiredCount(service), len(f.ActiveTasks(service))
		return d == 0 && active == 0 && f.RunningCount(service) == 0, fmt.Sprintf("desired %d, %d active", d, active)
	}, s.proc)
	waitPoolAtZero(t, s, b, pool, 30*time.Second)
	if m := mon.maxDesired(); m < 2 || m > 4 {
		t.Errorf("desired count peaked at %d, want the pool to scale up (2..4 workers for 30 tasks)", m)
	}
	if len(statuses) == 0 {
		t.Fatalf("GET /api/v1/pools never showed target_status while the fake throttled")
	}
	throttled := 0
	for _, op := range []string{ecsfake.OpDescribeServices, ecsfake.OpUpdateService, ecsfake.OpListTasks, ecsfake.OpDescribeTasks} {
		throttled += f.ThrottledCalls(op)
	}
	if throttled == 0 {
		t.Errorf("the fake throttled no call: the test did not test throttling")
	}
	if puts := f.Calls(ecsfake.OpAgentPutProtection); puts <= agentFailures {
		t.Errorf("the agent saw %d protection PUTs, want more than the %d that failed", puts, agentFailures)
	}

	// Every call throttled: the retries run out and the pool shows the
	// target's error; once calls pass again it clears.
	f.SetThrottle(ecsfake.AllOps, ecsfake.Throttle{Fraction: 1})
	var targetErr string
	waitFor(t, 60*time.Second, "target_error while every ECS call is throttled", func() (bool, string) {
		p := s.pool(t, pool)
		targetErr = p.TargetError
		return targetErr != "", fmt.Sprintf("status %q", p.TargetStatus)
	}, s.proc)
	if !strings.Contains(targetErr, "Throttl") && !strings.Contains(targetErr, "Rate exceeded") && !strings.Contains(targetErr, "retry") {
		t.Errorf("target_error %q does not say the calls were throttled", targetErr)
	}
	f.SetThrottle(ecsfake.AllOps, ecsfake.Throttle{})
	waitFor(t, 60*time.Second, "target_error to clear once ECS calls pass again", func() (bool, string) {
		p := s.pool(t, pool)
		return p.TargetError == "", fmt.Sprintf("error %q", p.TargetError)
	}, s.proc)

	checkECSStops(t, f.Events())
	if err := checkAlive(s.proc); err != nil {
		t.Fatal(err)
	}
	s.stop(30 * time.Second)
	t.Logf("%s: %d tasks succeeded; %d control-plane calls throttled, %d agent PUTs (%d failed); peak desired %d; %d distinct target_status lines seen while throttled (last %q); target_error under full throttling: %q",
		b.kind, len(ids), throttled, f.Calls(ecsfake.OpAgentPutProtection), agentFailures, mon.maxDesired(), len(statuses), statuses[len(statuses)-1], targetErr)
}
