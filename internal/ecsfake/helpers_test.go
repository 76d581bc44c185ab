package ecsfake_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"go.uber.org/goleak"

	"github.com/ebbq/ebb/internal/ecsfake"
	"github.com/ebbq/ebb/internal/testwait"
)

// taskModeEnv makes the test binary act as a task's process instead of
// running the tests.
const taskModeEnv = "ECSFAKE_TEST_TASK"

const waitTimeout = 30 * time.Second

func TestMain(m *testing.M) {
	if mode := os.Getenv(taskModeEnv); mode != "" {
		os.Exit(runTask(mode))
	}
	goleak.VerifyTestMain(m)
}

// runTask is a task's process: it prints the platform's variables and
// "ready" once it handles signals, then waits. SIGTERM makes it exit 0
// (mode "serve") or is ignored (mode "stubborn"); SIGUSR1 makes it exit 3,
// a worker leaving by itself. It gives up after two minutes so that nothing
// outlives a broken test for long.
func runTask(mode string) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGUSR1)
	for _, k := range []string{"ECS_CONTAINER_METADATA_URI_V4", "ECS_AGENT_URI", "AWS_EXECUTION_ENV", "ECSFAKE_EXTRA", "AWS_PROFILE"} {
		if v, ok := os.LookupEnv(k); ok {
			fmt.Printf("env %s=%s\n", k, v)
		}
	}
	fmt.Println("ready")
	giveUp := time.After(2 * time.Minute)
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGUSR1 {
				fmt.Println("SIGUSR1")
				return 3
			}
			fmt.Println("SIGTERM")
			if mode != "stubborn" {
				return 0
			}
		case <-giveUp:
			return 4
		}
	}
}

// taskCommand is the Command of a service whose tasks run runTask.
func taskCommand(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe}
}

// serviceConfig is a service whose tasks run runTask in mode.
func serviceConfig(t *testing.T, cluster, name, mode string) ecsfake.ServiceConfig {
	return ecsfake.ServiceConfig{
		Cluster: cluster, Name: name,
		Command: taskCommand(t),
		// A race-enabled binary sleeps a second at exit unless told not to.
		Env:         []string{taskModeEnv + "=" + mode, "ECSFAKE_EXTRA=extra-" + name, "GORACE=atexit_sleep_ms=0"},
		LogDir:      filepath.Join(t.TempDir(), "logs"),
		StopTimeout: 2 * time.Second,
	}
}

// start starts a fake and closes it when the test ends.
func start(t *testing.T, cfg ecsfake.Config) *ecsfake.Fake {
	t.Helper()
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	f, err := ecsfake.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// fastRetries keeps the SDK's standard retryer (its classification of
// errors) with attempts as given and a millisecond between them.
func fastRetries(attempts int) func(*ecs.Options) {
	return func(o *ecs.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		})
	}
}

func newClient(f *ecsfake.Fake, optFns ...func(*ecs.Options)) *ecs.Client {
	return ecs.NewFromConfig(f.AWSConfig(), append([]func(*ecs.Options){fastRetries(3)}, optFns...)...)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Eventually(t, waitTimeout, what, func() (bool, error) { return cond(), nil })
}

// taskLog is what the task's process printed so far.
func taskLog(t *testing.T, sc ecsfake.ServiceConfig, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sc.LogDir, id+".log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// runningReady waits until the service runs n tasks whose processes handle
// signals, and returns them.
func runningReady(t *testing.T, f *ecsfake.Fake, sc ecsfake.ServiceConfig, n int) []ecsfake.Task {
	t.Helper()
	var tasks []ecsfake.Task
	eventually(t, fmt.Sprintf("%d ready tasks of %s", n, sc.Name), func() bool {
		tasks = tasks[:0]
		for _, task := range f.ActiveTasks(sc.Name) {
			if task.LastStatus == ecsfake.StatusRunning && strings.Contains(taskLog(t, sc, task.ID), "ready\n") {
				tasks = append(tasks, task)
			}
		}
		return len(tasks) == n && len(f.ActiveTasks(sc.Name)) == n
	})
	return tasks
}

// waitPasses waits until the scheduler completed n more passes.
func waitPasses(t *testing.T, f *ecsfake.Fake, n int) {
	t.Helper()
	target := f.Passes() + n
	eventually(t, fmt.Sprintf("%d scheduler passes", n), func() bool { return f.Passes() >= target })
}

// httpJSON sends a request and decodes the JSON answer into a generic map.
func httpJSON(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&out); err != nil {
		t.Fatalf("%s %s: %d %q: %v", method, url, resp.StatusCode, b, err)
	}
	return resp.StatusCode, out
}

// field walks a decoded JSON object along keys.
func field(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v is not an object (looking for %q)", v, k)
		}
		if v, ok = m[k]; !ok {
			t.Fatalf("no %q in %v", k, m)
		}
	}
	return v
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
