package celery

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ebbq/ebb/internal/testredis"
)

// kombuMessage is a task message as Celery 5.2 puts it on a list (the
// research notes' verbatim envelope, with this test's id and queue).
func kombuMessage(id, queue, tag string) string {
	body := base64.StdEncoding.EncodeToString([]byte(`[[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`))
	return fmt.Sprintf(`{"body": %q, "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "proj.add", "id": %q, "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": %q, "parent_id": null, "argsrepr": "(2, 2)", "kwargsrepr": "{}", "origin": "gen1@h", "ignore_result": false}, "properties": {"correlation_id": %q, "reply_to": "r", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": %q}, "priority": 0, "body_encoding": "base64", "delivery_tag": %q}}`,
		body, id, id, id, queue, tag)
}

// TestBrokerCountsKombuLayout: queued is the sum over the queue's list and
// its priority lists, under the global key prefix and on a non-zero DB; the
// head is the message BRPOP takes next; the unacked hash's messages of the
// pool's queues are found, others ignored.
func TestBrokerCountsKombuLayout(t *testing.T) {
	t.Parallel()
	rs := testredis.Start(t)
	ctx := context.Background()
	const prefix = "app:"
	b, err := OpenBroker(BrokerConfig{URL: fmt.Sprintf("redis://127.0.0.1:%d/5", rs.Port), KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rs.Port), DB: 5})
	defer r.Close()
	r.LPush(ctx, prefix+"reports", kombuMessage("t1", "reports", "tag1"))
	r.LPush(ctx, prefix+"reports", kombuMessage("t2", "reports", "tag2"))
	r.LPush(ctx, prefix+"reports\x06\x169", kombuMessage("t3", "reports", "tag3"))
	r.LPush(ctx, prefix+"other", kombuMessage("t4", "other", "tag4"))
	unacked := func(id, q, tag string) string {
		v, _ := json.Marshal([]json.RawMessage{json.RawMessage(kombuMessage(id, q, tag)), json.RawMessage(`""`), json.RawMessage(fmt.Sprintf("%q", q))})
		return string(v)
	}
	r.HSet(ctx, prefix+"unacked", "tag5", unacked("t5", "reports", "tag5"), "tag6", unacked("t6", "other", "tag6"))

	qs, un, err := b.Counts(ctx, []string{"reports"})
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 1 || qs[0].Queued != 3 || qs[0].HeadTag != "tag1" {
		t.Errorf("counts = %+v, want 3 queued with tag1 at the head", qs)
	}
	if len(un) != 1 || un[0].TaskID != "t5" || un[0].Queue != "reports" {
		t.Errorf("unacked = %+v, want t5 of reports only", un)
	}
	// The same keys without the prefix are another app's.
	if qs, _, _ := b.Counts(ctx, []string{"other"}); qs[0].Queued != 1 {
		t.Errorf("other = %+v, want 1", qs)
	}
}

// TestMonitorWakesOnPush: with keyspace notifications (which the monitor
// turns on), a push onto a watched queue calls OnWork at once, and the
// oldest-waiting age is measured from that push.
func TestMonitorWakesOnPush(t *testing.T) {
	t.Parallel()
	rs := testredis.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := OpenBroker(BrokerConfig{URL: fmt.Sprintf("redis://127.0.0.1:%d/2", rs.Port), KeyPrefix: "p:"})
	if err != nil {
		t.Fatal(err)
	}
	woken := make(chan struct{}, 16)
	m := NewMonitor(MonitorConfig{Broker: b, Queues: []string{"q"}, OnWork: func() {
		select {
		case woken <- struct{}{}:
		default:
		}
	}})
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done; _ = m.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for !m.watchingNow() {
		if time.Now().After(deadline) {
			t.Fatalf("not watching: %s", m.WakeStatus())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c0, err := m.Counts(ctx, time.Now(), 0)
	if err != nil || c0.Queues[0].Queued != 0 {
		t.Fatalf("counts before: %+v, %v", c0, err)
	}
	for len(woken) > 0 {
		<-woken
	}
	r := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rs.Port), DB: 2})
	defer r.Close()
	pushed := time.Now()
	r.LPush(ctx, "p:q", kombuMessage("t1", "q", "tag1"))
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up within 5 s of the push")
	}
	// Cached counts are reread because the key changed.
	c, err := m.Counts(ctx, time.Now(), time.Hour)
	if err != nil || c.Queues[0].Queued != 1 {
		t.Fatalf("counts after the push: %+v, %v", c, err)
	}
	if seen := c.OldestSeen["q"]; seen.Before(pushed.Add(-time.Second)) || seen.After(time.Now()) {
		t.Errorf("oldest seen %s, want about the push at %s", seen, pushed)
	}
}
