package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/internal/httpserver"
)

func runInspect(e *env, args []string) error {
	f := newFlagSet(e, "inspect", "inspect queues|workers|scaling|task ID [--json] [flags]", "ebb inspect queues --json")
	asJSON := f.Bool("json", false, "print JSON")
	pool := f.String("pool", "", "inspect scaling: only this pool")
	limit := f.Int("limit", 50, "inspect scaling: how many decisions")
	pos, err := f.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want queues, workers, scaling or task ID (see --help)")
	}
	what := pos[0]
	switch {
	case what == "scaling" && len(pos) == 1:
		if *limit < 1 || *limit > 1000 {
			return usagef("--limit %d: use 1 to 1000", *limit)
		}
		return runInspectScaling(e, f, *asJSON, *pool, *limit)
	case (what == "queues" || what == "workers" || what == "scaling") && len(pos) != 1:
		return usagef("inspect %s takes no further arguments", what)
	case what == "task" && len(pos) != 2:
		return usagef("want: inspect task ID")
	case what != "queues" && what != "workers" && what != "task":
		return usagef("cannot inspect %q: use queues, workers, scaling or task ID", what)
	}

	ctx, b, closeBroker, err := f.openForRead(e)
	if err != nil {
		return err
	}
	defer closeBroker()
	now := time.Now()

	switch what {
	case "queues":
		stats, err := b.Client.QueueList(ctx)
		if err != nil {
			return err
		}
		return printRows(e, *asJSON, httpserver.QueuesJSON(stats, now, nil), tabwriter.AlignRight,
			"QUEUE\tQUEUED\tSCHEDULED\tIN FLIGHT\tDEAD\tSUCCEEDED\tFAILED\tRETRIED\tOLDEST\t", func(r httpserver.QueueJSON) string {
				return fmt.Sprintf("%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t", r.Name, r.Queued, r.Scheduled, r.InFlight, r.Dead,
					r.Succeeded, r.Failed, r.Retried, (time.Duration(r.OldestAgeS * float64(time.Second))).Round(time.Millisecond))
			})
	case "workers":
		workers, err := b.Client.WorkerList(ctx)
		if err != nil {
			return err
		}
		return printRows(e, *asJSON, workers, 0, "ID\tPOOL\tHOST\tPID\tQUEUES\tBUSY\tSTARTED\tLAST HEARTBEAT\tDRAINING", func(w ebb.WorkerInfo) string {
			return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%d/%d\t%s ago\t%s ago\t%v", w.ID, w.Pool, w.Host, w.PID, strings.Join(w.Queues, ","),
				w.Busy, w.Concurrency, now.Sub(w.StartedAt).Round(time.Second), now.Sub(w.HeartbeatAt).Round(time.Second), w.Draining)
		})
	default:
		info, err := b.Client.Task(ctx, pos[1])
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

func runInspectScaling(e *env, f *flagSet, asJSON bool, pool string, limit int) error {
	ctx, b, closeBroker, err := f.openForRead(e)
	if err != nil {
		return err
	}
	defer closeBroker()
	ds, err := b.Client.DecisionList(ctx, pool, limit)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(e.stdout, ds)
	}
	if len(ds) == 0 {
		return explainNoDecisions(ctx, e, b.Client, pool)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tPOOL\tCHANGE\tTERM\tREASON")
	for i := len(ds) - 1; i >= 0; i-- {
		d := ds[i]
		fmt.Fprintf(tw, "%s\t%s\t%d→%d\t%d\t%s\n", d.At.Local().Format("15:04:05.000"), d.Pool, d.From, d.To, d.Term, d.Reason)
	}
	return tw.Flush()
}

// explainNoDecisions tells "no control plane runs" from "it runs and has not
// needed to scale": right after an enqueue both have an empty log, and only
// the first needs the operator to act.
func explainNoDecisions(ctx context.Context, e *env, client *ebb.Client, pool string) error {
	what := "no scaling decision yet"
	if pool != "" {
		what = fmt.Sprintf("no scaling decision for pool %q yet", pool)
	}
	l, err := client.ControlPlaneLeader(ctx)
	if err != nil {
		return err
	}
	if l == nil {
		fmt.Fprintf(e.stdout, "%s, and no control plane leads: is `ebb server` or `ebb up` running?\n", what)
		return nil
	}
	fmt.Fprintf(e.stdout, "%s: the control plane (leader %s, term %d) has seen no reason to scale\n", what, l.LeaderID, l.Term)
	return nil
}
