package ebbdriver

import (
	"context"
	"errors"
	"time"
)

// ErrScheduleNotFound means no schedule has that name.
var ErrScheduleNotFound = errors.New("schedule not found")

// Schedules is what beat needs from a broker: the set of periodic schedules,
// shared by every control-plane replica, and each one's firing state. Beat
// itself (which tick is due, the deterministic task id that makes a tick's
// second enqueue collapse into the first) lives above the driver.
type Schedules interface {
	// ScheduleUpsert creates or replaces the definition of s.Name, keeping
	// its firing state (LastTickAt, LastTaskID, Paused) unless the record
	// carries its own. CreatedAt is kept from the first version; UpdatedAt is
	// set by the caller.
	ScheduleUpsert(ctx context.Context, s *ScheduleRecord) error

	// ScheduleGet returns one schedule, or ErrScheduleNotFound.
	ScheduleGet(ctx context.Context, name string) (*ScheduleRecord, error)

	// ScheduleList returns every schedule, sorted by name. A stored schedule
	// the driver cannot decode is returned with Name and Malformed set, so
	// one bad record never hides the others.
	ScheduleList(ctx context.Context) ([]ScheduleRecord, error)

	// ScheduleDelete removes a schedule; ErrScheduleNotFound if absent.
	ScheduleDelete(ctx context.Context, name string) error

	// ScheduleSetPaused pauses or resumes a schedule; ErrScheduleNotFound if
	// absent.
	ScheduleSetPaused(ctx context.Context, name string, paused bool) error

	// ScheduleMarkFired records that the tick at tick fired as task taskID,
	// only if tick is later than the stored LastTickAt (so a stale leader
	// cannot move the state backwards). It reports whether it recorded.
	ScheduleMarkFired(ctx context.Context, name string, tick time.Time, taskID string, now time.Time) (bool, error)
}

// ScheduleRecord is a periodic schedule as stored.
type ScheduleRecord struct {
	Name string `json:"name"`

	// Exactly one of Cron, Every and At is set. Cron has 5 fields, or 6 with
	// seconds first; TZ names its time zone (IANA, default UTC).
	Cron  string        `json:"cron,omitempty"`
	Every time.Duration `json:"every_ns,omitempty"`
	At    time.Time     `json:"at,omitzero"`
	TZ    string        `json:"tz,omitempty"`

	// CatchUp is what happens to ticks missed while no leader ran: "once"
	// (the latest missed tick fires once) or "skip".
	CatchUp string `json:"catch_up"`

	// The task each tick enqueues.
	Kind        string            `json:"kind"`
	Args        []byte            `json:"args"`
	Queue       string            `json:"queue"`
	Priority    int               `json:"priority,omitempty"`
	MaxAttempts int               `json:"max_attempts,omitempty"`
	Timeout     time.Duration     `json:"timeout_ns,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`

	Paused     bool      `json:"paused"`
	LastTickAt time.Time `json:"last_tick_at,omitzero"`
	LastTaskID string    `json:"last_task_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`

	// Malformed is set by a driver that could not decode the stored
	// schedule; it says what is wrong. Beat skips such a schedule and
	// reports it; deleting or re-adding it fixes it.
	Malformed string `json:"malformed,omitempty"`
}
