package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serverRoutes are every route of the API; all but /healthz need the token
// when the server listens beyond loopback.
var serverRoutes = []string{
	"/readyz",
	"/metrics",
	"/api/v1/queues",
	"/api/v1/pools",
	"/api/v1/workers",
	"/api/v1/scaling",
	"/api/v1/leader",
}

// TestServerAPIAuth runs `ebb server` listening on every interface with a
// token and checks, through 127.0.0.1, that every route but /healthz
// refuses requests without the token or with a wrong one and serves them
// with the right one; and that a non-loopback listen address without a
// token is refused at startup with exit code 2.
func TestServerAPIAuth(t *testing.T) {
	t.Parallel()
	t.Run("token_required", func(t *testing.T) {
		t.Parallel()
		testServerToken(t)
	})
	t.Run("no_token_refused", func(t *testing.T) {
		t.Parallel()
		testServerNoToken(t)
	})
}

func testServerToken(t *testing.T) {
	const token = "e2e-token-0123456789abcdef"
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeConfig(t, serverConfig{
		broker: "sqlite:" + filepath.Join(dir, "ebb.db"),
		listen: fmt.Sprintf("0.0.0.0:%d", port),
		token:  token,
		pools:  []poolConfig{{name: "api", min: 0, max: 1, concurrency: 1, logDir: filepath.Join(dir, "workers")}},
	})
	s := startServer(t, "server-api", cfg, port, token)

	waitFor(t, 20*time.Second, "/healthz to answer 200 without a token", func() (bool, string) {
		code, _, body, err := httpGet(s.base+"/healthz", "")
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	}, s.proc)
	// /readyz answers 503 until the server is up: wait for it with the token
	// so that the checks below see a ready server.
	waitFor(t, 20*time.Second, "/readyz to answer 200 with the token", func() (bool, string) {
		code, _, body, err := httpGet(s.base+"/readyz", "Bearer "+token)
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	}, s.proc)

	wrong := []struct{ name, header string }{
		{"no Authorization header", ""},
		{"wrong token", "Bearer wrong-token-0123456789abcdef"},
		{"token prefix", "Bearer " + token[:len(token)-1]},
		{"token without Bearer", token},
		{"Basic scheme", "Basic " + token},
	}
	for _, route := range append([]string{"/healthz"}, serverRoutes...) {
		for _, w := range wrong {
			code, hdr, body, err := httpGet(s.base+route, w.header)
			switch {
			case err != nil:
				t.Errorf("GET %s with %s: %v", route, w.name, err)
			case route == "/healthz":
				if code != http.StatusOK {
					t.Errorf("GET /healthz with %s: %d %s, want 200: health checks need no token", w.name, code, body)
				}
			case code != http.StatusUnauthorized:
				t.Errorf("GET %s with %s: %d, want 401; body: %.200s", route, w.name, code, body)
			case !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer"):
				t.Errorf("GET %s with %s: 401 without a WWW-Authenticate: Bearer header (got %q)", route, w.name, hdr.Get("WWW-Authenticate"))
			case strings.Contains(string(body), token):
				t.Errorf("GET %s with %s: the 401 body contains the token: %s", route, w.name, body)
			}
		}
		code, _, body, err := httpGet(s.base+route, "Bearer "+token)
		if err != nil || code != http.StatusOK {
			t.Errorf("GET %s with the right token: %d %v, want 200; body: %.300s", route, code, err, body)
		}
	}
	s.stop(30 * time.Second)
}

func testServerNoToken(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	base := serverConfig{
		broker: "sqlite:" + filepath.Join(dir, "ebb.db"),
		pools:  []poolConfig{{name: "api", min: 0, max: 1, concurrency: 1, logDir: filepath.Join(dir, "workers")}},
	}
	open := base
	open.listen = fmt.Sprintf("0.0.0.0:%d", port)
	loopback := base
	loopback.listen = fmt.Sprintf("127.0.0.1:%d", port)
	cases := []struct {
		name string
		args []string
	}{
		{"listen 0.0.0.0 in the config", []string{"server", "--config", writeConfig(t, open)}},
		{"--listen 0.0.0.0 over a loopback config", []string{"server", "--config", writeConfig(t, loopback), "--listen", open.listen}},
		{"--listen :port (every interface)", []string{"server", "--config", writeConfig(t, loopback), "--listen", fmt.Sprintf(":%d", port)}},
	}
	for _, c := range cases {
		r := runEbb(t, dir, c.args...)
		if r.code != 2 {
			t.Errorf("%s, no token: `ebb %s` exited %d, want 2\nstdout:\n%s\nstderr:\n%s", c.name, strings.Join(c.args, " "), r.code, r.stdout, r.stderr)
			continue
		}
		if !strings.Contains(r.stderr, "server.token") {
			t.Errorf("%s, no token: exit 2 but stderr does not name server.token:\n%s", c.name, r.stderr)
		}
	}
}
