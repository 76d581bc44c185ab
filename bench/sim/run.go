package sim

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/ebbq/ebb/internal/controlplane/policy"
)

// Startups are the worker start-up delays every trace runs with: a local
// process, and a Fargate task (image pull and boot; Judoscale's tuning docs
// put ECS/Fargate "closer to a minute").
var Startups = []time.Duration{time.Second, 45 * time.Second}

const (
	// graceDefault is SIGTERM → SIGKILL: Kubernetes'
	// terminationGracePeriodSeconds and ECS's stopTimeout both default to 30 s.
	graceDefault = 30 * time.Second
	// maxDeliveries is CDK's dead-letter maxReceiveCount default.
	maxDeliveries = 3
	// kombuVisibilityDefault is Kombu's Redis transport visibility_timeout.
	kombuVisibilityDefault = time.Hour
	// overtime bounds a run past the trace: enough for every policy to drain
	// and settle; tasks still unfinished then count as lost.
	overtime = 12 * time.Hour
)

// Policy is one row of a result table.
type Policy struct {
	Key    string `json:"key"`
	Name   string `json:"name"`
	Params string `json:"params"`
	// Alt marks ebb with non-default settings, shown for comparison.
	Alt bool `json:"alt,omitempty"`

	build func() (controller, fleetConfig, func() int)
}

// Result is one policy on one trace at one start-up delay.
type Result struct {
	Policy        string  `json:"policy"`
	Name          string  `json:"name"`
	WorkerSeconds float64 `json:"worker_s"`
	Ratio         float64 `json:"ratio"` // to the clairvoyant bound
	// Waits are arrival → start of the completing attempt, in seconds;
	// +Inf when more than the percentile's share of tasks never completed.
	WaitP50 float64 `json:"-"`
	WaitP99 float64 `json:"-"`
	WaitMax float64 `json:"-"`
	// OverMaxWait counts tasks that waited longer than the trace's max wait
	// (never-completed ones included).
	OverMaxWait int `json:"over_max_wait"`
	Interrupted int `json:"interrupted"` // attempts killed by scale-in
	Lost        int `json:"lost"`        // dead-lettered or never run
	Actions     int `json:"scaling_actions"`
	MaxWorkers  int `json:"max_workers"`
	Launches    int `json:"launches"` // workers started during the trace
	// Where the worker-seconds went.
	StartupS    float64 `json:"startup_s"`
	BusyS       float64 `json:"busy_s"`       // ready, holding ≥ 1 task
	IdleEmptyS  float64 `json:"idle_empty_s"` // ready, idle, nothing queued or in flight anywhere
	IdleLoadedS float64 `json:"idle_loaded_s"`
	StoppingS   float64 `json:"stopping_s"` // draining or terminating

	Timeline   []Point         `json:"-"`
	Interrupts []time.Duration `json:"-"`
}

// Case is one trace at one start-up delay, with every policy's result.
type Case struct {
	Trace       string        `json:"trace"`
	Title       string        `json:"title"`
	Startup     time.Duration `json:"-"`
	Tasks       int           `json:"tasks"`
	Concurrency int           `json:"concurrency"`
	MaxWait     time.Duration `json:"-"`
	Peak        int           `json:"peak_need"`
	Bound       Bound         `json:"bound"`
	Policies    []Policy      `json:"policies,omitempty"`
	Results     []Result      `json:"results"`
	Variants    []Result      `json:"variants"`
	// Need is the clairvoyant fleet r(t) = ceil(n(t)/C), for charts.
	Need []Point `json:"-"`
}

// Policies returns the rows run on a trace at a start-up delay: ebb with
// the server's defaults first, ebb tuned for the delay, then the baselines.
func Policies(tr Trace, peak int, startup time.Duration) []Policy {
	base := EbbDefaultPolicy(peak, tr.Concurrency, tr.MaxWait)
	rows := []Policy{
		ebbRow("ebb", "ebb", base, false, ebbOptions{Pack: true}, startup),
		ebbRow("ebb-before", "ebb before packing (fixed 30 s / 1 min delays)", EbbFixed(base, startup), true, ebbOptions{}, startup),
	}

	sqsVisibility := max(tr.MaxDuration.Round(time.Minute), 30*time.Second)
	kombuVisibility := max(kombuVisibilityDefault, tr.MaxDuration.Round(time.Minute))
	platform := func(vt time.Duration) fleetConfig {
		return fleetConfig{Grace: graceDefault, VisibilityTimeout: vt, MaxDeliveries: maxDeliveries}
	}
	rows = append(rows,
		Policy{
			Key: "seed", Name: "seed design",
			Params: fmt.Sprintf("LLEN + reserved + active pushed every 5 min; ≥ 1 → +1, 0 → −1, acting 1 min after the push; min 0, max 2; ECS stops a random task; visibility %s", kombuVisibility),
			build: func() (controller, fleetConfig, func() int) {
				c := newSeed()
				return c, platform(kombuVisibility), func() int { return c.actions }
			},
		},
	)
	for _, mk := range []func(int) *cdkCtl{newCDK, newCDKWake1} {
		probe := mk(peak)
		rows = append(rows, Policy{
			Key: probe.Key, Name: probe.Name,
			Params: fmt.Sprintf("ApproximateNumberOfMessagesVisible, maximum over 5 min, alarms every minute; %s; cooldown 300 s; min 0, max %d; ECS stops a random task; SQS visibility %s, 3 receives", cdkStepsText(probe), peak, sqsVisibility),
			build: func() (controller, fleetConfig, func() int) {
				c := mk(peak)
				return c, platform(sqsVisibility), func() int { return c.actions }
			},
		})
	}
	rows = append(rows,
		Policy{
			Key: "keda", Name: "KEDA defaults",
			Params: fmt.Sprintf("Redis list LLEN, listLength 5, activation 0, pollingInterval 30 s, cooldownPeriod 300 s; HPA every 15 s, tolerance 10 %%, up max(+4, +100 %%) per 15 s, down to the highest of 300 s; max %d; newest pod deleted first; visibility %s", peak, kombuVisibility),
			build: func() (controller, fleetConfig, func() int) {
				c := newKEDA(peak)
				return c, platform(kombuVisibility), func() int { return c.actions }
			},
		},
		Policy{
			Key: "always-on", Name: fmt.Sprintf("always-on %d", peak),
			Params: fmt.Sprintf("%d workers (the clairvoyant peak need) up for the whole trace, started before it", peak),
			build: func() (controller, fleetConfig, func() int) {
				return &alwaysOnCtl{N: peak}, fleetConfig{}, func() int { return 0 }
			},
		},
	)
	return rows
}

// ebbOptions are mechanisms of the workers the simulator can switch.
type ebbOptions struct {
	// Pack: the fullest worker with room fetches first (WorkerConfig.PackDelay,
	// on by default).
	Pack bool
}

func ebbRow(key, name string, p policy.Policy, alt bool, o ebbOptions, startup time.Duration) Policy {
	delays := fmt.Sprintf("scale-down delay %s, idle before zero %s", p.ScaleDownDelay, p.IdleBeforeZero)
	if p.ScaleDownDelay == policy.Derived || p.IdleBeforeZero == policy.Derived {
		r := p
		r.Startup = startup
		r = r.Resolve()
		delays = fmt.Sprintf("delays derived from the measured start-up (%s before the first measurement): scale-down delay %s, idle before zero %s",
			formatDuration(startupDefault(startup)), formatDuration(r.ScaleDownDelay), formatDuration(r.IdleBeforeZero))
	}
	fetch := "random worker with room fetches"
	if o.Pack {
		fetch = "packing fetch"
	}
	return Policy{
		Key: key, Name: name, Alt: alt,
		Params: fmt.Sprintf("max wait %s, %s, backlog per worker = concurrency, max %d; reconcile on every enqueue, every 1 s with workers, every 5 s at zero; drains idle workers only; %s",
			p.MaxWait, delays, p.Max, fetch),
		build: func() (controller, fleetConfig, func() int) {
			c := newEbb(p, startup)
			return c, fleetConfig{Pack: o.Pack}, func() int { return c.actions }
		},
	}
}

func cdkStepsText(c *cdkCtl) string {
	s := fmt.Sprintf("visible ≤ %d → −1", c.LowerThreshold)
	for _, st := range c.Steps {
		s += fmt.Sprintf(", ≥ %d → %+d", st.Lower, st.Change)
	}
	return s
}

// Run simulates every policy on a trace at one start-up delay. record keeps
// each run's timeline for charts.
func Run(tr Trace, startup time.Duration, seed uint64, record bool) Case {
	b := ClairvoyantBound(tr.Tasks, tr.Concurrency, startup)
	peak := max(b.Peak, 1)
	c := Case{
		Trace: tr.Name, Title: tr.Title, Startup: startup, Tasks: len(tr.Tasks), Concurrency: tr.Concurrency,
		MaxWait: tr.MaxWait, Peak: peak, Bound: b, Policies: Policies(tr, peak, startup),
	}
	if record {
		c.Need = needTimeline(tr.Tasks, tr.Concurrency)
	}
	for _, p := range c.Policies {
		c.Results = append(c.Results, runOne(tr, startup, seed, p, b, record))
	}
	return c
}

func runOne(tr Trace, startup time.Duration, seed uint64, p Policy, b Bound, record bool) Result {
	ctl, cfg, actions := p.build()
	cfg.Startup, cfg.Concurrency = startup, tr.Concurrency
	if cfg.MaxDeliveries == 0 {
		cfg.MaxDeliveries = math.MaxInt
	}
	f := newFleet(tr, cfg, ctl, seed, record)
	_, alwaysOn := ctl.(*alwaysOnCtl)
	n := len(f.tasks)
	done := func() bool { return f.resolved == n && len(f.live) == 0 }
	if alwaysOn {
		// Always-on pays for the whole trace, even after its last task.
		f.at(tr.Horizon, func() {})
		done = func() bool { return f.resolved == n && f.now >= tr.Horizon }
	}
	f.run(done, tr.Horizon+overtime)

	w := f.waits()
	sort.Float64s(w)
	r := Result{
		Policy: p.Key, Name: p.Name,
		WorkerSeconds: f.workerSeconds(),
		WaitP50:       percentile(w, 0.50), WaitP99: percentile(w, 0.99),
		Interrupted: f.interrupted, Actions: actions(), MaxWorkers: f.maxWorkers, Launches: f.launches,
		StartupS: f.startupNs / 1e9, BusyS: f.busyNs / 1e9, IdleEmptyS: f.idleEmptyNs / 1e9,
		IdleLoadedS: f.idleLoadedNs / 1e9, StoppingS: f.stoppingNs / 1e9,
		Timeline: f.timeline, Interrupts: f.interrupts,
	}
	if len(w) > 0 {
		r.WaitMax = w[len(w)-1]
	}
	for _, t := range f.tasks {
		if !t.done {
			r.Lost++
		}
	}
	for _, x := range w {
		if x > tr.MaxWait.Seconds() {
			r.OverMaxWait++
		}
	}
	if b.WorkerSeconds > 0 {
		r.Ratio = r.WorkerSeconds / b.WorkerSeconds
	}
	return r
}

// percentile is the nearest-rank percentile of sorted values: the smallest
// value with at least q of all values at or below it.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// needTimeline is r(t) = ceil(n(t)/C) with zero wait, as points whose
// Workers field holds r.
func needTimeline(tasks []Task, c int) []Point {
	type edge struct {
		at    time.Duration
		delta int
	}
	var edges []edge
	for _, t := range tasks {
		edges = append(edges, edge{t.Arrival, 1}, edge{t.Arrival + t.Duration, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta < edges[j].delta
	})
	var out []Point
	n := 0
	for i := 0; i < len(edges); {
		at := edges[i].at
		for ; i < len(edges) && edges[i].at == at; i++ {
			n += edges[i].delta
		}
		r := (n + c - 1) / c
		if len(out) == 0 || out[len(out)-1].Workers != r {
			out = append(out, Point{At: at, InFlight: n, Workers: r})
		}
	}
	return out
}
