package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestLaunchingThreadExitDoesNotSignalWorkers launches from a goroutine that
// ends locked to its thread, which ends the thread: a worker forked from that
// thread would get its parent-death SIGTERM although the server lives on.
func TestLaunchingThreadExitDoesNotSignalWorkers(t *testing.T) {
	t.Parallel()
	tg, _ := newTarget(t, "probe", Config{})
	var (
		ids []string
		err error
		tid int
	)
	// The main thread never exits; a goroutine that lands on it keeps it
	// busy until the test ends so that the next attempt lands elsewhere.
	release := make(chan struct{})
	defer close(release)
	for attempt := 0; tid == 0; attempt++ {
		if attempt == 10 {
			t.Fatal("could not get a goroutine off the main thread")
		}
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			if syscall.Gettid() == os.Getpid() {
				close(done)
				<-release
				runtime.UnlockOSThread()
				return
			}
			defer close(done)
			// Never unlocked: the thread ends with this goroutine.
			tid = syscall.Gettid()
			ids, err = tg.Launch(context.Background(), 1)
		}()
		<-done
	}
	if err != nil || len(ids) != 1 {
		t.Fatalf("Launch = %v, %v", ids, err)
	}
	waitFor(t, "the launching thread to exit", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
		return errors.Is(err, os.ErrNotExist)
	})
	const killed = "the worker was sent SIGTERM when the launching thread exited"
	alive := func() bool { return len(instanceIDs(t, tg)) == 1 }
	waitFor(t, "the worker to be ready or gone", func() bool {
		return !alive() || strings.Contains(readFile(t, tg.logPath(ids[0])), "ready\n")
	})
	if !alive() {
		t.Fatalf("%s: %+v", killed, tg.Exits())
	}
	tg.mu.Lock()
	pid := tg.instances[ids[0]].cmd.Process.Pid
	tg.mu.Unlock()
	if err := syscall.Kill(pid, syscall.SIGWINCH); err != nil {
		t.Fatalf("probe: %v (%s?)", err, killed)
	}
	var log string
	waitFor(t, "the worker to answer the probe", func() bool {
		log = readFile(t, tg.logPath(ids[0]))
		return strings.Contains(log, "probe\n") || strings.Contains(log, "draining\n")
	})
	if strings.Contains(log, "draining") {
		t.Fatalf("%s; log:\n%s", killed, log)
	}
}
