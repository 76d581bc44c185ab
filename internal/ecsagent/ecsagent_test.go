package ecsagent_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/ecsagent"
)

var _ ebb.ScaleInGuard = (*ecsagent.Client)(nil)

const taskARN = "arn:aws:ecs:eu-west-1:123456789012:task/prod-cluster/0123456789abcdef0123456789abcdef"

// fakeTask plays a task's metadata endpoint under /meta and its agent under
// /agent. answer, when set, replaces the agent's answer to a protection PUT.
type fakeTask struct {
	srv *httptest.Server

	mu     sync.Mutex
	bodies []string // the protection PUTs' bodies, in order
	answer func(w http.ResponseWriter, body map[string]any)
}

func newFakeTask(t *testing.T) *fakeTask {
	t.Helper()
	f := &fakeTask{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /meta/task", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"Cluster":"prod-cluster","TaskARN":"`+taskARN+`","Family":"ebb-worker","Revision":"7"}`)
	})
	mux.HandleFunc("PUT /agent/task-protection/v1/state", func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("protection PUT with Content-Type %q, want application/json", ct)
		}
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("protection PUT body %q is not JSON: %v", raw, err)
		}
		f.mu.Lock()
		f.bodies = append(f.bodies, string(raw))
		answer := f.answer
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if answer != nil {
			answer(w, body)
			return
		}
		enabled, _ := body["ProtectionEnabled"].(bool)
		p := map[string]any{"ProtectionEnabled": enabled, "TaskArn": taskARN}
		if enabled {
			p["ExpirationDate"] = time.Now().Add(10 * time.Minute).UTC().Format(time.RFC3339)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"protection": p})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTask) setAnswer(a func(w http.ResponseWriter, body map[string]any)) {
	f.mu.Lock()
	f.answer = a
	f.mu.Unlock()
}

func (f *fakeTask) puts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies...)
}

func (f *fakeTask) client(t *testing.T, cfg ecsagent.Config) *ecsagent.Client {
	t.Helper()
	cfg.MetadataURI, cfg.AgentURI = f.srv.URL+"/meta", f.srv.URL+"/agent"
	c, err := ecsagent.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestTaskARNAndID(t *testing.T) {
	t.Parallel()
	f := newFakeTask(t)
	c := f.client(t, ecsagent.Config{})
	arn, err := c.TaskARN(t.Context())
	if err != nil || arn != taskARN {
		t.Fatalf("TaskARN = %q, %v; want %q", arn, err, taskARN)
	}
	for in, want := range map[string]string{
		taskARN: "0123456789abcdef0123456789abcdef",
		"arn:aws:ecs:us-east-1:123456789012:task/1dc5c17a-422b-4dc4-b493-371970c6c4d6": "1dc5c17a-422b-4dc4-b493-371970c6c4d6", // the old format
	} {
		if got, err := ecsagent.TaskID(in); err != nil || got != want {
			t.Errorf("TaskID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0123456789abcdef", "arn:aws:ecs:eu-west-1:123456789012:service/c/s", "arn:aws:ecs:eu-west-1:1:task/c/"} {
		if got, err := ecsagent.TaskID(bad); err == nil {
			t.Errorf("TaskID(%q) = %q, want an error", bad, got)
		}
	}
}

func TestTaskARNBadMetadata(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing/task" {
			http.Error(w, "no such task", http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, `{"Cluster":"c"}`)
	}))
	defer srv.Close()
	for path, want := range map[string]string{"/missing": "HTTP 404", "/noarn": "no TaskARN"} {
		c, err := ecsagent.New(ecsagent.Config{MetadataURI: srv.URL + path, AgentURI: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		if arn, err := c.TaskARN(t.Context()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("TaskARN from %s = %q, %v; want an error saying %q", path, arn, err, want)
		}
	}
}

func TestProtectAndRelease(t *testing.T) {
	t.Parallel()
	f := newFakeTask(t)
	c := f.client(t, ecsagent.Config{})
	if err := c.Protect(t.Context()); err != nil {
		t.Fatalf("Protect: %v", err)
	}
	if err := c.Release(t.Context()); err != nil {
		t.Fatalf("Release: %v", err)
	}
	want := []string{`{"ProtectionEnabled":true,"ExpiresInMinutes":10}`, `{"ProtectionEnabled":false}`}
	if got := f.puts(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("protection PUTs = %q, want %q", got, want)
	}
	if c.RenewEvery() != ecsagent.RenewEveryDefault || c.ExpiresInMinutes() != 10 {
		t.Errorf("defaults: renew every %s, expiry %dm; want %s and 10m", c.RenewEvery(), c.ExpiresInMinutes(), ecsagent.RenewEveryDefault)
	}
}

func TestExpiryRoundsUpToMinutes(t *testing.T) {
	t.Parallel()
	f := newFakeTask(t)
	c := f.client(t, ecsagent.Config{Expiry: 90 * time.Second, RenewEvery: 30 * time.Second})
	if err := c.Protect(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := f.puts(); len(got) != 1 || got[0] != `{"ProtectionEnabled":true,"ExpiresInMinutes":2}` {
		t.Errorf("protection PUT = %q, want 2 minutes", got)
	}
}

func TestProtectRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   []string // in the error's text
		code   string   // Error.Code
		reason string   // Error.Reason
	}{
		{name: "Failure", status: http.StatusOK,
			body: `{"failure":{"Arn":"` + taskARN + `","Reason":"TASK_NOT_VALID","Detail":"the task is not part of a service"}}`,
			want: []string{"enable task scale-in protection", "failure: TASK_NOT_VALID", "not part of a service"}, reason: "TASK_NOT_VALID (the task is not part of a service)"},
		{name: "Throttled", status: http.StatusBadRequest,
			body: `{"error":{"Arn":"` + taskARN + `","Code":"ThrottlingException","Message":"Rate exceeded"}}`,
			want: []string{"ThrottlingException: Rate exceeded", "HTTP 400"}, code: "ThrottlingException"},
		{name: "AccessDenied", status: http.StatusBadRequest,
			body: `{"error":{"Arn":"` + taskARN + `","Code":"AccessDeniedException","Message":"not authorized to perform ecs:UpdateTaskProtection"}}`,
			want: []string{"AccessDeniedException", "ecs:UpdateTaskProtection"}, code: "AccessDeniedException"},
		{name: "ServerError", status: http.StatusInternalServerError, body: `<html>oops</html>`,
			want: []string{"unexpected answer", "<html>oops</html>", "HTTP 500"}},
		{name: "NotEnabled", status: http.StatusOK, body: `{"protection":{"ProtectionEnabled":false,"TaskArn":"` + taskARN + `"}}`,
			want: []string{"ProtectionEnabled=false"}},
		{name: "Empty", status: http.StatusOK, body: ``, want: []string{"unexpected answer", "(empty)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeTask(t)
			f.setAnswer(func(w http.ResponseWriter, _ map[string]any) {
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			err := f.client(t, ecsagent.Config{}).Protect(t.Context())
			if err == nil {
				t.Fatal("Protect succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			var ae *ecsagent.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an *ecsagent.Error", err)
			}
			if ae.Code != tc.code || ae.Reason != tc.reason || ae.Status != tc.status || !ae.Enable {
				t.Errorf("Error = %+v, want code %q, reason %q, status %d, enable", ae, tc.code, tc.reason, tc.status)
			}
		})
	}
}

func TestReleaseError(t *testing.T) {
	t.Parallel()
	f := newFakeTask(t)
	f.setAnswer(func(w http.ResponseWriter, _ map[string]any) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"Code":"ThrottlingException","Message":"Rate exceeded"}}`)
	})
	err := f.client(t, ecsagent.Config{}).Release(t.Context())
	if err == nil || !strings.Contains(err.Error(), "release task scale-in protection: ThrottlingException") {
		t.Errorf("Release = %v, want a throttling error naming the release", err)
	}
}

// TestCallTimeout: an agent that accepts the call and never answers must not
// hold the worker's guard loop for longer than the call's bound, even under a
// context without a deadline.
func TestCallTimeout(t *testing.T) {
	t.Parallel()
	f := newFakeTask(t)
	unblock := make(chan struct{})
	defer close(unblock)
	f.setAnswer(func(w http.ResponseWriter, _ map[string]any) { <-unblock })
	start := time.Now()
	err := f.client(t, ecsagent.Config{}).Protect(context.Background())
	took := time.Since(start)
	if err == nil {
		t.Fatal("Protect against a hung agent succeeded")
	}
	if !strings.Contains(err.Error(), "enable task scale-in protection") {
		t.Errorf("error %q does not say what failed", err)
	}
	if took < 4*time.Second || took > 8*time.Second {
		t.Errorf("Protect gave up after %s, want about 5s", took)
	}
	// And a caller's shorter deadline wins.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := f.client(t, ecsagent.Config{}).Release(ctx); err == nil {
		t.Fatal("Release against a hung agent succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Release under a 50ms deadline took %s", took)
	}
}

func TestFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if _, _, ok := ecsagent.FromEnv(getenv); ok {
		t.Error("FromEnv with neither variable reports ECS")
	}
	env[ecsagent.EnvMetadataURI] = "http://169.254.170.2/v4/abc"
	if _, _, ok := ecsagent.FromEnv(getenv); ok {
		t.Error("FromEnv with only the metadata URI reports ECS")
	}
	env[ecsagent.EnvAgentURI] = "http://169.254.170.2/api/abc"
	if m, a, ok := ecsagent.FromEnv(getenv); !ok || m != env[ecsagent.EnvMetadataURI] || a != env[ecsagent.EnvAgentURI] {
		t.Errorf("FromEnv = %q, %q, %t; want both URIs", m, a, ok)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	ok := ecsagent.Config{MetadataURI: "http://127.0.0.1:1/m", AgentURI: "http://127.0.0.1:1/a"}
	for name, tc := range map[string]struct {
		mod  func(*ecsagent.Config)
		want string
	}{
		"NoAgent":           {func(c *ecsagent.Config) { c.AgentURI = "" }, "need both endpoints"},
		"ExpiryTooLong":     {func(c *ecsagent.Config) { c.Expiry = 49 * time.Hour }, "1 minute to 48h"},
		"ExpiryNegative":    {func(c *ecsagent.Config) { c.Expiry = -time.Minute }, "1 minute to 48h"},
		"RenewNotShorter":   {func(c *ecsagent.Config) { c.Expiry, c.RenewEvery = 5*time.Minute, 5*time.Minute }, "shorter than the expiry"},
		"RenewPastRounding": {func(c *ecsagent.Config) { c.Expiry, c.RenewEvery = 30*time.Second, 2*time.Minute }, "shorter than the expiry, 1m"},
		"RenewNegative":     {func(c *ecsagent.Config) { c.RenewEvery = -time.Second }, "must be positive"},
	} {
		c := ok
		tc.mod(&c)
		if _, err := ecsagent.New(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error saying %q", name, err, tc.want)
		}
	}
}
