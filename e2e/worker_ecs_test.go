package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

const (
	ecsTaskID  = "4d1b2c3a5e6f708192a3b4c5d6e7f809"
	ecsTaskARN = "arn:aws:ecs:eu-west-1:123456789012:task/ebb-cluster/" + ecsTaskID
)

// fakeECSTask plays, over HTTP on 127.0.0.1, the two endpoints the ECS agent
// serves inside a task: task metadata v4 and task scale-in protection. The
// first failFirst protection PUTs are refused as throttled.
type fakeECSTask struct {
	srv       *httptest.Server
	failFirst int

	mu   sync.Mutex
	puts []ecsPut
}

type ecsPut struct {
	at   time.Time
	body string
	ok   bool
}

func newFakeECSTask(t *testing.T, failFirst int) *fakeECSTask {
	t.Helper()
	f := &fakeECSTask{failFirst: failFirst}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v4/meta/task", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"Cluster":"ebb-cluster","TaskARN":%q,"Family":"ebb-worker","Revision":"3","DesiredStatus":"RUNNING"}`, ecsTaskARN)
	})
	mux.HandleFunc("PUT /api/agent/task-protection/v1/state", func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var req struct {
			ProtectionEnabled bool
			ExpiresInMinutes  int
		}
		_ = json.Unmarshal(raw, &req)
		f.mu.Lock()
		ok := len(f.puts) >= f.failFirst
		f.puts = append(f.puts, ecsPut{at: time.Now(), body: string(raw), ok: ok})
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"error":{"Arn":%q,"Code":"ThrottlingException","Message":"Rate exceeded"}}`, ecsTaskARN)
			return
		}
		p := map[string]any{"ProtectionEnabled": req.ProtectionEnabled, "TaskArn": ecsTaskARN}
		if req.ProtectionEnabled {
			p["ExpirationDate"] = time.Now().Add(time.Duration(req.ExpiresInMinutes) * time.Minute).UTC().Format(time.RFC3339)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"protection": p})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeECSTask) env() []string {
	return []string{"ECS_CONTAINER_METADATA_URI_V4=" + f.srv.URL + "/v4/meta", "ECS_AGENT_URI=" + f.srv.URL + "/api/agent"}
}

func (f *fakeECSTask) calls() []ecsPut {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ecsPut(nil), f.puts...)
}

func (f *fakeECSTask) describe() string {
	var s []string
	for _, p := range f.calls() {
		s = append(s, fmt.Sprintf("%s ok=%t", p.body, p.ok))
	}
	return strings.Join(s, "; ")
}

const (
	protectBody = `{"ProtectionEnabled":true,"ExpiresInMinutes":1}`
	releaseBody = `{"ProtectionEnabled":false}`
)

// TestWorkerOnECS runs `ebb worker` in a fake ECS task: it names itself by
// the task id, takes no task before its scale-in protection is on (the agent
// refuses the first call), renews it, and on a drain request finishes its
// task, releases the protection and stays up, drained, until SIGTERM.
func TestWorkerOnECS(t *testing.T) {
	t.Parallel()
	eachBroker(t, func(t *testing.T, b *broker) {
		agent := newFakeECSTask(t, 1)
		ids := b.enqueueSleep(t, 1, 1500) // ready before the worker starts
		w := startEbbWith(t, "", "ecs-worker", agent.env(), "worker", "--broker", b.url, "--heartbeat", "500ms", "--lease", "5s",
			"--protection-expiry", "1m", "--protection-renew", "1s")

		var entry *ebbtype.WorkerInfo
		waitFor(t, 20*time.Second, "the worker registered under its task id", func() (bool, string) {
			entry = b.worker(t, ecsTaskID)
			return entry != nil, fmt.Sprintf("%+v", b.workers(t))
		}, w)
		if entry.PID != w.pid() {
			t.Errorf("entry %+v, want pid %d", entry, w.pid())
		}
		waitFor(t, 20*time.Second, "the task running", func() (bool, string) {
			r := b.task(t, ids[0])
			return r.State == ebbtype.StateRunning, describe(r)
		}, w)
		puts := agent.calls()
		if len(puts) < 2 || puts[0].ok || !puts[1].ok || puts[0].body != protectBody || puts[1].body != protectBody {
			t.Fatalf("protection calls before the task ran: %s; want a refused Protect, then a granted one", agent.describe())
		}
		if started := b.task(t, ids[0]).StartedAt; started.Before(puts[1].at) {
			t.Errorf("task started at %s, before protection was granted at %s", started, puts[1].at)
		}
		waitFor(t, 20*time.Second, "a renewal", func() (bool, string) {
			n := 0
			for _, p := range agent.calls() {
				if p.ok && p.body == protectBody {
					n++
				}
			}
			return n >= 2, agent.describe()
		}, w)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.client.WorkerDrain(ctx, ecsTaskID); err != nil {
			t.Fatalf("WorkerDrain: %v", err)
		}
		waitFor(t, 20*time.Second, "the worker drained", func() (bool, string) {
			e := b.worker(t, ecsTaskID)
			return e != nil && e.Drained, fmt.Sprintf("%+v", e)
		}, w)
		if r := b.task(t, ids[0]); r.State != ebbtype.StateSucceeded || r.Attempt != 1 {
			t.Errorf("task after the drain: %s; want it finished in its first attempt", describe(r))
		}
		puts = agent.calls()
		if last := puts[len(puts)-1]; last.body != releaseBody || !last.ok {
			t.Fatalf("protection calls: %s; want the release last", agent.describe())
		}
		released := len(puts)

		// Held: up, heartbeating, drained, not protecting, for more than a
		// renewal interval.
		since := time.Now()
		waitFor(t, 20*time.Second, "heartbeats while held", func() (bool, string) {
			e := b.worker(t, ecsTaskID)
			return e != nil && e.HeartbeatAt.After(since.Add(2*time.Second)), fmt.Sprintf("%+v", e)
		}, w)
		if e := b.worker(t, ecsTaskID); e == nil || !e.Draining || !e.Drained || e.Busy != 0 {
			t.Errorf("held entry %+v, want draining, drained, busy 0", e)
		}
		if n := len(agent.calls()); n != released {
			t.Errorf("protection calls after the release: %s", agent.describe())
		}

		w.stop(20 * time.Second)
		if e := b.worker(t, ecsTaskID); e != nil {
			t.Errorf("entry after exit: %+v, want deregistered", e)
		}
		out := w.output()
		for _, want := range []string{"platform ecs (detected from ECS_CONTAINER_METADATA_URI_V4 and ECS_AGENT_URI)", "worker=" + ecsTaskID,
			"task=" + ecsTaskARN, "ThrottlingException: Rate exceeded", "shutdown requested while drained"} {
			if !strings.Contains(out, want) {
				t.Errorf("worker output does not say %q", want)
			}
		}
	})
}

// TestWorkerPlatformFlag: --platform none ignores the ECS agent (and exits
// after a drain as before); --platform kubernetes holds after a drain but
// has no protection to manage.
func TestWorkerPlatformFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		platform string
		hold     bool
	}{{"none", false}, {"kubernetes", true}} {
		t.Run(tc.platform, func(t *testing.T) {
			t.Parallel()
			b := newBroker(t, "sqlite")
			agent := newFakeECSTask(t, 0)
			id := "platform-" + tc.platform
			w := startEbbWith(t, "", id, agent.env(), "worker", "--broker", b.url, "--id", id, "--platform", tc.platform, "--heartbeat", "500ms", "--lease", "5s")
			waitFor(t, 20*time.Second, "the worker registered", func() (bool, string) {
				return b.worker(t, id) != nil, fmt.Sprintf("%+v", b.workers(t))
			}, w)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.client.WorkerDrain(ctx, id); err != nil {
				t.Fatalf("WorkerDrain: %v", err)
			}
			if tc.hold {
				waitFor(t, 20*time.Second, "the worker drained", func() (bool, string) {
					e := b.worker(t, id)
					return e != nil && e.Drained, fmt.Sprintf("%+v", e)
				}, w)
				w.stop(20 * time.Second)
			} else if st := w.waitExit(20 * time.Second); st.ExitCode() != 0 {
				t.Fatalf("worker exited with %v after a drain, want 0", st)
			}
			if calls := agent.calls(); len(calls) != 0 {
				t.Errorf("--platform %s called the ECS agent: %s", tc.platform, agent.describe())
			}
			if out := w.output(); !strings.Contains(out, "platform "+tc.platform+" (--platform "+tc.platform) {
				t.Errorf("worker output does not name the platform:\n%s", out)
			}
		})
	}
}
