//go:build unix

package local

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/target"
	"github.com/ebbq/ebb/internal/testwait"
)

// The helper processes are this test binary run again with
// -test.run=^TestHelperProcess$ and EBB_LOCAL_HELPER naming a behaviour.
const (
	helperEnv        = "EBB_LOCAL_HELPER"
	helperReleaseEnv = "EBB_LOCAL_HELPER_RELEASE" // drain: exit once this file exists
	helperCrashEnv   = "EBB_LOCAL_HELPER_CRASH"   // crashfile: crash while this file exists
	helperLogDirEnv  = "EBB_LOCAL_HELPER_LOGDIR"  // server: its target's LogDir
)

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	// Never outlive a broken test run.
	time.AfterFunc(time.Minute, func() { os.Exit(9) })
	args := os.Args[slices.Index(os.Args, "--")+1:]
	switch mode {
	case "args":
		wd, _ := os.Getwd()
		_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"args": args, "dir": wd, "env": os.Getenv("EBB_LOCAL_TEST_VAR")})
		os.Exit(0)
	case "drain":
		helperDrain()
	case "crashfile":
		if _, err := os.Stat(os.Getenv(helperCrashEnv)); err == nil {
			fmt.Fprintln(os.Stderr, "boom: crash file present")
			os.Exit(3)
		}
		helperDrain()
	case "ignore":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "ignore-with-child":
		signal.Ignore(syscall.SIGTERM)
		child := exec.Command(testBinary(), os.Args[1:]...)
		child.Env = append(os.Environ(), helperEnv+"=ignore")
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		if err := child.Start(); err != nil {
			fmt.Println("cannot start child:", err)
			os.Exit(1)
		}
		fmt.Printf("child=%d\n", child.Process.Pid)
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "probe":
		// Reports the signals it gets in order: Go hands pending signals
		// to the channel lowest number first, so a SIGTERM sent before
		// the test's SIGWINCH is always reported before it.
		sigs := make(chan os.Signal, 2)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGWINCH)
		fmt.Println("ready")
		for s := range sigs {
			if s == syscall.SIGTERM {
				fmt.Println("draining")
				os.Exit(0)
			}
			fmt.Println("probe")
		}
	case "crash":
		fmt.Fprintln(os.Stderr, "boom: cannot reach the broker")
		os.Exit(3)
	case "selfkill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour)
	case "server":
		// A server that dies without shutting its target down.
		tg, err := New(Config{Pool: "orphans", Command: helperCommand(), Env: []string{helperEnv + "=drain"},
			LogDir: os.Getenv(helperLogDirEnv)})
		if err != nil {
			fmt.Println("new:", err)
			os.Exit(1)
		}
		ids, err := tg.Launch(context.Background(), 1)
		if err != nil || len(ids) != 1 {
			fmt.Println("launch:", ids, err)
			os.Exit(1)
		}
		fmt.Printf("worker=%s\n", ids[0])
		time.Sleep(time.Hour)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", mode)
		os.Exit(2)
	}
}

// helperDrain behaves like ebb worker: on SIGTERM it drains (until the
// release file exists, if one is named) and exits 0.
func helperDrain() {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	fmt.Println("ready")
	<-term
	fmt.Println("draining")
	if f := os.Getenv(helperReleaseEnv); f != "" {
		for {
			if _, err := os.Stat(f); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	os.Exit(0)
}

func helperCommand(extra ...string) []string {
	return append([]string{testBinary(), "-test.run=^TestHelperProcess$", "--"}, extra...)
}

// testBinary is absolute: tests change the workers' directory.
func testBinary() string {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return exe
}

// newTarget builds a target running helper mode and shuts it down when the
// test ends.
func newTarget(t *testing.T, mode string, c Config) (*Target, *testwait.Log) {
	t.Helper()
	logs := &testwait.Log{}
	c.Pool = cmp.Or(c.Pool, "pool")
	if c.Command == nil {
		c.Command = helperCommand()
	}
	// Race-enabled helpers otherwise sleep a second on exit.
	c.Env = append(c.Env, helperEnv+"="+mode, "GORACE=atexit_sleep_ms=0")
	c.LogDir = cmp.Or(c.LogDir, t.TempDir())
	c.StopGrace = cmp.Or(c.StopGrace, 10*time.Second)
	c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tg, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := tg.Shutdown(ctx); err != nil {
			t.Errorf("cleanup Shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("target log:\n%s", logs.String())
		}
	})
	return tg, logs
}

// waitFor polls cond until it holds or ten seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Eventually(t, 10*time.Second, what, func() (bool, error) { return cond(), nil })
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func (tg *Target) logPath(id string) string { return filepath.Join(tg.cfg.LogDir, id+".log") }

// waitReady waits until every instance has printed "ready" (its signal
// handling is in place).
func waitReady(t *testing.T, tg *Target, ids []string) {
	t.Helper()
	for _, id := range ids {
		waitFor(t, id+" ready", func() bool { return strings.Contains(readFile(t, tg.logPath(id)), "ready\n") })
	}
}

// collectExits waits until n exits have been recorded and returns them by id.
func collectExits(t *testing.T, tg *Target, n int) map[string]Exit {
	t.Helper()
	got := map[string]Exit{}
	waitFor(t, fmt.Sprintf("%d exits", n), func() bool {
		for _, e := range tg.Exits() {
			got[e.ID] = e
		}
		return len(got) >= n
	})
	if len(got) != n {
		t.Fatalf("got %d exits, want %d: %+v", len(got), n, got)
	}
	return got
}

func launch(t *testing.T, tg *Target, n int) []string {
	t.Helper()
	ids, err := tg.Launch(context.Background(), n)
	if err != nil {
		t.Fatalf("Launch(%d): %v", n, err)
	}
	if len(ids) != n {
		t.Fatalf("Launch(%d) started %d: %v", n, len(ids), ids)
	}
	return ids
}

func instanceIDs(t *testing.T, tg *Target) []string {
	t.Helper()
	insts, err := tg.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range insts {
		ids = append(ids, in.ID)
	}
	slices.Sort(ids)
	return ids
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ok := func() Config {
		return Config{Pool: "mail", Command: []string{testBinary()}, LogDir: filepath.Join(dir, "logs")}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no pool", func(c *Config) { c.Pool = "" }, "Config.Pool"},
		{"upper-case pool", func(c *Config) { c.Pool = "Mail" }, "Config.Pool"},
		{"pool with underscore", func(c *Config) { c.Pool = "mail_q" }, "Config.Pool"},
		{"pool ending in dash", func(c *Config) { c.Pool = "mail-" }, "Config.Pool"},
		{"long pool", func(c *Config) { c.Pool = strings.Repeat("a", PoolMaxLen+1) }, "Config.Pool"},
		{"no command", func(c *Config) { c.Command = nil }, "Config.Command"},
		{"empty command", func(c *Config) { c.Command = []string{""} }, "Config.Command"},
		{"command not found", func(c *Config) { c.Command = []string{"ebb-no-such-binary-here"} }, "Config.Command[0]"},
		{"command not executable", func(c *Config) { c.Command = []string{file} }, "Config.Command[0]"},
		{"command sets --id", func(c *Config) { c.Command = []string{testBinary(), "worker", "--id", "x"} }, "Config.Command"},
		{"command sets --id=", func(c *Config) { c.Command = []string{testBinary(), "--id=x"} }, "Config.Command"},
		{"env without =", func(c *Config) { c.Env = []string{"A=1", "B"} }, "Config.Env[1]"},
		{"env without key", func(c *Config) { c.Env = []string{"=1"} }, "Config.Env[0]"},
		{"dir missing", func(c *Config) { c.Dir = filepath.Join(dir, "nope") }, "Config.Dir"},
		{"dir is a file", func(c *Config) { c.Dir = file }, "Config.Dir"},
		{"log dir is a file", func(c *Config) { c.LogDir = file }, "Config.LogDir"},
		{"negative stop grace", func(c *Config) { c.StopGrace = -time.Second }, "Config.StopGrace"},
		{"negative backoff min", func(c *Config) { c.CrashBackoffMin = -time.Second }, "Config.CrashBackoffMin"},
		{"negative backoff max", func(c *Config) { c.CrashBackoffMax = -time.Second }, "Config.CrashBackoffMax"},
		{"backoff max below min", func(c *Config) { c.CrashBackoffMin = time.Minute; c.CrashBackoffMax = time.Second }, "Config.CrashBackoffMax"},
		{"default max below min", func(c *Config) { c.CrashBackoffMin = 2 * time.Minute }, "Config.CrashBackoffMax"},
		{"negative crash window", func(c *Config) { c.CrashWindow = -time.Second }, "Config.CrashWindow"},
	} {
		c := ok()
		tc.edit(&c)
		_, err := New(c)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: New error %v, want one naming %s", tc.name, err, tc.field)
		}
	}
	if _, err := New(ok()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

// TestNewDefaults is not parallel: LogDirDefault is relative to the working
// directory, which it changes.
func TestNewDefaults(t *testing.T) {
	t.Chdir(t.TempDir())
	tg, err := New(Config{Pool: "p", Command: []string{testBinary()}})
	if err != nil {
		t.Fatal(err)
	}
	c := tg.cfg
	if c.LogDir != LogDirDefault || c.StopGrace != StopGraceDefault || c.CrashBackoffMin != CrashBackoffMinDefault ||
		c.CrashBackoffMax != CrashBackoffMaxDefault || c.CrashWindow != CrashWindowDefault {
		t.Errorf("defaults not applied: %+v", c)
	}
	if fi, err := os.Stat(LogDirDefault); err != nil || !fi.IsDir() {
		t.Errorf("New did not create %s: %v", LogDirDefault, err)
	}
	if tg.Name() != "local" {
		t.Errorf("Name() = %q", tg.Name())
	}
	if err := tg.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of an idle target: %v", err)
	}
}

func TestLaunchListsInstances(t *testing.T) {
	t.Parallel()
	tg, _ := newTarget(t, "drain", Config{Pool: "mail-eu"})
	before := time.Now()
	ids := launch(t, tg, 4)
	valid := regexp.MustCompile(`^mail-eu-[a-z0-9]+$`)
	seen := map[string]bool{}
	for _, id := range ids {
		if !valid.MatchString(id) || !ebb.ValidName(id) || seen[id] {
			t.Errorf("id %q: want unique, matching %s, and a valid worker id", id, valid)
		}
		seen[id] = true
	}
	insts, err := tg.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 4 {
		t.Fatalf("Instances: %d, want 4: %+v", len(insts), insts)
	}
	for _, in := range insts {
		if !seen[in.ID] || in.State != target.StateRunning || in.StartedAt.Before(before) || in.StartedAt.After(time.Now()) {
			t.Errorf("instance %+v: want one of %v, running, started during Launch", in, ids)
		}
	}
	if err := tg.Protect(context.Background(), ids[:1]); err != nil {
		t.Errorf("Protect: %v", err)
	}
	more := launch(t, tg, 2)
	if got := instanceIDs(t, tg); len(got) != 6 || !slices.Contains(got, more[0]) || !slices.Contains(got, more[1]) {
		t.Errorf("after a second Launch, Instances = %v", got)
	}
	if ids, err := tg.Launch(context.Background(), 0); err != nil || len(ids) != 0 {
		t.Errorf("Launch(0) = %v, %v", ids, err)
	}
}

func TestCommandArgsEnvDirAndLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tg, _ := newTarget(t, "args", Config{Pool: "p",
		Command: helperCommand("worker", "--pool", "p", "--queues", "a,b"),
		Env:     []string{"EBB_LOCAL_TEST_VAR=first", "EBB_LOCAL_TEST_VAR=second"},
		Dir:     dir})
	id := launch(t, tg, 1)[0]
	ex := collectExits(t, tg, 1)[id]
	if ex.Code != 0 || ex.Signal != 0 || ex.Crashed || ex.Stopped {
		t.Errorf("exit %+v: want a plain exit 0", ex)
	}
	if ex.Log != tg.logPath(id) {
		t.Errorf("Exit.Log = %q, want %q", ex.Log, tg.logPath(id))
	}
	var got struct {
		Args []string
		Dir  string
		Env  string
	}
	if err := json.Unmarshal([]byte(readFile(t, tg.logPath(id))), &got); err != nil {
		t.Fatalf("log %s: %v", tg.logPath(id), err)
	}
	want := []string{"worker", "--pool", "p", "--queues", "a,b", "--id", id}
	if !slices.Equal(got.Args, want) {
		t.Errorf("args %q, want %q", got.Args, want)
	}
	if wantDir, _ := filepath.EvalSymlinks(dir); got.Dir != wantDir && got.Dir != dir {
		t.Errorf("working directory %q, want %q", got.Dir, dir)
	}
	if got.Env != "second" {
		t.Errorf("EBB_LOCAL_TEST_VAR = %q, want the later entry", got.Env)
	}
}

func TestExitedInstanceIsReapedWithoutBackoff(t *testing.T) {
	t.Parallel()
	tg, logs := newTarget(t, "args", Config{})
	first := launch(t, tg, 2)
	waitFor(t, "instances to be reaped", func() bool { return len(instanceIDs(t, tg)) == 0 })
	exits := collectExits(t, tg, 2)
	for _, id := range first {
		if ex, ok := exits[id]; !ok || ex.Code != 0 || ex.Crashed {
			t.Errorf("exit of %s: %+v", id, ex)
		}
	}
	// Workers exit 0 when drained, however young: that is no crash.
	launch(t, tg, 1)
	if n := strings.Count(logs.String(), "worker instance exited"); n < 2 {
		t.Errorf("want an Info line per exit, log:\n%s", logs)
	}
}

func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	release := filepath.Join(t.TempDir(), "release")
	tg, _ := newTarget(t, "drain", Config{Env: []string{helperReleaseEnv + "=" + release}})
	ids := launch(t, tg, 2)
	waitReady(t, tg, ids)

	done := make(chan error, 1)
	go func() { done <- tg.Shutdown(context.Background()) }()
	waitFor(t, "instances to be stopping", func() bool {
		insts, _ := tg.Instances(context.Background())
		for _, in := range insts {
			if in.State != target.StateStopping {
				return false
			}
		}
		return len(insts) == 2
	})
	if _, err := tg.Launch(context.Background(), 1); !errors.Is(err, ErrShutdown) {
		t.Errorf("Launch during Shutdown: %v, want ErrShutdown", err)
	}
	for _, id := range ids {
		waitFor(t, id+" draining", func() bool { return strings.Contains(readFile(t, tg.logPath(id)), "draining\n") })
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := instanceIDs(t, tg); len(got) != 0 {
		t.Errorf("Instances after Shutdown: %v", got)
	}
	for id, ex := range collectExits(t, tg, 2) {
		if ex.Code != 0 || ex.Signal != 0 || !ex.Stopped || ex.Crashed {
			t.Errorf("exit of %s: %+v, want a stopped exit 0", id, ex)
		}
	}
	if err := tg.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if _, err := tg.Launch(context.Background(), 1); !errors.Is(err, ErrShutdown) {
		t.Errorf("Launch after Shutdown: %v, want ErrShutdown", err)
	}
}

func TestShutdownConcurrentCalls(t *testing.T) {
	t.Parallel()
	tg, _ := newTarget(t, "drain", Config{})
	waitReady(t, tg, launch(t, tg, 3))
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- tg.Shutdown(context.Background()) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}
	if got := instanceIDs(t, tg); len(got) != 0 {
		t.Errorf("Instances after Shutdown: %v", got)
	}
	if n := len(tg.Exits()); n != 3 {
		t.Errorf("%d exits, want 3", n)
	}
}

func TestShutdownKillsAfterStopGrace(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	tg, logs := newTarget(t, "ignore", Config{StopGrace: grace})
	ids := launch(t, tg, 1)
	waitReady(t, tg, ids)
	start := time.Now()
	if err := tg.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took < grace {
		t.Errorf("Shutdown took %s, less than the stop grace %s", took, grace)
	}
	ex := collectExits(t, tg, 1)[ids[0]]
	if ex.Signal != syscall.SIGKILL || ex.Code != -1 || !ex.Stopped || ex.Crashed {
		t.Errorf("exit %+v: want SIGKILLed by the target, not a crash", ex)
	}
	if !strings.Contains(logs.String(), "still running after the stop grace") {
		t.Errorf("no warning about the kill; log:\n%s", logs)
	}
}

func TestShutdownKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	tg, _ := newTarget(t, "ignore-with-child", Config{StopGrace: 100 * time.Millisecond})
	id := launch(t, tg, 1)[0]
	waitFor(t, "parent and child ready", func() bool { return strings.Count(readFile(t, tg.logPath(id)), "ready\n") == 2 })
	m := regexp.MustCompile(`child=(\d+)`).FindStringSubmatch(readFile(t, tg.logPath(id)))
	if m == nil {
		t.Fatalf("no child pid in log:\n%s", readFile(t, tg.logPath(id)))
	}
	child, _ := strconv.Atoi(m[1])
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	if err := tg.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Orphaned, the grandchild is reaped by init (or lingers as a zombie
	// where init does not reap): either way it is no longer running.
	waitFor(t, "the worker's own child to die", func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			return true
		}
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		return len(fields) > 0 && (fields[0] == "Z" || fields[0] == "X")
	})
}

func TestShutdownContextCutsGraceShort(t *testing.T) {
	t.Parallel()
	tg, _ := newTarget(t, "ignore", Config{StopGrace: time.Hour})
	ids := launch(t, tg, 1)
	waitReady(t, tg, ids)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := tg.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want one wrapping context.DeadlineExceeded", err)
	}
	// Shutdown still returned only once the worker was reaped.
	if got := instanceIDs(t, tg); len(got) != 0 {
		t.Errorf("Instances after Shutdown: %v", got)
	}
	if ex := collectExits(t, tg, 1)[ids[0]]; ex.Signal != syscall.SIGKILL || !ex.Stopped {
		t.Errorf("exit %+v: want SIGKILLed by the target", ex)
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tg, logs := newTarget(t, "crash", Config{CrashBackoffMin: time.Second, CrashBackoffMax: 3 * time.Second})
	tg.now = clock.Now
	refusals := 0
	expectNone := func(step string) {
		t.Helper()
		ids, err := tg.Launch(context.Background(), 2)
		if err != nil || len(ids) != 0 {
			t.Fatalf("%s: Launch = %v, %v; want nothing while backing off", step, ids, err)
		}
		refusals++
	}
	crashOnce := func(step string) {
		t.Helper()
		id := launch(t, tg, 1)[0]
		ex := collectExits(t, tg, 1)[id]
		if ex.Code != 3 || !ex.Crashed || ex.Stopped {
			t.Fatalf("%s: exit %+v, want a crash with code 3", step, ex)
		}
	}

	crashOnce("first")
	expectNone("right after the first crash")
	expectNone("again")
	clock.Add(999 * time.Millisecond)
	expectNone("just before the 1 s backoff ends")
	clock.Add(time.Millisecond)
	crashOnce("after 1 s")
	clock.Add(1999 * time.Millisecond)
	expectNone("just before the 2 s backoff ends")
	clock.Add(time.Millisecond)
	crashOnce("after 2 s")
	clock.Add(2999 * time.Millisecond) // 4 s, capped at CrashBackoffMax
	expectNone("just before the capped 3 s backoff ends")
	clock.Add(time.Millisecond)
	crashOnce("after 3 s")

	out := logs.String()
	if n := strings.Count(out, "workers are crash-looping"); n != 3 {
		t.Errorf("%d backoff log lines over 3 steps and %d refusals, want one per step; log:\n%s", n, refusals, out)
	}
	if !strings.Contains(out, "worker instance crashed") || !strings.Contains(out, "boom: cannot reach the broker") {
		t.Errorf("crash Warn lines should carry the worker's last output; log:\n%s", out)
	}
}

func TestCrashBatchCountsOnce(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tg, _ := newTarget(t, "crash", Config{CrashBackoffMin: time.Second, CrashBackoffMax: time.Hour})
	tg.now = clock.Now
	launch(t, tg, 4)
	collectExits(t, tg, 4)
	clock.Add(time.Second)
	if ids, err := tg.Launch(context.Background(), 1); err != nil || len(ids) != 1 {
		t.Fatalf("Launch 1 s after a batch of crashes = %v, %v; the batch should count as one step", ids, err)
	}
}

func TestCrashBySignal(t *testing.T) {
	t.Parallel()
	tg, _ := newTarget(t, "selfkill", Config{})
	id := launch(t, tg, 1)[0]
	ex := collectExits(t, tg, 1)[id]
	if ex.Signal != syscall.SIGKILL || !ex.Crashed || ex.Stopped {
		t.Fatalf("exit %+v: a signal the target did not send within the crash window is a crash", ex)
	}
	if ids, err := tg.Launch(context.Background(), 1); err != nil || len(ids) != 0 {
		t.Errorf("Launch right after the crash = %v, %v; want nothing", ids, err)
	}
}

func TestCrashLoopResetsAfterHealthyRun(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	crashFile := filepath.Join(t.TempDir(), "crash")
	if err := os.WriteFile(crashFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const window = 10 * time.Second
	tg, logs := newTarget(t, "crashfile", Config{CrashBackoffMin: time.Second, CrashBackoffMax: time.Hour,
		CrashWindow: window, Env: []string{helperCrashEnv + "=" + crashFile}})
	tg.now = clock.Now
	crash := func() {
		t.Helper()
		id := launch(t, tg, 1)[0]
		if ex := collectExits(t, tg, 1)[id]; !ex.Crashed {
			t.Fatalf("exit %+v, want a crash", ex)
		}
	}
	crash()
	clock.Add(time.Second)
	crash()
	clock.Add(2 * time.Second) // now backing off 4 s

	if err := os.Remove(crashFile); err != nil {
		t.Fatal(err)
	}
	waitReady(t, tg, launch(t, tg, 1))
	clock.Add(window - time.Millisecond)
	if ids, _ := tg.Launch(context.Background(), 0); len(ids) != 0 || tg.crashesForTest() == 0 {
		t.Fatalf("backoff reset before the healthy worker outlived the crash window")
	}
	clock.Add(time.Millisecond)
	if _, err := tg.Launch(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if n := tg.crashesForTest(); n != 0 {
		t.Fatalf("after a worker outlived the crash window, crash steps = %d, want 0", n)
	}
	if !strings.Contains(logs.String(), "crash-loop backoff reset") {
		t.Errorf("no log line for the reset; log:\n%s", logs)
	}

	// A new crash starts again from CrashBackoffMin, not 8 s.
	if err := os.WriteFile(crashFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	crash()
	clock.Add(time.Second)
	if ids, err := tg.Launch(context.Background(), 1); err != nil || len(ids) != 1 {
		t.Errorf("Launch 1 s after the first crash of a new loop = %v, %v", ids, err)
	}
}

func (t *Target) crashesForTest() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.crashes
}

func TestStartFailureBacksOff(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "work")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tg, _ := newTarget(t, "drain", Config{Dir: dir})
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	ids, err := tg.Launch(context.Background(), 2)
	if err == nil || len(ids) != 0 {
		t.Fatalf("Launch with a vanished Dir = %v, %v; want an error", ids, err)
	}
	if entries, _ := os.ReadDir(tg.cfg.LogDir); len(entries) != 0 {
		t.Errorf("failed starts left log files: %v", entries)
	}
	if ids, err := tg.Launch(context.Background(), 2); err != nil || len(ids) != 0 {
		t.Errorf("Launch right after a failed start = %v, %v; want nothing while backing off", ids, err)
	}
}

func TestLaunchHonoursContext(t *testing.T) {
	t.Parallel()
	tg, _ := newTarget(t, "drain", Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ids, err := tg.Launch(ctx, 1); !errors.Is(err, context.Canceled) || len(ids) != 0 {
		t.Errorf("Launch with a cancelled context = %v, %v", ids, err)
	}
}

// TestWorkersDrainWhenServerDies runs a server process that launches a
// worker and is then SIGKILLed: the worker gets SIGTERM from the kernel.
func TestWorkersDrainWhenServerDies(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux only")
	}
	logDir := t.TempDir()
	var out testwait.Log
	server := exec.Command(testBinary(), "-test.run=^TestHelperProcess$", "--")
	server.Env = append(os.Environ(), helperEnv+"=server", helperLogDirEnv+"="+logDir, "GORACE=atexit_sleep_ms=0")
	server.Stdout, server.Stderr = &out, &out
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Process.Kill(); _ = server.Wait() })
	var id string
	waitFor(t, "the server to launch a worker", func() bool {
		m := regexp.MustCompile(`worker=(\S+)`).FindStringSubmatch(out.String())
		if m != nil {
			id = m[1]
		}
		return id != ""
	})
	logPath := filepath.Join(logDir, id+".log")
	waitFor(t, "the worker to be ready", func() bool { return strings.Contains(readFile(t, logPath), "ready\n") })
	if err := server.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the orphaned worker to drain", func() bool { return strings.Contains(readFile(t, logPath), "draining\n") })
}

// TestNoGoroutinesLeft is not parallel, so no other target's goroutines are
// about while it counts.
func TestNoGoroutinesLeft(t *testing.T) {
	ours := func() string {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var found []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "target/local.(*Target)") || strings.Contains(g, "target/local.newSpawner") {
				found = append(found, g)
			}
		}
		return strings.Join(found, "\n\n")
	}
	noneLeft := func(when string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for ours() != "" {
			if time.Now().After(deadline) {
				t.Fatalf("goroutines left %s:\n%s", when, ours())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// Workers that exit by themselves release everything without Shutdown.
	exiting, _ := newTarget(t, "args", Config{})
	launch(t, exiting, 2)
	collectExits(t, exiting, 2)
	noneLeft("after every worker exited")

	tg, _ := newTarget(t, "drain", Config{})
	waitReady(t, tg, launch(t, tg, 3))
	if err := tg.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	noneLeft("after Shutdown")
}
