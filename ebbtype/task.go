package ebbtype

import (
	"encoding/json"
	"time"
)

// State is where a task is in its lifecycle:
//
//	scheduled ─► queued ─► running ─► succeeded
//	                ▲         │
//	                │         ├─► retrying ─► (queued …)
//	                │         └─► dead
//	                └── (lease rescue, hand-back, dead retry)
//
// Any non-terminal task can become cancelled.
type State string

// Task states.
const (
	StateScheduled State = "scheduled"
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateRetrying  State = "retrying"
	StateSucceeded State = "succeeded"
	StateDead      State = "dead"
	StateCancelled State = "cancelled"
)

// States returns every state, in lifecycle order.
func States() []State {
	return []State{StateScheduled, StateQueued, StateRunning, StateRetrying, StateSucceeded, StateDead, StateCancelled}
}

// Valid reports whether s is one of States. Drivers call it for every
// decoded task, so it does not allocate.
func (s State) Valid() bool {
	switch s {
	case StateScheduled, StateQueued, StateRunning, StateRetrying, StateSucceeded, StateDead, StateCancelled:
		return true
	}
	return false
}

// Terminal reports whether no further transition happens on its own.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateDead || s == StateCancelled
}

// Priority orders tasks within a queue: high before normal before low.
type Priority int

// Priorities. Lower runs first; the zero value means PriorityNormal to the
// client.
const (
	PriorityHigh   Priority = 1
	PriorityNormal Priority = 2
	PriorityLow    Priority = 3
)

// TaskInfo is a task: what it is, where it is in its lifecycle and what
// happened to it. Brokers store it, the client returns it, handlers receive
// it, and the API serves it as JSON.
type TaskInfo struct {
	ID          string            `json:"id"`
	Kind        string            `json:"kind"`
	Queue       string            `json:"queue"`
	EncodedArgs json.RawMessage   `json:"args"`
	Headers     map[string]string `json:"headers,omitempty"`
	Priority    Priority          `json:"priority"`
	State       State             `json:"state"`
	// RunAt is when the task became or becomes runnable.
	RunAt       time.Time     `json:"run_at"`
	Attempt     int           `json:"attempt"` // attempts started so far
	MaxAttempts int           `json:"max_attempts"`
	Timeout     time.Duration `json:"timeout_ns,omitempty"` // 0: none
	// Retention is how long a finished task and its result are kept.
	Retention time.Duration `json:"retention_ns"`
	UniqueKey string        `json:"unique_key,omitempty"`
	// UniqueTTL is how long the unique key is held; 0 holds it while the
	// task is not terminal.
	UniqueTTL time.Duration `json:"unique_ttl_ns,omitempty"`

	EnqueuedAt time.Time `json:"enqueued_at"`
	StartedAt  time.Time `json:"started_at,omitzero"` // of the latest attempt
	FinishedAt time.Time `json:"finished_at,omitzero"`

	WorkerID string `json:"worker_id,omitempty"` // of the latest attempt
	// LeaseToken fences the running attempt's completion. It never leaves
	// the process as JSON: whoever knows it could complete the task.
	LeaseToken      string    `json:"-"`
	LeaseExpiresAt  time.Time `json:"lease_expires_at,omitzero"`
	CancelRequested bool      `json:"cancel_requested,omitempty"`

	Errors []AttemptError  `json:"errors,omitempty"`
	Result json.RawMessage `json:"result,omitempty"` // JSON; set when succeeded

	// Malformed is set by a driver that could not decode the stored task;
	// it says what is wrong. The fields it could read (at least ID and
	// Queue) are filled in; the worker dead-letters such a task.
	Malformed string `json:"malformed,omitempty"`
}

// MarshalJSON keeps one malformed task from breaking a whole answer: args
// or a result that are not valid JSON are encoded as a JSON string.
func (t TaskInfo) MarshalJSON() ([]byte, error) {
	type plain TaskInfo
	p := plain(t)
	p.EncodedArgs, p.Result = rawOrString(p.EncodedArgs), rawOrString(p.Result)
	return json.Marshal(p)
}

func rawOrString(b json.RawMessage) json.RawMessage {
	switch {
	case len(b) == 0:
		// Empty but not nil (a damaged row's args) would not encode at
		// all; nil encodes as null (found by fuzzing).
		return nil
	case json.Valid(b):
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

// AttemptError is one entry of a task's error history.
type AttemptError struct {
	Attempt  int       `json:"attempt"`
	At       time.Time `json:"at"`
	Error    string    `json:"error"`
	Stack    string    `json:"stack,omitempty"`
	WorkerID string    `json:"worker_id,omitempty"`
}
