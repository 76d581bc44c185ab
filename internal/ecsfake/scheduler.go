package ecsfake

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// maxStartsPerPass bounds the processes one pass starts per service, so a
// large desired count is reached over a few passes and no pass runs long.
const maxStartsPerPass = 20

// Stop codes and reasons, as ECS words them.
const (
	stopCodeScheduler = "ServiceSchedulerInitiated"
	stopCodeExited    = "EssentialContainerExited"
	stopCodeNoStart   = "TaskFailedToStart"
	stopCodeUser      = "UserInitiated"
	reasonExited      = "Essential container in task exited"
)

func (f *Fake) loop() {
	defer close(f.loopDone)
	tick := time.NewTicker(f.cfg.Interval)
	defer tick.Stop()
	for {
		f.pass()
		select {
		case <-f.quit:
			return
		case <-tick.C:
		case <-f.wake:
		}
	}
}

// pass is one round of the scheduler over every service: expire
// protections, stop the excess, create and start what is missing.
func (f *Fake) pass() {
	var starts, stops []*task
	now := time.Now()
	f.mu.Lock()
	for _, s := range f.serviceOrder {
		for _, t := range s.tasks {
			if t.protected && !now.Before(t.protectedUntil) {
				t.protected, t.protectedUntil = false, time.Time{}
				t.version++
				f.logf("task %s: protection expired", t.id)
				f.notify()
			}
		}
		active := 0
		for _, t := range s.tasks {
			if t.desiredStatus == StatusRunning {
				active++
			}
		}
		if excess := active - s.desired; excess > 0 {
			var candidates []*task
			for _, t := range s.tasks {
				if t.desiredStatus == StatusRunning && !t.isProtected(now) {
					candidates = append(candidates, t)
				}
			}
			f.rng.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
			for _, t := range candidates[:min(excess, len(candidates))] {
				f.beginStop(t, now, stopCodeScheduler, "Scaling activity initiated by (deployment "+s.deploymentID+")")
				stops = append(stops, t)
			}
			if waiting := excess - len(candidates); waiting > 0 && waiting != s.waiting {
				f.logf("service %s: %d more tasks than desired are protected; waiting", s.cfg.Name, waiting)
			}
			s.waiting = max(0, excess-len(candidates))
		} else {
			s.waiting = 0
		}
		for n := active; n < s.desired && n < active+maxStartsPerPass; n++ {
			f.newTask(s, now)
		}
		for _, t := range s.tasks {
			if t.desiredStatus == StatusRunning && t.lastStatus == StatusProvisioning &&
				!now.Before(t.createdAt.Add(s.cfg.StartDelay)) {
				t.lastStatus = StatusPending
				t.version++
				starts = append(starts, t)
			}
		}
		f.trimStopped(s)
	}
	f.mu.Unlock()

	for _, t := range starts {
		f.start(t)
	}
	for _, t := range stops {
		busy, known := f.askBusy(t.id)
		f.mu.Lock()
		f.recordStop(t, time.Now(), StopScaleIn, false, busy, known)
		f.signalStop(t)
		f.mu.Unlock()
	}

	f.mu.Lock()
	f.passes++
	f.notify()
	f.mu.Unlock()
}

func (f *Fake) askBusy(id string) (busy, known bool) {
	f.mu.Lock()
	hook := f.busyAtStop
	f.mu.Unlock()
	if hook == nil {
		return false, false
	}
	return hook(id), true
}

// newTask creates a PROVISIONING task. f.mu held.
func (f *Fake) newTask(s *service, now time.Time) *task {
	f.seq++
	id := newTaskID()
	t := &task{
		svc: s, id: id, arn: f.arn("task/" + s.cfg.Cluster + "/" + id),
		seq: f.seq, version: 1,
		lastStatus: StatusProvisioning, desiredStatus: StatusRunning,
		createdAt: now,
		done:      make(chan struct{}),
		event:     -1,
	}
	s.tasks = append(s.tasks, t)
	f.tasks[id] = t
	f.logf("service %s: task %s created", s.cfg.Name, id)
	f.notify()
	return t
}

// start starts t's process. Only the loop calls it, with f.mu not held; the
// loop is also the only one that stops tasks before Close, so t stays
// wanted while its process starts.
func (f *Fake) start(t *task) {
	sc := t.svc.cfg
	cmd := exec.Command(sc.Command[0], sc.Command[1:]...)
	cmd.Env = taskEnv(sc.Env,
		"ECS_CONTAINER_METADATA_URI_V4="+f.srv.URL+"/v4/"+t.id,
		"ECS_AGENT_URI="+f.srv.URL+"/api/"+t.id,
		"AWS_EXECUTION_ENV=AWS_ECS_FARGATE")
	cmd.SysProcAttr = sysProcAttr()
	var err error
	var logFile *os.File
	if sc.LogDir != "" {
		if err = os.MkdirAll(sc.LogDir, 0o755); err == nil {
			logFile, err = os.OpenFile(filepath.Join(sc.LogDir, t.id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		}
		if err == nil {
			cmd.Stdout, cmd.Stderr = logFile, logFile
		}
	}
	if err == nil {
		err = cmd.Start()
	}
	if logFile != nil {
		_ = logFile.Close() // the child has its own copy
	}
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.notify()
	t.version++
	if err != nil {
		t.desiredStatus, t.lastStatus = StatusStopped, StatusStopped
		t.stoppingAt, t.stoppedAt = now, now
		t.stopCode, t.stoppedReason = stopCodeNoStart, "CannotStartContainerError: "+err.Error()
		t.svc.failedTasks++
		f.recordStop(t, now, StopFailedToStart, false, false, false)
		close(t.done)
		f.logf("service %s: task %s failed to start: %v", sc.Name, t.id, err)
		return
	}
	t.pid = cmd.Process.Pid
	t.lastStatus = StatusRunning
	t.startedAt = now
	f.logf("service %s: task %s running, pid %d", sc.Name, t.id, t.pid)
	f.wg.Add(1)
	go f.reap(t, cmd)
}

// taskEnv is the test process's environment without what the platform
// sets (AWS_*, ECS_*), then env, then the platform's variables.
func taskEnv(env []string, platform ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "ECS_") {
			out = append(out, kv)
		}
	}
	out = append(out, env...)
	return append(out, platform...)
}

// beginStop marks t as being stopped: desiredStatus STOPPED, lastStatus
// STOPPING (STOPPED at once if it has no process). f.mu held.
func (f *Fake) beginStop(t *task, now time.Time, code, reason string) {
	t.desiredStatus = StatusStopped
	t.stoppingAt = now
	t.stopCode, t.stoppedReason = code, reason
	t.version++
	if t.pid == 0 {
		t.lastStatus = StatusStopped
		t.stoppedAt = now
		close(t.done)
	} else if t.lastStatus != StatusStopped {
		t.lastStatus = StatusStopping
	}
	f.notify()
}

// recordStop appends t's stop event. f.mu held.
func (f *Fake) recordStop(t *task, at time.Time, why StopReason, protected, busy, busyKnown bool) {
	ev := Event{
		Time: at, Cluster: t.svc.cfg.Cluster, Service: t.svc.cfg.Name, TaskID: t.id, TaskARN: t.arn,
		Reason: why, Protected: protected, ProtectionIgnored: t.protectionIgnored,
		Busy: busy, BusyKnown: busyKnown,
	}
	if t.exit != nil {
		ev.ExitedAt, ev.ExitCode, ev.ExitStatus = t.exit.at, t.exit.code, t.exit.status
	}
	t.event = len(f.events)
	f.events = append(f.events, ev)
	f.logf("service %s: task %s stop (%s, protected %v, busy %v/%v)", t.svc.cfg.Name, t.id, why, protected, busy, busyKnown)
	f.notify()
}

// signalStop sends SIGTERM to t's process group and arranges SIGKILL after
// the stop timeout. f.mu held.
func (f *Fake) signalStop(t *task) {
	if t.pid == 0 || t.reaped {
		return
	}
	if t.svc.cfg.TermLeaderOnly {
		_ = syscall.Kill(t.pid, syscall.SIGTERM) // ESRCH: it has exited
	} else {
		signalGroup(t.pid, syscall.SIGTERM)
	}
	f.wg.Add(1)
	go f.killAfter(t, t.svc.cfg.StopTimeout)
}

func (f *Fake) killAfter(t *task, d time.Duration) {
	defer f.wg.Done()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.done:
		return
	case <-timer.C:
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.reaped {
		return
	}
	signalGroup(t.pid, syscall.SIGKILL)
	t.killed = true
	if t.event >= 0 {
		f.events[t.event].Killed = true
	}
	f.logf("task %s: SIGKILL after the stop timeout (%s)", t.id, d)
}

// reap waits for t's process, records how it ended and, if nothing asked it
// to stop, records the stop (the scheduler then replaces the task).
func (f *Fake) reap(t *task, cmd *exec.Cmd) {
	defer f.wg.Done()
	if waitUntilExited(t.pid) {
		// The essential container has exited: the rest of the task goes
		// with it. The unreaped zombie keeps the group id ours until now.
		f.mu.Lock()
		signalGroup(t.pid, syscall.SIGKILL)
		t.reaped = true
		f.mu.Unlock()
	}
	_ = cmd.Wait()
	now := time.Now()
	ps := cmd.ProcessState

	f.mu.Lock()
	t.reaped = true
	code := ps.ExitCode()
	t.exit = &exitInfo{at: now, code: code, status: ps.String()}
	t.exitCode = &code
	unexpected := t.desiredStatus == StatusRunning
	protected := t.isProtected(now)
	if unexpected {
		t.desiredStatus, t.lastStatus = StatusStopped, StatusStopping
		t.stoppingAt = now
		t.stopCode, t.stoppedReason = stopCodeExited, reasonExited
		t.svc.failedTasks++
		t.version++
	}
	f.mu.Unlock()

	var busy, known bool
	if unexpected {
		busy, known = f.askBusy(t.id)
	}

	f.mu.Lock()
	if unexpected {
		f.recordStop(t, now, StopExited, protected, busy, known)
	} else if t.event >= 0 {
		ev := &f.events[t.event]
		ev.ExitedAt, ev.ExitCode, ev.ExitStatus = now, code, ps.String()
	}
	t.lastStatus = StatusStopped
	t.stoppedAt = now
	t.version++
	close(t.done)
	f.logf("service %s: task %s stopped: %s", t.svc.cfg.Name, t.id, ps)
	f.notify()
	f.mu.Unlock()
	f.poke()
}

// trimStopped forgets the oldest stopped tasks past StoppedTasksKept. f.mu
// held.
func (f *Fake) trimStopped(s *service) {
	stopped := 0
	for _, t := range s.tasks {
		if t.lastStatus == StatusStopped {
			stopped++
		}
	}
	drop := stopped - f.cfg.StoppedTasksKept
	if drop <= 0 {
		return
	}
	kept := s.tasks[:0]
	for _, t := range s.tasks {
		if drop > 0 && t.lastStatus == StatusStopped {
			drop--
			delete(f.tasks, t.id)
			continue
		}
		kept = append(kept, t)
	}
	clear(s.tasks[len(kept):])
	s.tasks = kept
}
