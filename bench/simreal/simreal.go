// Package simreal compares a real `ebb server` run of a trace with the
// simulator's replay of the same trace (package sim): what a real run
// recorded, the figures both report, and the markdown that sets them side
// by side. bench/cmd/sim-reality drives the real run.
package simreal

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ebbq/ebb/bench/sim"
)

// Task is one trace task as the real run recorded it.
type Task struct {
	ID         int           // the trace's task ID
	Planned    time.Duration // arrival in the trace
	Duration   time.Duration
	EnqueuedAt time.Time
	StartedAt  time.Time // of the latest attempt
	FinishedAt time.Time
	Worker     string
	State      string
	Attempts   int
	Errors     int
	// Starts are the distinct (start, worker) pairs seen while it ran: more
	// than one means it was handed back or rescued and ran again.
	Starts int
}

// Interrupted reports whether the task did not run exactly once to
// success: a scale-in that cut it short shows as a second start, a second
// attempt or an error.
func (t Task) Interrupted() bool {
	return t.State != "succeeded" || t.Attempts > 1 || t.Errors > 0 || t.Starts > 1
}

// Worker is one worker process's life, from the server's log (launch and
// exit) and its own (ready: its "worker started" line).
type Worker struct {
	ID       string
	Launched time.Time
	Ready    time.Time
	Exited   time.Time
}

// Decision is a scaling decision from the server's decision log.
type Decision struct {
	At       time.Time
	Action   string // up or down
	From, To int
	Drained  []string
}

// Run is everything a real run recorded; times are wall-clock, T0 is the
// trace's zero.
type Run struct {
	T0        time.Time
	Tasks     []Task
	Workers   []Worker
	Decisions []Decision
	// ServerStartup is the server's own estimate (launch → registered,
	// median), as /api/v1/pools reports it.
	ServerStartup time.Duration
	// Where and when it ran, for a report made later from a saved run.
	Seed       uint64
	MaxWorkers int
	Date       string
	Machine    string
	Load       string // load average before the run
	Wall       time.Duration
}

// Stats are the figures compared.
type Stats struct {
	WorkerSeconds float64 `json:"worker_s"`
	WaitP50       float64 `json:"wait_p50_s"`
	WaitP99       float64 `json:"wait_p99_s"`
	WaitMax       float64 `json:"wait_max_s"`
	ScaleUps      int     `json:"scale_ups"`
	ScaleDowns    int     `json:"scale_downs"`
	Launches      int     `json:"launches"`
	Drains        int     `json:"drains"`
	Interrupted   int     `json:"interrupted"`
	PeakWorkers   int     `json:"peak_workers"`
}

// MarshalJSON writes a wait of a task that never ran (+Inf) as null.
func (s Stats) MarshalJSON() ([]byte, error) {
	type plain Stats
	type wire struct {
		plain
		WaitP50 *float64 `json:"wait_p50_s"`
		WaitP99 *float64 `json:"wait_p99_s"`
		WaitMax *float64 `json:"wait_max_s"`
	}
	finite := func(x float64) *float64 {
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil
		}
		return &x
	}
	return json.Marshal(wire{plain(s), finite(s.WaitP50), finite(s.WaitP99), finite(s.WaitMax)})
}

func waitStats(s *Stats, sorted []float64) {
	s.WaitP50, s.WaitP99 = sim.Percentile(sorted, 0.50), sim.Percentile(sorted, 0.99)
	if len(sorted) > 0 {
		s.WaitMax = sorted[len(sorted)-1]
	}
}

// Stats computes the compared figures of a real run. A worker still alive
// at the end (no exit) is counted up to the last exit or finish seen.
func (r Run) Stats() Stats {
	var s Stats
	var end time.Time
	for _, w := range r.Workers {
		end = later(end, w.Exited)
	}
	var waits []float64
	for _, t := range r.Tasks {
		end = later(end, t.FinishedAt)
		if t.Interrupted() {
			s.Interrupted++
		}
		if t.State == "succeeded" {
			waits = append(waits, t.StartedAt.Sub(t.EnqueuedAt).Seconds())
		} else {
			waits = append(waits, math.Inf(1))
		}
	}
	sort.Float64s(waits)
	waitStats(&s, waits)
	var spans [][2]time.Duration
	for _, w := range r.Workers {
		exit := w.Exited
		if exit.IsZero() {
			exit = end
		}
		s.WorkerSeconds += exit.Sub(w.Launched).Seconds()
		spans = append(spans, [2]time.Duration{w.Launched.Sub(r.T0), exit.Sub(r.T0)})
	}
	s.Launches = len(r.Workers)
	s.PeakWorkers = Peak(spans)
	drained := map[string]bool{}
	for _, d := range r.Decisions {
		switch d.Action {
		case "up":
			s.ScaleUps++
		case "down":
			s.ScaleDowns++
			for _, id := range d.Drained {
				drained[id] = true
			}
		}
	}
	s.Drains = len(drained)
	return s
}

// drainedAt is each drained worker's first drain decision.
func (r Run) drainedAt() map[string]time.Time {
	out := map[string]time.Time{}
	for _, d := range r.Decisions {
		for _, id := range d.Drained {
			if _, ok := out[id]; !ok {
				out[id] = d.At
			}
		}
	}
	return out
}

// RepeatedDrains counts drain requests of a worker an earlier decision had
// already asked to drain.
func (r Run) RepeatedDrains() int {
	n, seen := 0, map[string]bool{}
	for _, d := range r.Decisions {
		for _, id := range d.Drained {
			if seen[id] {
				n++
			}
			seen[id] = true
		}
	}
	return n
}

// BusyDrain is a worker asked to drain while it held a task: the registry
// still showed it idle.
type BusyDrain struct {
	Worker  string
	At      time.Time // the drain decision
	Exited  time.Time
	Holding int // tasks it ran across the decision
}

// BusyDrains are the drained workers that held a task when the decision
// was made: one that started before it and finished after.
func (r Run) BusyDrains() []BusyDrain {
	exited := map[string]time.Time{}
	for _, w := range r.Workers {
		exited[w.ID] = w.Exited
	}
	var out []BusyDrain
	for id, at := range r.drainedAt() {
		b := BusyDrain{Worker: id, At: at, Exited: exited[id]}
		for _, t := range r.Tasks {
			if t.Worker == id && t.StartedAt.Before(at) && t.FinishedAt.After(at) {
				b.Holding++
			}
		}
		if b.Holding > 0 {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// FromReplay is a simulator run's figures.
func FromReplay(p sim.Replay) Stats {
	s := Stats{
		WorkerSeconds: p.WorkerSeconds, ScaleUps: p.ScaleUps, ScaleDowns: p.ScaleDowns,
		Launches: p.Launches, Drains: p.Drains, Interrupted: p.Interrupted, PeakWorkers: p.PeakWorkers,
	}
	waitStats(&s, p.Waits)
	return s
}

// Peak is the most spans open at once; a span that ends when another
// begins does not overlap it (a worker exits, another is launched).
func Peak(spans [][2]time.Duration) int {
	type edge struct {
		at    time.Duration
		delta int
	}
	var es []edge
	for _, s := range spans {
		es = append(es, edge{s[0], 1}, edge{s[1], -1})
	}
	sort.Slice(es, func(i, j int) bool {
		if es[i].at != es[j].at {
			return es[i].at < es[j].at
		}
		return es[i].delta < es[j].delta
	})
	n, peak := 0, 0
	for _, e := range es {
		n += e.delta
		peak = max(peak, n)
	}
	return peak
}

// StartupSamples are launch → first fetch of the workers launched while a
// task already waited for them: the first task such a worker ran was queued
// before it existed, so the worker claimed it on its first fetch. Workers
// launched into an empty queue give no sample (their first task came
// later).
func (r Run) StartupSamples() []time.Duration {
	first := map[string]Task{}
	for _, t := range r.Tasks {
		if t.Worker == "" || t.StartedAt.IsZero() {
			continue
		}
		if f, ok := first[t.Worker]; !ok || t.StartedAt.Before(f.StartedAt) {
			first[t.Worker] = t
		}
	}
	var out []time.Duration
	for _, w := range r.Workers {
		if t, ok := first[w.ID]; ok && t.EnqueuedAt.Before(w.Launched) {
			out = append(out, t.StartedAt.Sub(w.Launched))
		}
	}
	slices.Sort(out)
	return out
}

// ReadySamples are launch → the worker's "worker started" log line (its
// fetch loop is running), for every worker whose log had one.
func (r Run) ReadySamples() []time.Duration {
	var out []time.Duration
	for _, w := range r.Workers {
		if !w.Ready.IsZero() {
			out = append(out, w.Ready.Sub(w.Launched))
		}
	}
	slices.Sort(out)
	return out
}

// WakeLatencies are, for each scale-up from zero, the newest enqueue at or
// before the decision → the decision: the broker notification reaching the
// server and its reconcile. The simulator takes this as zero.
func (r Run) WakeLatencies() []time.Duration {
	var out []time.Duration
	for _, d := range r.Decisions {
		if d.Action != "up" || d.From != 0 {
			continue
		}
		var last time.Time
		for _, t := range r.Tasks {
			if !t.EnqueuedAt.After(d.At) && t.EnqueuedAt.After(last) {
				last = t.EnqueuedAt
			}
		}
		if !last.IsZero() {
			out = append(out, d.At.Sub(last))
		}
	}
	slices.Sort(out)
	return out
}

// ExitLags are, for each worker drained while idle, its drain decision →
// its process exit: the request reaching it, deregistering, exiting and
// being reaped. The simulator's idle worker exits at the decision.
func (r Run) ExitLags() []time.Duration {
	busy := map[string]bool{}
	for _, b := range r.BusyDrains() {
		busy[b.Worker] = true
	}
	var out []time.Duration
	at := r.drainedAt()
	for _, w := range r.Workers {
		if d, ok := at[w.ID]; ok && !busy[w.ID] && !w.Exited.IsZero() {
			out = append(out, w.Exited.Sub(d))
		}
	}
	slices.Sort(out)
	return out
}

// EnqueueLags are each task's enqueue → its planned arrival: how closely
// the harness kept to the trace.
func (r Run) EnqueueLags() []time.Duration {
	var out []time.Duration
	for _, t := range r.Tasks {
		out = append(out, t.EnqueuedAt.Sub(r.T0.Add(t.Planned)))
	}
	slices.Sort(out)
	return out
}

// Median of sorted durations; 0 for none.
func Median(sorted []time.Duration) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[len(sorted)/2]
}

// ParseServerLog reads the local target's "worker instance started" and
// "worker instance exited" lines of an `ebb server` log (slog text format)
// and returns the workers in launch order.
func ParseServerLog(r io.Reader) ([]Worker, error) {
	byID := map[string]*Worker{}
	var order []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		kv := logFields(sc.Text())
		msg, id := kv["msg"], kv["id"]
		if id == "" || (msg != "worker instance started" && msg != "worker instance exited") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, kv["time"])
		if err != nil {
			return nil, fmt.Errorf("server log: %q: %w", sc.Text(), err)
		}
		w := byID[id]
		if w == nil {
			w = &Worker{ID: id}
			byID[id] = w
			order = append(order, id)
		}
		if msg == "worker instance started" {
			w.Launched = at
		} else {
			w.Exited = at
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var out []Worker
	for _, id := range order {
		if w := byID[id]; !w.Launched.IsZero() {
			out = append(out, *w)
		}
	}
	return out, nil
}

// ParseWorkerReady returns the time of a worker log's "worker started"
// line, or zero.
func ParseWorkerReady(r io.Reader) (time.Time, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if kv := logFields(sc.Text()); kv["msg"] == "worker started" {
			return time.Parse(time.RFC3339Nano, kv["time"])
		}
	}
	return time.Time{}, sc.Err()
}

// logFields splits a slog text line into its key=value pairs, unquoting
// quoted values.
func logFields(line string) map[string]string {
	kv := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsRune(k, ' ') {
			return kv
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return kv
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		kv[k] = v
		line = rest
	}
	return kv
}
