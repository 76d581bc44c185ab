package brokerurl

import (
	"strings"
	"testing"

	"github.com/ebbq/ebb/internal/testredis"
)

// TestOpenCluster: --broker redis+cluster://… opens a working broker, and a
// cluster none of whose seeds answers is reported as unreachable.
func TestOpenCluster(t *testing.T) {
	t.Parallel()
	c := testredis.SharedCluster(t)
	b, err := Open(t.Context(), c.URL()+"?wait_replicas=1", nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", c.URL(), err)
	}
	defer b.Close()
	if _, err := b.Client.QueueList(t.Context()); err != nil {
		t.Fatalf("QueueStats on the cluster: %v", err)
	}
	srv := testredis.Start(t)
	srv.Kill()
	_, err = OpenDriver(t.Context(), "redis+cluster://"+srv.Addr()+","+srv.Addr())
	if err == nil || !strings.Contains(err.Error(), "cannot reach Redis at "+srv.Addr()) {
		t.Fatalf("OpenDriver of a stopped cluster = %v; want cannot reach Redis", err)
	}
}
