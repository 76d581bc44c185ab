package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/ecsfake"
)

// Helpers for the tests that run an ecs pool against internal/ecsfake: the
// fake plays ECS (control plane, agent, scheduler running `ebb worker`
// processes as tasks), `ebb server` scales the fake's service through the
// real AWS SDK.

const (
	ecsTestCluster = "ebb-e2e"
	ecsTestRegion  = ecsfake.DefaultRegion
)

// ecsLog collects the fake's scheduler log lines, printed (the last ones)
// when the test fails: with -v they would drown everything else.
type ecsLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *ecsLog) logf(format string, args ...any) {
	line := time.Now().Format("15:04:05.000 ") + fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if len(l.lines) > 4000 {
		l.lines = append([]string(nil), l.lines[len(l.lines)-2000:]...)
	}
}

func (l *ecsLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(0, len(l.lines)-n):], "\n")
}

// ecsWorkerCommand is the task definition's command: `ebb worker` for the
// pool, heart-beating and renewing its protection fast.
func ecsWorkerCommand(b *broker, pool string, concurrency int, extra ...string) []string {
	return append([]string{ebbBin, "worker", "--broker", b.url, "--queues", pool, "--concurrency", strconv.Itoa(concurrency),
		"--pool", pool, "--heartbeat", "500ms", "--lease", "5s", "--protection-renew", "1s", "--protection-expiry", "1m"}, extra...)
}

// busyOnBroker is a BusyAtStop hook: a task (an ECS task id, which is the
// worker id) is busy when the broker has a running task of queue on that
// worker. It runs on the fake's goroutines, so it cannot fail the test: an
// unanswerable broker counts as busy, which fails the busy assertions
// loudly rather than hiding a stop.
func busyOnBroker(drv ebbdriver.Driver, queue string, errs *ecsLog) func(string) bool {
	return func(taskID string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cursor := ""
		for range 100 { // pages; bounded
			res, err := drv.TaskList(ctx, ebbdriver.TaskListParams{Queue: queue, State: ebbtype.StateRunning, Limit: 500, Cursor: cursor})
			if err != nil {
				errs.logf("BusyAtStop(%s): TaskList: %v (counted busy)", taskID, err)
				return true
			}
			for _, r := range res.Tasks {
				if r.WorkerID == taskID {
					return true
				}
			}
			if res.Cursor == "" {
				return false
			}
			cursor = res.Cursor
		}
		return true
	}
}

// newECSFake starts a fake ECS with one service at desired count 0 whose
// tasks run command; it is closed (every task stopped) when the test ends.
func newECSFake(t *testing.T, service string, command []string, seed uint64, log *ecsLog, busy func(string) bool) *ecsfake.Fake {
	t.Helper()
	return startECSFake(t, ecsfake.ServiceConfig{
		Name: service, Command: command,
		Env:    []string{"GORACE=atexit_sleep_ms=0"},
		LogDir: t.TempDir(), StopTimeout: 5 * time.Second,
	}, seed, log, busy)
}

// startECSFake starts a fake ECS with svc (in the test cluster) and closes
// it when the test ends, printing its log if the test failed.
func startECSFake(t *testing.T, svc ecsfake.ServiceConfig, seed uint64, log *ecsLog, busy func(string) bool) *ecsfake.Fake {
	t.Helper()
	svc.Cluster = ecsTestCluster
	f, err := ecsfake.New(ecsfake.Config{
		Services:   []ecsfake.ServiceConfig{svc},
		BusyAtStop: busy,
		Seed:       seed,
		Logf:       log.logf,
	})
	if err != nil {
		t.Fatalf("ecsfake.New: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("ecsfake Close: %v", err)
		}
		if t.Failed() {
			t.Logf("--- fake ECS log, last 200 lines ---\n%s", log.tail(200))
		}
	})
	return f
}

// writeECSConfig writes an `ebb server` config whose one pool (the last of
// c.pools) is an ecs pool scaling service on the fake.
func writeECSConfig(t *testing.T, c serverConfig, f *ecsfake.Fake, service string) string {
	t.Helper()
	y := c.yaml() + fmt.Sprintf("    target: ecs\n    ecs:\n      cluster: %q\n      service: %q\n      region: %q\n      endpoint: %q\n",
		ecsTestCluster, service, ecsTestRegion, f.URL())
	path := filepath.Join(t.TempDir(), "ebb.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	return path
}

// startECSServer runs `ebb server` with static AWS credentials in its
// environment (the SDK's default chain finds them; nothing reaches AWS: the
// config's endpoint is the fake).
func startECSServer(t *testing.T, name, cfgPath string, port int) *ebbServer {
	t.Helper()
	env := []string{"AWS_ACCESS_KEY_ID=AKID", "AWS_SECRET_ACCESS_KEY=SECRET", "AWS_REGION=" + ecsTestRegion,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
	p := startEbbWith(t, "", name, env, "server", "--config", cfgPath)
	return &ebbServer{proc: p, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
}

// startECSPoolServer runs `ebb server` (process name) whose one pool, pc, is
// an ecs pool scaling service on the fake, with a 3 s leader TTL renewed
// every second and reconcile as its reconcile interval, and waits until it
// leads.
func startECSPoolServer(t *testing.T, b *broker, f *ecsfake.Fake, service, name, reconcile string, pc poolConfig) *ebbServer {
	t.Helper()
	port := freePort(t)
	cfg := writeECSConfig(t, serverConfig{
		broker: b.url, listen: fmt.Sprintf("127.0.0.1:%d", port),
		leaderTTL: "3s", leaderRenew: "1s", reconcile: reconcile,
		pools: []poolConfig{pc},
	}, f, service)
	s := startECSServer(t, name, cfg, port)
	s.waitLeading(t, 20*time.Second)
	return s
}

// checkECSStops checks every stop the fake recorded: each a scale-in (or,
// with shutdown allowed, Close's) of an unprotected task whose worker held
// no task, which exited by itself on SIGTERM.
func checkECSStops(t *testing.T, events []ecsfake.Event) (scaleIns int) {
	t.Helper()
	for _, e := range events {
		switch e.Reason {
		case ecsfake.StopScaleIn:
			scaleIns++
			if e.Protected || e.ProtectionIgnored || e.Busy || !e.BusyKnown {
				t.Errorf("ECS stopped task %s at %s: protected %t, protection ignored %t, busy %t (known %t); want an unprotected idle (drained) task",
					e.TaskID, e.Time.Format(time.StampMilli), e.Protected, e.ProtectionIgnored, e.Busy, e.BusyKnown)
			}
			if !e.ExitedAt.IsZero() && (e.Killed || e.ExitCode != 0) {
				t.Errorf("task %s: scale-in stop ended with %q (killed %t), want exit 0 on SIGTERM", e.TaskID, e.ExitStatus, e.Killed)
			}
		default:
			t.Errorf("task %s stopped with reason %s (%s), want only scale-in stops: %+v", e.TaskID, e.Reason, e.ExitStatus, e)
		}
	}
	return scaleIns
}

// waitECSAtZero waits until the fake's service has desired count 0 and no
// task wanted running or still running, and every task's process is gone.
func waitECSAtZero(t *testing.T, f *ecsfake.Fake, service string, timeout time.Duration, watch ...*proc) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, timeout, "ECS service "+service+" back at zero", func() (bool, string) {
		d, active, running := f.DesiredCount(service), len(f.ActiveTasks(service)), f.RunningCount(service)
		if d != 0 || active != 0 || running != 0 {
			return false, fmt.Sprintf("desired %d, %d active tasks, %d running", d, active, running)
		}
		for _, tk := range f.Tasks(service) {
			if tk.LastStatus != ecsfake.StatusStopped {
				return false, fmt.Sprintf("task %s is %s", tk.ID, tk.LastStatus)
			}
			if tk.PID != 0 && !procGone(tk.PID) {
				return false, fmt.Sprintf("task %s's process %d still exists", tk.ID, tk.PID)
			}
		}
		at = time.Now()
		return true, ""
	}, watch...)
	return at
}
