package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebbq/ebb"
)

const (
	drainTaskMS = 2000
	// handBackTaskMS is longer: B starts after A's tasks did, and on a
	// loaded machine a worker process takes seconds to come up; at least a
	// second of A's tasks must be left by then, or an early finish could
	// pass for a hand-back.
	handBackTaskMS = 6000
)

// TestDrainOnSIGTERM checks what SIGTERM does to a worker running tasks: with
// the default drain timeout it finishes them and exits 0; with a short one
// it hands them back at once to another worker, and the handed-back run does
// not count as an attempt.
func TestDrainOnSIGTERM(t *testing.T) {
	t.Parallel()
	for _, kind := range brokerKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			t.Run("default_drain_timeout", func(t *testing.T) {
				t.Parallel()
				testDrainFinishes(t, newBroker(t, kind))
			})
			t.Run("drain_timeout_200ms", func(t *testing.T) {
				t.Parallel()
				testDrainHandsBack(t, newBroker(t, kind))
			})
		})
	}
}

// waitRunningOn waits until exactly n of the tasks run on worker.
func waitRunningOn(t *testing.T, b *broker, ids []string, worker string, n int, watch ...*proc) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d tasks running on %s", n, worker), func() (bool, string) {
		var got int
		var seen []string
		for _, r := range b.tasks(t, ids) {
			if r.State == ebb.StateRunning && r.WorkerID == worker {
				got++
			}
			seen = append(seen, describe(r))
		}
		return got == n, strings.Join(seen, ", ")
	}, watch...)
}

func testDrainFinishes(t *testing.T, b *broker) {
	const aID, bID = "drain-finish-a", "drain-finish-b"
	ids := b.enqueueSleep(t, 8, drainTaskMS)
	a := startEbb(t, "", aID, "worker", "--broker", b.url, "--id", aID, "--concurrency", "4")
	waitRunningOn(t, b, ids, aID, 4, a)
	if w := b.worker(t, aID); w == nil || w.Concurrency != 4 || w.PID != a.pid() {
		t.Fatalf("registry entry of %s = %+v, want concurrency 4 and pid %d", aID, w, a.pid())
	}
	var onA, others []string
	for _, r := range b.tasks(t, ids) {
		if r.WorkerID == aID {
			onA = append(onA, r.ID)
		} else {
			others = append(others, r.ID)
		}
	}

	sigterm := time.Now()
	a.signal(syscall.SIGTERM)
	// The draining flag reaches the registry at once, for autoscalers.
	waitFor(t, 5*time.Second, aID+" marked draining in the registry", func() (bool, string) {
		w := b.worker(t, aID)
		return (w != nil && w.Draining) || a.exited(), fmt.Sprintf("%+v", w)
	})
	st := a.waitExit(20 * time.Second)
	exitedAt := time.Now()
	if st.ExitCode() != 0 {
		t.Fatalf("%s exited with %v after SIGTERM, want exit code 0", aID, st)
	}
	for _, r := range b.tasks(t, onA) {
		if r.State != ebb.StateSucceeded || r.WorkerID != aID || r.Attempt != 1 || len(r.Errors) != 0 {
			t.Errorf("task %s after %s drained: %s, want succeeded on %s in attempt 1 without errors", r.ID, aID, describe(r), aID)
		}
		if r.FinishedAt.After(exitedAt) {
			t.Errorf("task %s finished at %s, after %s had exited at %s", r.ID, r.FinishedAt.Format(time.StampMicro), aID, exitedAt.Format(time.StampMicro))
		}
	}
	// Draining means no new fetches: the other four are still waiting.
	for _, r := range b.tasks(t, others) {
		if r.State != ebb.StateQueued || r.Attempt != 0 {
			t.Errorf("task %s was not held by %s at SIGTERM, so it must still be queued untouched: %s", r.ID, aID, describe(r))
		}
	}
	if w := b.worker(t, aID); w != nil {
		t.Errorf("%s exited but is still in the worker registry: %+v", aID, w)
	}
	t.Logf("%s: %s drained 4 running %d ms tasks and exited %s after SIGTERM", b.kind, aID, drainTaskMS, exitedAt.Sub(sigterm).Round(time.Millisecond))

	bw := startEbb(t, "", bID, "worker", "--broker", b.url, "--id", bID, "--concurrency", "4")
	waitFor(t, 20*time.Second, "all 8 tasks succeeded", func() (bool, string) {
		s := b.stats(t, ebb.QueueDefault)
		return s.Succeeded == 8, fmt.Sprintf("%+v", s)
	}, bw)
	for _, r := range b.tasks(t, others) {
		if r.WorkerID != bID || r.Attempt != 1 {
			t.Errorf("task %s: %s, want run once by %s", r.ID, describe(r), bID)
		}
	}
	bw.stop(30 * time.Second)
}

func testDrainHandsBack(t *testing.T, b *broker) {
	const aID, bID = "drain-handback-a", "drain-handback-b"
	ids := b.enqueueSleep(t, 4, handBackTaskMS)
	a := startEbb(t, "", aID, "worker", "--broker", b.url, "--id", aID, "--concurrency", "4", "--drain-timeout", "200ms")
	waitRunningOn(t, b, ids, aID, 4, a)
	// B joins only now, so all four tasks are A's; it sits idle until A
	// hands them back.
	bw := startEbb(t, "", bID, "worker", "--broker", b.url, "--id", bID, "--concurrency", "4")
	waitFor(t, 10*time.Second, bID+" registered", func() (bool, string) {
		return b.worker(t, bID) != nil, "not in the registry"
	}, a, bw)
	var startedOnA time.Time
	for _, r := range b.tasks(t, ids) {
		if r.State != ebb.StateRunning || r.WorkerID != aID {
			t.Fatalf("before SIGTERM task %s is %s, want running on %s", r.ID, describe(r), aID)
		}
		startedOnA = r.StartedAt
	}
	if left := handBackTaskMS*time.Millisecond - time.Since(startedOnA); left < time.Second {
		t.Fatalf("only %s of A's tasks were left when B was up: too little to tell a hand-back from a finish", left)
	}

	sigterm := time.Now()
	a.signal(syscall.SIGTERM)
	st := a.waitExit(10 * time.Second)
	exitAfter := time.Since(sigterm)
	if st.ExitCode() != 0 {
		t.Fatalf("%s exited with %v after SIGTERM, want exit code 0", aID, st)
	}
	if !strings.Contains(a.output(), "handing back") {
		t.Errorf("%s's log does not mention handing back its tasks", aID)
	}
	if w := b.worker(t, aID); w != nil {
		t.Errorf("%s exited but is still in the worker registry: %+v", aID, w)
	}

	// B must pick the tasks up at once (a hand-back requeues and notifies),
	// not after A's 30 s lease would have run out.
	const pickupBound = 5 * time.Second
	waitFor(t, pickupBound-time.Since(sigterm), "B to start all 4 handed-back tasks", func() (bool, string) {
		var seen []string
		n := 0
		for _, r := range b.tasks(t, ids) {
			if r.WorkerID == bID && (r.State == ebb.StateRunning || r.State == ebb.StateSucceeded) {
				n++
			}
			seen = append(seen, describe(r))
		}
		return n == 4, strings.Join(seen, ", ")
	}, bw)
	var pickup time.Duration
	for _, r := range b.tasks(t, ids) {
		pickup = max(pickup, r.StartedAt.Sub(sigterm))
	}

	waitFor(t, 20*time.Second, "the 4 tasks to succeed on "+bID, func() (bool, string) {
		s := b.stats(t, ebb.QueueDefault)
		return s.Succeeded == 4, fmt.Sprintf("%+v", s)
	}, bw)
	for _, r := range b.tasks(t, ids) {
		var res struct {
			SleptMS int `json:"slept_ms"`
		}
		_ = json.Unmarshal(r.Result, &res)
		switch {
		case r.State != ebb.StateSucceeded || r.WorkerID != bID:
			t.Errorf("task %s: %s, want succeeded on %s", r.ID, describe(r), bID)
		case r.Attempt != 1:
			t.Errorf("task %s: attempt %d, want 1: the handed-back run on %s must not count", r.ID, r.Attempt, aID)
		case len(r.Errors) != 0:
			t.Errorf("task %s: a hand-back is not a failure, yet errors were recorded: %+v", r.ID, r.Errors)
		case res.SleptMS != handBackTaskMS || r.FinishedAt.Sub(r.StartedAt) < handBackTaskMS*time.Millisecond:
			t.Errorf("task %s: result %s after %s, want B's full %d ms run", r.ID, r.Result, r.FinishedAt.Sub(r.StartedAt), handBackTaskMS)
		}
	}
	if s := b.stats(t, ebb.QueueDefault); s.Retried != 0 || s.Failed != 0 {
		t.Errorf("queue counts %+v: a hand-back must count neither as a retry nor as a failure", s)
	}
	t.Logf("%s: %s exited %s after SIGTERM; %s started the handed-back tasks at most %s after it",
		b.kind, aID, exitAfter.Round(time.Millisecond), bID, pickup.Round(time.Millisecond))
	bw.stop(30 * time.Second)
}
