package ebbredis

import (
	"sync"
	"testing"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// TestGroupedEnqueueKeepsCallsApart: calls sent together get their own
// outcomes. A call holding a task that cannot be stored fails alone, a call
// holding a stored ID gets it back as a duplicate, and the others are
// stored, in two queues at once.
func TestGroupedEnqueueKeepsCallsApart(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	stored := testTask("a", now)
	mustEnqueue(t, d, stored)
	a1, a2, b1 := testTask("a", now), testTask("a", now), testTask("b", now)
	bad := testTask("a", now)
	bad.EncodedArgs = []byte(`{not json`)
	again, fresh := *stored, testTask("b", now)
	good := &enqueueCall{Tasks: []*ebbtype.TaskInfo{a1, b1, a2}}
	badCall := &enqueueCall{Tasks: []*ebbtype.TaskInfo{bad}}
	dup := &enqueueCall{Tasks: []*ebbtype.TaskInfo{&again, fresh}}
	d.commitEnqueues(ctx, []*enqueueCall{good, badCall, dup})
	if good.Err != nil || len(good.Results) != 3 {
		t.Fatalf("good call: %+v, %v", good.Results, good.Err)
	}
	for i, task := range good.Tasks {
		if r := good.Results[i]; r.ID != task.ID || r.Duplicate {
			t.Errorf("good call, task %d: %+v, want %s stored", i, r, task.ID)
		}
	}
	if badCall.Err == nil {
		t.Fatalf("bad call: %+v, want an error for its args", badCall.Results)
	}
	if dup.Err != nil || len(dup.Results) != 2 || !dup.Results[0].Duplicate || dup.Results[1].Duplicate || dup.Results[1].ID != fresh.ID {
		t.Fatalf("call with a stored id: %+v, %v; want a duplicate, then %s stored", dup.Results, dup.Err, fresh.ID)
	}
	for _, task := range []*ebbtype.TaskInfo{a1, a2, b1, fresh} {
		if _, err := d.TaskGet(ctx, task.ID); err != nil {
			t.Errorf("task %s not stored: %v", task.ID, err)
		}
	}
	if _, err := d.TaskGet(ctx, bad.ID); err == nil {
		t.Errorf("the bad task %s was stored", bad.ID)
	}
	stats, err := d.QueueStats(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	queued := map[string]int64{}
	for _, s := range stats {
		queued[s.Name] = s.Queued
	}
	if queued["a"] != 3 || queued["b"] != 2 {
		t.Fatalf("queued %v, want a: 3 (stored, a1, a2), b: 2", queued)
	}
}

// TestConcurrentEnqueuesAllStored: many producers at once through the
// group, each task stored once and each caller told its own IDs.
func TestConcurrentEnqueuesAllStored(t *testing.T) {
	d, ctx, now := parallelDriver(t)
	const producers, each = 16, 50
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for range each {
				task := testTask("c", now)
				res, err := d.Enqueue(ctx, []*ebbtype.TaskInfo{task})
				if err != nil || len(res) != 1 || res[0].ID != task.ID || res[0].Duplicate {
					t.Errorf("enqueue %s: %+v, %v", task.ID, res, err)
					return
				}
			}
		})
	}
	wg.Wait()
	stats, err := d.QueueStats(ctx, time.Now())
	if err != nil || len(stats) != 1 || stats[0].Queued != producers*each {
		t.Fatalf("stats %+v (%v), want %d queued in c", stats, err, producers*each)
	}
}
