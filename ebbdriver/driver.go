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
//   - Errors for a missing task wrap ebbtype.ErrTaskNotFound; completions from a
//     worker that no longer owns the task report ebbtype.ErrLeaseLost per
//     item.
//   - Nothing is ever dropped: a record the driver cannot decode is returned
//     with Malformed set so the worker can dead-letter it with the reason.
package ebbdriver

import (
	"context"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// Driver is everything ebb needs from a broker.
type Driver interface {
	Control
	Schedules

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
	// Enqueue notifies listeners of the queues that received Queued tasks,
	// at least of each queue that had none before (a driver may stay quiet
	// about tasks added behind others still Queued: whoever was waiting was
	// woken by the first, and a worker with room fetches until it gets
	// less than it asked for before it waits). So does every other
	// transition into Queued (hand-back, an immediate retry, promotion of
	// due tasks, lease rescue, dead retry), so an idle worker never waits
	// for its backstop poll to see work.
	Enqueue(ctx context.Context, tasks []*ebbtype.TaskInfo) ([]EnqueueResult, error)

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
	//
	// A Fetch whose outcome is unknown (it failed in transit: the claims
	// may be stored while the reply was lost) can be repeated with Retry
	// set and the same LeaseToken, Now and LeaseDuration: the repeat
	// returns first the tasks of these queues still Running under that
	// token, counted toward Limit, then new claims. So the caller gets back
	// in seconds what would otherwise wait out its whole lease.
	Fetch(ctx context.Context, params FetchParams) (*FetchResult, error)

	// ExtendLeases moves the lease expiry of tasks the caller still owns to
	// Until. Tasks whose lease token no longer matches are reported in Lost;
	// tasks whose cancellation was requested are reported in CancelRequested
	// (a backstop if the cancel notification was missed).
	ExtendLeases(ctx context.Context, params ExtendLeasesParams) (*ExtendLeasesResult, error)

	// Complete records the outcome of tasks in one round trip. Each item is
	// fenced: it applies only if the task is Running with the given
	// LeaseToken; otherwise that item's error wraps ebbtype.ErrLeaseLost
	// (the task exists but another attempt or outcome owns it) or
	// ebbtype.ErrTaskNotFound (the task is gone: deleted, or the broker lost
	// its data), and nothing changes. The returned slice has one entry per completion (nil on
	// success). The error return is for the batch as a whole (broker down).
	Complete(ctx context.Context, completions []Completion) ([]error, error)

	// --- reading and steering tasks ----------------------------------------

	// TaskGet returns a task by id, in any state, until its retention ends.
	TaskGet(ctx context.Context, id string) (*ebbtype.TaskInfo, error)

	// TaskAwait blocks until the task reaches a terminal state (Succeeded,
	// Dead, Cancelled) and returns it, or until ctx is done. It must not
	// busy-poll the broker: use notifications, with a slow poll only as a
	// backstop.
	TaskAwait(ctx context.Context, id string) (*ebbtype.TaskInfo, error)

	// TaskCancel cancels a task. A Scheduled, Queued or Retrying task becomes
	// Cancelled at once (its unique key is released). A Running task gets
	// CancelRequested set and its worker is notified; the worker then
	// cancels the handler's context and completes it as Cancelled. A
	// terminal task is left alone. It returns the task's state after the
	// call.
	TaskCancel(ctx context.Context, id string, now time.Time) (ebbtype.State, error)

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
	// kept (as DeadRetry). Any other state wraps ebbtype.ErrTaskState; a missing task
	// ebbtype.ErrTaskNotFound. Listeners of the queue are notified.
	TaskRetry(ctx context.Context, id string, now time.Time) (ebbtype.State, error)

	// TaskDelete removes a task that is not Running (cancel it first), with
	// its result, error history and unique key. A Running task wraps
	// ebbtype.ErrTaskState; a missing task ebbtype.ErrTaskNotFound. Running totals are not
	// changed.
	TaskDelete(ctx context.Context, id string) error

	// DeadList lists dead tasks of a queue, newest death first.
	DeadList(ctx context.Context, params DeadListParams) ([]*ebbtype.TaskInfo, int64, error)

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
	QueueStats(ctx context.Context, now time.Time) ([]ebbtype.QueueStats, error)

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
	WorkerHeartbeat(ctx context.Context, info ebbtype.WorkerInfo, ttl time.Duration) (*WorkerControl, error)

	// WorkerList returns the live (unexpired) workers, sorted by ID.
	WorkerList(ctx context.Context, now time.Time) ([]ebbtype.WorkerInfo, error)

	// WorkerDeregister removes a worker's entry (on clean exit).
	WorkerDeregister(ctx context.Context, id string) error

	// WorkerRequestDrain asks a worker to drain: its next heartbeat answer says
	// so, and a notification reaches it at once if it listens. ebbtype.ErrWorkerNotFound
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
	LeaseToken    string // unique per fetch; fences completions (a driver may derive per-task tokens from it: complete with TaskInfo.LeaseToken)
	LeaseDuration time.Duration
	Now           time.Time
	// Retry repeats a Fetch with this LeaseToken whose reply was lost (see
	// Driver.Fetch); Now and LeaseDuration must be the first call's.
	Retry bool
}

// FetchResult is Fetch's answer.
type FetchResult struct {
	Tasks []*ebbtype.TaskInfo
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
	Result     []byte                // OutcomeSucceeded
	Error      *ebbtype.AttemptError // OutcomeRetry, OutcomeDead, OutcomeCancelled
	RetryAt    time.Time             // OutcomeRetry
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
	State ebbtype.State
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
	Tasks []*ebbtype.TaskInfo
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

// FetchBatcher is implemented by drivers whose fetches keep getting cheaper
// per task well past the worker's default cap (ebb.FetchBatchMaxDefault)
// without holding up other clients while they run. A worker whose
// WorkerConfig.FetchBatchMax is zero takes FetchBatchMax from the driver.
//
// Redis does not implement it: a fetch is one script, and Redis runs
// nothing else until it returns; nor does SQLite, whose claim holds the
// database's only write lock. Postgres does: its fetch runs beside other
// sessions, and each statement has a fixed cost (bind, snapshot, the
// claim's plan, a commit record) that a larger batch spreads.
type FetchBatcher interface {
	FetchBatchMax() int
}

// TxDriver is implemented by drivers whose broker is a database the
// application writes to as well (Postgres), so that queue changes can be
// part of the application's own transactions. TTx is the transaction type
// the driver accepts (pgx.Tx, *sql.Tx).
//
// Redis and SQLite do not implement it: their Enqueue and Complete commit on
// their own, and ebb.EnqueueTx reports ebb.ErrTxUnsupported for them.
type TxDriver[TTx any] interface {
	Driver

	// EnqueueTx is Enqueue inside tx: the tasks exist if and only if tx
	// commits, and listeners hear of them only then (NOTIFY is
	// transactional). The driver must not commit or roll back tx.
	EnqueueTx(ctx context.Context, tx TTx, tasks []*ebbtype.TaskInfo) ([]EnqueueResult, error)

	// CompleteTx is Complete inside tx, for a handler that wants its own
	// writes and its task's outcome to commit together or not at all. Items
	// are fenced by lease token as in Complete.
	CompleteTx(ctx context.Context, tx TTx, completions []Completion) ([]error, error)
}
