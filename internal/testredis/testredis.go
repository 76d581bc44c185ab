// Package testredis gives tests a Redis to talk to: the shared server named by
// EBB_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) for ordinary tests,
// and private redis-server processes on free ports for tests that kill or
// restart Redis. It never skips: a test that needs Redis and cannot reach it
// fails with what to do.
package testredis

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// URLDefault is the shared test server when EBB_TEST_REDIS_URL is unset.
const URLDefault = "redis://127.0.0.1:6379/0"

// URL returns the shared test server's URL.
func URL() string {
	if u := os.Getenv("EBB_TEST_REDIS_URL"); u != "" {
		return u
	}
	return URLDefault
}

// Client returns a client of the shared test server, closed when t ends.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(URL())
	if err != nil {
		t.Fatalf("testredis: EBB_TEST_REDIS_URL %q: %v", URL(), err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("testredis: cannot reach Redis at %s: %v (run the tests through scripts/test, which starts one, or set EBB_TEST_REDIS_URL)", URL(), err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var prefixSeq atomic.Int64

// Prefix returns a key prefix no other test in this run uses, so parallel
// tests share one server without seeing each other's keys. The prefix's keys
// are deleted when t ends.
func Prefix(t testing.TB) string {
	t.Helper()
	p := fmt.Sprintf("ebbtest:%d:%d:%d", os.Getpid(), time.Now().UnixNano()%1e9, prefixSeq.Add(1))
	t.Cleanup(func() {
		c := redis.NewClient(mustParse(t))
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, p+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
			if len(keys) == 500 {
				c.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			c.Unlink(ctx, keys...)
		}
	})
	return p
}

func mustParse(t testing.TB) *redis.Options {
	opts, err := redis.ParseURL(URL())
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	return opts
}

// Server is a private redis-server process.
type Server struct {
	t    testing.TB
	Port int
	dir  string
	args []string // extra redis-server arguments
	cmd  *exec.Cmd
}

// Start starts a private redis-server on a free loopback port, with no
// persistence, stopped when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t)
}

// StartWith starts a private redis-server like Start, with extra
// redis-server arguments (later ones override Start's, e.g.
// "--appendonly", "yes", "--appendfsync", "always"). Restart keeps them and
// the data directory, so a server with persistence comes back with its data.
func StartWith(t testing.TB, args ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("testredis: redis-server is not installed (scripts/test installs it with apt-get): %v", err)
	}
	s := &Server{t: t, Port: freePort(t), dir: t.TempDir(), args: args}
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(s.Port) + "/0" }

// Kill stops the server with SIGKILL (if it runs) and waits for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// RestartSaved restarts the server the graceful way: SHUTDOWN SAVE writes
// its data to disk and exits, and the restarted server loads it again.
// It waits for the exit, however long the save takes.
func (s *Server) RestartSaved() {
	s.t.Helper()
	if s.cmd != nil {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.Port), time.Second)
		if err != nil {
			s.t.Fatalf("testredis: connect to send SHUTDOWN SAVE: %v", err)
		}
		_, _ = c.Write([]byte("SHUTDOWN SAVE\r\n"))
		_ = s.cmd.Wait()
		c.Close()
		s.cmd = nil
	}
	s.Restart()
}

// Restart (re)starts the server on the same port and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	cmd := exec.Command("redis-server",
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"))
	cmd.Args = append(cmd.Args, s.args...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testredis: start redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.Port), 200*time.Millisecond)
		if err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 16)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("testredis: redis-server on port %d did not answer within 10s; log:\n%s", s.Port, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testredis: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
