package cli

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/ebbq/ebb/internal/bench"
)

func runBench(e *env, args []string) error {
	if len(args) > 0 && args[0] == "scaling" {
		f := newFlagSet(e, "bench scaling", "bench scaling [--trials N] [--json] [flags]",
			"ebb bench scaling --broker redis://127.0.0.1:6379/0 --json")
		return runBenchScaling(e, f, args[1:])
	}
	f := newFlagSet(e, "bench", "bench [scaling] --tasks N [--concurrency C] [--json] [flags]",
		"ebb bench --broker redis://127.0.0.1:6379/0 --tasks 100000 --json")
	tasks := f.Int("tasks", 100_000, "no-op tasks in the burn-down")
	concurrency := f.Int("concurrency", 1000, "worker concurrency (goroutines are cheap; a large backlog of no-op tasks wants many slots so fetches and acknowledgements stay batched)")
	batch := f.Int("batch", 1000, "tasks per enqueue call")
	samples := f.Int("latency-samples", 200, "sequential enqueue→start samples on the idle worker")
	retention := f.Duration("retention", bench.RetentionDefault, "how long the bench's finished tasks are kept before its cleanup deletes them; "+
		"shorter than the run makes Redis expire them while the figures are taken")
	asJSON := f.Bool("json", false, "print one JSON line")
	cpuProfile := f.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if pos, err := f.parse(e, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q (see --help)", pos[0])
	}
	if *tasks < 1 || *concurrency < 1 || *batch < 1 || *samples < 1 {
		return usagef("--tasks, --concurrency, --batch and --latency-samples must be at least 1")
	}
	if *retention <= 0 {
		return usagef("--retention %s: must be positive", *retention)
	}
	if *retention > bench.RetentionMax {
		// The run deletes its tasks once their retention has passed; a
		// longer one would end it with its tasks left behind in a queue
		// no worker serves.
		return usagef("--retention %s: at most %s, so that the run can delete its tasks before it exits", *retention, bench.RetentionMax)
	}
	ctx, b, closeBroker, err := f.openBroker(e)
	if err != nil {
		return err
	}
	defer closeBroker()

	abandon, release := abandonOnSecondSignal(ctx, e)
	defer release()
	p := bench.Params{Tasks: *tasks, Concurrency: *concurrency, EnqueueBatch: *batch, LatencySamples: *samples, Retention: *retention, Abandon: abandon}
	tty := !*asJSON && isTerminal(e.stderr)
	if tty {
		p.Progress = func(phase string, done, total int) {
			fmt.Fprintf(e.stderr, "\r%-8s %d/%d   ", phase, done, total)
		}
	}
	if *cpuProfile != "" {
		out, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := bench.Run(ctx, b.Driver(), p)
	if tty {
		fmt.Fprintln(e.stderr)
	}
	if res == nil {
		return err
	}
	// A result with an error is a measurement whose cleanup did not finish:
	// the figures are still worth printing before the error says what is
	// left behind.
	if *asJSON {
		return cmp.Or(printJSONLine(e, res), err)
	}
	fmt.Fprintf(e.stdout, "broker          %s\n", res.Broker)
	fmt.Fprintf(e.stdout, "tasks           %d (concurrency %d)\n", res.Tasks, res.Concurrency)
	fmt.Fprintf(e.stdout, "enqueue         %.0f tasks/s (batches of %d)\n", res.EnqueuePerS, *batch)
	fmt.Fprintf(e.stdout, "burn-down       %.0f tasks/s (one worker)\n", res.ProcessPerS)
	fmt.Fprintf(e.stdout, "enqueue→start   p50 %.3f ms, p99 %.3f ms, max %.3f ms (%d samples, idle worker)\n",
		res.LatencyP50MS, res.LatencyP99MS, res.LatencyMaxMS, res.LatencySamples)
	return err
}

func runBenchScaling(e *env, f *flagSet, args []string) error {
	trials := f.Int("trials", 20, "scale-from-zero trials")
	asJSON := f.Bool("json", false, "print one JSON line")
	if pos, err := f.parse(e, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q (see --help)", pos[0])
	}
	if *trials < 1 {
		return usagef("--trials must be at least 1")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logDir, err := os.MkdirTemp("", "ebb-bench-scaling-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(logDir)
	ctx, b, closeBroker, err := f.openBroker(e)
	if err != nil {
		return err
	}
	defer closeBroker()
	p := bench.ScalingParams{Trials: *trials, BrokerURL: *f.broker, Executable: exe, LogDir: logDir}
	tty := !*asJSON && isTerminal(e.stderr)
	if tty {
		p.Progress = func(done, total int) { fmt.Fprintf(e.stderr, "\rtrial %d/%d   ", done, total) }
	}
	res, err := bench.RunScaling(ctx, b.Driver(), p)
	if tty {
		fmt.Fprintln(e.stderr)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSONLine(e, res)
	}
	fmt.Fprintf(e.stdout, "broker               %s (%d trials, local target, pool at zero before each)\n", res.Broker, res.Trials)
	fmt.Fprintf(e.stdout, "enqueue→decision     p50 %.1f ms, p99 %.1f ms\n", res.DecisionMSP50, res.DecisionMSP99)
	fmt.Fprintf(e.stdout, "enqueue→first start  p50 %.1f ms, p99 %.1f ms\n", res.FirstStartMSP50, res.FirstStartMSP99)
	return nil
}

// abandonOnSecondSignal returns a channel closed by a second SIGINT or
// SIGTERM after ctx (the first one's) has ended, so someone who does not
// want to wait for the bench's cleanup can still leave at once. release
// must be called before ctx's own stop, which also ends ctx.
func abandonOnSecondSignal(ctx context.Context, e *env) (abandon <-chan struct{}, release func()) {
	ch, done := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		select {
		case <-done: // ended by release and stop, not by a signal
			return
		default:
		}
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
		fmt.Fprintln(e.stderr, "ebb bench: interrupted; deleting the run's tasks (interrupt again to leave them behind)")
		select {
		case <-sigs:
			close(ch)
		case <-done:
		}
	}()
	return ch, func() { close(done) }
}
