package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebbq/ebb/internal/controlplane"
)

// TestCeleryFromZeroAndBack: a Python producer sends 200 tasks with .delay()
// into a Celery pool at zero; ebb decides to scale up within a second of the
// first .delay() (woken by the queue key's keyspace notification), runs up
// to three unchanged Celery workers, every task succeeds exactly once, and
// the pool is back at zero within idle_before_zero + 5 s, every worker
// stopped by Celery's warm shutdown.
func TestCeleryFromZeroAndBack(t *testing.T) {
	t.Parallel()
	const idle = 5 * time.Second
	f := startCeleryFleet(t, celeryOpts{max: 3, procs: 4, idleBeforeZero: idle.String(), scaleDownDelay: "3s"})
	pushed := f.firstPush(t)
	p := f.produce(t, "200", "1")
	if len(p.IDs) != 200 {
		t.Fatalf("produced %d tasks, want 200", len(p.IDs))
	}
	f.waitDone(t, p.IDs, 3*time.Minute)
	doneAt := time.Now()

	ds := f.srv.decisions(t)
	if len(ds) == 0 || ds[0].Action != "up" || ds[0].From != 0 {
		t.Fatalf("the first decision is not a scale-up from zero: %+v", ds)
	}
	// From the moment the first message is on the list (Redis's own clock,
	// on this machine): the .delay() call around it, the first of a fresh
	// Python process, also connects to the broker and, after the LPUSH,
	// subscribes to the result, which takes a while on a loaded machine.
	var pushAt time.Time
	select {
	case pushAt = <-pushed:
	case <-time.After(5 * time.Second):
		t.Fatal("MONITOR saw no LPUSH onto the queue")
	}
	latency := ds[0].At.Sub(pushAt)
	call := unixFloat(p.FirstDelayDoneAt).Sub(unixFloat(p.FirstDelayAt))
	t.Logf("Celery decision latency: %s from the first .delay()'s LPUSH (MONITOR) to the scale-up decision's time (the pass the push woke) (the .delay() call took %s; %s)",
		latency.Round(time.Microsecond), call.Round(time.Microsecond), ds[0].Reason)
	if latency < 0 || latency >= time.Second {
		t.Errorf("the decision came %s after the first message was pushed, want within 1 s", latency)
	}
	most := 0
	for _, d := range ds {
		most = max(most, d.To)
	}
	if most != 3 {
		t.Errorf("the pool peaked at %d workers, want max 3", most)
	}
	f.checkResults(t, p.IDs)
	f.checkExactlyOnce(t, p.IDs)
	// The Celery queue is on /metrics under ebb's own names.
	if code, _, body, err := httpGet(f.srv.base+"/metrics", ""); err != nil || code != 200 ||
		!strings.Contains(string(body), `ebb_queue_queued{queue="`+celeryQueue+`"}`) ||
		!strings.Contains(string(body), `ebb_pool_workers{pool="`+celeryPool+`",state="idle"}`) {
		t.Errorf("/metrics (%d, %v) lacks the Celery queue or pool:\n%s", code, err, body)
	}

	// Back at zero: no worker serving and none wanted. The last ones are
	// then finishing Celery's warm shutdown, which takes a few seconds of
	// its own; their exits are checked next.
	waitFor(t, idle+5*time.Second, "the Celery pool back at zero", func() (bool, string) {
		v := f.srv.pool(t, celeryPool)
		return v.Current == 0 && v.Desired == 0, fmt.Sprintf("current %d, desired %d: %s", v.Current, v.Desired, v.Reason)
	}, f.srv.proc)
	atZero := time.Since(doneAt)
	waitFor(t, 30*time.Second, "every Celery worker to exit", func() (bool, string) {
		v := f.srv.pool(t, celeryPool)
		return len(v.Instances) == 0, fmt.Sprintf("%d instances", len(v.Instances))
	}, f.srv.proc)
	t.Logf("Celery from zero and back: 200 tasks of 1 s, all SUCCESS once each; back at zero %s after the last task finished (idle_before_zero %s), the last worker process gone %s after",
		atZero.Round(time.Millisecond), idle, time.Since(doneAt).Round(time.Millisecond))
	if n := f.checkWarmExits(t); n < 3 {
		t.Errorf("%d workers ran, want 3", n)
	}
}

// TestCeleryScaleInSafety: a minute of bursts of 1–3 s tasks drives the pool
// up and in again and again; no task is interrupted, lost or run twice, and
// no worker is stopped while it runs or holds one.
func TestCeleryScaleInSafety(t *testing.T) {
	t.Parallel()
	// Without -E: task events come on through ebb's enable_events broadcast.
	f := startCeleryFleet(t, celeryOpts{max: 3, procs: 1, idleBeforeZero: "1s", scaleDownDelay: "1s", withoutE: true})
	var args []string
	for burst := range 10 {
		// 1 to 3 tasks of 1, 2 and 3 s, then a pause long enough for
		// idle workers to be stopped: ten bursts over about a minute.
		for i := range 1 + burst%3 {
			args = append(args, "1", fmt.Sprint(1+(burst+i)%3))
		}
		args = append(args, "--pause", "6")
	}
	start := time.Now()
	p := f.produce(t, args...)
	f.waitDone(t, p.IDs, 2*time.Minute)
	t.Logf("%d tasks in %s", len(p.IDs), time.Since(start).Round(time.Millisecond))
	f.checkResults(t, p.IDs)
	f.checkExactlyOnce(t, p.IDs)
	waitFor(t, 15*time.Second, "the Celery pool back at zero", func() (bool, string) {
		v := f.srv.pool(t, celeryPool)
		return v.Current == 0 && len(v.Instances) == 0, v.Reason
	}, f.srv.proc)
	// A scale-in is a worker that got Celery's remote shutdown (the server
	// never stopped, so nothing else sent one).
	scaleIns := 0
	for _, log := range readWorkerLogs(t, f.logDir) {
		if strings.Contains(log, "Got shutdown from remote") {
			scaleIns++
		}
	}
	decided := 0
	for _, d := range f.srv.decisions(t) {
		if d.Action == "down" {
			decided += len(d.Drained)
		}
	}
	if scaleIns > decided {
		t.Errorf("%d workers got a remote shutdown, but the decisions drained only %d", scaleIns, decided)
	}
	t.Logf("Celery scale-in safety: %d tasks in bursts over %s, %d workers stopped by scale-in, none interrupted, lost or run twice", len(p.IDs), time.Since(start).Round(time.Second), scaleIns)
	if scaleIns < 10 {
		t.Errorf("%d scale-ins, want at least 10", scaleIns)
	}
	f.checkWarmExits(t)
	// A worker stopped while it held a prefetched message would hand it
	// back as it shuts down, and say so.
	for id, log := range readWorkerLogs(t, f.logDir) {
		if strings.Contains(log, "Restoring") {
			t.Errorf("worker %s held messages when it was stopped:\n%s", id, tailString(log, 2000))
		}
	}
}

// TestCeleryWorkerKilledMidTask: with acks_late, a Celery worker SIGKILLed
// while it runs a task leaves the message in Kombu's unacked hash; ebb
// counts it in flight (no live worker holds it), starts a replacement, and
// once Kombu restores it after the visibility timeout ebb counts it queued;
// another worker runs it to SUCCESS.
func TestCeleryWorkerKilledMidTask(t *testing.T) {
	t.Parallel()
	// Long enough that the replacement's own restore scan, which Kombu runs
	// as a worker starts, finds the message still too young even on a
	// loaded machine: this test restores it itself, while the replacement
	// is busy with the second task.
	const visibility = 12 * time.Second
	f := startCeleryFleet(t, celeryOpts{max: 1, procs: 1, visibility: fmt.Sprint(visibility.Seconds()),
		idleBeforeZero: "2s", scaleDownDelay: "1s"})
	x := f.produce(t, "1", "8").IDs[0]
	var first string
	waitFor(t, 30*time.Second, "the task to start", func() (bool, string) {
		for _, r := range f.list(t, "e2e:runs") {
			if id, host, _ := strings.Cut(r, " "); id == x {
				first = host
				return true, ""
			}
		}
		return false, "not started"
	}, f.srv.proc)
	startedAt := time.Now()
	var pid int
	waitFor(t, 10*time.Second, "the worker's pid from its events", func() (bool, string) {
		var pools []controlplane.CeleryPool
		f.srv.get(t, "/api/v1/celery/workers", &pools)
		for _, p := range pools {
			for _, w := range p.Workers {
				if w.Hostname == first && w.PID > 0 {
					pid = w.PID
				}
			}
		}
		return pid > 0, fmt.Sprintf("%+v", pools)
	}, f.srv.proc)
	// The worker and its pool process, at once, as the OOM killer or a
	// platform's hard stop would.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill worker group %d: %v", pid, err)
	}
	// A second task keeps the replacement busy, so the restored message
	// stays queued long enough to be seen.
	y := f.produce(t, "1", "14").IDs[0]

	type sample struct {
		at               time.Time
		queued, inFlight int64
	}
	var mu sync.Mutex
	var samples []sample
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			var qs []celeryQueueRow
			if err := f.srv.tryGet("/api/v1/queues", &qs); err == nil {
				for _, q := range qs {
					if q.Kind == "celery" {
						mu.Lock()
						samples = append(samples, sample{time.Now(), q.Queued, q.InFlight})
						mu.Unlock()
					}
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	// In flight while nobody holds it: the killed worker is gone (two
	// missed heartbeats), and the message waits in the unacked hash.
	waitFor(t, 15*time.Second, "ebb to count the orphaned message in flight", func() (bool, string) {
		var pools []controlplane.CeleryPool
		f.srv.get(t, "/api/v1/celery/workers", &pools)
		alive := false
		for _, p := range pools {
			for _, w := range p.Workers {
				alive = alive || (w.Hostname == first && w.Alive)
			}
		}
		q := f.queueRow(t)
		return !alive && q.InFlight >= 1, fmt.Sprintf("killed worker alive %v, %+v", alive, q)
	}, f.srv.proc)
	waitFor(t, 30*time.Second, "the replacement to take the second task", func() (bool, string) {
		for _, r := range f.list(t, "e2e:runs") {
			if strings.HasPrefix(r, y+" ") {
				return true, ""
			}
		}
		return false, "not started"
	}, f.srv.proc)
	if q := f.queueRow(t); q.Queued != 0 || q.InFlight != 2 {
		t.Errorf("with the orphaned message unacked and the second task running, ebb counts %+v, want 0 queued, 2 in flight", q)
	}
	if wait := time.Until(startedAt.Add(visibility + time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	restore := exec.Command(celeryPython, "restore.py")
	restore.Dir = f.appDir
	restore.Env = append(childEnv(), "EBB_CELERY_BROKER="+f.broker, "EBB_CELERY_PREFIX="+celeryPrefix,
		"EBB_CELERY_QUEUE="+celeryQueue, fmt.Sprintf("EBB_CELERY_VISIBILITY=%g", visibility.Seconds()))
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("restore.py: %v: %s", err, out)
	}
	waitFor(t, 3*time.Second, "ebb to count the restored message queued", func() (bool, string) {
		q := f.queueRow(t)
		return q.Queued == 1 && q.InFlight == 1, fmt.Sprintf("%+v", q)
	}, f.srv.proc)
	if slices.Contains(f.list(t, "e2e:done"), y) {
		t.Fatalf("the second task finished before the restored message was seen queued; the test cannot tell them apart")
	}
	f.waitDone(t, []string{x, y}, time.Minute)
	waitFor(t, 5*time.Second, "ebb to count nothing left", func() (bool, string) {
		q := f.queueRow(t)
		return q.Queued == 0 && q.InFlight == 0, fmt.Sprintf("%+v", q)
	}, f.srv.proc)
	f.checkResults(t, []string{x, y})
	var hosts []string
	for _, r := range f.list(t, "e2e:runs") {
		if id, host, _ := strings.Cut(r, " "); id == x {
			hosts = append(hosts, host)
		}
	}
	if len(hosts) != 2 || hosts[0] != first || hosts[1] == first {
		t.Errorf("the killed task ran on %v, want twice: on %s and then on another worker", hosts, first)
	}
	if d := f.list(t, "e2e:done"); len(d) != 2 {
		t.Errorf("done records %v, want the two tasks once each", d)
	}
	mu.Lock()
	t.Logf("%d count samples; first %+v, last %+v", len(samples), samples[0], samples[len(samples)-1])
	mu.Unlock()
}

// TestCeleryIdleCost: with the Celery pool at zero, `ebb server` sends the
// Celery app's Redis at most one command a second (counted with MONITOR on
// the private redis-server; at zero no Celery process talks to it, so every
// command is the server's). Its queue key is watched by keyspace
// notifications, so only a backstop reread of the counts remains.
func TestCeleryIdleCost(t *testing.T) {
	t.Parallel()
	const window = 40 * time.Second
	f := startCeleryFleet(t, celeryOpts{max: 1, procs: 1, idleBeforeZero: "1s", scaleDownDelay: "1s"})
	p := f.produce(t, "3", "0.1")
	f.waitDone(t, p.IDs, time.Minute)
	waitFor(t, 30*time.Second, "the Celery pool back at zero", func() (bool, string) {
		v := f.srv.pool(t, celeryPool)
		return v.Current == 0 && len(v.Instances) == 0, v.Reason
	}, f.srv.proc)
	_ = f.rdb.Close() // from here on only the server talks to this Redis
	mon := startMonitor(t, f.redis.Port)
	mon.begin()
	time.Sleep(window)
	mon.end()
	cmds, lua, clients := mon.stop()
	if v := f.srv.pool(t, celeryPool); v.Current != 0 || len(v.Instances) != 0 {
		t.Errorf("the pool left zero during the window: %+v", v)
	}
	total := 0
	var parts []string
	for name, n := range cmds {
		total += n
		parts = append(parts, fmt.Sprintf("%s %d", name, n))
	}
	slices.Sort(parts)
	rate := float64(total) / window.Seconds()
	t.Logf("Celery idle cost: %d Redis commands from ebb server in %s with the pool at zero = %.2f/s (%s) from %d connections, %d inside scripts", total, window, rate, strings.Join(parts, ", "), len(clients), lua)
	if rate > 1 {
		t.Errorf("an idle Celery pool cost %.2f Redis commands/s, want at most 1", rate)
	}
}

// TestCeleryDashboardInBrowser drives the dashboard in headless Chromium
// (e2e/browser/celery.mjs): the overview shows the Celery pool going
// 0 → N → 0 live as tasks arrive and finish, a worker page shows a live
// Celery worker with its shutdown action, and a task page its result.
func TestCeleryDashboardInBrowser(t *testing.T) {
	t.Parallel()
	node, chromium, browserDir := browserTools(t)
	f := startCeleryFleet(t, celeryOpts{max: 2, procs: 2, idleBeforeZero: "3s", scaleDownDelay: "2s"})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(browserDir, "celery.mjs"))
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "BASE_URL="+f.srv.base, "CHROMIUM="+chromium, "POOL="+celeryPool)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if line == "ready for tasks" {
			// One long task keeps a worker online through the worker-page
			// step however slowly the browser gets there.
			f.produce(t, "1", "25", "6", "1.5")
		}
	}
	err = cmd.Wait()
	t.Logf("browser run:\n%s%s", out.String(), stderr.String())
	if err != nil {
		t.Fatalf("browser steps failed: %v", err)
	}
	if !strings.Contains(out.String(), "all celery steps passed") {
		t.Fatal("the browser run ended without passing every step")
	}
}

// TestCeleryServerStopLetsTasksFinish: stopping `ebb server` retires its
// Celery workers, busy ones too, by warm shutdown: the running task
// finishes once and the worker exits 0 before the server does.
func TestCeleryServerStopLetsTasksFinish(t *testing.T) {
	t.Parallel()
	f := startCeleryFleet(t, celeryOpts{max: 1, procs: 1, idleBeforeZero: "30s", scaleDownDelay: "30s"})
	x := f.produce(t, "1", "4").IDs[0]
	waitFor(t, 30*time.Second, "the task to start", func() (bool, string) {
		return len(f.list(t, "e2e:runs")) == 1, "not started"
	}, f.srv.proc)
	f.srv.signal(syscall.SIGTERM)
	if st := f.srv.waitExit(40 * time.Second); st == nil || st.ExitCode() != 0 {
		t.Fatalf("the server did not exit 0 after SIGTERM: %v", st)
	}
	f.checkResults(t, []string{x})
	f.checkExactlyOnce(t, []string{x})
	if n := f.checkWarmExits(t); n != 1 {
		t.Errorf("%d workers ran, want 1", n)
	}
}

// TestCeleryWarnsOnUnsafeSettings: workers running Celery's defaults (acks
// on start, prefetch 4) make the pool's status warn, from the settings ebb
// reads through the pidbox.
func TestCeleryWarnsOnUnsafeSettings(t *testing.T) {
	t.Parallel()
	f := startCeleryFleet(t, celeryOpts{max: 1, procs: 1, idleBeforeZero: "20s", scaleDownDelay: "20s", unsafe: true})
	p := f.produce(t, "1", "0.1")
	f.waitDone(t, p.IDs, time.Minute)
	waitFor(t, 30*time.Second, "the pool to warn about the workers' settings", func() (bool, string) {
		v := f.srv.pool(t, celeryPool)
		for _, w := range v.Warnings {
			if strings.Contains(w, "task_acks_late is off and worker_prefetch_multiplier is 4") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%q", v.Warnings)
	}, f.srv.proc)
}
