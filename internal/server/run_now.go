package server

import (
	"context"
	"strings"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/internal/tid"
)

// RunScheduleNow enqueues a schedule's task at once, outside its ticks (it
// does not move the schedule's last tick). It returns the task id.
func RunScheduleNow(ctx context.Context, drv ebbdriver.Driver, store ebbdriver.Schedules, name string) (string, error) {
	rec, err := store.ScheduleGet(ctx, name)
	if err != nil {
		return "", err
	}
	client, err := ebb.NewClient(drv, nil)
	if err != nil {
		return "", err
	}
	res, err := client.EnqueueRaw(ctx, rec.Kind, rec.Args, &ebb.EnqueueOpts{
		// Not a tick: a fresh id (the schedule's name is in the headers, and
		// long names would not fit an id anyway).
		ID:    "beat-now:" + strings.ToLower(tid.New()),
		Queue: rec.Queue, Priority: ebb.Priority(rec.Priority), MaxAttempts: rec.MaxAttempts, Timeout: rec.Timeout,
		Headers: map[string]string{"ebb-schedule": rec.Name, "ebb-run-now": "true"},
	})
	if err != nil {
		return "", err
	}
	return res.ID, nil
}

// ResumeSchedule resumes a paused schedule without catching up the ticks it
// missed while paused: a nightly job paused at noon and resumed at 17:00
// next runs at its next night, not at once. (Catch-up is for ticks missed
// while no leader ran, which nobody chose to skip.)
func ResumeSchedule(ctx context.Context, store ebbdriver.Schedules, name string, now time.Time) error {
	if _, err := store.ScheduleMarkFired(ctx, name, now.Truncate(time.Second), "", now); err != nil {
		return err
	}
	return store.ScheduleSetPaused(ctx, name, false)
}
