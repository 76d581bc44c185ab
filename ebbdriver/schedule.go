package ebbdriver

import (
	"context"
	"time"

	"github.com/ebbq/ebb/ebbtype"
)

// Schedules is what beat needs from a broker: the set of periodic schedules,
// shared by every control-plane replica, and each one's firing state. Beat
// itself (which tick is due, the deterministic task id that makes a tick's
// second enqueue collapse into the first) lives above the driver.
type Schedules interface {
	// ScheduleUpsert creates or replaces the definition of s.Name, keeping
	// its firing state (LastTickAt, LastTaskID, Paused) unless the record
	// carries its own. CreatedAt is kept from the first version; UpdatedAt is
	// set by the caller.
	ScheduleUpsert(ctx context.Context, s *ebbtype.Schedule) error

	// ScheduleGet returns one schedule, or ebbtype.ErrScheduleNotFound.
	ScheduleGet(ctx context.Context, name string) (*ebbtype.Schedule, error)

	// ScheduleList returns every schedule, sorted by name. A stored schedule
	// the driver cannot decode is returned with Name and Malformed set, so
	// one bad record never hides the others.
	ScheduleList(ctx context.Context) ([]ebbtype.Schedule, error)

	// ScheduleDelete removes a schedule; ebbtype.ErrScheduleNotFound if absent.
	ScheduleDelete(ctx context.Context, name string) error

	// ScheduleSetPaused pauses or resumes a schedule; ebbtype.ErrScheduleNotFound if
	// absent.
	ScheduleSetPaused(ctx context.Context, name string, paused bool) error

	// ScheduleMarkFired records that the tick at tick fired as task taskID,
	// only if tick is later than the stored LastTickAt (so a stale leader
	// cannot move the state backwards). It reports whether it recorded.
	ScheduleMarkFired(ctx context.Context, name string, tick time.Time, taskID string, now time.Time) (bool, error)
}
