package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/ebbtype"
)

const fenceTaskMS = 4000

// TestFencingAfterSIGSTOP freezes a worker (SIGSTOP) in the middle of a task
// for longer than its lease, lets another worker rescue and rerun the task,
// then thaws the first one: its late outcome must be rejected, and the task
// must end with the second worker's result.
func TestFencingAfterSIGSTOP(t *testing.T) {
	t.Parallel()
	eachBroker(t, testFencing)
}

func testFencing(t *testing.T, b *broker) {
	const aID, bID = "fence-a", "fence-b"
	workerFlags := []string{"--broker", b.url, "--concurrency", "1", "--lease", "2s", "--heartbeat", "500ms"}
	id := b.enqueueSleep(t, 1, fenceTaskMS)[0]

	a := startEbb(t, "", aID, append([]string{"worker", "--id", aID}, workerFlags...)...)
	var onA *ebbtype.TaskInfo
	waitFor(t, 20*time.Second, "the task to run on "+aID, func() (bool, string) {
		onA = b.task(t, id)
		return onA.State == ebb.StateRunning && onA.WorkerID == aID, describe(onA)
	}, a)
	freeze(t, b, a)
	stoppedAt := time.Now()

	// B starts only now, so the task is A's alone until its lease runs out.
	bw := startEbb(t, "", bID, append([]string{"worker", "--id", bID}, workerFlags...)...)
	var onB *ebbtype.TaskInfo
	waitFor(t, 15*time.Second, "the task to be rescued and run on "+bID, func() (bool, string) {
		onB = b.task(t, id)
		return onB.State == ebb.StateRunning && onB.WorkerID == bID, describe(onB)
	}, bw)
	rescuedAfter := onB.StartedAt.Sub(stoppedAt)
	if onB.Attempt != 2 || onB.LeaseToken == onA.LeaseToken {
		t.Fatalf("rescued task %s, want attempt 2 under a new lease token", describe(onB))
	}

	// The broker itself must refuse a completion carrying A's old token —
	// exactly what A will send once it runs again.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs, err := b.drv.Complete(ctx, []ebbdriver.Completion{{
		Queue: onA.Queue, ID: id, LeaseToken: onA.LeaseToken, Outcome: ebbdriver.OutcomeSucceeded,
		Result: []byte(`{"forged":"with A's lease token"}`), Now: time.Now(),
	}})
	if err != nil {
		t.Fatalf("Complete with A's stale token: %v", err)
	}
	if len(errs) != 1 || !errors.Is(errs[0], ebbtype.ErrLeaseLost) {
		t.Fatalf("Complete with A's stale token returned %v, want [ErrLeaseLost]", errs)
	}
	if r := b.task(t, id); r.State != ebb.StateRunning || r.WorkerID != bID || r.LeaseToken != onB.LeaseToken {
		t.Fatalf("a completion with A's stale token changed the task: %s", describe(r))
	}

	// Keep A frozen until its own sleep has run out, so that on SIGCONT its
	// handler has already "succeeded" and A tries to store that outcome
	// (unless its first heartbeat learns of the lost lease first and drops
	// it); either way A must learn it lost the lease. This wait is part of
	// the scenario, not synchronisation with another process.
	if d := time.Until(onA.StartedAt.Add(fenceTaskMS*time.Millisecond + 200*time.Millisecond)); d > 0 {
		time.Sleep(d)
	}
	a.signal(syscall.SIGCONT)
	waitFor(t, 10*time.Second, aID+" to log that it lost the lease", func() (bool, string) {
		return strings.Contains(a.output(), "lease lost"), "no \"lease lost\" in its log yet"
	}, a, bw)
	if r := b.task(t, id); r.WorkerID != bID || !r.StartedAt.Equal(onB.StartedAt) ||
		(r.State != ebb.StateRunning && r.State != ebb.StateSucceeded) {
		t.Fatalf("after %s woke up the task is %s, want it still %s's run", aID, describe(r), bID)
	}

	var final *ebbtype.TaskInfo
	waitFor(t, 15*time.Second, "the task to succeed on "+bID, func() (bool, string) {
		final = b.task(t, id)
		return final.State.Terminal(), describe(final)
	}, a, bw)
	if final.State != ebb.StateSucceeded || final.WorkerID != bID || final.Attempt != 2 {
		t.Fatalf("final task %s, want succeeded on %s in attempt 2", describe(final), bID)
	}
	if want := fmt.Sprintf(`{"slept_ms":%d}`, fenceTaskMS); string(final.Result) != want {
		t.Errorf("result %s, want %s (B's)", final.Result, want)
	}
	if !final.StartedAt.Equal(onB.StartedAt) || final.FinishedAt.Sub(final.StartedAt) < fenceTaskMS*time.Millisecond {
		t.Errorf("task started %s and finished %s: want B's full %d ms run from %s", final.StartedAt.Format(time.StampMicro),
			final.FinishedAt.Format(time.StampMicro), fenceTaskMS, onB.StartedAt.Format(time.StampMicro))
	}
	if len(final.Errors) != 1 || !strings.HasPrefix(final.Errors[0].Error, "lease expired") ||
		final.Errors[0].WorkerID != aID || final.Errors[0].Attempt != 1 {
		t.Errorf("error history %+v, want one \"lease expired\" entry for attempt 1 naming %s", final.Errors, aID)
	}
	if s := b.stats(t, ebb.QueueDefault); s.Succeeded != 1 {
		t.Errorf("queue counts %d successes for one task (%+v): A's late outcome must not count", s.Succeeded, s)
	}
	t.Logf("%s: rescued onto %s %s after SIGSTOP; %s's late outcome was refused: %s", b.kind, bID,
		rescuedAfter.Round(time.Millisecond), aID, lastLine(a.output(), "lease lost"))
	a.stop(30 * time.Second)
	bw.stop(30 * time.Second)
}

// lastLine returns the last line of s containing substr.
func lastLine(s, substr string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}

// freeze SIGSTOPs p. On SQLite a process frozen inside a write transaction
// would hold the file's write lock and stall every other process (that is
// how SQLite locking works, not what this test is about), so after stopping
// it check that the file still takes writes, and if not let p finish its
// transaction and stop it again.
func freeze(t *testing.T, b *broker, p *proc) {
	t.Helper()
	if b.kind != "sqlite" {
		p.signal(syscall.SIGSTOP)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	probe, err := ebbsqlite.Open(ctx, strings.TrimPrefix(b.url, "sqlite:"), &ebbsqlite.Config{BusyTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("open a probe connection to %s: %v", b.url, err)
	}
	defer probe.Close()
	for try := 1; ; try++ {
		p.signal(syscall.SIGSTOP)
		// Deregistering an id nobody uses is a write that changes nothing.
		err := probe.WorkerDeregister(ctx, "e2e-write-probe")
		if err == nil || errors.Is(err, ebbtype.ErrWorkerNotFound) {
			return
		}
		if try == 5 {
			t.Fatalf("%s is stopped and the SQLite file takes no writes, %d times in a row: %v", p.name, try, err)
		}
		t.Logf("%s was stopped holding the SQLite write lock (%v); letting it go on and stopping it again", p.name, err)
		p.signal(syscall.SIGCONT)
	}
}
