package ebb

import (
	"errors"
	"fmt"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

var (
	// ErrTaskNotFound: no task has that id (or its retention has passed).
	ErrTaskNotFound = ebbtype.ErrTaskNotFound

	// ErrLeaseLost: the worker no longer owns the task it tried to complete.
	ErrLeaseLost = ebbtype.ErrLeaseLost

	// ErrWorkerNotFound: no live worker has that id.
	ErrWorkerNotFound = ebbtype.ErrWorkerNotFound

	// ErrScheduleNotFound: no schedule has that name.
	ErrScheduleNotFound = ebbtype.ErrScheduleNotFound

	// ErrTaskState: the task's state does not allow the action (deleting a
	// running task, retrying a succeeded one).
	ErrTaskState = ebbtype.ErrTaskState

	// ErrArgsTooLarge: the encoded args exceed the client's MaxArgsBytes.
	ErrArgsTooLarge = errors.New("args too large")

	// ErrInvalidOpts: an enqueue option is out of range.
	ErrInvalidOpts = errors.New("invalid enqueue options")

	// ErrTaskDead is matched (errors.Is) by the error Wait returns for a task
	// that ended dead.
	ErrTaskDead = errors.New("task dead")

	// ErrTaskCancelled is matched (errors.Is) by the error Wait returns for a
	// cancelled task, and is the cause of a handler's context when its task
	// is cancelled while running.
	ErrTaskCancelled = errors.New("task cancelled")
)

// TaskFailedError is returned by Wait when a task ended dead or cancelled. It
// matches ErrTaskDead or ErrTaskCancelled with errors.Is.
type TaskFailedError struct {
	Task *TaskInfo
}

func (e *TaskFailedError) Error() string {
	last := "no error recorded"
	if n := len(e.Task.Errors); n > 0 {
		last = e.Task.Errors[n-1].Error
	}
	return fmt.Sprintf("task %s (%s) %s after %d attempt(s): %s", e.Task.ID, e.Task.Kind, e.Task.State, e.Task.Attempt, last)
}

func (e *TaskFailedError) Is(target error) bool {
	switch target {
	case ErrTaskDead:
		return e.Task.State == StateDead
	case ErrTaskCancelled:
		return e.Task.State == StateCancelled
	}
	return false
}

// NoRetry wraps err so the task goes straight to the dead state instead of
// being retried: for failures that another attempt cannot fix.
func NoRetry(err error) error {
	if err == nil {
		err = errors.New("failed (no retry)")
	}
	return &noRetryError{err: err}
}

type noRetryError struct{ err error }

func (e *noRetryError) Error() string { return e.err.Error() }
func (e *noRetryError) Unwrap() error { return e.err }

// RetryAfter wraps err so the task is retried after d instead of after the
// retry policy's backoff (for example when an API says when to come back).
// The attempt still counts towards MaxAttempts.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = fmt.Errorf("retry requested after %s", d)
	}
	return &retryAfterError{after: d, err: err}
}

type retryAfterError struct {
	after time.Duration
	err   error
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }
