package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDashboardInBrowser drives the dashboard of a running `ebb up` in
// headless Chromium (e2e/browser/dashboard.mjs): the overview updating live
// as tasks arrive and a worker starts, the pool page, task search and a task
// page, retrying a dead task, pausing a schedule, inert markup in args, and
// every page on a phone-sized screen. scripts/test installs Chromium and
// playwright-core; without them this test fails and says so.
//
// EBB_SCREENSHOT_DIR=docs/img makes it write the README's screenshots.
func TestDashboardInBrowser(t *testing.T) {
	node, chromium, browserDir := browserTools(t)
	shots := os.Getenv("EBB_SCREENSHOT_DIR")
	var err error
	if shots != "" {
		if shots, err = filepath.Abs(shots); err != nil {
			t.Fatal(err)
		}
	}
	run := func(t *testing.T, name, base, token string, server *proc) {
		t.Helper()
		waitFor(t, 30*time.Second, name+" to be ready", func() (bool, string) {
			code, _, body, err := httpGet(base+"/readyz", bearer(token))
			return err == nil && code == 200, fmt.Sprint(code, string(body), err)
		}, server)
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, filepath.Join(browserDir, "dashboard.mjs"))
		cmd.Dir = browserDir
		cmd.Env = append(os.Environ(), "BASE_URL="+base, "CHROMIUM="+chromium, "TOKEN="+token)
		if shots != "" && name == "sqlite" {
			cmd.Env = append(cmd.Env, "SCREENSHOT_DIR="+shots)
		}
		out, err := cmd.CombinedOutput()
		t.Logf("browser run on %s:\n%s", name, out)
		if err != nil {
			t.Fatalf("browser steps failed on %s: %v", name, err)
		}
		if !strings.Contains(string(out), "all dashboard steps passed") {
			t.Fatalf("browser run ended without passing every step")
		}
		if err := checkAlive(server); err != nil {
			t.Fatal(err)
		}
	}
	eachBroker(t, func(t *testing.T, b *broker) {
		port := freePort(t)
		up := startEbb(t, t.TempDir(), "up", "up", "--broker", b.url, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
			"--max", "2", "--concurrency", "8", "--idle-before-zero", "3s")
		run(t, b.kind, fmt.Sprintf("http://127.0.0.1:%d", port), "", up)
	})
	// With a token, the browser signs in first; the API calls carry it.
	t.Run("token", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, "sqlite")
		port := freePort(t)
		const token = "browser-test-token-0123456789abcdef"
		cfg := writeConfig(t, serverConfig{broker: b.url, listen: fmt.Sprintf("127.0.0.1:%d", port), token: token,
			pools: []poolConfig{{name: "default", max: 2, concurrency: 8, idleBeforeZero: "3s", scaleDownDelay: "3s"}}})
		srv := startServer(t, "server", cfg, port, token)
		run(t, "sqlite with a token", srv.base, token, srv.proc)
	})
}

// browserTools finds node, Chromium and playwright-core, failing (never
// skipping) with what to run when one is missing.
func browserTools(t *testing.T) (node, chromium, browserDir string) {
	t.Helper()
	chromium = os.Getenv("EBB_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	browserDir, err := filepath.Abs("browser")
	if err != nil {
		t.Fatal(err)
	}
	node, err = exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: run `bash scripts/test`, which installs what the browser tests need")
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("no Chromium at %s (set EBB_CHROMIUM): run `bash scripts/test`, which installs Debian's chromium", chromium)
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed in %s: run `bash scripts/test` (or npm ci --prefix e2e/browser)", browserDir)
	}
	return node, chromium, browserDir
}

func bearer(token string) string {
	if token == "" {
		return ""
	}
	return "Bearer " + token
}
