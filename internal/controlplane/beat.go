package controlplane

import (
	"context"
	"errors"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/clock"
	"github.com/ebbq/ebb/internal/schedule"
)

// Beat timing.
const (
	// beatRefresh is how often the leader rereads the schedule set, to see
	// schedules added, changed, paused or removed by other processes (the
	// CLI, another replica's API). Changes made through this replica's API
	// are seen at once.
	beatRefresh = 10 * time.Second
	// beatGrace is how late a tick may fire and still count as on time for
	// the "skip" catch-up policy (timer jitter, a slow broker call).
	beatGrace = schedule.GraceDefault
)

// beat fires periodic schedules while this replica leads. Exactly once per
// tick comes from the task id: each tick's task has an id derived from the
// schedule and the tick time, so a second enqueue of the same tick — after a
// failover, from a stale leader, from two replicas — collapses into the
// first. The stored last tick only moves forward and drives catch-up.
func (s *Replica) beat(ctx context.Context) {
	store := s.drv
	client, err := ebb.NewClient(s.drv, &ebb.ClientConfig{Logger: s.logger, Clock: s.clock})
	if err != nil {
		return
	}
	s.seedSchedules(ctx, store)
	var (
		list     []ebbtype.Schedule
		loadedAt time.Time
		badSpec  = map[string]string{} // logged once per bad definition
	)
	for {
		if clock.Since(s.clock, loadedAt) >= beatRefresh || s.beatDirty.Swap(false) {
			l, err := store.ScheduleList(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.logger.Warn("beat: cannot read schedules", "error", err)
			} else {
				list, loadedAt = l, s.clock.Now()
			}
		}
		now := s.clock.Now()
		wake := loadedAt.Add(beatRefresh)
		if !wake.After(now) {
			// The reread failed: retry in a second, not at once (the
			// refresh is already overdue, so the wake would be in the past
			// and the loop would spin against the broker).
			wake = now.Add(time.Second)
		}
		for i := range list {
			rec := &list[i]
			if rec.Paused {
				continue
			}
			spec, err := schedule.FromRecord(rec)
			if err != nil {
				if badSpec[rec.Name] != err.Error() {
					badSpec[rec.Name] = err.Error()
					s.logger.Error("beat: schedule cannot run", "schedule", rec.Name, "error", err)
				}
				continue
			}
			tick, fire, next := schedule.Due(spec, rec.CreatedAt, rec.LastTickAt, now, schedule.CatchUp(rec.CatchUp), beatGrace)
			if fire {
				if id, err := s.fire(ctx, client, store, rec, tick, now); err != nil {
					if ctx.Err() != nil {
						return
					}
					s.logger.Warn("beat: tick not enqueued; retrying", "schedule", rec.Name, "tick", tick, "error", err)
					next = now.Add(time.Second)
				} else {
					rec.LastTickAt, rec.LastTaskID = tick, id
				}
			}
			if !next.IsZero() && next.Before(wake) {
				wake = next
			}
		}
		t := time.NewTimer(max(clock.Until(s.clock, wake), time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.beatKick:
		case <-t.C:
		}
		t.Stop()
	}
}

// fire enqueues one tick's task under its deterministic id and records the
// tick. A duplicate enqueue means this tick already fired elsewhere: that is
// the exactly-once guarantee at work, not an error.
func (s *Replica) fire(ctx context.Context, client *ebb.Client, store ebbdriver.Driver, rec *ebbtype.Schedule, tick, now time.Time) (string, error) {
	id := schedule.TaskID(rec.Name, tick)
	opts := &ebb.EnqueueOpts{ID: id, Queue: rec.Queue, Priority: ebb.Priority(rec.Priority), MaxAttempts: rec.MaxAttempts,
		Timeout: rec.Timeout, Headers: map[string]string{"ebb-schedule": rec.Name, "ebb-tick": tick.UTC().Format(time.RFC3339)}}
	for k, v := range rec.Headers {
		opts.Headers[k] = v
	}
	res, err := client.EnqueueRaw(ctx, rec.Kind, rec.Args, opts)
	if err != nil {
		return "", err
	}
	if _, err := store.ScheduleMarkFired(ctx, rec.Name, tick, res.ID, now); err != nil && !errors.Is(err, ebbtype.ErrScheduleNotFound) {
		return "", err
	}
	s.counters.beatTick(rec.Name, res.Duplicate)
	s.logger.Info("beat: tick enqueued", "schedule", rec.Name, "tick", tick, "task", res.ID, "duplicate", res.Duplicate)
	return res.ID, nil
}

// seedSchedules stores the config file's schedules, replacing definitions of
// the same names and keeping their firing state.
func (s *Replica) seedSchedules(ctx context.Context, store ebbdriver.Driver) {
	now := s.clock.Now()
	for i := range s.cfg.Schedules {
		rec, err := s.cfg.Schedules[i].Record(now)
		if err == nil {
			err = store.ScheduleUpsert(ctx, rec)
		}
		if err != nil && ctx.Err() == nil {
			s.logger.Error("beat: cannot store schedule from config", "schedule", s.cfg.Schedules[i].Name, "error", err)
		}
	}
}
