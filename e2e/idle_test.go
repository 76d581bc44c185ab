package e2e

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/internal/testredis"
)

const (
	idleWindow = 60 * time.Second
	// idleMaxCPU is the most CPU an idle server may use, in percent of one
	// core.
	idleMaxCPU = 1.0
	// idleMaxCommands is the most Redis commands per second an idle server
	// may send (top-level ones: what its connections send, not what the
	// scripts they call run inside Redis).
	idleMaxCommands = 1.0
)

// idlePools are two pools as in ebb.example.yaml, at their defaults except
// for a short idle_before_zero so the warm-up returns to zero quickly (it
// plays no part once the pools are at zero).
func idlePools(logDir string) []poolConfig {
	return []poolConfig{
		{name: "default", min: 0, max: 4, concurrency: 10, logDir: logDir, scaleDownDelay: "1s", idleBeforeZero: "2s"},
		{name: "reports", min: 0, max: 2, concurrency: 1, logDir: logDir, scaleDownDelay: "1s", idleBeforeZero: "2s"},
	}
}

// TestIdleCost measures what `ebb server` costs while every pool is at zero:
// its CPU time over a minute (from /proc/<pid>/stat) and, on Redis, the
// commands it sends (counted with MONITOR on a private redis-server). The
// server runs the default leader, reconcile and maintenance settings with
// two pools, whose queues exist because a few tasks ran before the window
// (an empty broker would flatter the numbers).
func TestIdleCost(t *testing.T) {
	t.Parallel()
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		testIdleCostRedis(t)
	})
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, "sqlite")
		s := startIdleServer(t, b)
		ticks, window := measureIdle(t, s, nil)
		reportIdleCPU(t, "sqlite", ticks, window)
	})
}

func testIdleCostRedis(t *testing.T) {
	rs := testredis.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	drv, err := ebbredis.Open(ctx, rs.URL(), nil)
	if err != nil {
		t.Fatalf("open redis broker: %v", err)
	}
	client, err := ebb.NewClient(drv, nil)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	b := &broker{kind: "redis", url: rs.URL(), drv: drv, client: client}
	s := startIdleServer(t, b)
	// The test's own connections must not show in MONITOR: from here on
	// only the server talks to this Redis.
	_ = drv.Close()

	mon := startMonitor(t, rs.Port)
	ticks, window := measureIdle(t, s, mon)
	cmds, lua, clients := mon.stop()
	reportIdleCPU(t, "redis", ticks, window)

	total := 0
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(cmds)) {
		total += cmds[name]
		parts = append(parts, fmt.Sprintf("%s %d", name, cmds[name]))
	}
	rate := float64(total) / window.Seconds()
	t.Logf("redis: %d top-level commands from the server in %s = %.2f/s (%s), from %d connections; %d more ran inside scripts ([0 lua] lines, %.2f/s)",
		total, window.Round(time.Millisecond), rate, strings.Join(parts, ", "), len(clients), lua, float64(lua)/window.Seconds())
	if rate > idleMaxCommands {
		t.Errorf("an idle server sent %.2f Redis commands/s, want at most %.1f: %s", rate, idleMaxCommands, strings.Join(parts, ", "))
	}
}

// startIdleServer starts `ebb server` with the idle pools on b, runs two
// tasks through each pool so the queues exist, and returns once the server
// leads and both pools are back at zero.
func startIdleServer(t *testing.T, b *broker) *ebbServer {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	pools := idlePools(filepath.Join(dir, "workers"))
	cfg := writeConfig(t, serverConfig{broker: b.url, listen: fmt.Sprintf("127.0.0.1:%d", port), pools: pools})
	s := startServer(t, "server-"+b.kind, cfg, port, "")
	s.waitLeading(t, 20*time.Second)
	var ids []string
	for _, p := range pools {
		ids = append(ids, b.enqueueSleeps(t, p.name, []int{10, 10})...)
	}
	waitSucceeded(t, b, ids, 30*time.Second, s.proc)
	for _, p := range pools {
		waitPoolAtZero(t, s, b, p.name, 30*time.Second)
	}
	return s
}

// measureIdle checks the server leads with every pool at zero, then returns
// the CPU ticks it used over idleWindow, and the window's exact length. It
// fails if the server exits meanwhile, or if any pool left zero.
func measureIdle(t *testing.T, s *ebbServer, mon *monitor) (int64, time.Duration) {
	t.Helper()
	s.waitLeading(t, 10*time.Second)
	startedBefore, _, _ := instanceEvents(s.output())
	if mon != nil {
		mon.begin()
	}
	cpu0, t0 := cpuTicks(t, s.pid()), time.Now()
	select {
	case <-s.done:
		t.Fatalf("%s exited during the idle window:\n%s", s.name, s.tail(8<<10))
	case <-time.After(idleWindow):
	}
	cpu1, t1 := cpuTicks(t, s.pid()), time.Now()
	if mon != nil {
		mon.end()
	}
	var pools []poolJSON
	s.get(t, "/api/v1/pools", &pools)
	for _, p := range pools {
		if p.Current != 0 || len(p.Instances) != 0 {
			t.Errorf("pool %s left zero during the idle window: %+v", p.Name, p)
		}
	}
	if startedAfter, _, _ := instanceEvents(s.output()); len(startedAfter) != len(startedBefore) {
		t.Errorf("the server started %d workers during the idle window", len(startedAfter)-len(startedBefore))
	}
	if l := s.waitLeading(t, time.Second); !l.Leading {
		t.Errorf("the server no longer leads after the idle window: %+v", l)
	}
	s.stop(30 * time.Second)
	return cpu1 - cpu0, t1.Sub(t0)
}

func reportIdleCPU(t *testing.T, kind string, ticks int64, window time.Duration) {
	t.Helper()
	cpu := float64(ticks) / userHZ
	pct := 100 * cpu / window.Seconds()
	t.Logf("%s: idle server used %.2f s of CPU (utime+stime from /proc/<pid>/stat) in %s = %.3f%% of one core",
		kind, cpu, window.Round(time.Millisecond), pct)
	if pct >= idleMaxCPU {
		t.Errorf("%s: an idle server used %.3f%% CPU, want below %.0f%%", kind, pct, idleMaxCPU)
	}
}

// monitor runs MONITOR on a Redis and counts, between begin and end, the
// commands each connection sent (by command name), and the commands scripts
// ran, which MONITOR shows as coming from "lua".
type monitor struct {
	t    *testing.T
	conn net.Conn
	done chan struct{}

	mu       sync.Mutex
	counting bool
	cmds     map[string]int
	clients  map[string]bool
	lua      int
	err      error
}

// monitorLine is `+<unix time> [<db> <client addr or lua>] "<command>" ...`;
// for scripts it also captures the first key, which names the script's
// purpose (`"evalsha" "<sha>" "<numkeys>" "<first key>"`).
var monitorLine = regexp.MustCompile(`^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]*)"(?: "[^"]*" "[1-9]\d*" "([^"]*)")?`)

func startMonitor(t *testing.T, port int) *monitor {
	t.Helper()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		t.Fatalf("MONITOR: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	r := bufio.NewReader(conn)
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatalf("MONITOR: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "+OK" {
		t.Fatalf("MONITOR: answer %q, %v", line, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	m := &monitor{t: t, conn: conn, done: make(chan struct{}), cmds: map[string]int{}, clients: map[string]bool{}}
	go func() {
		defer close(m.done)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return // closed by stop
			}
			sub := monitorLine.FindStringSubmatch(strings.TrimRight(line, "\r\n"))
			m.mu.Lock()
			switch {
			case !m.counting:
			case sub == nil:
				if m.err == nil {
					m.err = fmt.Errorf("unexpected MONITOR line %q", line)
				}
			case sub[1] == "lua":
				m.lua++
			default:
				m.clients[sub[1]] = true
				name := strings.ToLower(sub[2])
				if (name == "evalsha" || name == "eval") && sub[3] != "" {
					name += " " + sub[3]
				}
				m.cmds[name]++
			}
			m.mu.Unlock()
		}
	}()
	return m
}

func (m *monitor) begin() { m.mu.Lock(); m.counting = true; m.mu.Unlock() }
func (m *monitor) end()   { m.mu.Lock(); m.counting = false; m.mu.Unlock() }

// stop ends MONITOR and returns the counts.
func (m *monitor) stop() (cmds map[string]int, lua int, clients map[string]bool) {
	m.t.Helper()
	m.conn.Close()
	<-m.done
	if m.err != nil {
		m.t.Fatalf("MONITOR: %v", m.err)
	}
	return m.cmds, m.lua, m.clients
}
