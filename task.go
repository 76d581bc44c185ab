package ebb

import (
	"encoding/json"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
)

// Args is implemented by the argument types of typed tasks. Kind names the
// handler that runs them; it must be stable across deploys because it is
// stored with every task.
type Args interface {
	Kind() string
}

// ArgsWithOpts is implemented by argument types that carry their own enqueue
// defaults (a queue, a priority, …). Options passed to Enqueue override them
// field by field.
type ArgsWithOpts interface {
	Args
	EnqueueOpts() EnqueueOpts
}

// State is where a task is in its lifecycle; see ebbdriver.State.
type State = ebbdriver.State

// Task states.
const (
	StateScheduled = ebbdriver.StateScheduled
	StateQueued    = ebbdriver.StateQueued
	StateRunning   = ebbdriver.StateRunning
	StateRetrying  = ebbdriver.StateRetrying
	StateSucceeded = ebbdriver.StateSucceeded
	StateDead      = ebbdriver.StateDead
	StateCancelled = ebbdriver.StateCancelled
)

// Priority orders tasks within a queue: high before normal before low.
type Priority int

// Priorities. The zero value means PriorityNormal.
const (
	PriorityHigh   Priority = ebbdriver.PriorityHigh
	PriorityNormal Priority = ebbdriver.PriorityNormal
	PriorityLow    Priority = ebbdriver.PriorityLow
)

// AttemptError is one entry of a task's error history.
type AttemptError = ebbdriver.AttemptError

// TaskInfo describes a task: what it is, where it is in its lifecycle, and
// what happened to it.
type TaskInfo struct {
	ID          string            `json:"id"`
	Kind        string            `json:"kind"`
	Queue       string            `json:"queue"`
	EncodedArgs json.RawMessage   `json:"args"`
	Headers     map[string]string `json:"headers,omitempty"`
	Priority    Priority          `json:"priority"`
	State       State             `json:"state"`
	Attempt     int               `json:"attempt"`
	MaxAttempts int               `json:"max_attempts"`
	Timeout     time.Duration     `json:"timeout_ns,omitempty"`
	Retention   time.Duration     `json:"retention_ns"`
	UniqueKey   string            `json:"unique_key,omitempty"`

	RunAt      time.Time `json:"run_at"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`

	WorkerID        string          `json:"worker_id,omitempty"`
	CancelRequested bool            `json:"cancel_requested,omitempty"`
	Errors          []AttemptError  `json:"errors,omitempty"`
	Result          json.RawMessage `json:"result,omitempty"`
}

// Task is a task handed to a typed handler, with its arguments decoded.
type Task[T any] struct {
	*TaskInfo
	Args T
}

func taskInfoFromRecord(r *ebbdriver.TaskRecord) *TaskInfo {
	return &TaskInfo{
		ID:              r.ID,
		Kind:            r.Kind,
		Queue:           r.Queue,
		EncodedArgs:     r.Args,
		Headers:         r.Headers,
		Priority:        Priority(r.Priority),
		State:           r.State,
		Attempt:         r.Attempt,
		MaxAttempts:     r.MaxAttempts,
		Timeout:         r.Timeout,
		Retention:       r.Retention,
		UniqueKey:       r.UniqueKey,
		RunAt:           r.RunAt,
		EnqueuedAt:      r.EnqueuedAt,
		StartedAt:       r.StartedAt,
		FinishedAt:      r.FinishedAt,
		WorkerID:        r.WorkerID,
		CancelRequested: r.CancelRequested,
		Errors:          r.Errors,
		Result:          r.Result,
	}
}
