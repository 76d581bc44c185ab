package server

import (
	"context"
	"strings"

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
		ID:    "beat:" + rec.Name + ":now-" + strings.ToLower(tid.New()),
		Queue: rec.Queue, Priority: ebb.Priority(rec.Priority), MaxAttempts: rec.MaxAttempts, Timeout: rec.Timeout,
		Headers: map[string]string{"ebb-schedule": rec.Name, "ebb-run-now": "true"},
	})
	if err != nil {
		return "", err
	}
	return res.ID, nil
}
