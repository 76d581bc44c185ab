package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testpg"
	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
)

// brokerKinds are the brokers every multi-broker test runs against.
var brokerKinds = []string{"postgres", "redis", "sqlite"}

// broker is one test's private broker: the URL the ebb processes get, and a
// driver and client of the same broker for the test to inspect and steer it.
type broker struct {
	kind   string
	url    string
	drv    ebbdriver.Driver
	client *ebb.Client
}

// newBroker starts a private redis-server, makes a schema of its own in the
// test PostgreSQL, or makes a SQLite file in a temporary directory, so tests
// never share state and can run in parallel.
func newBroker(t *testing.T, kind string) *broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &broker{kind: kind}
	var err error
	switch kind {
	case "redis":
		s := testredis.Start(t)
		b.url = s.URL()
		b.drv, err = ebbredis.Open(ctx, b.url, nil)
	case "postgres":
		b.url = testpg.SchemaURL(t)
		b.drv, err = ebbpostgres.Open(ctx, b.url, nil)
	case "sqlite":
		path := filepath.Join(t.TempDir(), "ebb.db")
		b.url = "sqlite:" + path
		b.drv, err = ebbsqlite.Open(ctx, path, nil)
	default:
		t.Fatalf("unknown broker kind %q", kind)
	}
	if err != nil {
		t.Fatalf("open %s broker %s: %v", kind, b.url, err)
	}
	t.Cleanup(func() { _ = b.drv.Close() })
	b.client, err = ebb.NewClient(b.drv, nil)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return b
}

// read asks the broker one thing under a 10 s deadline and fails the test
// if it cannot answer. An error matching one of notFound yields T's zero.
func read[T any](t *testing.T, what string, f func(ctx context.Context) (T, error), notFound ...error) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := f(ctx)
	for _, nf := range notFound {
		if errors.Is(err, nf) {
			var zero T
			return zero
		}
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (b *broker) task(t *testing.T, id string) *ebbtype.TaskInfo {
	t.Helper()
	return read(t, "TaskGet "+id, func(ctx context.Context) (*ebbtype.TaskInfo, error) { return b.drv.TaskGet(ctx, id) })
}

// workers returns the live registry entries.
func (b *broker) workers(t *testing.T) []ebbtype.WorkerInfo {
	t.Helper()
	return read(t, "WorkerList", func(ctx context.Context) ([]ebbtype.WorkerInfo, error) { return b.drv.WorkerList(ctx, time.Now()) })
}

func (b *broker) tasks(t *testing.T, ids []string) []*ebbtype.TaskInfo {
	t.Helper()
	out := make([]*ebbtype.TaskInfo, len(ids))
	for i, id := range ids {
		out[i] = b.task(t, id)
	}
	return out
}

// stats returns a queue's counts; all zero if the queue is unknown.
func (b *broker) stats(t *testing.T, queue string) ebbtype.QueueStats {
	t.Helper()
	all := read(t, "QueueStats", func(ctx context.Context) ([]ebbtype.QueueStats, error) { return b.drv.QueueStats(ctx, time.Now()) })
	for _, s := range all {
		if s.Name == queue {
			return s
		}
	}
	return ebbtype.QueueStats{Name: queue}
}

// worker returns the registry entry of a live worker, or nil.
func (b *broker) worker(t *testing.T, id string) *ebbtype.WorkerInfo {
	t.Helper()
	ws := b.workers(t)
	for i := range ws {
		if ws[i].ID == id {
			return &ws[i]
		}
	}
	return nil
}

// enqueueSleep enqueues n sleep tasks of ms milliseconds into the default
// queue and returns their ids.
func (b *broker) enqueueSleep(t *testing.T, n, ms int) []string {
	t.Helper()
	params := make([]ebb.EnqueueParams, n)
	for i := range params {
		params[i] = ebb.EnqueueParams{Kind: "sleep", RawArgs: json.RawMessage(fmt.Sprintf(`{"ms":%d}`, ms))}
	}
	res, err := b.client.EnqueueMany(context.Background(), params)
	if err != nil {
		t.Fatalf("enqueue %d sleep tasks: %v", n, err)
	}
	ids := make([]string, len(res))
	for i, r := range res {
		ids[i] = r.ID
	}
	return ids
}

func describe(r *ebbtype.TaskInfo) string {
	return fmt.Sprintf("{id %s state %s attempt %d worker %q errors %d}", r.ID, r.State, r.Attempt, r.WorkerID, len(r.Errors))
}

// --- processes ---------------------------------------------------------------

// proc is a running `ebb` process whose stdout and stderr go to a log file,
// printed when the test fails.
type proc struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited and been reaped
	state   *os.ProcessState
}

// childEnv is the environment of every ebb process: the test's own, minus
// every EBB_* variable, so a developer's settings can never point a test at
// a real broker (EBB_BROKER) or change the configuration a test gives `ebb
// server` (EBB_TOKEN, EBB_LISTEN, EBB_POOL_*).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		// Nor the ECS task's endpoints, should the tests run in one: a
		// worker would take it for its own task.
		if !strings.HasPrefix(kv, "EBB_") && !strings.HasPrefix(kv, "ECS_CONTAINER_METADATA_URI") && !strings.HasPrefix(kv, "ECS_AGENT_URI") {
			env = append(env, kv)
		}
	}
	return env
}

// startEbb starts `ebb args...` in dir (a fresh temporary directory when
// empty). The process is SIGKILLed, if still running, when the test ends, and
// also if the test binary itself dies (Pdeathsig), so no worker outlives a
// crashed or timed-out test run.
func startEbb(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	return startEbbWith(t, dir, name, nil, args...)
}

// startEbbWith is startEbb with extra environment variables for this one
// process (the ECS agent's of a fake task, say: set in the test process they
// would reach every parallel test's workers).
func startEbbWith(t *testing.T, dir, name string, extraEnv []string, args ...string) *proc {
	t.Helper()
	return startCommand(t, dir, name, extraEnv, append([]string{ebbBin}, args...)...)
}

// startCommand is startEbbWith for any command line argv (`ebb` run through
// `ip netns exec`, say).
func startCommand(t *testing.T, dir, name string, extraEnv []string, argv ...string) *proc {
	t.Helper()
	args := argv[1:]
	logDir := t.TempDir()
	if dir == "" {
		dir = logDir
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("create log file: %v", err)
	}
	cmd := exec.Command(argv[0], args...)
	cmd.Dir = dir
	cmd.Env = append(childEnv(), extraEnv...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	f.Close()
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{t: t, name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) did not die within 10s of SIGKILL", name, cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("--- output of %s (pid %d, `ebb %s`), last 8 KiB ---\n%s", name, cmd.Process.Pid,
				strings.Join(args, " "), p.tail(8<<10))
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("send %v to %s (pid %d): %v", sig, p.name, p.pid(), err)
	}
}

// waitExit waits for the process to exit and returns its state.
func (p *proc) waitExit(timeout time.Duration) *os.ProcessState {
	p.t.Helper()
	select {
	case <-p.done:
		return p.state
	case <-time.After(timeout):
		p.t.Fatalf("%s (pid %d) did not exit within %s; output so far:\n%s", p.name, p.pid(), timeout, p.tail(8<<10))
		return nil
	}
}

// stop sends SIGTERM and requires a clean exit (code 0) within timeout.
func (p *proc) stop(timeout time.Duration) {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if st := p.waitExit(timeout); st.ExitCode() != 0 {
		p.t.Fatalf("%s exited with %v after SIGTERM, want exit code 0", p.name, st)
	}
}

// kill SIGKILLs the process and waits until it is gone.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	p.waitExit(10 * time.Second)
}

func (p *proc) output() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	return string(b)
}

func (p *proc) tail(n int) string {
	s := p.output()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// checkAlive is a waitFor watch: it fails the wait at once when a process
// that should be running has exited, instead of letting the wait time out.
func checkAlive(ps ...*proc) error {
	for _, p := range ps {
		if p != nil && p.exited() {
			return fmt.Errorf("%s (pid %d) exited unexpectedly (%v); its output:\n%s", p.name, p.pid(), p.state, p.tail(8<<10))
		}
	}
	return nil
}

// waitFor polls cond every 25 ms until it reports done, and fails the test
// if that takes longer than timeout or a watched process exits meanwhile.
// cond's status string says what it saw, for the failure message.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string), watch ...*proc) {
	t.Helper()
	var status string
	err := testwait.Until(timeout, func() (bool, error) {
		var ok bool
		if ok, status = cond(); ok {
			return true, nil
		}
		return false, checkAlive(watch...)
	})
	if err != nil {
		t.Fatalf("waiting for %s (last seen: %s): %v", what, status, err)
	}
}

// --- one-shot commands -----------------------------------------------------------

type cliResult struct {
	code           int
	stdout, stderr string
}

// runEbb runs `ebb args...` in dir to completion (at most a minute).
func runEbb(t *testing.T, dir string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ebbBin, args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("`ebb %s` did not finish within a minute; stderr:\n%s", strings.Join(args, " "), stderr.String())
	}
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run `ebb %s`: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustEbb runs a command that must succeed.
func mustEbb(t *testing.T, dir string, args ...string) cliResult {
	t.Helper()
	r := runEbb(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("`ebb %s` exited %d, want 0\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// mustEbbJSON runs a command that must succeed and decodes its stdout.
func mustEbbJSON(t *testing.T, dir string, into any, args ...string) {
	t.Helper()
	r := mustEbb(t, dir, args...)
	if err := json.Unmarshal([]byte(r.stdout), into); err != nil {
		t.Fatalf("`ebb %s`: stdout is not the expected JSON (%v):\n%s", strings.Join(args, " "), err, r.stdout)
	}
}

// jsonEqual reports whether got encodes the same value as want, whatever
// the layout (the CLI indents nested JSON).
func jsonEqual(got []byte, want string) bool {
	var g, w any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal([]byte(want), &w) != nil {
		return false
	}
	return reflect.DeepEqual(g, w)
}

// eachBroker runs test once per broker kind, as parallel subtests named by
// the kind, each with its own fresh broker.
func eachBroker(t *testing.T, test func(t *testing.T, b *broker)) {
	t.Helper()
	for _, kind := range brokerKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			test(t, newBroker(t, kind))
		})
	}
}
