package brokerurl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb/internal/testredis"
	"github.com/ebbq/ebb/internal/testwait"
)

// closedURL is a redis:// URL with a password on a loopback port nothing
// listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return fmt.Sprintf("redis://ebb:s3cret@%s/0", addr)
}

func TestOpenFailsFastOnClosedPort(t *testing.T) {
	url := closedURL(t)
	start := time.Now()
	b, err := Open(t.Context(), url, nil)
	took := time.Since(start)
	if err == nil {
		b.Close()
		t.Fatalf("Open of %s succeeded, want an error: nothing listens there", url)
	}
	if took > time.Second {
		t.Errorf("Open of a closed port took %s, want well under a second (no hidden dial retries)", took)
	}
	if !strings.Contains(err.Error(), "cannot reach Redis") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open error %q: want it to say it cannot reach Redis, without the password", err)
	}
}

func TestOpenWaitGivesUpAfterMaxWait(t *testing.T) {
	url := closedURL(t)
	logs, logger := testwait.NewLog()
	const maxWait = 800 * time.Millisecond
	start := time.Now()
	b, err := OpenWait(t.Context(), url, maxWait, logger)
	took := time.Since(start)
	if err == nil {
		b.Close()
		t.Fatalf("OpenWait of %s succeeded, want an error", url)
	}
	if took < maxWait || took > maxWait+2*time.Second {
		t.Errorf("OpenWait gave up after %s, want just after maxWait %s", took, maxWait)
	}
	msg := err.Error()
	if !strings.Contains(msg, "still unreachable after 800ms") || !strings.Contains(msg, "cannot reach Redis") || strings.Contains(msg, "s3cret") {
		t.Errorf("final error %q: want how long it waited and why, without the password", msg)
	}
	// 250 ms, 500 ms, then the rest of the wait: three retries at least.
	warns := logs.Lines("level=WARN")
	if len(warns) < 3 {
		t.Fatalf("got %d warnings, want one per failed attempt (≥ 3):\n%s", len(warns), logs)
	}
	for i, w := range warns {
		for _, want := range []string{"broker=redis://ebb:xxxxx@", fmt.Sprintf("attempt=%d ", i+1), "next_delay=", "cannot reach Redis"} {
			if !strings.Contains(w, want) {
				t.Errorf("warning %d %q lacks %q", i+1, w, want)
			}
		}
		if strings.Contains(w, "s3cret") {
			t.Errorf("warning %d shows the password: %q", i+1, w)
		}
	}
	if !strings.Contains(warns[0], "next_delay=250ms") || !strings.Contains(warns[1], "next_delay=500ms") {
		t.Errorf("the backoff should start at 250ms and double; warnings:\n%s", strings.Join(warns, ""))
	}
}

func TestOpenWaitDoesNotRetry(t *testing.T) {
	cases := []struct {
		name, url string
		badURL    bool
	}{
		{"unknown scheme", "mysql://127.0.0.1:3306/ebb", true},
		{"unparsable Redis URL", "redis://ebb:s3cret@127.0.0.1:port/0", true},
		{"bad Redis db", "redis://127.0.0.1:6379/zero", true},
		{"SQLite file in a missing directory", "sqlite:" + filepath.Join(t.TempDir(), "no", "such", "dir", "ebb.db"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logs, logger := testwait.NewLog()
			start := time.Now()
			b, err := OpenWait(t.Context(), c.url, time.Minute, logger)
			if err == nil {
				b.Close()
				t.Fatalf("OpenWait(%s) succeeded, want an error", c.url)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("OpenWait(%s) took %s, want an answer at once", c.url, took)
			}
			if got := errors.Is(err, ErrBadURL); got != c.badURL {
				t.Errorf("OpenWait(%s) error %q: errors.Is(ErrBadURL) = %v, want %v", c.url, err, got, c.badURL)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the password: %q", err)
			}
			if w := logs.Lines("level=WARN"); len(w) > 0 {
				t.Errorf("OpenWait(%s) retried:\n%s", c.url, strings.Join(w, ""))
			}
		})
	}
}

func TestOpenWaitZeroIsOneAttempt(t *testing.T) {
	logs, logger := testwait.NewLog()
	start := time.Now()
	_, err := OpenWait(t.Context(), closedURL(t), 0, logger)
	if err == nil || !strings.Contains(err.Error(), "cannot reach Redis") || strings.Contains(err.Error(), "unreachable after") {
		t.Errorf("OpenWait with maxWait 0: error %v, want Open's own error", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("OpenWait with maxWait 0 took %s", took)
	}
	if w := logs.Lines("level=WARN"); len(w) > 0 {
		t.Errorf("maxWait 0 retried:\n%s", strings.Join(w, ""))
	}
}

func TestOpenWaitStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(600*time.Millisecond, cancel)
	start := time.Now()
	_, err := OpenWait(ctx, closedURL(t), time.Minute, nil)
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("OpenWait cancelled during the wait returned %v, want context.Canceled", err)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("OpenWait returned %s after the start (cancelled at 600ms), want promptly", took)
	}
}

func TestOpenWaitConnectsWhenTheBrokerComesUp(t *testing.T) {
	s := testredis.Start(t)
	s.Kill()
	logs, logger := testwait.NewLog()
	type result struct {
		b   *Broker
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := OpenWait(t.Context(), s.URL(), 20*time.Second, logger)
		done <- result{b, err}
	}()
	time.Sleep(700 * time.Millisecond)
	s.Restart()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("OpenWait did not connect once Redis was up: %v\n%s", r.err, logs)
		}
		defer r.b.Close()
		if _, err := r.b.Client.QueueList(t.Context()); err != nil {
			t.Errorf("the broker OpenWait returned does not work: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("OpenWait did not return within 15s of Redis starting\n%s", logs)
	}
	if n := len(logs.Lines("level=WARN")); n < 2 {
		t.Errorf("%d warnings while Redis was down for 700ms, want ≥ 2:\n%s", n, logs)
	}
	if len(logs.Lines("broker reachable")) != 1 {
		t.Errorf("want one line saying the broker became reachable:\n%s", logs)
	}
}
