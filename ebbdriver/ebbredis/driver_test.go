package ebbredis

import (
	"testing"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbdrivertest"
	"github.com/ebbq/ebb/internal/testredis"
)

// newTestDriver returns a driver on the shared test Redis with a key prefix
// of its own, closed (and its keys deleted) when t ends.
func newTestDriver(t testing.TB) *Driver {
	t.Helper()
	d, err := New(testredis.Client(t), &Config{Prefix: testredis.Prefix(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func TestConformance(t *testing.T) {
	t.Parallel()
	ebbdrivertest.Exercise(t, func(t *testing.T) ebbdriver.Driver { return newTestDriver(t) })
}

// TestConformanceCluster runs the whole suite on a real Redis Cluster
// (three masters, a replica each) through a redis.ClusterClient.
func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	c := testredis.SharedCluster(t)
	ebbdrivertest.Exercise(t, func(t *testing.T) ebbdriver.Driver {
		d, err := New(c.Client(t), &Config{Prefix: c.Prefix(t)})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return d
	})
}
