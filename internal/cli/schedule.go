package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbtype"
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/schedule"
)

func runSchedule(e *env, args []string) error {
	f := newFlagSet(e, "schedule", "schedule list|add|rm|pause|resume|run-now [NAME] [KIND] [ARGS_JSON] [flags]",
		`ebb schedule add nightly-report report '{"day":"yesterday"}' --cron "0 3 * * *" --tz Europe/Berlin`)
	cron := f.String("cron", "", "add: cron expression (5 fields, or 6 with seconds first, or @hourly…)")
	tz := f.String("tz", "", "add: IANA time zone of --cron (default UTC)")
	every := f.Duration("every", 0, "add: fixed interval (at least 1s)")
	at := f.String("at", "", "add: one run at an RFC 3339 time")
	catchUp := f.String("catch-up", "once", "add: ticks missed while no leader ran: once or skip")
	queue := f.String("queue", "default", "add: queue of the enqueued tasks")
	priority := f.String("priority", "normal", "add: high, normal or low")
	maxAttempts := f.Int("max-attempts", 0, "add: attempts per task (0: the default)")
	asJSON := f.Bool("json", false, "list: print JSON")
	pos, err := f.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want list, add, rm, pause, resume or run-now (see --help)")
	}
	action, rest := pos[0], pos[1:]
	want := map[string][2]int{"list": {0, 0}, "add": {2, 3}, "rm": {1, 1}, "pause": {1, 1}, "resume": {1, 1}, "run-now": {1, 1}}
	n, known := want[action]
	switch {
	case !known:
		return usagef("unknown action %q: use list, add, rm, pause, resume or run-now", action)
	case len(rest) < n[0] || len(rest) > n[1]:
		if action == "add" {
			return usagef("want: schedule add NAME KIND [ARGS_JSON] with --cron, --every or --at")
		}
		return usagef("want: schedule %s NAME", action)
	}

	var rec *ebbtype.Schedule
	if action == "add" {
		// The record cannot tell a flag set to a bad value from one not set
		// (--every 0s is "no interval" there), nor name the flag: check the
		// flags that were given before building it.
		given := map[string]bool{}
		f.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
		if given["tz"] {
			if _, err := schedule.LoadZone(*tz); err != nil {
				return usagef("--tz %q: %v", *tz, err)
			}
		}
		if given["every"] {
			if err := schedule.CheckEvery(*every); err != nil {
				return usagef("--every %s: %v", *every, err)
			}
		}
		sc := config.Schedule{Name: rest[0], Kind: rest[1], Cron: *cron, TZ: *tz, Every: *every, CatchUp: *catchUp,
			Queue: *queue, Priority: *priority, MaxAttempts: *maxAttempts}
		if *at != "" {
			if sc.At, err = time.Parse(time.RFC3339, *at); err != nil {
				return usagef("--at %q is not an RFC 3339 time (e.g. 2027-01-01T09:00:00+01:00)", *at)
			}
		}
		if len(rest) == 3 {
			if err := json.Unmarshal([]byte(rest[2]), &sc.Args); err != nil {
				return usagef("ARGS_JSON %q must be a JSON object: %v", rest[2], err)
			}
		}
		if rec, err = sc.Record(time.Now()); err != nil {
			return usagef("%v", err)
		}
	}

	ctx, b, closeBroker, err := f.openBroker(e)
	if err != nil {
		return err
	}
	defer closeBroker()
	client := b.Client
	// Names are free text ("nightly report"), so the CLI words this one
	// itself, with the name quoted.
	notFound := func(err error, doing string) error {
		if errors.Is(err, ebb.ErrScheduleNotFound) {
			return notFoundf("no schedule named %q to %s (see ebb schedule list)", rest[0], doing)
		}
		return err
	}
	switch action {
	case "list":
		rows, err := client.ScheduleList(ctx)
		if err != nil {
			return err
		}
		return printRows(e, *asJSON, rows, 0, "NAME\tWHEN\tKIND\tQUEUE\tPAUSED\tLAST RUN\tNEXT RUN\tLAST TASK", func(r ebb.Schedule) string {
			when := r.Spec
			if r.Error != "" {
				when = "invalid: " + r.Error
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%v\t%s\t%s\t%s", r.Name, when, r.Kind, r.Queue, r.Paused,
				fmtTime(r.LastTickAt), fmtTime(r.NextRun), r.LastTaskID)
		})
	case "add":
		if _, err := client.ScheduleUpsert(ctx, rec); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "schedule %s stored; the leading `ebb server` picks it up within 10s\n", rec.Name)
	case "rm":
		if err := client.ScheduleDelete(ctx, rest[0]); err != nil {
			return notFound(err, "remove")
		}
		fmt.Fprintf(e.stdout, "schedule %s removed\n", rest[0])
	case "pause", "resume":
		var err error
		if action == "pause" {
			err = client.SchedulePause(ctx, rest[0])
		} else {
			err = client.ScheduleResume(ctx, rest[0])
		}
		if err != nil {
			return notFound(err, action)
		}
		fmt.Fprintf(e.stdout, "schedule %s %s\n", rest[0], map[string]string{"pause": "paused", "resume": "resumed"}[action])
	case "run-now":
		id, err := client.ScheduleRunNow(ctx, rest[0])
		if err != nil {
			return notFound(err, "run")
		}
		fmt.Fprintf(e.stdout, "enqueued %s\n", id)
	}
	return nil
}

// fmtTime shows a time in the reader's zone, named: schedules have zones of
// their own, so a bare wall time is ambiguous.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}
