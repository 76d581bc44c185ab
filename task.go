package ebb

import (
	"github.com/ebbq/ebb/ebbtype"
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

// Shared types, defined in ebbtype (see its documentation) and re-exported
// here for convenience.
type (
	// State is where a task is in its lifecycle.
	State = ebbtype.State
	// Priority orders tasks within a queue: high before normal before low.
	Priority = ebbtype.Priority
	// TaskInfo describes a task: what it is, where it is in its lifecycle,
	// and what happened to it.
	TaskInfo = ebbtype.TaskInfo
	// AttemptError is one entry of a task's error history.
	AttemptError = ebbtype.AttemptError
	// QueueStats are a queue's counts.
	QueueStats = ebbtype.QueueStats
	// WorkerInfo is a worker registry entry.
	WorkerInfo = ebbtype.WorkerInfo
	// Schedule is a periodic schedule (beat).
	Schedule = ebbtype.Schedule
	// Decision is one scaling decision of the control plane.
	Decision = ebbtype.Decision
)

// Task states.
const (
	StateScheduled = ebbtype.StateScheduled
	StateQueued    = ebbtype.StateQueued
	StateRunning   = ebbtype.StateRunning
	StateRetrying  = ebbtype.StateRetrying
	StateSucceeded = ebbtype.StateSucceeded
	StateDead      = ebbtype.StateDead
	StateCancelled = ebbtype.StateCancelled
)

// Priorities. The zero value means PriorityNormal.
const (
	PriorityHigh   = ebbtype.PriorityHigh
	PriorityNormal = ebbtype.PriorityNormal
	PriorityLow    = ebbtype.PriorityLow
)

// Task is a task handed to a typed handler, with its arguments decoded.
type Task[T any] struct {
	*TaskInfo
	Args T
}
