package ebbredis

import (
	"strings"
	"testing"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbdrivertest"
	"github.com/ebbq/ebb/internal/testredis"
)

// newTestDriver returns a driver on the shared test Redis with a key prefix
// of its own, closed (and its keys deleted) when t ends. Its scripts run
// under keyCheck, so every test here also checks that they touch only the
// keys they declare; benchmarks get the scripts as they ship.
func newTestDriver(t testing.TB) *Driver {
	t.Helper()
	d, err := New(testredis.Client(t), &Config{Prefix: testredis.Prefix(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_, bench := t.(*testing.B)
	d.checkKeys = !bench
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// TestConformance runs the whole suite with the scripts under keyCheck: a
// script that touches a key it did not declare fails the call, so the
// suite, which drives every script through every state, fails with it.
func TestConformance(t *testing.T) {
	t.Parallel()
	ebbdrivertest.Exercise(t, func(t *testing.T) ebbdriver.Driver { return newTestDriver(t) })
}

// TestScriptsDeclareKeys: keyCheck refuses an undeclared key (a key of the
// declared key's slot, as the scripts used to build task keys) in every
// form the scripts use, and lets declared keys and channels through, so
// that TestConformance's run under it means something.
func TestScriptsDeclareKeys(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t)
	ctx := t.Context()
	k := d.keys("q")
	for _, c := range []struct {
		name, body string
		ok         bool
	}{
		{"declared", `redis.call("HSET", KEYS[1], "f", "v") return redis.call("HGET", KEYS[1], "f")`, true},
		{"publish", `return redis.call("PUBLISH", ARGV[1] .. "x", "")`, true},
		{"built from a declared key", `return redis.call("HGET", KEYS[1] .. ":t:1", "st")`, false},
		{"built from ARGV", `return redis.call("GET", ARGV[1] .. "u:k")`, false},
		{"pcall", `return redis.pcall("DEL", ARGV[1] .. "t:1")`, false},
		{"second key of DEL", `return redis.call("DEL", KEYS[1], ARGV[1] .. "t:1")`, false},
		{"through a helper", `bulk("ZADD", ARGV[1] .. "ready:9", {"1", "a"}) return 1`, false},
	} {
		s := newScript("-- test script\n-- KEYS[1] -> P:{q}:tasks\n-- ARGV[1] -> P:{q}:\n" + luaLib + c.body)
		err := d.run(ctx, s, []string{k.tasks}, k.prefix).Err()
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), "undeclared key")) {
			t.Errorf("%s: err = %v; want the undeclared key refused", c.name, err)
		}
	}
	// The production scripts are the checked ones minus the check.
	for _, s := range []*script{scriptEnqueue, scriptFetch, scriptComplete, scriptCleanup, scriptWorkerList} {
		s.built()
		if s.checkedSrc == s.src || !strings.Contains(s.checkedSrc, keyCheck) || strings.Replace(s.checkedSrc, keyCheck, "", 1) != s.src {
			t.Errorf("script %.40q: checked source is not the source with keyCheck added", s.src)
		}
	}
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
