package ebbpostgres

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/testpg"
)

func groupTask(id, kind string) *ebbtype.TaskInfo {
	now := time.Now()
	return &ebbtype.TaskInfo{ID: id, Queue: "q", Kind: kind, EncodedArgs: []byte("{}"), Priority: ebbtype.PriorityNormal,
		MaxAttempts: 1, EnqueuedAt: now, RunAt: now}
}

func openGroupDriver(t *testing.T) *Driver {
	t.Helper()
	testpg.Check(t)
	d, err := Open(t.Context(), testpg.SchemaURL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// TestGroupedEnqueueKeepsCallsApart: calls committed in one statement get
// their own outcomes. A call whose task the server rejects (a NUL byte in a
// text column) fails alone, a call holding a stored ID gets it back as a
// duplicate, and the others are stored.
func TestGroupedEnqueueKeepsCallsApart(t *testing.T) {
	t.Parallel()
	d := openGroupDriver(t)
	ctx := t.Context()
	if _, err := d.enqueue(ctx, nil, []*ebbtype.TaskInfo{groupTask("stored", "k")}, false); err != nil {
		t.Fatal(err)
	}
	good := &enqueueCall{Tasks: []*ebbtype.TaskInfo{groupTask("a", "k"), groupTask("b", "k")}}
	bad := &enqueueCall{Tasks: []*ebbtype.TaskInfo{groupTask("c", "bad\x00kind")}}
	dup := &enqueueCall{Tasks: []*ebbtype.TaskInfo{groupTask("stored", "k"), groupTask("d", "k")}}
	d.commitEnqueues(ctx, []*enqueueCall{good, bad, dup})
	if good.Err != nil || len(good.Results) != 2 || good.Results[0].ID != "a" || good.Results[1].ID != "b" ||
		good.Results[0].Duplicate || good.Results[1].Duplicate {
		t.Fatalf("good call: %+v, %v; want a and b stored", good.Results, good.Err)
	}
	if bad.Err == nil {
		t.Fatalf("bad call: %+v, want the server's error", bad.Results)
	}
	if dup.Err != nil || len(dup.Results) != 2 || !dup.Results[0].Duplicate || dup.Results[1].Duplicate {
		t.Fatalf("call with a stored id: %+v, %v; want stored as a duplicate and d stored", dup.Results, dup.Err)
	}
	for id, want := range map[string]bool{"a": true, "b": true, "c": false, "d": true} {
		_, err := d.TaskGet(ctx, id)
		if got := err == nil; got != want {
			t.Errorf("task %s stored: %v, want %v (%v)", id, got, want, err)
		}
	}

	// Grouped without a failure: one statement, every call its own slice.
	e := &enqueueCall{Tasks: []*ebbtype.TaskInfo{groupTask("e", "k")}}
	f := &enqueueCall{Tasks: []*ebbtype.TaskInfo{groupTask("f", "k"), groupTask("g", "k")}}
	d.commitEnqueues(ctx, []*enqueueCall{e, f})
	if e.Err != nil || f.Err != nil || len(e.Results) != 1 || e.Results[0].ID != "e" || len(f.Results) != 2 || f.Results[1].ID != "g" {
		t.Fatalf("e: %+v %v; f: %+v %v", e.Results, e.Err, f.Results, f.Err)
	}
	var n int
	if err := d.pool.QueryRow(ctx, `SELECT sum(enqueued) FROM `+d.t("queue_counters")+` WHERE queue = 'q'`).Scan(&n); err != nil || n != 7 {
		t.Fatalf("enqueued counter %d (%v), want 7 (stored, a, b, d, e, f, g: the duplicate counts once, c not at all)", n, err)
	}
}

// TestConcurrentEnqueuesAllStored: many producers at once, through the
// group, each task stored once and each caller told its own IDs.
func TestConcurrentEnqueuesAllStored(t *testing.T) {
	t.Parallel()
	d := openGroupDriver(t)
	ctx := t.Context()
	const producers, each = 16, 25
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				id := string(rune('A'+p)) + "-" + string(rune('a'+i))
				res, err := d.Enqueue(ctx, []*ebbtype.TaskInfo{groupTask(id, "k")})
				if err != nil || len(res) != 1 || res[0].ID != id || res[0].Duplicate {
					t.Errorf("enqueue %s: %+v, %v", id, res, err)
					return
				}
			}
		})
	}
	wg.Wait()
	var n int
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM `+d.t("tasks")).Scan(&n); err != nil || n != producers*each {
		t.Fatalf("stored %d tasks (%v), want %d", n, err, producers*each)
	}
}

// A call cancelled before it was taken into a statement stores nothing and
// says so.
func TestGroupedEnqueueCancelled(t *testing.T) {
	t.Parallel()
	d := openGroupDriver(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := d.Enqueue(ctx, []*ebbtype.TaskInfo{groupTask("x", "k")}); err == nil {
		t.Fatal("enqueue with a cancelled context succeeded")
	}
	if _, err := d.TaskGet(t.Context(), "x"); err == nil {
		t.Fatal("a cancelled enqueue stored its task")
	}
}

// wakerCounter counts the waker's statements (the one that notifies after
// an enqueue committed); the enqueue statements pass uncounted.
type wakerCounter struct{ n atomic.Int64 }

func (c *wakerCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(d.SQL, "SELECT pg_notify") {
		c.n.Add(1)
	}
	return ctx
}

func (*wakerCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestLoneEnqueueNotifiesInItsStatement: a call that commits alone wakes
// listeners from its own statement, without a transaction of the waker's;
// calls that shared a statement are announced by the waker. Both reach a
// listener.
func TestLoneEnqueueNotifiesInItsStatement(t *testing.T) {
	t.Parallel()
	testpg.Check(t)
	ctx := t.Context()
	connURL, schema, _, err := splitURL(testpg.SchemaURL(t))
	if err != nil {
		t.Fatal(err)
	}
	pcfg, err := pgxpool.ParseConfig(connURL)
	if err != nil {
		t.Fatal(err)
	}
	waker := &wakerCounter{}
	pcfg.ConnConfig.Tracer = waker // copied to the waker's own connection
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDriver(ctx, pool, true, Config{Schema: schema})
	if err != nil {
		pool.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	events, err := d.Listen(ctx, ebbdriver.ListenParams{Queues: []string{"q"}})
	if err != nil {
		t.Fatal(err)
	}
	heard := func(what string) {
		t.Helper()
		select {
		case ev := <-events:
			if ev.Kind != ebbdriver.EventQueued || ev.Queue != "q" {
				t.Fatalf("%s: heard %+v, want tasks queued in q", what, ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no notification within 10 s", what)
		}
	}

	if _, err := d.Enqueue(ctx, []*ebbtype.TaskInfo{groupTask("lone", "k")}); err != nil {
		t.Fatal(err)
	}
	heard("a lone enqueue")
	if n := waker.n.Load(); n != 0 {
		t.Errorf("a lone enqueue made the waker send %d statements; want the enqueue's own to notify", n)
	}

	a := &enqueueCall{Tasks: []*ebbtype.TaskInfo{groupTask("a", "k")}}
	b := &enqueueCall{Tasks: []*ebbtype.TaskInfo{groupTask("b", "k")}}
	d.commitEnqueues(ctx, []*enqueueCall{a, b})
	if a.Err != nil || b.Err != nil {
		t.Fatalf("shared commit: %v, %v", a.Err, b.Err)
	}
	heard("a shared enqueue")
	if n := waker.n.Load(); n != 1 {
		t.Errorf("a shared enqueue made the waker send %d statements, want 1", n)
	}
}
