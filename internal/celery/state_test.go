package celery

import (
	"testing"
	"time"
)

func ptr(n int) *int { return &n }

// TestStateFollowsATask folds the events a Celery 5.2 worker sends for one
// task and checks what the scaler and the task page read from them.
func TestStateFollowsATask(t *testing.T) {
	t.Parallel()
	s := NewState(0)
	t0 := time.Unix(1_800_000_000, 0)
	const node = "pool-abc@host"
	s.apply(event{Type: "worker-online", Hostname: node, PID: 42, Freq: 2, SwVer: "5.2.6"}, t0)
	s.apply(event{Type: "task-received", Hostname: node, UUID: "t1", Name: "proj.add", Args: "(1, 2)", Kwargs: "{}"}, t0)
	w, _ := s.Worker(node, t0)
	if !w.Alive || w.Held != 1 || w.Reserved != 1 || w.Idle() {
		t.Fatalf("after task-received: %+v, want alive, holding 1 reserved, not idle", w)
	}
	s.apply(event{Type: "task-started", Hostname: node, UUID: "t1"}, t0.Add(time.Second))
	if w, _ = s.Worker(node, t0.Add(time.Second)); w.Reserved != 0 || w.Held != 1 {
		t.Fatalf("after task-started: %+v, want 1 held, none reserved", w)
	}
	if held := s.HeldBy(t0.Add(time.Second)); held["t1"] != node {
		t.Fatalf("HeldBy = %v", held)
	}
	s.apply(event{Type: "task-succeeded", Hostname: node, UUID: "t1", Result: "3", Runtime: 0.5}, t0.Add(2*time.Second))
	task, ok := s.Task("t1")
	if !ok || task.State != StateSuccess || task.Name != "proj.add" || task.Args != "(1, 2)" || task.Result != "3" || task.Runtime != 0.5 || task.Worker != node {
		t.Fatalf("task = %+v", task)
	}
	s.apply(event{Type: "worker-heartbeat", Hostname: node, Active: ptr(0), Processed: ptr(1), Freq: 2}, t0.Add(2*time.Second))
	if w, _ = s.Worker(node, t0.Add(2*time.Second)); !w.Idle() || w.Process != 1 {
		t.Fatalf("after success and a heartbeat: %+v, want idle, processed 1", w)
	}
}

// TestStateWorkerGoneAfterTwoMissedHeartbeats: Celery's State counts a
// worker alive while now < last heartbeat + 2 × freq.
func TestStateWorkerGoneAfterTwoMissedHeartbeats(t *testing.T) {
	t.Parallel()
	s := NewState(0)
	t0 := time.Unix(1_800_000_000, 0)
	s.apply(event{Type: "worker-heartbeat", Hostname: "w@h", Freq: 2, Active: ptr(1)}, t0)
	s.apply(event{Type: "task-started", Hostname: "w@h", UUID: "t"}, t0)
	if w, _ := s.Worker("w@h", t0.Add(3900*time.Millisecond)); !w.Alive {
		t.Errorf("gone 3.9 s after a heartbeat with freq 2 s")
	}
	w, _ := s.Worker("w@h", t0.Add(4*time.Second))
	if w.Alive || w.Active != 0 || w.Held != 0 {
		t.Errorf("4 s after the last heartbeat: %+v, want gone and holding nothing", w)
	}
	if len(s.HeldBy(t0.Add(4*time.Second))) != 0 {
		t.Errorf("a gone worker's tasks still count as held")
	}
	s.apply(event{Type: "worker-offline", Hostname: "w@h"}, t0.Add(time.Second))
	if w, _ := s.Worker("w@h", t0.Add(time.Second)); w.Alive {
		t.Errorf("alive after worker-offline")
	}
}

// TestStateIsBounded keeps the newest tasks, never one a live worker holds.
func TestStateIsBounded(t *testing.T) {
	t.Parallel()
	s := NewState(3)
	now := time.Unix(1_800_000_000, 0)
	s.apply(event{Type: "worker-online", Hostname: "w@h", Freq: 2}, now)
	s.apply(event{Type: "task-received", Hostname: "w@h", UUID: "held"}, now)
	for _, id := range []string{"a", "b", "c", "d"} {
		s.apply(event{Type: "task-received", Hostname: "w@h", UUID: id}, now)
		s.apply(event{Type: "task-succeeded", Hostname: "w@h", UUID: id}, now)
	}
	if _, ok := s.Task("held"); !ok {
		t.Errorf("the held task was evicted")
	}
	if _, ok := s.Task("a"); ok {
		t.Errorf("the oldest finished task was kept past the bound")
	}
	if n := len(s.Tasks(100)); n != 3 {
		t.Errorf("%d tasks kept, want 3", n)
	}
}
