package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/controlplane"
)

// Helpers for the tests that run `ebb server`: its YAML config, its HTTP API,
// its log and the logs of the workers it launches.

// serverConfig is what the tests vary in an `ebb server` config file. Empty
// strings leave a key out, so it takes the documented default.
type serverConfig struct {
	broker      string
	listen      string
	token       string
	leaderTTL   string
	leaderRenew string
	reconcile   string
	pools       []poolConfig
}

type poolConfig struct {
	name           string
	min, max       int
	concurrency    int
	logDir         string
	drainTimeout   string
	stopGrace      string
	maxWait        string
	scaleDownDelay string
	idleBeforeZero string
}

func (c serverConfig) yaml() string {
	var b strings.Builder
	kv := func(indent, key, val string) {
		if val != "" {
			fmt.Fprintf(&b, "%s%s: %s\n", indent, key, strconv.Quote(val))
		}
	}
	kv("", "broker", c.broker)
	b.WriteString("server:\n")
	kv("  ", "listen", c.listen)
	kv("  ", "token", c.token)
	if c.leaderTTL != "" || c.leaderRenew != "" {
		b.WriteString("leader:\n")
		kv("  ", "ttl", c.leaderTTL)
		kv("  ", "renew_interval", c.leaderRenew)
	}
	if c.reconcile != "" {
		b.WriteString("autoscaler:\n")
		kv("  ", "reconcile_interval", c.reconcile)
	}
	b.WriteString("pools:\n")
	for _, p := range c.pools {
		fmt.Fprintf(&b, "  - name: %s\n    queues: [%s]\n    min: %d\n    max: %d\n    concurrency: %d\n",
			strconv.Quote(p.name), strconv.Quote(p.name), p.min, p.max, p.concurrency)
		kv("    ", "log_dir", p.logDir)
		kv("    ", "drain_timeout", p.drainTimeout)
		kv("    ", "stop_grace", p.stopGrace)
		if p.maxWait != "" || p.scaleDownDelay != "" || p.idleBeforeZero != "" {
			b.WriteString("    policy:\n")
			kv("      ", "max_wait", p.maxWait)
			kv("      ", "scale_down_delay", p.scaleDownDelay)
			kv("      ", "idle_before_zero", p.idleBeforeZero)
		}
	}
	return b.String()
}

// writeConfig writes the config to a fresh temporary file and returns its
// path.
func writeConfig(t *testing.T, c serverConfig) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ebb.yaml")
	if err := os.WriteFile(path, []byte(c.yaml()), 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	return path
}

// freePort returns a loopback port nobody listened on a moment ago. A config
// file cannot say port 0 usefully (the test would not learn the port), so the
// port is picked here and closed again; the tiny window in which another
// process could take it is acceptable for tests.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ebbServer is a running `ebb server`; the API is always reached through
// 127.0.0.1, whatever address it listens on.
type ebbServer struct {
	*proc
	base  string // http://127.0.0.1:port
	token string
}

// startServer runs `ebb server --config cfgPath args...` with the API on
// 127.0.0.1:port (or on whatever the config or args say, reached there).
func startServer(t *testing.T, name, cfgPath string, port int, token string, args ...string) *ebbServer {
	t.Helper()
	p := startEbb(t, "", name, append([]string{"server", "--config", cfgPath}, args...)...)
	return &ebbServer{proc: p, base: fmt.Sprintf("http://127.0.0.1:%d", port), token: token}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// httpGet sends GET with the given Authorization header (none if empty).
func httpGet(url, authorization string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}

// tryGet GETs an API path with the server's token and decodes a 200 answer.
func (s *ebbServer) tryGet(path string, into any) error {
	auth := ""
	if s.token != "" {
		auth = "Bearer " + s.token
	}
	code, _, body, err := httpGet(s.base+path, auth)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", path, code, strings.TrimSpace(string(body)))
	}
	if into == nil {
		return nil
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: not the expected JSON (%v): %s", path, err, body)
	}
	return nil
}

// get is tryGet that fails the test.
func (s *ebbServer) get(t *testing.T, path string, into any) {
	t.Helper()
	if err := s.tryGet(path, into); err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
}

// leaderJSON is GET /api/v1/leader.
type leaderJSON struct {
	Server   string `json:"server"`
	Leading  bool   `json:"leading"`
	LeaderID string `json:"leader_id"`
	Term     int64  `json:"term"`
}

// poolJSON is one pool of GET /api/v1/pools: the control plane's view, as
// the API encodes it.
type poolJSON = controlplane.PoolView

func (s *ebbServer) pool(t *testing.T, name string) poolJSON {
	t.Helper()
	var pools []poolJSON
	s.get(t, "/api/v1/pools", &pools)
	for _, p := range pools {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("%s: GET /api/v1/pools has no pool %q: %+v", s.name, name, pools)
	return poolJSON{}
}

// decisions returns the whole decision log through the API, oldest first.
func (s *ebbServer) decisions(t *testing.T) []ebbtype.Decision {
	t.Helper()
	var ds []ebbtype.Decision
	s.get(t, "/api/v1/scaling?limit=1000", &ds)
	slices.SortFunc(ds, func(a, b ebbtype.Decision) int { return cmp.Compare(a.Seq, b.Seq) })
	return ds
}

// waitLeading waits until the server's API answers and it leads.
func (s *ebbServer) waitLeading(t *testing.T, timeout time.Duration) leaderJSON {
	t.Helper()
	var l leaderJSON
	waitFor(t, timeout, s.name+" to lead", func() (bool, string) {
		if err := s.tryGet("/api/v1/leader", &l); err != nil {
			return false, err.Error()
		}
		return l.Leading && l.LeaderID == l.Server, fmt.Sprintf("%+v", l)
	}, s.proc)
	return l
}

// poolWorkers returns the registry entries of a pool's workers.
func (b *broker) poolWorkers(t *testing.T, pool string) []ebbtype.WorkerInfo {
	t.Helper()
	var out []ebbtype.WorkerInfo
	for _, w := range b.workers(t) {
		if w.Pool == pool {
			out = append(out, w)
		}
	}
	return out
}

// waitPoolAtZero waits until the server reports the pool at zero with no
// worker process left, and the registry holds none of its workers; it
// returns when that was first seen.
func waitPoolAtZero(t *testing.T, s *ebbServer, b *broker, pool string, timeout time.Duration) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, timeout, "pool "+pool+" back at zero", func() (bool, string) {
		p := s.pool(t, pool)
		if p.Current != 0 || len(p.Instances) != 0 {
			return false, fmt.Sprintf("current %d, %d instances (%s)", p.Current, len(p.Instances), p.Reason)
		}
		if ws := b.poolWorkers(t, pool); len(ws) != 0 {
			return false, fmt.Sprintf("%d workers of the pool still registered", len(ws))
		}
		at = time.Now()
		return true, ""
	}, s.proc)
	return at
}

// enqueueSleeps enqueues one sleep task per entry of ms into queue and returns
// their ids in the same order.
func (b *broker) enqueueSleeps(t *testing.T, queue string, ms []int) []string {
	t.Helper()
	params := make([]ebb.EnqueueParams, len(ms))
	for i, m := range ms {
		params[i] = ebb.EnqueueParams{Kind: "sleep", RawArgs: json.RawMessage(fmt.Sprintf(`{"ms":%d}`, m)),
			Opts: &ebb.EnqueueOpts{Queue: queue}}
	}
	res, err := b.client.EnqueueMany(context.Background(), params)
	if err != nil {
		t.Fatalf("enqueue %d sleep tasks into %s: %v", len(ms), queue, err)
	}
	ids := make([]string, len(res))
	for i, r := range res {
		ids[i] = r.ID
	}
	return ids
}

// waitSucceeded waits until every task succeeded; a task that went dead
// fails the test at once.
func waitSucceeded(t *testing.T, b *broker, ids []string, timeout time.Duration, watch ...*proc) []*ebbtype.TaskInfo {
	t.Helper()
	var recs []*ebbtype.TaskInfo
	waitFor(t, timeout, fmt.Sprintf("%d tasks to succeed", len(ids)), func() (bool, string) {
		recs = b.tasks(t, ids)
		n := 0
		for _, r := range recs {
			switch r.State {
			case ebb.StateSucceeded:
				n++
			case ebb.StateDead:
				t.Fatalf("task %s went dead: %s %+v", r.ID, describe(r), r.Errors)
			}
		}
		return n == len(ids), fmt.Sprintf("%d of %d succeeded", n, len(ids))
	}, watch...)
	return recs
}

// instanceLine matches the local target's log lines about worker processes.
var instanceLine = regexp.MustCompile(`msg="worker instance (started|exited|failed|crashed)".* id=(\S+)`)
var codeAttr = regexp.MustCompile(` code=(-?\d+)`)

// instanceEvents reads a server's log: the ids of the worker processes it
// started, and how each that ended did (exit code, or -1 for a signal; a
// failed or crashed line also counts as not clean).
func instanceEvents(log string) (started []string, exits map[string]int, unclean []string) {
	exits = map[string]int{}
	for line := range strings.SplitSeq(log, "\n") {
		m := instanceLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		id := m[2]
		switch m[1] {
		case "started":
			started = append(started, id)
		default:
			code := -1
			if c := codeAttr.FindStringSubmatch(line); c != nil {
				code, _ = strconv.Atoi(c[1])
			}
			exits[id] = code
			if m[1] != "exited" || code != 0 {
				unclean = append(unclean, line)
			}
		}
	}
	return started, exits, unclean
}

// readWorkerLogs returns the log of every worker process in dir, by id.
func readWorkerLogs(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatalf("list worker logs: %v", err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read worker log: %v", err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".log")] = string(b)
	}
	return out
}

// procGone reports whether pid has exited (no such process, or a zombie
// nobody reaped yet).
func procGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// cpuTicks returns a process's user+system CPU time from /proc/<pid>/stat,
// in clock ticks (USER_HZ, 100 per second on Linux).
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read CPU time of pid %d: %v", pid, err)
	}
	s := string(b)
	// Fields after the command name, which may contain spaces, in parentheses.
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		t.Fatalf("/proc/%d/stat: unexpected format: %q", pid, s)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: utime %q, stime %q", pid, fields[11], fields[12])
	}
	return utime + stime
}

// userHZ is the unit of /proc/<pid>/stat CPU times: USER_HZ, which Linux
// fixes at 100 for user space on every architecture Go supports.
const userHZ = 100
