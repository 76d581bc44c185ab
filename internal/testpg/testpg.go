// Package testpg gives tests a PostgreSQL to talk to: the shared server named
// by EBB_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test) with a
// schema of their own per test, so tests run in parallel without seeing each
// other's tables, and private postgres servers on free ports for tests that
// stop or restart the database. It never skips: a test that needs Postgres
// and cannot reach it fails with what to do.
package testpg

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// URLDefault is the shared test server when EBB_TEST_PG_URL is unset.
const URLDefault = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// URL returns the shared test server's URL.
func URL() string {
	if u := os.Getenv("EBB_TEST_PG_URL"); u != "" {
		return u
	}
	return URLDefault
}

var seq atomic.Int64

// Schema returns the name of a schema no other test uses (not yet created:
// the driver's migration creates it) and drops it, with everything in it,
// when t ends.
func Schema(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("ebbtest_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, seq.Add(1))
	t.Cleanup(func() {
		// Generous: under a loaded machine a hundred parallel tests drop
		// their schemas at once, each taking catalog locks.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, URL())
		if err != nil {
			t.Errorf("testpg: dropping schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("testpg: dropping schema %s: %v", name, err)
		}
	})
	return name
}

// SchemaURL returns URL() with a fresh Schema in its schema parameter.
func SchemaURL(t testing.TB) string {
	t.Helper()
	return WithSchema(t, URL(), Schema(t))
}

// WithSchema sets the schema parameter of a postgres URL.
func WithSchema(t testing.TB, raw, schema string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("testpg: bad URL %q: %v", raw, err)
	}
	q := u.Query()
	q.Set("schema", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Check fails t unless the shared server answers.
func Check(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, URL())
	if err != nil {
		t.Fatalf("testpg: cannot reach PostgreSQL at %s: %v (run the tests through scripts/test, which starts it, or set EBB_TEST_PG_URL)",
			redact(URL()), err)
	}
	conn.Close(ctx)
}

func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return strings.SplitN(raw, "@", 2)[0]
}

// Password is the superuser password of private servers.
const Password = "s3cret"

// Server is a private PostgreSQL server on a free loopback port, with
// password authentication, its data in a temporary directory. Tests that
// stop, restart or misconfigure the database use one, so the shared server
// is never disturbed.
type Server struct {
	Port int
	dir  string
	cmd  *exec.Cmd
	run  func(*exec.Cmd) // sets credentials when running as root
}

// pgBin finds the PostgreSQL server binaries.
func pgBin(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) == 0 {
		t.Fatalf("testpg: %s not found on PATH or in /usr/lib/postgresql/*/bin; install postgresql (scripts/test does)", name)
	}
	sort.Strings(matches)
	return matches[len(matches)-1]
}

// StartServer initialises and starts a private server, stopped when t ends.
func StartServer(t testing.TB) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "ebb-testpg-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{dir: dir, run: func(*exec.Cmd) {}}
	t.Cleanup(func() { s.Stop(t); os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		// The server refuses to run as root: run it as the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("testpg: running as root and there is no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		s.run = func(c *exec.Cmd) {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		}
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(Password+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	initdb := exec.Command(pgBin(t, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres", "--pwfile", pw,
		"--auth", "scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions")
	s.run(initdb)
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("testpg: initdb: %v\n%s", err, out)
	}
	s.Port = freePort(t)
	s.Start(t)
	return s
}

// URL is the server's postgres database as the superuser.
func (s *Server) URL() string {
	return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", Password, s.Port)
}

// Start starts the (stopped) server on its port and waits until it
// accepts connections.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(pgBin(t, "postgres"), "-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+s.dir, "-c", "fsync=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB")
	log, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	s.run(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("testpg: starting postgres: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.URL())
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
			t.Fatalf("testpg: private server on port %d did not start: %v\n%s", s.Port, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server (a fast shutdown: sessions are disconnected) and
// waits for it to exit.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Activity describes what the shared server's sessions are doing (counts by
// state and wait, the longest-running statements), for a test that failed
// because the database stopped making progress to say why.
func Activity() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, URL())
	if err != nil {
		return "pg_stat_activity: " + err.Error()
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT coalesce(state, ''), coalesce(wait_event_type || ':' || wait_event, ''),
		count(*), max(extract(epoch FROM now() - query_start))::float8,
		left((array_agg(query ORDER BY query_start))[1], 120)
		FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
		GROUP BY 1, 2 ORDER BY 3 DESC`)
	if err != nil {
		return "pg_stat_activity: " + err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	b.WriteString("pg_stat_activity (state, wait, sessions, longest s, oldest statement):")
	for rows.Next() {
		var state, wait, query string
		var n int64
		var longest *float64
		if err := rows.Scan(&state, &wait, &n, &longest, &query); err != nil {
			return b.String() + " " + err.Error()
		}
		l := 0.0
		if longest != nil {
			l = *longest
		}
		fmt.Fprintf(&b, "\n  %s %s %d %.1f %s", state, wait, n, l, strings.Join(strings.Fields(query), " "))
	}
	return b.String()
}
