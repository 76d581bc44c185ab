package ebb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/schedule"
	"github.com/ebbq/ebb/internal/tid"
)

// This file is the admin surface: what an operator, a dashboard or a CLI
// needs beyond enqueueing (River's JobList/JobRetry/JobDelete, asynq's
// Inspector). ebb's own CLI and HTTP server are built on these methods alone.

// Defaults of TaskListParams.
const (
	TaskListLimitDefault = ebbdriver.TaskListLimitDefault
	TaskListScanDefault  = ebbdriver.TaskListScanDefault
)

// TaskListParams filter and page TaskList; empty filters match everything.
type TaskListParams struct {
	Queue string
	State State
	Kind  string
	// Limit caps the tasks returned; 0 means TaskListLimitDefault.
	Limit int
	// ScanLimit caps the stored tasks one call examines, so a search for a
	// rare kind among millions of finished tasks answers in bounded time; 0
	// means TaskListScanDefault.
	ScanLimit int
	// Cursor continues a previous call ("" starts at the beginning).
	Cursor string
}

// TaskListResult is a page of TaskList.
type TaskListResult struct {
	Tasks []*TaskInfo `json:"tasks"`
	// Cursor continues the search; "" when every task has been examined.
	Cursor string `json:"cursor"`
	// Scanned is how many stored tasks this call examined.
	Scanned int `json:"scanned"`
}

// TaskList searches stored tasks. One call examines at most ScanLimit
// stored tasks and returns the matches among them with a Cursor to go on
// from; paging visits every task that stayed in place exactly once.
func (c *Client) TaskList(ctx context.Context, params *TaskListParams) (*TaskListResult, error) {
	var p TaskListParams
	if params != nil {
		p = *params
	}
	if p.State != "" && !p.State.Valid() {
		return nil, fmt.Errorf("%w: state %q: use one of %s", ErrInvalidOpts, p.State, stateNames())
	}
	res, err := c.driver.TaskList(ctx, ebbdriver.TaskListParams{
		Queue: p.Queue, State: p.State, Kind: p.Kind, Limit: p.Limit, ScanLimit: p.ScanLimit, Cursor: p.Cursor,
	})
	if err != nil {
		return nil, fmt.Errorf("ebb: list tasks: %w", err)
	}
	return &TaskListResult{Tasks: nonNil(res.Tasks), Cursor: res.Cursor, Scanned: res.Scanned}, nil
}

func stateNames() string {
	states := ebbtype.States()
	names := make([]string, 0, len(states))
	for _, s := range states {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

// TaskRetry makes a task run as soon as possible: a scheduled or retrying
// task becomes queued now, a dead one returns to queued with its attempts
// reset and its error history kept. Other states match ErrTaskState.
func (c *Client) TaskRetry(ctx context.Context, id string) (State, error) {
	st, err := c.driver.TaskRetry(ctx, id, c.now())
	if err != nil {
		return "", notFoundOr(err, "retry", "task "+id)
	}
	return st, nil
}

// TaskDelete removes a task that is not running (cancel it first) with its
// result and error history.
func (c *Client) TaskDelete(ctx context.Context, id string) error {
	if err := c.driver.TaskDelete(ctx, id); err != nil {
		return notFoundOr(err, "delete", "task "+id)
	}
	return nil
}

// DeadListParams page DeadList.
type DeadListParams struct {
	Offset int
	Limit  int // 0 means 50
}

// DeadList lists the dead tasks of a queue, newest death first, and how
// many the queue holds in all.
func (c *Client) DeadList(ctx context.Context, queue string, params *DeadListParams) (tasks []*TaskInfo, total int64, err error) {
	var p DeadListParams
	if params != nil {
		p = *params
	}
	if p.Limit <= 0 {
		p.Limit = 50
	}
	tasks, total, err = c.driver.DeadList(ctx, ebbdriver.DeadListParams{Queue: queue, Offset: max(0, p.Offset), Limit: p.Limit})
	tasks, err = list(tasks, err, "list dead tasks of queue "+queue)
	return tasks, total, err
}

// DeadRetry moves dead tasks of a queue back to queued with their attempts
// reset and their error history kept: the ids given, or all of the queue's
// dead tasks when none are. It returns how many moved.
func (c *Client) DeadRetry(ctx context.Context, queue string, ids ...string) (int64, error) {
	n, err := c.driver.DeadRetry(ctx, ebbdriver.DeadParams{Queue: queue, IDs: ids, Now: c.now()})
	if err != nil {
		return 0, fmt.Errorf("ebb: retry dead tasks of queue %s: %w", queue, err)
	}
	return n, nil
}

// DeadPurge deletes dead tasks of a queue: the ids given, or all of them.
// It returns how many were deleted.
func (c *Client) DeadPurge(ctx context.Context, queue string, ids ...string) (int64, error) {
	n, err := c.driver.DeadPurge(ctx, ebbdriver.DeadParams{Queue: queue, IDs: ids, Now: c.now()})
	if err != nil {
		return 0, fmt.Errorf("ebb: purge dead tasks of queue %s: %w", queue, err)
	}
	return n, nil
}

// QueueList returns the counts of every queue that has ever received a
// task, sorted by name.
func (c *Client) QueueList(ctx context.Context) ([]QueueStats, error) {
	qs, err := c.driver.QueueStats(ctx, c.now())
	return list(qs, err, "read queue counts")
}

// WorkerList returns the live workers of the registry, sorted by id.
func (c *Client) WorkerList(ctx context.Context) ([]WorkerInfo, error) {
	ws, err := c.driver.WorkerList(ctx, c.now())
	return list(ws, err, "list workers")
}

// WorkerDrain asks a worker, wherever it runs, to drain: stop fetching,
// finish what it holds (no deadline) and exit.
func (c *Client) WorkerDrain(ctx context.Context, id string) error {
	if err := c.driver.WorkerRequestDrain(ctx, id, c.now()); err != nil {
		return notFoundOr(err, "drain", "worker "+id)
	}
	return nil
}

// DecisionLogMax is how many decisions the broker keeps per pool.
const DecisionLogMax = ebbdriver.DecisionLogMax

// DecisionList returns the control plane's newest scaling decisions, newest
// first, for one pool or (pool "") all of them.
func (c *Client) DecisionList(ctx context.Context, pool string, limit int) ([]Decision, error) {
	if limit <= 0 {
		limit = 20
	}
	ds, err := c.driver.DecisionList(ctx, pool, limit)
	return list(ds, err, "read the scaling decision log")
}

// Leadership is who leads an election of the control plane, in which term
// and until when.
type Leadership = ebbtype.Leadership

// ControlPlaneLeader returns the control-plane replica that leads now, or
// nil (and no error) when none does: no `ebb server` or `ebb up` runs, or
// the last leader stopped or lost its lease. It only reads.
func (c *Client) ControlPlaneLeader(ctx context.Context) (*Leadership, error) {
	l, err := c.driver.LeaderGet(ctx, ebbtype.ControlPlaneLeaderName, c.now())
	if err != nil {
		return nil, fmt.Errorf("ebb: read the control-plane leader: %w", err)
	}
	return l, nil
}

// ScheduleList returns every schedule, sorted by name, with its parsed
// definition and next run (or why its definition is invalid).
func (c *Client) ScheduleList(ctx context.Context) ([]Schedule, error) {
	recs, err := c.driver.ScheduleList(ctx)
	if recs, err = list(recs, err, "list schedules"); err != nil {
		return nil, err
	}
	now := c.now()
	for i := range recs {
		describeSchedule(&recs[i], now)
	}
	return recs, nil
}

// ScheduleGet returns one schedule, described as by ScheduleList.
func (c *Client) ScheduleGet(ctx context.Context, name string) (*Schedule, error) {
	rec, err := c.driver.ScheduleGet(ctx, name)
	if err != nil {
		return nil, notFoundOr(err, "read", "schedule "+name)
	}
	describeSchedule(rec, c.now())
	return rec, nil
}

// describeSchedule fills in what is not stored: the parsed definition and
// the next run, as the leader's beat computes it.
func describeSchedule(r *Schedule, now time.Time) {
	spec, err := schedule.FromRecord(r)
	if err != nil {
		r.Error = err.Error()
		return
	}
	r.Spec = spec.String()
	if !r.Paused {
		_, _, r.NextRun = schedule.Due(spec, r.CreatedAt, r.LastTickAt, now, schedule.CatchUp(r.CatchUp), schedule.GraceDefault)
	}
}

// ScheduleUpsert stores a schedule, replacing the definition of one with
// the same name and keeping its firing state and creation time. The leading
// control plane picks it up within its refresh interval.
func (c *Client) ScheduleUpsert(ctx context.Context, s *Schedule) (*Schedule, error) {
	if s == nil || s.Name == "" || s.Kind == "" {
		return nil, fmt.Errorf("%w: a schedule needs a name and a kind", ErrInvalidOpts)
	}
	rec := *s
	now := c.now()
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = now
	}
	rec.UpdatedAt = now
	rec.Spec, rec.NextRun, rec.Error = "", time.Time{}, ""
	if _, err := schedule.FromRecord(&rec); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOpts, err)
	}
	if err := c.driver.ScheduleUpsert(ctx, &rec); err != nil {
		return nil, fmt.Errorf("ebb: store schedule %s: %w", rec.Name, err)
	}
	// Answer with what the broker keeps: a re-added schedule keeps its
	// creation time and firing state.
	return c.ScheduleGet(ctx, rec.Name)
}

// ScheduleDelete removes a schedule.
func (c *Client) ScheduleDelete(ctx context.Context, name string) error {
	if err := c.driver.ScheduleDelete(ctx, name); err != nil {
		return notFoundOr(err, "delete", "schedule "+name)
	}
	return nil
}

// SchedulePause stops a schedule from firing until it is resumed.
func (c *Client) SchedulePause(ctx context.Context, name string) error {
	if err := c.driver.ScheduleSetPaused(ctx, name, true); err != nil {
		return notFoundOr(err, "pause", "schedule "+name)
	}
	return nil
}

// ScheduleResume resumes a paused schedule without catching up the ticks it
// missed while paused: a nightly job paused at noon and resumed at 17:00
// next runs at its next night, not at once. (Catch-up is for ticks missed
// while no leader ran, which nobody chose to skip.)
func (c *Client) ScheduleResume(ctx context.Context, name string) error {
	now := c.now()
	if _, err := c.driver.ScheduleMarkFired(ctx, name, now.Truncate(time.Second), "", now); err != nil {
		return notFoundOr(err, "resume", "schedule "+name)
	}
	if err := c.driver.ScheduleSetPaused(ctx, name, false); err != nil {
		return notFoundOr(err, "resume", "schedule "+name)
	}
	return nil
}

// ScheduleRunNow enqueues a schedule's task at once, outside its ticks (it
// does not move the schedule's last tick), and returns the task id.
func (c *Client) ScheduleRunNow(ctx context.Context, name string) (string, error) {
	rec, err := c.driver.ScheduleGet(ctx, name)
	if err != nil {
		return "", notFoundOr(err, "run", "schedule "+name)
	}
	res, err := c.EnqueueRaw(ctx, rec.Kind, rec.Args, &EnqueueOpts{
		// Not a tick: a fresh id (the schedule's name is in the headers, and
		// long names would not fit an id anyway).
		ID:    "beat-now:" + strings.ToLower(tid.NewAt(c.now())),
		Queue: rec.Queue, Priority: rec.Priority, MaxAttempts: rec.MaxAttempts, Timeout: rec.Timeout,
		Headers: map[string]string{"ebb-schedule": rec.Name, "ebb-run-now": "true"},
	})
	if err != nil {
		return "", err
	}
	return res.ID, nil
}

// list turns a driver's answer into the API's: an error says what failed,
// and no items is an empty list (JSON [] rather than null).
func list[T any](items []T, err error, what string) ([]T, error) {
	if err != nil {
		return nil, fmt.Errorf("ebb: %s: %w", what, err)
	}
	return nonNil(items), nil
}

// nonNil is items, or an empty list for none (JSON [] rather than null).
func nonNil[T any](items []T) []T {
	if items == nil {
		return []T{}
	}
	return items
}

// notFoundOr words an error of an action on one named thing (what, e.g.
// "task 01J…"). Not found becomes one sentence, "task 01J… not found", that
// still matches its sentinel with errors.Is: the driver's own wording would
// only repeat the id. Anything else is wrapped with the action.
func notFoundOr(err error, action, what string) error {
	for _, nf := range []error{ebbtype.ErrTaskNotFound, ebbtype.ErrWorkerNotFound, ebbtype.ErrScheduleNotFound} {
		if errors.Is(err, nf) {
			return &NotFoundError{What: what, err: nf}
		}
	}
	return fmt.Errorf("ebb: %s %s: %w", action, what, err)
}

// NotFoundError says which task, worker or schedule does not exist. It
// matches ErrTaskNotFound, ErrWorkerNotFound or ErrScheduleNotFound.
type NotFoundError struct {
	What string // "task 01J…", "worker w-1", "schedule nightly"
	err  error
}

func (e *NotFoundError) Error() string { return e.What + " not found" }
func (e *NotFoundError) Unwrap() error { return e.err }
