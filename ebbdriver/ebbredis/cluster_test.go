package ebbredis

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testredis"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url     string
		cluster bool
		addrs   []string
		wait    int
		timeout time.Duration
		user    string
	}{
		{url: "redis://127.0.0.1:6379/2", addrs: []string{"127.0.0.1:6379"}},
		{url: "redis://127.0.0.1:6379/0?wait_replicas=1&dial_timeout=2s", addrs: []string{"127.0.0.1:6379"}, wait: 1},
		{url: "redis+cluster://127.0.0.1:7000", cluster: true, addrs: []string{"127.0.0.1:7000"}},
		{url: "redis+cluster://u:p@127.0.0.1:7000,127.0.0.1:7001/?wait_replicas=2&wait_timeout=250ms&pool_size=5",
			cluster: true, addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}, wait: 2, timeout: 250 * time.Millisecond, user: "u"},
		{url: "rediss+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002/0", cluster: true,
			addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"}},
		{url: "redis+cluster://127.0.0.1:7000,127.0.0.1:7001?wait_replicas=1", cluster: true,
			addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}, wait: 1},
	} {
		o, err := ParseURL(tc.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.url, err)
			continue
		}
		if (o.Cluster != nil) != tc.cluster || strings.Join(o.Addrs(), " ") != strings.Join(tc.addrs, " ") ||
			o.WaitReplicas != tc.wait || o.WaitTimeout != tc.timeout {
			t.Errorf("ParseURL(%q) = cluster %v addrs %v wait %d/%s; want %v %v %d/%s",
				tc.url, o.Cluster != nil, o.Addrs(), o.WaitReplicas, o.WaitTimeout, tc.cluster, tc.addrs, tc.wait, tc.timeout)
		}
		if tc.user != "" && (o.Cluster.Username != tc.user || o.Cluster.Password != "p") {
			t.Errorf("ParseURL(%q): user %q password %q", tc.url, o.Cluster.Username, o.Cluster.Password)
		}
		if strings.HasPrefix(tc.url, "rediss") && o.Cluster.TLSConfig == nil {
			t.Errorf("ParseURL(%q): no TLS", tc.url)
		}
	}
	for _, bad := range []struct{ url, says string }{
		{"redis+cluster://127.0.0.1:7000/3", "no database"},
		{"redis+cluster://127.0.0.1:7000,,127.0.0.1:7001", "empty address"},
		{"redis://127.0.0.1:6379/0?wait_replicas=-1", "wait_replicas"},
		{"redis://127.0.0.1:6379/0?wait_timeout=soon", "wait_timeout"},
		{"redis+cluster://127.0.0.1:7000?nosuch=1", "nosuch"},
		{"memcache://127.0.0.1:1", "unknown scheme"},
	} {
		if _, err := ParseURL(bad.url); err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("ParseURL(%q) = %v; want an error saying %q", bad.url, err, bad.says)
		}
	}
}

// TestOpenClusterURL: a redis+cluster:// URL opens a cluster client whose
// tasks spread over the masters, with WAIT from the URL.
func TestOpenClusterURL(t *testing.T) {
	t.Parallel()
	c := testredis.SharedCluster(t)
	prefix := c.Prefix(t)
	d, err := Open(t.Context(), c.URL()+"?wait_replicas=1&wait_timeout=2s", &Config{Prefix: prefix})
	if err != nil {
		t.Fatalf("Open(%s): %v", c.URL(), err)
	}
	defer d.Close()
	if _, ok := d.rdb.(*redis.ClusterClient); !ok || d.waitReplicas != 1 || d.waitTimeout != 2*time.Second {
		t.Fatalf("Open made a %T with wait %d/%s; want a cluster client waiting for 1 replica 2s", d.rdb, d.waitReplicas, d.waitTimeout)
	}
	now := time.Now()
	// Queues whose names hash to different masters.
	queues := []string{"a", "b", "c", "d", "e", "f"}
	for _, q := range queues {
		mustEnqueue(t, d, testTask(q, now), testTask(q, now))
	}
	masters := map[string]bool{}
	for _, q := range queues {
		n, err := d.rdb.(*redis.ClusterClient).MasterForKey(t.Context(), d.keys(q).ready[0])
		if err != nil {
			t.Fatal(err)
		}
		masters[n.Options().Addr] = true
		got, err := d.Fetch(t.Context(), fetchParams(now, 10, q))
		if err != nil || len(got.Tasks) != 2 {
			t.Fatalf("Fetch(%s) = %v, %v; want the 2 enqueued", q, got, err)
		}
	}
	if len(masters) < 2 {
		t.Fatalf("the queues all live on %v; the test needs them spread over masters", masters)
	}
}

// TestWaitReplicasRefusesUnreplicated: with no replica to confirm, an
// enqueue is not acknowledged and says why.
func TestWaitReplicasRefusesUnreplicated(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	d, err := Open(t.Context(), srv.URL()+"?wait_replicas=1&wait_timeout=100ms", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.Enqueue(t.Context(), []*ebbtype.TaskInfo{testTask("q", time.Now())})
	if !errors.Is(err, ErrNotReplicated) || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Fatalf("Enqueue without replicas = %v; want ErrNotReplicated saying 0 of 1 replicas", err)
	}
}
