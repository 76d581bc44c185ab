package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ebbq/ebb"
)

const enqueueBatch = 1000

func runEnqueue(e *env, args []string) error {
	f := newFlagSet(e, "enqueue", "enqueue KIND [ARGS_JSON] [--queue Q] [--count N] [--delay D] [--priority P] [flags]",
		`ebb enqueue sleep '{"ms": 500}' --queue default --count 200`)
	queue := f.String("queue", ebb.QueueDefault, "queue")
	count := f.Int("count", 1, "how many identical tasks to enqueue (in batches)")
	delay := f.Duration("delay", 0, "run this long from now (e.g. 30s, 5m)")
	priority := f.String("priority", "normal", "high, normal or low")
	maxAttempts := f.Int("max-attempts", ebb.MaxAttemptsDefault, "attempts before the task goes dead")
	timeout := f.Duration("timeout", ebb.TimeoutDefault, "per-attempt timeout")
	unique := f.String("unique", "", "unique key: no second task with it while one is pending or running")
	wait := f.Bool("wait", false, "wait for the task to finish and print its result (with --count 1)")
	asJSON := f.Bool("json", false, "print the result as JSON")
	pos, err := f.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usagef("want KIND and optional ARGS_JSON, got %d arguments (see --help)", len(pos))
	}
	kind := pos[0]
	raw := json.RawMessage("{}")
	if len(pos) == 2 {
		raw = json.RawMessage(pos[1])
		if !json.Valid(raw) {
			return usagef("ARGS_JSON %q is not valid JSON; quote it for the shell, e.g. '{\"ms\": 500}'", pos[1])
		}
	}
	if *count < 1 {
		return usagef("--count %d: must be at least 1", *count)
	}
	if *wait && *count != 1 {
		return usagef("--wait works with --count 1 only")
	}
	prio, err := parsePriority(*priority)
	if err != nil {
		return err
	}
	opts := &ebb.EnqueueOpts{Queue: *queue, Delay: *delay, Priority: prio, MaxAttempts: *maxAttempts, Timeout: *timeout}
	if *unique != "" {
		opts.Unique = &ebb.UniqueOpts{Key: *unique}
	}

	ctx, b, closeBroker, err := f.openBroker(e)
	if err != nil {
		return err
	}
	defer closeBroker()
	client := b.Client

	progress := newProgress(e.stderr, "enqueued", *count)
	var results []ebb.EnqueueResult
	start := time.Now()
	for done := 0; done < *count; {
		n := min(enqueueBatch, *count-done)
		batch := make([]ebb.EnqueueParams, n)
		for i := range batch {
			batch[i] = ebb.EnqueueParams{Kind: kind, RawArgs: raw, Opts: opts}
		}
		res, err := client.EnqueueMany(ctx, batch)
		if err != nil {
			if errors.Is(err, ebb.ErrInvalidOpts) || errors.Is(err, ebb.ErrArgsTooLarge) {
				return usagef("%v", err)
			}
			return err
		}
		if *count <= 10 {
			results = append(results, res...)
		}
		done += n
		progress.set(done)
	}
	progress.finish()
	took := time.Since(start)

	if *wait {
		info, err := client.Wait(ctx, results[0].ID)
		if info == nil {
			return err
		}
		if *asJSON {
			if perr := printJSON(e.stdout, info); perr != nil {
				return perr
			}
		} else {
			fmt.Fprintf(e.stdout, "%s %s %s\n", info.ID, info.State, strings.TrimSpace(string(info.Result)))
		}
		return err
	}
	switch {
	case *asJSON && *count <= 10:
		return printJSON(e.stdout, results)
	case *asJSON:
		return printJSON(e.stdout, map[string]any{"enqueued": *count, "queue": *queue, "seconds": took.Seconds()})
	case *count <= 10:
		for _, r := range results {
			if r.Duplicate {
				fmt.Fprintf(e.stdout, "%s (duplicate: a task with this id or unique key exists)\n", r.ID)
			} else {
				fmt.Fprintf(e.stdout, "%s %s\n", r.ID, r.State)
			}
		}
	default:
		fmt.Fprintf(e.stdout, "enqueued %d %s tasks into %q in %s\n", *count, kind, *queue, took.Round(time.Millisecond))
	}
	return nil
}

func parsePriority(s string) (ebb.Priority, error) {
	switch strings.ToLower(s) {
	case "high", "1":
		return ebb.PriorityHigh, nil
	case "normal", "2", "":
		return ebb.PriorityNormal, nil
	case "low", "3":
		return ebb.PriorityLow, nil
	}
	return 0, usagef("--priority %q: use high, normal or low", s)
}

func runCancel(e *env, args []string) error {
	f := newFlagSet(e, "cancel", "cancel TASK_ID [flags]", "ebb cancel 01JD3Q8V6K2M4N5P7R9S1T3V5X")
	pos, err := f.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one TASK_ID (see --help)")
	}
	ctx, b, closeBroker, err := f.openBroker(e)
	if err != nil {
		return err
	}
	defer closeBroker()
	client := b.Client
	st, err := client.Cancel(ctx, pos[0])
	if err != nil {
		return err
	}
	switch st {
	case ebb.StateCancelled:
		fmt.Fprintf(e.stdout, "%s cancelled\n", pos[0])
	case ebb.StateRunning:
		fmt.Fprintf(e.stdout, "%s is running: cancellation requested, its handler's context is being cancelled\n", pos[0])
	default:
		fmt.Fprintf(e.stdout, "%s already finished (%s); nothing to cancel\n", pos[0], st)
	}
	return nil
}

// progress prints "enqueued 4000/10000" on one terminal line, and nothing
// when stderr is not a terminal.
type progress struct {
	w     io.Writer
	label string
	total int
	on    bool
	last  time.Time
}

func newProgress(w io.Writer, label string, total int) *progress {
	return &progress{w: w, label: label, total: total, on: isTerminal(w) && total > enqueueBatch}
}

func (p *progress) set(n int) {
	if !p.on || time.Since(p.last) < 100*time.Millisecond && n < p.total {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "\r%s %d/%d", p.label, n, p.total)
}

func (p *progress) finish() {
	if p.on {
		fmt.Fprintln(p.w)
	}
}
