// Command sim-reality replays a short bursty trace against a real `ebb
// server` (local target: real `ebb worker` processes running the built-in
// sleep task) and through the simulator (package sim) with the start-up
// measured in that run, and reports both side by side: how far to trust
// the simulator.
//
// Usage, from bench/:
//
//	go run ./cmd/sim-reality -ebb /path/to/ebb -out-md section.md
//
// Without -ebb it builds ../cmd/ebb into its temporary directory. It binds
// only 127.0.0.1, stops the server and its workers itself, and gives up
// after -timeout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/bench/sim"
	"github.com/ebbq/ebb/bench/simreal"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/internal/builtin"
)

const pool = "simreal"

type usageError struct{ error }

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "sim-reality:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "sim-reality:", err)
		os.Exit(1)
	}
}

type options struct {
	ebb        string
	seed       uint64
	maxWorkers int
	outMD      string
	outJSON    string
	command    string
	keep       bool
	saveRun    string
	loadRun    string
	timeout    time.Duration
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim-reality", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.ebb, "ebb", "", "the `ebb` binary to run (default: build ../cmd/ebb)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the trace")
	fs.IntVar(&o.maxWorkers, "max-workers", 4, "the pool's max workers")
	fs.StringVar(&o.outMD, "out-md", "", "write the docs section (markers included) to `FILE`")
	fs.StringVar(&o.outJSON, "out-json", "", "write the figures as JSON to `FILE`")
	fs.StringVar(&o.command, "command", "go run ./cmd/sim-reality (in bench/)", "the command line the report names")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (server and worker logs, the SQLite file)")
	fs.StringVar(&o.saveRun, "save-run", "", "write what the real run recorded as JSON to `FILE`")
	fs.StringVar(&o.loadRun, "load-run", "", "skip the real run and compare a run saved with -save-run (`FILE`)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q (all options are flags; see -h)", fs.Arg(0))}
	}
	if o.maxWorkers < 1 {
		return usageError{fmt.Errorf("-max-workers %d: want at least 1", o.maxWorkers)}
	}
	say := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var real simreal.Run
	if o.loadRun != "" {
		b, err := os.ReadFile(o.loadRun)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &real); err != nil {
			return fmt.Errorf("%s: %w", o.loadRun, err)
		}
		o.seed, o.maxWorkers = real.Seed, real.MaxWorkers
	} else {
		var err error
		if real, err = measure(ctx, o, say); err != nil {
			return err
		}
		if o.saveRun != "" {
			b, err := json.MarshalIndent(real, "", "  ")
			if err != nil {
				return err
			}
			if err := os.WriteFile(o.saveRun, append(b, '\n'), 0o644); err != nil {
				return err
			}
		}
	}
	tr := sim.ShortBursty(o.seed)
	if len(real.Tasks) != len(tr.Tasks) {
		return fmt.Errorf("the run has %d tasks, trace %s of seed %d has %d", len(real.Tasks), tr.Name, o.seed, len(tr.Tasks))
	}

	startups := real.StartupSamples()
	startup := simreal.Median(startups)
	if len(startups) == 0 {
		return errors.New("no start-up measured: no worker was launched while a task waited for it")
	}
	arrivals := map[int]time.Duration{}
	for _, t := range real.Tasks {
		arrivals[t.ID] = t.EnqueuedAt.Sub(real.T0)
	}
	replay := sim.ReplayEbb(sim.Realized(tr, arrivals), o.maxWorkers, startup, o.seed)

	var busy float64
	for _, t := range tr.Tasks {
		busy += t.Duration.Seconds()
	}
	rep := simreal.Report{
		Date: real.Date, Machine: real.Machine, Load: real.Load, Command: o.command,
		Trace: tr.Name, Seed: o.seed, Description: tr.Description, Tasks: len(tr.Tasks),
		MaxWorkers: o.maxWorkers, Concurrency: tr.Concurrency, MaxWait: tr.MaxWait.String(),
		Wall: real.Wall.Round(time.Second).String(),
		Real: real.Stats(), Sim: simreal.FromReplay(replay),
		Startup: startup, StartupSamples: startups, ReadySamples: real.ReadySamples(),
		ServerStartup: real.ServerStartup, Wake: real.WakeLatencies(), ExitLags: real.ExitLags(),
		EnqueueLags: real.EnqueueLags(), BusyDrains: real.BusyDrains(), RepeatedDrains: real.RepeatedDrains(),
		BusyS: busy / float64(tr.Concurrency),
	}
	md := rep.Markdown()
	if o.outMD != "" {
		if err := os.WriteFile(o.outMD, []byte(md), 0o644); err != nil {
			return err
		}
	} else {
		fmt.Fprint(stdout, md)
	}
	if o.outJSON != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.outJSON, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	for _, row := range rep.Rows() {
		say("%-30s %14s %14s %8s", row.Name, row.Real, row.Sim, row.Ratio)
	}
	return nil
}

// measure builds ebb if needed and runs the trace against a real server in
// a temporary directory.
func measure(ctx context.Context, o options, say func(string, ...any)) (simreal.Run, error) {
	dir, err := os.MkdirTemp("", "ebb-sim-reality-")
	if err != nil {
		return simreal.Run{}, err
	}
	if o.keep {
		say("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if o.ebb == "" {
		o.ebb = filepath.Join(dir, "ebb")
		say("building ../cmd/ebb")
		b := exec.CommandContext(ctx, "go", "build", "-o", o.ebb, "./cmd/ebb")
		b.Dir, b.Stdout, b.Stderr = "..", os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return simreal.Run{}, fmt.Errorf("building ebb: %w", err)
		}
	} else if o.ebb, err = filepath.Abs(o.ebb); err != nil {
		return simreal.Run{}, err
	}
	load := loadAverage()
	tr := sim.ShortBursty(o.seed)
	say("trace %s: %d tasks over %s against a real ebb server", tr.Name, len(tr.Tasks), tr.Horizon)
	started := time.Now()
	rr, err := realRun(ctx, o, dir, tr, say)
	if err != nil {
		return rr, err
	}
	rr.Seed, rr.MaxWorkers = o.seed, o.maxWorkers
	rr.Date, rr.Machine, rr.Load = time.Now().UTC().Format("2006-01-02"), machine(), load
	rr.Wall = time.Since(started)
	return rr, nil
}

// realRun starts the server, enqueues the trace at its arrival times, waits
// for every task to finish and the pool to return to zero, stops the server
// and collects what it recorded.
func realRun(ctx context.Context, o options, dir string, tr sim.Trace, say func(string, ...any)) (simreal.Run, error) {
	var rr simreal.Run
	port, err := freePort()
	if err != nil {
		return rr, err
	}
	db, logs := filepath.Join(dir, "ebb.db"), filepath.Join(dir, "logs")
	cfg := fmt.Sprintf("broker: %s\nserver:\n  listen: 127.0.0.1:%d\npools:\n  - name: %s\n    queues: [%s]\n    target: local\n    min: 0\n    max: %d\n    concurrency: %d\n    log_dir: %s\n",
		strconv.Quote("sqlite:"+db), port, pool, pool, o.maxWorkers, tr.Concurrency, strconv.Quote(logs))
	cfgPath := filepath.Join(dir, "ebb.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return rr, err
	}
	serverLog := filepath.Join(dir, "server.log")
	logFile, err := os.Create(serverLog)
	if err != nil {
		return rr, err
	}
	defer logFile.Close()
	srv := exec.Command(o.ebb, "server", "--config", cfgPath)
	srv.Dir, srv.Stdout, srv.Stderr = dir, logFile, logFile
	srv.SysProcAttr = sysProcAttr()
	if err := srv.Start(); err != nil {
		return rr, fmt.Errorf("starting ebb server: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		// SIGTERM drains the pool and stops its workers; its stop grace is
		// 30 s, so past that something is stuck.
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(45 * time.Second):
			_ = srv.Process.Kill()
			<-exited
			return errors.New("ebb server did not stop within 45 s of SIGTERM; killed")
		}
	}
	defer stop()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitLeading(ctx, base, exited); err != nil {
		return rr, fmt.Errorf("%w (server log: %s)", err, tail(serverLog))
	}

	drv, err := ebbsqlite.Open(ctx, db, &ebbsqlite.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return rr, err
	}
	defer drv.Close()
	client, err := ebb.NewClient(drv, nil)
	if err != nil {
		return rr, err
	}

	// Enqueue on schedule in one goroutine; this one watches the running
	// tasks, so a second start of any task (a hand-back or a rescue) is
	// seen even though the record keeps only the latest.
	ids := make([]string, len(tr.Tasks))
	rr.T0 = time.Now().Add(500 * time.Millisecond)
	enqDone := make(chan error, 1)
	go func() {
		for i, t := range tr.Tasks {
			if d := time.Until(rr.T0.Add(t.Arrival)); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					enqDone <- ctx.Err()
					return
				}
			}
			res, err := client.Enqueue(ctx, builtin.SleepArgs{MS: int(t.Duration.Milliseconds())}, &ebb.EnqueueOpts{Queue: pool})
			if err != nil {
				enqDone <- fmt.Errorf("enqueue task %d: %w", t.ID, err)
				return
			}
			ids[i] = res.ID
		}
		enqDone <- nil
	}()
	starts := map[string]map[string]bool{} // task id → "start|worker" seen
	seeRunning := func() error {
		res, err := client.TaskList(ctx, &ebb.TaskListParams{Queue: pool, State: ebb.StateRunning, Limit: 1000})
		if err != nil {
			return err
		}
		for _, t := range res.Tasks {
			if starts[t.ID] == nil {
				starts[t.ID] = map[string]bool{}
			}
			starts[t.ID][t.StartedAt.Format(time.RFC3339Nano)+"|"+t.WorkerID] = true
		}
		return nil
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	enqueued, terminal := false, map[string]bool{}
	lastReport := time.Now()
	for {
		select {
		case <-ctx.Done():
			return rr, fmt.Errorf("gave up waiting for the run: %w", ctx.Err())
		case err := <-exited:
			stopped = true
			return rr, fmt.Errorf("ebb server exited during the run (%v): %s", err, tail(serverLog))
		case err := <-enqDone:
			if err != nil {
				return rr, err
			}
			enqueued = true
		case <-tick.C:
		}
		if err := seeRunning(); err != nil {
			return rr, err
		}
		if time.Since(lastReport) > 30*time.Second {
			lastReport = time.Now()
			say("  %s into the trace", time.Since(rr.T0).Round(time.Second))
		}
		if !enqueued {
			continue
		}
		done, err := finished(ctx, client, ids, terminal)
		if err != nil {
			return rr, err
		}
		if !done {
			continue
		}
		if zero, err := poolAtZero(ctx, base); err != nil {
			return rr, err
		} else if zero {
			break
		}
	}
	if rr.ServerStartup, err = serverStartup(ctx, base); err != nil {
		return rr, err
	}
	ds, err := client.DecisionList(ctx, pool, ebb.DecisionLogMax)
	if err != nil {
		return rr, err
	}
	if len(ds) >= ebb.DecisionLogMax {
		return rr, fmt.Errorf("the decision log holds only the newest %d decisions; the run made more", ebb.DecisionLogMax)
	}
	for i := len(ds) - 1; i >= 0; i-- { // oldest first
		d := ds[i]
		rr.Decisions = append(rr.Decisions, simreal.Decision{At: d.At, Action: d.Action, From: d.From, To: d.To, Drained: d.Drained})
	}
	for i, t := range tr.Tasks {
		info, err := client.Task(ctx, ids[i])
		if err != nil {
			return rr, err
		}
		rr.Tasks = append(rr.Tasks, simreal.Task{
			ID: t.ID, Planned: t.Arrival, Duration: t.Duration,
			EnqueuedAt: info.EnqueuedAt, StartedAt: info.StartedAt, FinishedAt: info.FinishedAt,
			Worker: info.WorkerID, State: string(info.State), Attempts: info.Attempt, Errors: len(info.Errors),
			Starts: len(starts[info.ID]),
		})
	}
	if err := stop(); err != nil {
		return rr, fmt.Errorf("stopping ebb server: %w", err)
	}
	f, err := os.Open(serverLog)
	if err != nil {
		return rr, err
	}
	defer f.Close()
	if rr.Workers, err = simreal.ParseServerLog(f); err != nil {
		return rr, err
	}
	for i, w := range rr.Workers {
		if lf, err := os.Open(filepath.Join(logs, w.ID+".log")); err == nil {
			rr.Workers[i].Ready, err = simreal.ParseWorkerReady(lf)
			lf.Close()
			if err != nil {
				return rr, err
			}
		}
	}
	return rr, nil
}

// finished reports whether every enqueued task is terminal, reading only
// the ones not yet in terminal (which it fills in).
func finished(ctx context.Context, c *ebb.Client, ids []string, terminal map[string]bool) (bool, error) {
	for _, id := range ids {
		if terminal[id] {
			continue
		}
		info, err := c.Task(ctx, id)
		if err != nil {
			return false, err
		}
		if !info.State.Terminal() {
			return false, nil
		}
		terminal[id] = true
	}
	return true, nil
}

// poolView is the part of GET /api/v1/pools read here.
type poolView struct {
	Name      string            `json:"name"`
	Current   int               `json:"current"`
	StartupS  float64           `json:"startup_s"`
	Instances []json.RawMessage `json:"instances"`
}

func pools(ctx context.Context, base string) ([]poolView, error) {
	var ps []poolView
	err := getJSON(ctx, base+"/api/v1/pools", &ps)
	return ps, err
}

func poolAtZero(ctx context.Context, base string) (bool, error) {
	ps, err := pools(ctx, base)
	if err != nil {
		return false, err
	}
	for _, p := range ps {
		if p.Name == pool {
			return p.Current == 0 && len(p.Instances) == 0, nil
		}
	}
	return false, fmt.Errorf("pool %s not in /api/v1/pools", pool)
}

func serverStartup(ctx context.Context, base string) (time.Duration, error) {
	ps, err := pools(ctx, base)
	if err != nil {
		return 0, err
	}
	for _, p := range ps {
		if p.Name == pool {
			return time.Duration(p.StartupS * float64(time.Second)), nil
		}
	}
	return 0, fmt.Errorf("pool %s not in /api/v1/pools", pool)
}

// waitLeading waits until the server leads, so that the trace's first
// arrival meets a running autoscaler.
func waitLeading(ctx context.Context, base string, exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var l struct {
			Leading bool `json:"leading"`
		}
		if err := getJSON(ctx, base+"/api/v1/leader", &l); err == nil && l.Leading {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("ebb server did not lead within 30 s")
		}
		select {
		case err := <-exited:
			return fmt.Errorf("ebb server exited at start (%v)", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func getJSON(ctx context.Context, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, into)
}

// freePort picks a loopback port nobody listened on a moment ago: the
// config file has to name it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s", runtime.NumCPU(), model, runtime.Version())
}
