package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/ebbq/ebb"
)

func runDead(e *env, args []string) error {
	f := newFlagSet(e, "dead", "dead list|retry|purge [ID...] [--queue Q] [--all] [flags]",
		"ebb dead retry --queue default --all")
	queue := f.String("queue", ebb.QueueDefault, "queue")
	all := f.Bool("all", false, "retry or purge every dead task of the queue")
	limit := f.Int("limit", 50, "list at most this many")
	offset := f.Int("offset", 0, "list from this position (newest death first)")
	asJSON := f.Bool("json", false, "print JSON")
	pos, err := f.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want list, retry or purge (see --help)")
	}
	action, ids := pos[0], pos[1:]
	switch action {
	case "list":
		if len(ids) > 0 || *all {
			return usagef("dead list takes no ids and no --all; use --limit and --offset")
		}
	case "retry", "purge":
		if len(ids) == 0 && !*all {
			return usagef("dead %s: name task ids, or --all for every dead task of queue %q", action, *queue)
		}
		if len(ids) > 0 && *all {
			return usagef("dead %s: name ids or use --all, not both", action)
		}
	default:
		return usagef("unknown action %q: use list, retry or purge", action)
	}

	ctx, b, closeBroker, err := f.openBroker(e)
	if err != nil {
		return err
	}
	defer closeBroker()

	if action == "list" {
		tasks, total, err := b.Client.DeadList(ctx, *queue, &ebb.DeadListParams{Offset: *offset, Limit: *limit})
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, map[string]any{"queue": *queue, "total": total, "tasks": tasks})
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tATTEMPTS\tDIED\tLAST ERROR")
		for _, t := range tasks {
			last := ""
			if n := len(t.Errors); n > 0 {
				last = t.Errors[n-1].Error
				if len(last) > 100 {
					last = last[:100] + "…"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", t.ID, t.Kind, t.Attempt, t.FinishedAt.Format(time.RFC3339), last)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%d of %d dead tasks in %q\n", len(tasks), total, *queue)
		return nil
	}
	act, done := b.Client.DeadRetry, "requeued %d dead task(s) in %q\n"
	if action == "purge" {
		act, done = b.Client.DeadPurge, "purged %d dead task(s) from %q\n"
	}
	n, err := act(ctx, *queue, ids...)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, done, n, *queue)
	if len(ids) > 0 && int(n) < len(ids) {
		return fmt.Errorf("%d of the %d ids were not dead tasks of queue %q: %w", len(ids)-int(n), len(ids), *queue, ebb.ErrTaskNotFound)
	}
	return nil
}
