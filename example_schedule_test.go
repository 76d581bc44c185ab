package ebb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
)

// Schedules live in the broker, so every control-plane replica sees the same
// set and the leader fires them (while every worker pool is at zero, too).
// ScheduleList says when each runs next; a paused schedule does not run.
func Example_schedule() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ebb-example")
	defer os.RemoveAll(dir)
	drv, err := ebbsqlite.Open(ctx, filepath.Join(dir, "ebb.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer drv.Close()
	client, _ := ebb.NewClient(drv, nil)

	s, err := client.ScheduleUpsert(ctx, &ebb.Schedule{
		Name:  "hourly-report",
		Every: time.Hour,
		Kind:  "report",
		Args:  json.RawMessage(`{"format":"pdf"}`),
		Queue: "reports",
	})
	if err != nil {
		log.Fatal(err)
	}
	// Intervals tick from the schedule's creation, to the second.
	anchor := s.CreatedAt.Truncate(time.Second)
	show := func(when string) {
		list, err := client.ScheduleList(ctx)
		if err != nil {
			log.Fatal(err)
		}
		for _, s := range list {
			spec, _, _ := strings.Cut(s.Spec, " from ")
			next := "never"
			if !s.NextRun.IsZero() {
				next = s.NextRun.Sub(anchor).String() + " after creation"
			}
			fmt.Printf("%s: %s %s to queue %s, paused %v, next run %s\n", when, s.Name, spec, s.Queue, s.Paused, next)
		}
	}
	show("added")
	if err := client.SchedulePause(ctx, "hourly-report"); err != nil {
		log.Fatal(err)
	}
	show("paused")
	// Resuming does not catch up on ticks missed while paused.
	if err := client.ScheduleResume(ctx, "hourly-report"); err != nil {
		log.Fatal(err)
	}
	show("resumed")
	// Output:
	// added: hourly-report @every 1h0m0s to queue reports, paused false, next run 1h0m0s after creation
	// paused: hourly-report @every 1h0m0s to queue reports, paused true, next run never
	// resumed: hourly-report @every 1h0m0s to queue reports, paused false, next run 1h0m0s after creation
}
