// Package ebbtype holds the types that ebb's public API, its brokers and its
// HTTP API share: a task, its states and error history, queue counts, worker
// registry entries, schedules and scaling decisions.
//
// It has no dependencies beyond the standard library and changes only in
// backward-compatible ways, so drivers, the root package and tools built on
// ebb can all depend on it. The root package ebb re-exports the names most
// programs need (ebb.TaskInfo, ebb.State, …) as aliases; use either.
//
// One struct per concept serves Go callers and JSON alike: the JSON field
// names below are the ones `ebb inspect … --json` prints and /api/v1 serves.
package ebbtype

import (
	"errors"
	"time"
)

// Errors returned across ebb's API and by every driver. Match them with
// errors.Is; messages are wrapped with what was not found.
var (
	// ErrTaskNotFound means no task with that id exists (or it has expired
	// after its retention period).
	ErrTaskNotFound = errors.New("task not found")

	// ErrWorkerNotFound means no live worker with that id is registered.
	ErrWorkerNotFound = errors.New("worker not found")

	// ErrScheduleNotFound means no schedule has that name.
	ErrScheduleNotFound = errors.New("schedule not found")

	// ErrTaskState means the task exists but its state does not allow the
	// action (deleting a running task, retrying a succeeded one); it is
	// wrapped with the state: fmt.Errorf("%w: task is running", ErrTaskState).
	ErrTaskState = errors.New("task state does not allow this")

	// ErrLeaseLost means the caller no longer owns the task: its lease
	// expired and the task was rescued, handed to another worker, or
	// finished. The caller must not act as if the completion was recorded.
	ErrLeaseLost = errors.New("lease lost: another worker owns the task or it already finished")
)

// Clock tells the time. ebb's worker, maintenance and control plane read the
// time only through one, so tests can move it; nil means the wall clock.
type Clock interface {
	Now() time.Time
}
