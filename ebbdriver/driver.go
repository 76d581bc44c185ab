// Package ebbdriver is the seam between ebb and its brokers.
//
// A broker driver (ebbredis, ebbsqlite, …) implements Driver. The root package
// ebb builds clients, workers and the control plane on top of it and never
// talks to a broker directly, so every broker behaves the same way: the shared
// conformance suite in ebbdriver/ebbdrivertest exercises each driver through
// this interface and through the public ebb API.
//
// The interface is an adapter seam, not a user-facing API: it may change
// between minor versions. Users pick a driver and hand it to ebb.NewClient and
// ebb.NewWorker; they do not call it.
//
// Conventions every driver follows:
//
//   - Times are passed in by the caller (the "Now" fields), never read from the
//     broker's clock, so tests can drive time and all drivers agree.
//   - Batch methods take and return slices in the same order and do the whole
//     batch in one round trip where the broker allows it.
//   - Errors for a missing task wrap ErrTaskNotFound; completions from a
//     worker that no longer owns the task report ErrLeaseLost per item.
//   - Nothing is ever dropped: a record the driver cannot decode is returned
//     with Malformed set so the worker can dead-letter it with the reason.
package ebbdriver

import (
	"context"
	"errors"
	"time"
)

// Errors drivers return. Callers match them with errors.Is.
var (
	// ErrTaskNotFound means no task with that id exists (or it has expired
	// after its retention period).
	ErrTaskNotFound = errors.New("task not found")

	// ErrLeaseLost means the caller no longer owns the task: its lease expired
	// and the task was rescued, handed to another worker, or finished. The
	// caller must not act as if the completion was recorded.
	ErrLeaseLost = errors.New("lease lost: another worker owns the task or it already finished")

	// ErrWorkerNotFound means no live worker with that id is registered.
	ErrWorkerNotFound = errors.New("worker not found")

	// ErrTaskState means the task exists but its state does not allow the
	// action (deleting a running task, retrying a succeeded one). Drivers
	// wrap it with the state: fmt.Errorf("%w: task is running", ErrTaskState).
	ErrTaskState = errors.New("task state does not allow this")
)

// Driver is everything ebb needs from a broker.
type Driver interface {
	// Name is the broker's short name ("redis", "sqlite"), used in logs,
	// metrics and benchmark output.
	Name() string

	// Close releases the driver's resources. It does not close clients the
	// caller passed in (e.g. a *redis.Client).
	Close() error

	// --- producing ---------------------------------------------------------

	// Enqueue stores tasks in one round trip. Each task arrives fully
	// populated by the client (ID, Queue, Kind, Args, Priority, RunAt,
	// MaxAttempts, Retention, EnqueuedAt, …). A task whose RunAt is after
	// EnqueuedAt starts Scheduled, otherwise Queued.
	//
	// A task whose ID already exists is not stored again: its result has
	// Duplicate set and ID of the existing task (beat relies on this to
	// collapse a tick enqueued twice). A task whose UniqueKey is held by
	// another task of the same queue is not stored either: Duplicate is set
	// and ID names the holder. Unique keys are scoped to a queue (the same key
	// in two queues names two tasks), which keeps every key of a queue in one
	// Redis Cluster slot.
	//
	// Enqueue notifies listeners of the queues that received Queued tasks.
	// So does every other transition into Queued (hand-back, an immediate
	// retry, promotion of due tasks, lease rescue, dead retry), so an idle
	// worker never waits for its backstop poll to see work.
	Enqueue(ctx context.Context, tasks []*TaskRecord) ([]EnqueueResult, error)

	// --- consuming ---------------------------------------------------------

	// Fetch first promotes due Scheduled/Retrying tasks of the given queues to
	// Queued, then atomically claims up to Limit Queued tasks, taking queues in
	// the given order (all of the first queue's tasks before any of the
	// second's) and within a queue by Priority, then by RunAt, then by ID.
	// Claimed tasks become Running with Attempt incremented, StartedAt = Now,
	// WorkerID and LeaseToken set and the lease expiring at Now+LeaseDuration.
	//
	// It never blocks: with nothing to claim it returns an empty result. The
	// result also tells when the earliest Scheduled/Retrying task of these
	// queues becomes due, so the caller can sleep exactly that long.
	Fetch(ctx context.Context, params FetchParams) (*FetchResult, error)

	// ExtendLeases moves the lease expiry of tasks the caller still owns to
	// Until. Tasks whose lease token no longer matches are reported in Lost;
	// tasks whose cancellation was requested are reported in CancelRequested
	// (a backstop if the cancel notification was missed).
	ExtendLeases(ctx context.Context, params ExtendLeasesParams) (*ExtendLeasesResult, error)

	// Complete records the outcome of tasks in one round trip. Each item is
	// fenced: it applies only if the task is Running with the given
	// LeaseToken; otherwise that item's error is ErrLeaseLost and nothing
	// changes. The returned slice has one entry per completion (nil on
	// success). The error return is for the batch as a whole (broker down).
	Complete(ctx context.Context, completions []Completion) ([]error, error)

	// --- reading and steering tasks ----------------------------------------

	// TaskGet returns a task by id, in any state, until its retention ends.
	TaskGet(ctx context.Context, id string) (*TaskRecord, error)

	// TaskAwait blocks until the task reaches a terminal state (Succeeded,
	// Dead, Cancelled) and returns it, or until ctx is done. It must not
	// busy-poll the broker: use notifications, with a slow poll only as a
	// backstop.
	TaskAwait(ctx context.Context, id string) (*TaskRecord, error)

	// TaskCancel cancels a task. A Scheduled, Queued or Retrying task becomes
	// Cancelled at once (its unique key is released). A Running task gets
	// CancelRequested set and its worker is notified; the worker then
	// cancels the handler's context and completes it as Cancelled. A
	// terminal task is left alone. It returns the task's state after the
	// call.
	TaskCancel(ctx context.Context, id string, now time.Time) (State, error)

	// TaskList pages through stored tasks matching a filter, for dashboards
	// and the API. One call examines at most ScanLimit stored tasks (so a
	// search for a rare kind among millions of finished tasks answers in
	// bounded time) and returns the matches among them, at most Limit, plus a
	// Cursor to continue from; an empty Cursor means nothing is left. Paging
	// with the cursor visits every task that stayed in place exactly once;
	// tasks that change state meanwhile may be seen twice or not at all.
	//
	// Order is driver-specific but stable: SQLite returns newest id first
	// across all queues and states; Redis walks queue by queue and, within a
	// queue, running, queued, scheduled/retrying, dead, then finished tasks,
	// each newest first.
	TaskList(ctx context.Context, params TaskListParams) (*TaskListResult, error)

	// TaskRetry makes a task run as soon as possible and returns its new
	// state (Queued): a Scheduled or Retrying task becomes Queued now, a Dead
	// task returns to Queued with Attempt reset to 0 and its error history
	// kept (as DeadRetry). Any other state wraps ErrTaskState; a missing task
	// ErrTaskNotFound. Listeners of the queue are notified.
	TaskRetry(ctx context.Context, id string, now time.Time) (State, error)

	// TaskDelete removes a task that is not Running (cancel it first), with
	// its result, error history and unique key. A Running task wraps
	// ErrTaskState; a missing task ErrTaskNotFound. Running totals are not
	// changed.
	TaskDelete(ctx context.Context, id string) error

	// DeadList lists dead tasks of a queue, newest death first.
	DeadList(ctx context.Context, params DeadListParams) ([]*TaskRecord, int64, error)

	// DeadRetry moves dead tasks (all of the queue's when IDs is empty) back to
	// Queued with Attempt reset to 0, keeping their error history. It returns
	// how many moved.
	DeadRetry(ctx context.Context, params DeadParams) (int64, error)

	// DeadPurge deletes dead tasks (all of the queue's when IDs is empty). It
	// returns how many were deleted.
	DeadPurge(ctx context.Context, params DeadParams) (int64, error)

	// --- metrics -----------------------------------------------------------

	// QueueStats returns counts for every queue that has ever received a
	// task, sorted by name. Each count is O(1) or O(log n) in the broker.
	QueueStats(ctx context.Context, now time.Time) ([]QueueStats, error)

	// --- maintenance (run by workers and by the control plane) ---------------

	// PromoteDue moves up to Limit due Scheduled/Retrying tasks of a queue to
	// Queued and returns how many moved.
	PromoteDue(ctx context.Context, queue string, now time.Time, limit int) (int, error)

	// RescueExpired finds up to Limit Running tasks of a queue whose lease
	// expired before Now. Each gets an error entry ("lease expired") and goes
	// back to Queued at once, or to Dead if it has no attempts left.
	RescueExpired(ctx context.Context, queue string, now time.Time, limit int) (*RescueResult, error)

	// Cleanup deletes finished tasks whose retention has passed and dead tasks
	// that died before Now-DeadRetention. Drivers with native expiry (Redis)
	// only need the dead-task part.
	Cleanup(ctx context.Context, params CleanupParams) (int64, error)

	// --- worker registry ---------------------------------------------------

	// WorkerHeartbeat registers or refreshes a worker. The entry lives until
	// Now+TTL unless refreshed. The answer tells the worker whether it was
	// asked to drain.
	WorkerHeartbeat(ctx context.Context, info WorkerInfo, ttl time.Duration) (*WorkerControl, error)

	// WorkerList returns the live (unexpired) workers, sorted by ID.
	WorkerList(ctx context.Context, now time.Time) ([]WorkerInfo, error)

	// WorkerDeregister removes a worker's entry (on clean exit).
	WorkerDeregister(ctx context.Context, id string) error

	// WorkerRequestDrain asks a worker to drain: its next heartbeat answer says
	// so, and a notification reaches it at once if it listens. ErrWorkerNotFound
	// if no live worker has that id.
	WorkerRequestDrain(ctx context.Context, id string, now time.Time) error

	// --- notifications -----------------------------------------------------

	// Listen subscribes to broker notifications until ctx is done, when the
	// channel is closed. With Queues empty it reports every queue. Delivery
	// is best effort (callers keep a slow backstop poll), but a notification
	// sent after Listen returned must not be lost while the listener is
	// healthy.
	Listen(ctx context.Context, params ListenParams) (<-chan Event, error)
}

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

// Priorities, honoured within a queue. Lower runs first.
const (
	PriorityHigh   = 1
	PriorityNormal = 2
	PriorityLow    = 3
)

// TaskRecord is a task as stored by a broker.
type TaskRecord struct {
	ID          string
	Kind        string
	Queue       string
	Args        []byte // JSON
	Headers     map[string]string
	Priority    int           // PriorityHigh … PriorityLow
	RunAt       time.Time     // when it became or becomes runnable
	Attempt     int           // attempts started so far
	MaxAttempts int           // ≥ 1
	Timeout     time.Duration // 0: none
	Retention   time.Duration // how long a finished task and its result are kept
	UniqueKey   string        // "" when not unique
	UniqueTTL   time.Duration // 0: held while the task is not terminal

	State      State
	EnqueuedAt time.Time
	StartedAt  time.Time // of the latest attempt
	FinishedAt time.Time

	WorkerID        string    // worker of the latest attempt
	LeaseToken      string    // set while Running
	LeaseExpiresAt  time.Time // set while Running
	CancelRequested bool

	Errors []AttemptError
	Result []byte // JSON; set when Succeeded

	// Malformed is set by a driver that could not decode the stored task; it
	// says what is wrong. The fields it could read (at least ID and Queue)
	// are filled in; the worker dead-letters such a task.
	Malformed string
}

// AttemptError is one entry of a task's error history.
type AttemptError struct {
	Attempt  int       `json:"attempt"`
	At       time.Time `json:"at"`
	Error    string    `json:"error"`
	Stack    string    `json:"stack,omitempty"`
	WorkerID string    `json:"worker_id,omitempty"`
}

// EnqueueResult is the answer for one enqueued task.
type EnqueueResult struct {
	ID        string // the stored task's id; the existing task's when Duplicate
	Duplicate bool
}

// FetchParams are Fetch's arguments.
type FetchParams struct {
	Queues        []string // in the order to take them
	Limit         int
	WorkerID      string
	LeaseToken    string // unique per fetch; fences completions
	LeaseDuration time.Duration
	Now           time.Time
}

// FetchResult is Fetch's answer.
type FetchResult struct {
	Tasks []*TaskRecord
	// NextDueAt is when the earliest Scheduled/Retrying task of the fetched
	// queues becomes due; zero if there is none.
	NextDueAt time.Time
}

// LeaseRef names a task a worker holds.
type LeaseRef struct {
	Queue string
	ID    string
	Token string
}

// ExtendLeasesParams are ExtendLeases's arguments.
type ExtendLeasesParams struct {
	Leases []LeaseRef
	Until  time.Time
	Now    time.Time
}

// ExtendLeasesResult is ExtendLeases's answer.
type ExtendLeasesResult struct {
	Lost            []string // ids
	CancelRequested []string // ids
}

// Outcome is how an attempt ended.
type Outcome int

const (
	// OutcomeSucceeded: the handler returned a result. The task becomes
	// Succeeded, Result is stored, FinishedAt = Now; it is kept for its
	// Retention.
	OutcomeSucceeded Outcome = iota + 1
	// OutcomeRetry: the attempt failed and the task runs again at RetryAt
	// (state Retrying, or Queued at once if RetryAt ≤ Now). Error is appended.
	OutcomeRetry
	// OutcomeDead: the task will not run again. Error is appended.
	OutcomeDead
	// OutcomeCancelled: the task was cancelled while running. Error (if any)
	// is appended.
	OutcomeCancelled
	// OutcomeHandBack: the worker gives the task back unrun (drain). It
	// becomes Queued at once in its old place, Attempt is decremented (the
	// attempt does not count) and no error is recorded.
	OutcomeHandBack
)

// Completion is one task's outcome.
type Completion struct {
	Queue      string
	ID         string
	LeaseToken string
	Outcome    Outcome
	Result     []byte        // OutcomeSucceeded
	Error      *AttemptError // OutcomeRetry, OutcomeDead, OutcomeCancelled
	RetryAt    time.Time     // OutcomeRetry
	Now        time.Time
}

// RescueResult is RescueExpired's answer.
type RescueResult struct {
	Requeued []string
	Dead     []string
}

// CleanupParams are Cleanup's arguments.
type CleanupParams struct {
	Queue         string
	Now           time.Time
	DeadRetention time.Duration
	Limit         int
}

// DeadListParams are DeadList's arguments.
type DeadListParams struct {
	Queue  string
	Offset int
	Limit  int
}

// Defaults of TaskListParams.
const (
	TaskListLimitDefault = 50
	TaskListScanDefault  = 5000
)

// TaskListParams are TaskList's arguments; empty filters match everything.
type TaskListParams struct {
	Queue string
	State State
	Kind  string
	// Limit caps the matches returned; 0 means TaskListLimitDefault.
	Limit int
	// ScanLimit caps the stored tasks examined; 0 means TaskListScanDefault.
	ScanLimit int
	// Cursor continues a previous call; "" starts at the beginning. It is
	// opaque and only valid with the same filters and driver.
	Cursor string
}

// TaskListResult is TaskList's answer.
type TaskListResult struct {
	Tasks []*TaskRecord
	// Cursor continues the listing; "" when every task has been examined.
	Cursor string
	// Scanned is how many stored tasks this call examined.
	Scanned int
}

// DeadParams name dead tasks to retry or purge.
type DeadParams struct {
	Queue string
	IDs   []string // empty: all dead tasks of the queue
	Now   time.Time
}

// QueueStats are a queue's counts.
type QueueStats struct {
	Name      string
	Queued    int64 // ready to run now
	Scheduled int64 // scheduled or retrying (not yet due, or due and not yet promoted)
	// DueScheduled counts Scheduled tasks already due at Now (waiting for
	// promotion): work the autoscaler must count as queued.
	DueScheduled int64
	// NextDueAt is when the earliest Scheduled task becomes due; zero if none.
	NextDueAt time.Time
	InFlight  int64 // running (claimed by a worker)
	Dead      int64
	Enqueued  int64 // running total of stored tasks (duplicates not counted)
	Succeeded int64 // running total
	Failed    int64 // running total of tasks that went dead
	Retried   int64 // running total of failed attempts that were retried
	// OldestQueuedAt is the RunAt of the longest-waiting Queued task; zero when
	// none is queued.
	OldestQueuedAt time.Time
}

// WorkerInfo is a worker registry entry.
type WorkerInfo struct {
	ID          string    `json:"id"`
	Pool        string    `json:"pool,omitempty"`
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	Queues      []string  `json:"queues"`
	Concurrency int       `json:"concurrency"`
	Busy        int       `json:"busy"`
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
	Draining    bool      `json:"draining"`
	Version     string    `json:"version,omitempty"`
}

// WorkerControl is what a heartbeat answer tells the worker.
type WorkerControl struct {
	DrainRequested bool
}

// ListenParams are Listen's arguments.
type ListenParams struct {
	Queues   []string // empty: all queues
	WorkerID string   // to receive drain requests for this worker; may be empty
}

// EventKind says what an Event is about.
type EventKind int

const (
	// EventQueued: tasks became Queued in Queue.
	EventQueued EventKind = iota + 1
	// EventCancel: cancellation of running task TaskID was requested.
	EventCancel
	// EventDrain: worker WorkerID was asked to drain.
	EventDrain
)

// Event is a broker notification.
type Event struct {
	Kind     EventKind
	Queue    string
	TaskID   string
	WorkerID string
}
