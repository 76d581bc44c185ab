package testredis

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterConfig shapes a test Redis Cluster. The zero value is valid.
type ClusterConfig struct {
	// NodeTimeout is cluster-node-timeout: how long a master may be
	// unreachable before its replica takes over. Default 5 s, long enough
	// that a loaded 2-core machine does not fail masters over by itself;
	// failover tests set it short (1 s).
	NodeTimeout time.Duration
}

// Cluster is a Redis Cluster of six private redis-server processes on
// loopback ports: three masters holding all slots, one replica each.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// clusterSize: three masters and their replicas, the smallest cluster
// redis-cli --cluster create accepts with --cluster-replicas 1.
const clusterSize = 6

// StartCluster starts a private cluster, stopped when t ends. Tests that
// kill nodes need their own; the others share SharedCluster.
func StartCluster(t testing.TB, cfg ClusterConfig) *Cluster {
	t.Helper()
	c := startCluster(t, t.TempDir(), cfg)
	t.Cleanup(c.Kill)
	return c
}

var shared struct {
	once sync.Once
	c    *Cluster
	err  string
	// watchdog's stdin: held open for the life of the test binary. When
	// the binary exits, however it exits, the kernel closes it and the
	// watchdog shell stops the servers and deletes their directory.
	watchdog io.WriteCloser
}

// SharedCluster returns the cluster shared by every test of this test
// binary, started on first use. Tests must keep to key prefixes of their own
// (ClusterPrefix) and must not kill or reconfigure its nodes.
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "ebb-testcluster-")
		if err != nil {
			shared.err = err.Error()
			return
		}
		ft := &onceT{TB: t}
		c := startCluster(ft, dir, ClusterConfig{})
		if ft.failed != "" {
			shared.err = ft.failed
			_ = os.RemoveAll(dir)
			return
		}
		pids := make([]string, len(c.Nodes))
		for i, s := range c.Nodes {
			pids[i] = strconv.Itoa(s.cmd.Process.Pid)
		}
		w := exec.Command("sh", "-c", `read _; kill -9 `+strings.Join(pids, " ")+` 2>/dev/null; sleep 0.2; rm -rf "$0"`, dir)
		in, err := w.StdinPipe()
		if err == nil {
			err = w.Start()
		}
		if err != nil {
			c.Kill()
			_ = os.RemoveAll(dir)
			shared.err = "start the cluster's watchdog: " + err.Error()
			return
		}
		shared.watchdog = in
		c.t = nil // outlives the test that started it
		shared.c = c
	})
	if shared.c == nil {
		t.Fatalf("testredis: shared cluster: %s", shared.err)
	}
	return shared.c
}

// onceT records the first failure instead of ending the test, so a shared
// cluster that fails to start reports the same error to every test.
type onceT struct {
	testing.TB
	failed string
}

func (o *onceT) Fatalf(format string, args ...any) {
	if o.failed == "" {
		o.failed = fmt.Sprintf(format, args...)
	}
	panic(onceAbort{})
}

type onceAbort struct{}

func startCluster(t testing.TB, dir string, cfg ClusterConfig) (c *Cluster) {
	t.Helper()
	if _, ok := t.(*onceT); ok {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(onceAbort); !ok {
					panic(r)
				}
				if c != nil {
					c.Kill()
				}
				c = nil
			}
		}()
	}
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("testredis: %s is not installed (scripts/test installs redis-server and redis-tools with apt-get): %v", bin, err)
		}
	}
	timeout := cfg.NodeTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	c = &Cluster{t: t}
	// redis-cli --cluster create has been seen, on a loaded machine, to
	// wait for the nodes to join for ever: bound each try and start over
	// with fresh nodes on fresh ports.
	const tries = 3
	for try := 1; ; try++ {
		out, err := c.create(t, filepath.Join(dir, "try"+strconv.Itoa(try)), timeout)
		if err == nil {
			break
		}
		c.Kill()
		if try == tries {
			t.Fatalf("testredis: redis-cli --cluster create, %d tries: %v\n%s", tries, err, out)
		}
		c.Nodes = nil
	}
	c.WaitHealthy()
	return c
}

// create starts the nodes in dir and joins them into a cluster.
func (c *Cluster) create(t testing.TB, dir string, timeout time.Duration) ([]byte, error) {
	addrs := make([]string, 0, clusterSize)
	for i := range clusterSize {
		s := &Server{t: t, Port: freePort(t), dir: filepath.Join(dir, "node"+strconv.Itoa(i))}
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return nil, err
		}
		s.args = []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			// A bus port of its own rather than port+10000, which may be
			// taken or beyond 65535.
			"--cluster-port", strconv.Itoa(freePort(t)),
			"--cluster-node-timeout", strconv.FormatInt(timeout.Milliseconds(), 10),
			// A replica fails over however long it was cut off from its
			// master: tests fail masters over and over.
			"--cluster-replica-validity-factor", "0",
			// A restarted node resyncs at once instead of after 5 s.
			"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
		}
		c.Nodes = append(c.Nodes, s)
		s.Restart()
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Running reports whether the server's process runs (it was not killed).
func (s *Server) Running() bool { return s.cmd != nil }

// Addrs are the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr()
	}
	return out
}

// URL is the cluster's ebb broker URL: redis+cluster:// and every node.
func (c *Cluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

// Client returns a cluster client of c, closed when t ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// Kill stops every node with SIGKILL.
func (c *Cluster) Kill() {
	for _, s := range c.Nodes {
		s.Kill()
	}
}

// nodeInfo is one line of CLUSTER NODES.
type nodeInfo struct {
	id, addr string
	master   bool
	failed   bool
	slots    bool
}

func (c *Cluster) query(ctx context.Context, s *Server, f func(*redis.Client) error) error {
	rc := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	defer rc.Close()
	return f(rc)
}

func (c *Cluster) nodes(ctx context.Context, s *Server) ([]nodeInfo, error) {
	var txt string
	err := c.query(ctx, s, func(rc *redis.Client) (err error) {
		txt, err = rc.ClusterNodes(ctx).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []nodeInfo
	for line := range strings.SplitSeq(strings.TrimSpace(txt), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		out = append(out, nodeInfo{
			id: f[0], addr: addr,
			master: strings.Contains(f[2], "master"),
			failed: strings.Contains(f[2], "fail"),
			slots:  len(f) > 8,
		})
	}
	return out, nil
}

// WaitHealthy waits (up to 60 s) until every running node reports
// cluster_state:ok with all slots served, agrees that three live masters
// hold the slots, and every running replica is in sync with its master.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if last = c.health(ctx); last == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("testredis: cluster not healthy within 60s: %s", last)
}

// health returns what is still wrong with the cluster, or "".
func (c *Cluster) health(ctx context.Context) string {
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		var info, repl string
		err := c.query(ctx, s, func(rc *redis.Client) (err error) {
			if info, err = rc.ClusterInfo(ctx).Result(); err != nil {
				return err
			}
			repl, err = rc.Info(ctx, "replication").Result()
			return err
		})
		if err != nil {
			return s.Addr() + ": " + err.Error()
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return s.Addr() + " reports " + strings.Join(strings.Fields(info)[:4], " ")
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return s.Addr() + " is a replica out of sync with its master"
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_sync_in_progress:0") {
			return s.Addr() + " is still syncing"
		}
		ns, err := c.nodes(ctx, s)
		if err != nil {
			return s.Addr() + ": " + err.Error()
		}
		masters := 0
		for _, n := range ns {
			if n.master && n.slots && !n.failed {
				masters++
			}
		}
		if masters != 3 {
			return s.Addr() + " sees " + strconv.Itoa(masters) + " live masters with slots, want 3"
		}
	}
	return ""
}

// Masters returns the running nodes that are masters holding slots, as the
// first running node sees them.
func (c *Cluster) Masters() []*Server {
	c.t.Helper()
	ctx := context.Background()
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		ns, err := c.nodes(ctx, s)
		if err != nil {
			continue
		}
		var out []*Server
		for _, n := range ns {
			if !n.master || !n.slots || n.failed {
				continue
			}
			if i := slices.IndexFunc(c.Nodes, func(x *Server) bool { return x.Addr() == n.addr }); i >= 0 && c.Nodes[i].Running() {
				out = append(out, c.Nodes[i])
			}
		}
		return out
	}
	c.t.Fatalf("testredis: no running cluster node answers CLUSTER NODES")
	return nil
}

// Failover SIGKILLs master m and waits until its replica took over (the
// cluster is ok again with three live masters), then restarts m, which
// rejoins as the new master's replica, and waits until it is in sync. It
// returns how long the cluster took to be ok again after the kill.
func (c *Cluster) Failover(m *Server) time.Duration {
	c.t.Helper()
	ctx := context.Background()
	m.Kill()
	killed := time.Now()
	var took time.Duration
	deadline := killed.Add(60 * time.Second)
	var last string
	for {
		if last = c.health(ctx); last == "" {
			took = time.Since(killed)
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("testredis: no failover within 60s of killing %s: %s", m.Addr(), last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	m.Restart()
	c.WaitHealthy()
	return took
}

// Prefix returns a key prefix of t's own on the cluster, whose keys are
// deleted (on every master) when t ends.
func (c *Cluster) Prefix(t testing.TB) string {
	t.Helper()
	p := fmt.Sprintf("ebbtest:%d:%d:%d", os.Getpid(), time.Now().UnixNano()%1e9, prefixSeq.Add(1))
	t.Cleanup(func() {
		rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
		defer rc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			iter := n.Scan(ctx, 0, p+":*", 1000).Iterator()
			for iter.Next(ctx) {
				// One key at a time: keys of one node span slots.
				n.Unlink(ctx, iter.Val())
			}
			return nil
		})
	})
	return p
}
