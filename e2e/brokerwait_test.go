package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/internal/testredis"
)

// closedRedis is a redis:// URL on a loopback port nothing listens on.
func closedRedis(t *testing.T) string {
	return fmt.Sprintf("redis://127.0.0.1:%d/0", freePort(t))
}

// attemptLines are the retry warnings in a command's output.
func attemptLines(out string) []string {
	var lines []string
	for line := range strings.Lines(out) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "broker unreachable") {
			lines = append(lines, line)
		}
	}
	return lines
}

// TestBrokerWaitGivesUp: a worker whose broker never comes up retries for
// --broker-wait, one warning per attempt, then fails with a clear message;
// `ebb server` and `ebb up` take the same bound from EBB_BROKER_WAIT.
func TestBrokerWaitGivesUp(t *testing.T) {
	t.Parallel()
	t.Run("worker", func(t *testing.T) {
		t.Parallel()
		url := closedRedis(t)
		start := time.Now()
		r := runEbb(t, t.TempDir(), "worker", "--broker", url, "--broker-wait", "2s")
		checkGaveUp(t, "worker", r.code, r.stderr, time.Since(start), 2*time.Second, url)
	})
	for _, cmd := range []string{"server", "up"} {
		t.Run(cmd, func(t *testing.T) {
			t.Parallel()
			url := closedRedis(t)
			start := time.Now()
			code, out := runEbbWithEnv(t, []string{"EBB_BROKER_WAIT=1s"}, cmd, "--broker", url, "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
			checkGaveUp(t, cmd, code, out, time.Since(start), time.Second, url)
		})
	}
}

func checkGaveUp(t *testing.T, cmd string, code int, out string, took, wait time.Duration, url string) {
	t.Helper()
	if code != 1 {
		t.Errorf("`ebb %s` on an unreachable broker exited %d, want 1; output:\n%s", cmd, code, out)
	}
	if took < wait || took > 10*time.Second {
		t.Errorf("`ebb %s` gave up after %s, want after the %s wait and well within 10s; output:\n%s", cmd, took, wait, out)
	}
	if n := len(attemptLines(out)); n < 2 {
		t.Errorf("`ebb %s` logged %d retry warnings, want one per attempt (≥ 2); output:\n%s", cmd, n, out)
	}
	for i, line := range attemptLines(out) {
		for _, want := range []string{"broker=" + url, fmt.Sprintf("attempt=%d ", i+1), "next_delay=", "cannot reach Redis"} {
			if !strings.Contains(line, want) {
				t.Errorf("retry warning %q lacks %q", line, want)
			}
		}
	}
	last := lastLine(out, "ebb "+cmd+":")
	if !strings.Contains(last, "still unreachable after "+wait.String()) || !strings.Contains(last, "cannot reach Redis") {
		t.Errorf("`ebb %s` final message %q: want it to say the broker stayed unreachable for %s and why; output:\n%s", cmd, last, wait, out)
	}
}

// runEbbWithEnv runs `ebb args...` to completion with extra environment
// variables, which runEbb's childEnv deliberately strips.
func runEbbWithEnv(t *testing.T, env []string, args ...string) (code int, output string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ebbBin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(childEnv(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("`ebb %s` did not finish within a minute; output:\n%s", strings.Join(args, " "), out.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run `ebb %s`: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// TestBrokerWaitConnects: a worker started before its Redis waits for it,
// registers once it is up, and stops cleanly on SIGTERM.
func TestBrokerWaitConnects(t *testing.T) {
	t.Parallel()
	s := testredis.Start(t)
	s.Kill() // its port is now closed, and ours to start Redis on later
	const id = "late-broker-worker"
	w := startEbb(t, "", id, "worker", "--id", id, "--broker", s.URL(), "--broker-wait", "1m")

	// Two warnings are two attempts: the worker is retrying, not stuck.
	waitFor(t, 20*time.Second, "two retry warnings while Redis is down", func() (bool, string) {
		return len(attemptLines(w.output())) >= 2, w.tail(500)
	}, w)
	s.Restart()
	drv, err := ebbredis.Open(t.Context(), s.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drv.Close() })
	b := &broker{kind: "redis", url: s.URL(), drv: drv}
	waitFor(t, 20*time.Second, "the worker to register once Redis is up", func() (bool, string) {
		wi := b.worker(t, id)
		return wi != nil, fmt.Sprintf("registered: %v", wi != nil)
	}, w)
	w.stop(30 * time.Second)
	if b.worker(t, id) != nil {
		t.Errorf("the worker exited but is still registered")
	}
}

// TestBrokerWaitSignal: SIGTERM during the wait stops the worker at once,
// with exit code 0 (as documented in --broker-wait's help).
func TestBrokerWaitSignal(t *testing.T) {
	t.Parallel()
	w := startEbb(t, "", "waiting-worker", "worker", "--broker", closedRedis(t), "--broker-wait", "1m")
	waitFor(t, 10*time.Second, "a first retry warning", func() (bool, string) {
		return len(attemptLines(w.output())) > 0, w.tail(500)
	}, w)
	start := time.Now()
	w.signal(syscall.SIGTERM)
	st := w.waitExit(10 * time.Second)
	// The wait is a minute and its next attempt up to 10 s away: an exit
	// within 5 s is the signal ending the wait, on any machine.
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the worker took %s to exit after SIGTERM during the wait, want promptly", took)
	}
	if st.ExitCode() != 0 {
		t.Errorf("SIGTERM during the wait: exit code %d, want 0; output:\n%s", st.ExitCode(), w.output())
	}
}

// TestBrokerWaitOneShotFailsFast: commands that do one thing do not wait.
func TestBrokerWaitOneShotFailsFast(t *testing.T) {
	t.Parallel()
	url := closedRedis(t)
	dir := t.TempDir()
	for _, args := range [][]string{
		{"inspect", "queues"},
		{"enqueue", "noop"},
		{"cancel", "some-task"},
		{"dead", "list"},
		{"schedule", "list"},
		{"bench", "--tasks", "10"},
	} {
		args = append(args, "--broker", url)
		start := time.Now()
		r := runEbb(t, dir, args...)
		took := time.Since(start)
		msg := strings.TrimRight(r.stderr, "\n")
		// No retry warning is the proof it did not wait; the bound only
		// catches a hang, far below the 5 min the long-running commands wait.
		if r.code != 1 || took >= 20*time.Second || len(attemptLines(r.stderr)) > 0 || !strings.Contains(msg, "cannot reach Redis") || strings.Contains(msg, "\n") {
			t.Errorf("`ebb %s` exited %d after %s with %q, want exit 1 at once (no retries) and one line saying it cannot reach Redis",
				strings.Join(args, " "), r.code, took, msg)
		}
	}
}
