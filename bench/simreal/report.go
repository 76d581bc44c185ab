package simreal

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// Report is one comparison: the setting, both sides' figures and the real
// run's measurements that explain the gaps.
type Report struct {
	Date        string `json:"date"`
	Machine     string `json:"machine"`
	Load        string `json:"load_before"`
	Command     string `json:"command"`
	Trace       string `json:"trace"`
	Seed        uint64 `json:"seed"`
	Description string `json:"description"`
	Tasks       int    `json:"tasks"`
	MaxWorkers  int    `json:"max_workers"`
	Concurrency int    `json:"concurrency"`
	MaxWait     string `json:"max_wait"`
	Wall        string `json:"wall"` // the real run, start to stop

	Real Stats `json:"real"`
	Sim  Stats `json:"sim"`

	// Startup is what the simulator ran with: the median launch → first
	// fetch of the real run.
	Startup        time.Duration `json:"-"`
	StartupSamples Durations     `json:"startup_ms"`
	ReadySamples   Durations     `json:"ready_ms"`
	ServerStartup  time.Duration `json:"-"`
	Wake           Durations     `json:"wake_ms"`
	ExitLags       Durations     `json:"idle_drain_exit_ms"`
	EnqueueLags    Durations     `json:"enqueue_lag_ms"`
	BusyDrains     []BusyDrain   `json:"busy_drains"`
	RepeatedDrains int           `json:"repeated_drains"`
	// BusyS is the sleep time the tasks asked for, in worker-slot seconds,
	// divided by concurrency: the worker-seconds no policy can avoid.
	BusyS float64 `json:"busy_s"`
}

// Durations encode as milliseconds in JSON.
type Durations []time.Duration

// MarshalJSON writes the durations as milliseconds.
func (ds Durations) MarshalJSON() ([]byte, error) {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return json.Marshal(out)
}

// Row is one line of the comparison table.
type Row struct {
	Name      string
	Real, Sim string
	Ratio     string
}

// Rows are the table's lines: each figure for reality and the simulator,
// and simulator ÷ reality ("—" where reality is zero).
func (r Report) Rows() []Row {
	f := func(name string, re, si float64, format func(float64) string) Row {
		return Row{name, format(re), format(si), Ratio(si, re)}
	}
	n := func(x float64) string { return fmt.Sprintf("%d", int(x)) }
	ws := func(x float64) string { return fmt.Sprintf("%.1f", x) }
	s := func(x float64) string {
		if math.IsInf(x, 1) {
			return "never ran"
		}
		return fmt.Sprintf("%.3f s", x)
	}
	a, b := r.Real, r.Sim
	return []Row{
		f("worker-seconds", a.WorkerSeconds, b.WorkerSeconds, ws),
		f("task wait p50", a.WaitP50, b.WaitP50, s),
		f("task wait p99", a.WaitP99, b.WaitP99, s),
		f("task wait max", a.WaitMax, b.WaitMax, s),
		f("scale-ups (launch decisions)", float64(a.ScaleUps), float64(b.ScaleUps), n),
		f("scale-downs (drain decisions)", float64(a.ScaleDowns), float64(b.ScaleDowns), n),
		f("workers launched", float64(a.Launches), float64(b.Launches), n),
		f("workers drained", float64(a.Drains), float64(b.Drains), n),
		f("interrupted tasks", float64(a.Interrupted), float64(b.Interrupted), n),
		f("peak workers", float64(a.PeakWorkers), float64(b.PeakWorkers), n),
	}
}

// Ratio is sim ÷ real as "0.93×", "—" when real is zero or either is not
// finite.
func Ratio(sim, real float64) string {
	if real == 0 || math.IsInf(real, 0) || math.IsInf(sim, 0) || math.IsNaN(sim) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", sim/real)
}

// Begin and End delimit the section in docs/benchmarks.md.
const (
	Begin = "<!-- sim-reality:begin (written by scripts/bench-sim-reality; do not edit by hand) -->"
	End   = "<!-- sim-reality:end -->"
)

func msText(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

// spread is "median X (min–max, n samples)".
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none measured"
	}
	return fmt.Sprintf("median %s (%s–%s, %d samples)", msText(Median(ds)), msText(ds[0]), msText(ds[len(ds)-1]), len(ds))
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

// Markdown is the whole docs section, markers included.
func (r Report) Markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("%s\n## The simulator against reality\n\n", Begin)
	p("Measured %s on %s; load average before the run %s (the machine may be shared). Command: `%s`.\n\n", r.Date, r.Machine, r.Load, r.Command)
	p("Trace `%s` (seed %d, %d tasks): %s ", r.Trace, r.Seed, r.Tasks, r.Description)
	p("Reality: a real `ebb server` on 127.0.0.1 with its embedded SQLite broker in a temporary directory and one pool on the local target ")
	p("(0–%d `ebb worker` processes of concurrency %d, every policy setting at its default: max wait %s, scale-down delay and idle before zero derived from the measured start-up), ", r.MaxWorkers, r.Concurrency, r.MaxWait)
	p("the harness enqueuing each task as the built-in `sleep` kind at its arrival time and reading the task records, the decision log and the server's worker launch/exit log lines; it took %s of wall time. ", r.Wall)
	p("Simulator: `sim.ReplayEbb`, the same policy code driven as the server drives it, replaying the arrivals the real run achieved with each worker taking the start-up measured in that run, launch → first fetch median %s, to fetch.\n\n", msText(r.Startup))
	p("| | reality | simulator | simulator ÷ reality |\n|---|---:|---:|---:|\n")
	for _, row := range r.Rows() {
		p("| %s | %s | %s | %s |\n", row.Name, row.Real, row.Sim, row.Ratio)
	}
	p("\nMeasured in the real run:\n\n")
	p("- start-up, launch → first fetch (workers launched while a task waited for them): %s; launch → the worker's \"worker started\" line: %s; the server's own estimate (launch → registered, median), which sets idle before zero: %s.\n",
		spread(r.StartupSamples), spread(r.ReadySamples), msText(r.ServerStartup))
	p("- wake from zero, newest enqueue → the scale-up decision: %s.\n", spread(r.Wake))
	p("- idle worker drained → its process exit: %s; %.1f worker-seconds in all.\n", spread(r.ExitLags), sum(r.ExitLags).Seconds())
	p("- workers drained while they held a task (the registry still showed them idle): %d, %.1f worker-seconds from the drain decision to their exit", len(r.BusyDrains), r.busyDrainSeconds())
	if len(r.BusyDrains) > 0 {
		var ws []string
		for _, d := range r.BusyDrains {
			ws = append(ws, fmt.Sprintf("%.1f s", d.Exited.Sub(d.At).Seconds()))
		}
		p(" (%s)", strings.Join(ws, ", "))
	}
	p("; drain requests repeated for a worker already asked: %d.\n", r.RepeatedDrains)
	p("- enqueue behind the trace's arrival time (the harness's timer and the SQLite write): %s.\n", spread(r.EnqueueLags))
	p("- the tasks' own sleep, over concurrency (what no policy can avoid paying): %.1f worker-seconds.\n\n", r.BusyS)
	p("%s\n%s\n", r.Reading(), End)
	return b.String()
}

func (r Report) busyDrainSeconds() float64 {
	var t float64
	for _, d := range r.BusyDrains {
		t += d.Exited.Sub(d.At).Seconds()
	}
	return t
}

// Reading is the paragraph on where model and reality part, built from the
// measured figures so that it stays true when the run is repeated.
func (r Report) Reading() string {
	a, s := r.Real, r.Sim
	var b strings.Builder
	p := func(format string, x ...any) { fmt.Fprintf(&b, format, x...) }
	p("**Where they differ.** The simulator's worker-seconds are %s of the real run's (%.1f against %.1f). ",
		Ratio(s.WorkerSeconds, a.WorkerSeconds), s.WorkerSeconds, a.WorkerSeconds)
	if n := len(r.BusyDrains); n > 0 {
		p("%.1f real worker-seconds went to %s drained while they held a task: a worker's busy/idle edge reaches the registry with its next heartbeat, at most one update a second, so one that has just fetched still looks idle to the reconcile; it finishes its task before exiting (nothing is interrupted), and meanwhile the pool counts it as gone and may launch another. ",
			r.busyDrainSeconds(), plural(n, "worker"))
		if a.PeakWorkers > r.MaxWorkers {
			p("That is how the real peak reached %d processes against max %d. ", a.PeakWorkers, r.MaxWorkers)
		}
		p("The model's scale-in sees exact state and only ever drains an empty worker. ")
	}
	p("Each idle drain costs reality %s more (median, %.1f worker-s in all): the request crosses the SQLite poller (5–100 ms between processes), the worker deregisters and exits, the target reaps it; the model's idle worker exits at the decision. ",
		msText(Median(r.ExitLags)), sum(r.ExitLags).Seconds())
	p("Waits: the model hands a queued task to a free slot at its arrival instant (p50 %s), a real worker learns of it through the same poller and claims it in a transaction (p50 %s); ",
		waitText(s.WaitP50), waitText(a.WaitP50))
	p("a cold start also waits the wake (enqueue → scale-up decision, median %s, max %s), which the model takes as zero, and a start-up that varied from %s to %s where the model gives every worker the median %s. ",
		msText(Median(r.Wake)), msText(last(r.Wake)), msText(first(r.StartupSamples)), msText(last(r.StartupSamples)), msText(r.Startup))
	p("The tails (p99 %s real, %s simulated) are the spike's tasks queued behind a full pool, waiting for the tasks ahead of them to finish, which the model times to within %s; ",
		waitText(a.WaitP99), waitText(s.WaitP99), waitText(math.Abs(a.WaitP99-s.WaitP99)))
	p("the decision counts part by %+d scale-ups and %+d scale-downs (simulator − reality) through the busy drains and timing shifts above", s.ScaleUps-a.ScaleUps, s.ScaleDowns-a.ScaleDowns)
	if r.RepeatedDrains > 0 {
		p(", and %s repeated a drain: a pass right after a drain still sees the worker serving (it has not yet reported that it drains) and asks again, which is harmless", plural(r.RepeatedDrains, "real scale-down"))
	}
	p(". ")
	if a.Interrupted == 0 && s.Interrupted == 0 {
		p("Neither interrupted a task.")
	} else {
		p("Interrupted tasks: %d real, %d simulated.", a.Interrupted, s.Interrupted)
	}
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func waitText(sec float64) string {
	if math.IsInf(sec, 1) {
		return "never ran"
	}
	return msText(time.Duration(sec * float64(time.Second)))
}

func first(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[0]
}

func last(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[len(ds)-1]
}
