package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ebbq/ebb"
)

// queueJSON is one row of `ebb inspect queues --json`; its field names are a
// documented interface (scripts and the autoscaler's users read them).
type queueJSON struct {
	Name       string  `json:"name"`
	Queued     int64   `json:"queued"`
	Scheduled  int64   `json:"scheduled"`
	InFlight   int64   `json:"in_flight"`
	Dead       int64   `json:"dead"`
	Succeeded  int64   `json:"succeeded"`
	Failed     int64   `json:"failed"`
	Retried    int64   `json:"retried"`
	OldestAgeS float64 `json:"oldest_age_s"`
}

func runInspect(e *env, args []string) error {
	f := newFlagSet(e, "inspect", "inspect queues|workers|task ID [--json] [flags]", "ebb inspect queues --json")
	asJSON := f.Bool("json", false, "print JSON")
	pos, err := f.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want queues, workers or task ID (see --help)")
	}
	what := pos[0]
	switch {
	case (what == "queues" || what == "workers") && len(pos) != 1:
		return usagef("inspect %s takes no further arguments", what)
	case what == "task" && len(pos) != 2:
		return usagef("want: inspect task ID")
	case what != "queues" && what != "workers" && what != "task":
		return usagef("cannot inspect %q: use queues, workers or task ID", what)
	}

	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	drv, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer drv.Close()
	now := time.Now()

	switch what {
	case "queues":
		stats, err := drv.QueueStats(ctx, now)
		if err != nil {
			return err
		}
		rows := make([]queueJSON, len(stats))
		for i, s := range stats {
			rows[i] = queueJSON{Name: s.Name, Queued: s.Queued, Scheduled: s.Scheduled, InFlight: s.InFlight, Dead: s.Dead,
				Succeeded: s.Succeeded, Failed: s.Failed, Retried: s.Retried}
			if !s.OldestQueuedAt.IsZero() {
				rows[i].OldestAgeS = max(0, now.Sub(s.OldestQueuedAt).Seconds())
			}
		}
		if *asJSON {
			return printJSON(e.stdout, rows)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "QUEUE\tQUEUED\tSCHEDULED\tIN FLIGHT\tDEAD\tSUCCEEDED\tFAILED\tRETRIED\tOLDEST\t")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", r.Name, r.Queued, r.Scheduled, r.InFlight, r.Dead,
				r.Succeeded, r.Failed, r.Retried, (time.Duration(r.OldestAgeS * float64(time.Second))).Round(time.Millisecond))
		}
		return tw.Flush()
	case "workers":
		workers, err := drv.WorkerList(ctx, now)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, workers)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPOOL\tHOST\tPID\tQUEUES\tBUSY\tSTARTED\tLAST HEARTBEAT\tDRAINING")
		for _, w := range workers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d/%d\t%s ago\t%s ago\t%v\n", w.ID, w.Pool, w.Host, w.PID, strings.Join(w.Queues, ","),
				w.Busy, w.Concurrency, now.Sub(w.StartedAt).Round(time.Second), now.Sub(w.HeartbeatAt).Round(time.Second), w.Draining)
		}
		return tw.Flush()
	default:
		client, err := ebb.NewClient(drv, nil)
		if err != nil {
			return err
		}
		info, err := client.Task(ctx, pos[1])
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, info)
		}
		printTask(e, info)
		return nil
	}
}

func printTask(e *env, t *ebb.TaskInfo) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format(time.RFC3339Nano)
	}
	row("id", t.ID)
	row("kind", t.Kind)
	row("queue", t.Queue)
	row("state", string(t.State))
	row("attempt", fmt.Sprintf("%d of %d", t.Attempt, t.MaxAttempts))
	row("priority", fmt.Sprint(t.Priority))
	row("args", string(t.EncodedArgs))
	row("enqueued", ts(t.EnqueuedAt))
	row("run at", ts(t.RunAt))
	row("started", ts(t.StartedAt))
	row("finished", ts(t.FinishedAt))
	row("worker", t.WorkerID)
	if len(t.Result) > 0 {
		row("result", string(t.Result))
	}
	_ = tw.Flush()
	for _, ae := range t.Errors {
		fmt.Fprintf(e.stdout, "error (attempt %d, %s, %s): %s\n", ae.Attempt, ae.At.Format(time.RFC3339), ae.WorkerID, ae.Error)
		if ae.Stack != "" {
			fmt.Fprintf(e.stdout, "  %s\n", strings.ReplaceAll(strings.TrimSpace(ae.Stack), "\n", "\n  "))
		}
	}
}
