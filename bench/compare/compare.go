// Package compare runs the same workloads on ebb and on its peers (asynq,
// River, Celery) on one machine, against the same brokers, and reports the
// median of each metric with its ratio to ebb on Redis.
//
// Every system implements System. The Go systems run in this process
// through their public APIs; Celery runs as subprocesses (bench/celery).
// Repetitions alternate over the systems (rep 1: all systems, rep 2: all
// systems, …) so that drift on the machine hits every system alike.
package compare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"sort"
	"time"

	"github.com/ebbq/ebb/internal/clock"
)

// System is one queue implementation under test. The runner calls Setup,
// then the workloads in the order below, then Teardown, once per repetition.
// Each workload starts from an empty broker; Steady leaves its worker running
// so that Idle measures the same worker at rest.
type System interface {
	Name() string
	Broker() string
	Setup(ctx context.Context) error
	// EnqueueRate enqueues no-op tasks with single-task calls from producers
	// concurrent producers for window and returns tasks per second.
	EnqueueRate(ctx context.Context, producers int, window time.Duration) (float64, error)
	// BurnDown enqueues n tasks with no worker running, then starts the
	// workers and times until the system records all n as done.
	BurnDown(ctx context.Context, n int) (*BurnResult, error)
	// Steady enqueues rate tasks/s for d, each carrying its enqueue time,
	// and returns the enqueue→handler-start latencies of the tasks that
	// started within drain of the last send. A producer that cannot keep
	// the rate stops at steadyDeadline(d) and reports what it achieved.
	Steady(ctx context.Context, rate int, d, drain time.Duration) (*SteadyResult, error)
	// Idle measures the broker traffic and worker CPU of a waiting worker.
	Idle(ctx context.Context, settle, window time.Duration) (*IdleResult, error)
	Teardown(ctx context.Context) error
}

// Config is a run's shape. DefaultConfig and QuickConfig fill it.
type Config struct {
	Reps            int
	BurnTasks       int // burn-down backlog for every system but Celery
	CeleryBurnTasks int // Celery's backlog; see DefaultConfig
	Producers       int // the "many producers" enqueue case
	EnqueueWindow   time.Duration
	SteadyRate      int
	SteadyDuration  time.Duration
	SteadyDrain     time.Duration // how long stragglers may take after the last enqueue
	// HighRate is the second steady workload, run after Idle on a fresh
	// worker: a rate (10,000/s) at which batching and wake-ups matter more
	// than at SteadyRate. It is shorter, and its stragglers get less time,
	// because bench/run's budget has room for 10 s per system and
	// repetition, not 30 (see DefaultConfig).
	HighRate     int
	HighDuration time.Duration
	HighDrain    time.Duration
	IdleSettle   time.Duration
	IdleWindow   time.Duration
	Concurrency  int // handler concurrency of the Go systems' workers
	CeleryProcs  int // Celery prefork pool size

	RedisAddr   string // host:port; every Redis system uses RedisDB on it
	RedisDB     int
	RedisDesc   string // how that Redis came to be, for the report
	PostgresURL string // a database to connect to for creating PostgresDB
	PostgresDB  string // created and dropped by the River system
	Python      string // an interpreter that can import celery
	CeleryDir   string // bench/celery
	WorkDir     string // SQLite files, Celery's scratch files

	Log io.Writer // progress; nil discards
}

// DefaultConfig is the full run of bench/run, sized to fit its 15-minute
// budget on a 2-core machine (see the CeleryBurnTasks comment).
func DefaultConfig() Config {
	return Config{
		Reps:      3,
		BurnTasks: 100_000,
		// Celery burns ~1,500 no-op tasks/s with a 2-process prefork pool on
		// the 2-core reference machine, and its producers fill 2,000-5,000/s:
		// 100k would take 90-120 s per repetition, more than the whole budget
		// leaves for it after three 30 s steady runs of every system. A
		// smaller backlog still measures its steady burn rate; the report
		// says so.
		CeleryBurnTasks: 10_000,
		Producers:       16,
		EnqueueWindow:   time.Second,
		SteadyRate:      1000,
		SteadyDuration:  30 * time.Second,
		SteadyDrain:     20 * time.Second,
		// 10 s at 10,000/s is 100,000 samples, plenty for a p99, and adds
		// about 12 s per Go system and repetition; Celery cannot send or
		// run 10,000/s (its one paced producer stops at 1.1 × 10 s and the
		// report gives the rate it reached), and a 5 s drain bounds what a
		// system that fell behind costs: the share started says how far
		// behind it fell.
		HighRate:     10_000,
		HighDuration: 10 * time.Second,
		HighDrain:    5 * time.Second,
		// The idle window is short for the same budget reason: 5 systems ×
		// 3 repetitions × (settle + window). 5 s still spans ebb's poll
		// backstop (5 s), asynq's and Celery's 1 s checks and River's
		// 1 s fetch poll; the median over repetitions smooths which
		// 10 s heartbeats happen to fall inside.
		IdleSettle: 1500 * time.Millisecond,
		IdleWindow: 5 * time.Second,
		// A no-op handler never blocks, so concurrency only caps how many
		// tasks a worker holds at once. River fetches at most MaxWorkers
		// jobs per FetchCooldown (100 ms), so its cap binds: 1,000 workers
		// held it at 10,000 tasks/s while 10,000 (its maximum) burned twice
		// as fast here. Every Go system gets River's maximum, so that the
		// cap is nobody's bottleneck.
		Concurrency: 10_000,
		CeleryProcs: runtime.NumCPU(),
		RedisAddr:   "127.0.0.1:6379",
		RedisDB:     12,
		PostgresURL: "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
		PostgresDB:  "ebb_bench",
		Python:      "/usr/bin/python3",
		CeleryDir:   "celery",
	}
}

// QuickConfig is a smoke run: every code path, tiny numbers.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Reps = 1
	c.BurnTasks = 2000
	c.CeleryBurnTasks = 500
	c.EnqueueWindow = 300 * time.Millisecond
	c.SteadyRate = 200
	c.SteadyDuration = 2 * time.Second
	c.SteadyDrain = 10 * time.Second
	c.HighRate = 2000
	c.HighDuration = time.Second
	c.HighDrain = 5 * time.Second
	c.IdleSettle = 500 * time.Millisecond
	c.IdleWindow = 2 * time.Second
	return c
}

// BurnResult is one burn-down.
type BurnResult struct {
	Tasks       int     `json:"tasks"`
	Seconds     float64 `json:"seconds"`
	PerS        float64 `json:"per_s"`
	FillAPI     string  `json:"fill_api"`   // how the backlog was enqueued
	FillPerS    float64 `json:"fill_per_s"` // and how fast (not a headline metric)
	ClockStarts string  `json:"clock_starts"`
}

// SteadyResult is one steady run.
type SteadyResult struct {
	Sent      int     `json:"sent"`
	SentPerS  float64 `json:"sent_per_s"` // the rate the producer achieved
	Started   int     `json:"started"`    // tasks whose start was recorded
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
	MaxMS     float64 `json:"max_ms"`
	Producers string  `json:"producers"`
}

// IdleResult is one idle window. Nil numbers were not measurable.
type IdleResult struct {
	// BrokerOpsPerS is Redis commands (INFO total_commands_processed) or,
	// for River, the SQL statements its pgx pool sent (a tracer counts them
	// exactly); BrokerUnit says which.
	BrokerOpsPerS *float64 `json:"broker_ops_per_s"`
	BrokerUnit    string   `json:"broker_unit"`
	// PgXactsPerS is River's database's xact_commit+xact_rollback from
	// pg_stat_database. Backends publish those counts up to 10 s late once
	// idle, so a window shortly after a busy phase also counts some of
	// that phase's transactions.
	PgXactsPerS *float64 `json:"pg_stat_database_xacts_per_s,omitempty"`
	CPUPercent  float64  `json:"worker_cpu_percent"`
	CPUScope    string   `json:"cpu_scope"`
	WindowS     float64  `json:"window_s"`
}

// RepResult is one system's repetition.
type RepResult struct {
	Rep         int           `json:"rep"`
	Enqueue1    *float64      `json:"enqueue_1_per_s"`
	EnqueueMany *float64      `json:"enqueue_many_per_s"`
	Burn        *BurnResult   `json:"burn_down"`
	Steady      *SteadyResult `json:"steady"`
	SteadyHigh  *SteadyResult `json:"steady_high"` // at Config.HighRate
	Idle        *IdleResult   `json:"idle"`
	Errors      []string      `json:"errors,omitempty"`
	Seconds     float64       `json:"seconds"`
}

// Run runs cfg.Reps repetitions over systems and returns every result.
func Run(ctx context.Context, cfg Config, systems []System) (map[string][]RepResult, error) {
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
		}
	}
	out := make(map[string][]RepResult)
	for rep := 1; rep <= cfg.Reps; rep++ {
		for _, s := range systems {
			if err := ctx.Err(); err != nil {
				return out, err
			}
			logf("rep %d/%d %s: start", rep, cfg.Reps, s.Name())
			r := runRep(ctx, cfg, s, rep, logf)
			logf("rep %d/%d %s: done in %.1fs", rep, cfg.Reps, s.Name(), r.Seconds)
			out[s.Name()] = append(out[s.Name()], r)
		}
	}
	return out, nil
}

func runRep(ctx context.Context, cfg Config, s System, rep int, logf func(string, ...any)) (r RepResult) {
	start := time.Now()
	r.Rep = rep
	fail := func(phase string, err error) {
		r.Errors = append(r.Errors, phase+": "+err.Error())
		logf("rep %d %s: %s FAILED: %v", rep, s.Name(), phase, err)
	}
	defer func() {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := s.Teardown(tctx); err != nil {
			fail("teardown", err)
		}
		r.Seconds = round(time.Since(start).Seconds(), 1)
	}()
	if err := s.Setup(ctx); err != nil {
		fail("setup", err)
		return r
	}
	if v, err := s.EnqueueRate(ctx, 1, cfg.EnqueueWindow); err != nil {
		fail("enqueue x1", err)
	} else {
		r.Enqueue1 = ptr(math.Round(v))
		logf("rep %d %s: enqueue, 1 producer: %.0f/s", rep, s.Name(), v)
	}
	if v, err := s.EnqueueRate(ctx, cfg.Producers, cfg.EnqueueWindow); err != nil {
		fail(fmt.Sprintf("enqueue x%d", cfg.Producers), err)
	} else {
		r.EnqueueMany = ptr(math.Round(v))
		logf("rep %d %s: enqueue, %d producers: %.0f/s", rep, s.Name(), cfg.Producers, v)
	}
	n := cfg.BurnTasks
	if s.Name() == "celery" {
		n = cfg.CeleryBurnTasks
	}
	if b, err := s.BurnDown(ctx, n); err != nil {
		fail("burn-down", err)
	} else {
		r.Burn = b
		logf("rep %d %s: burn-down %d tasks in %.2fs: %.0f/s (fill: %s, %.0f/s)", rep, s.Name(), b.Tasks, b.Seconds, b.PerS, b.FillAPI, b.FillPerS)
	}
	if st, err := s.Steady(ctx, cfg.SteadyRate, cfg.SteadyDuration, cfg.SteadyDrain); err != nil {
		fail("steady", err)
	} else {
		r.Steady = st
		logf("rep %d %s: steady %d sent at %.0f/s, %d started: p50 %.2fms p99 %.2fms max %.2fms", rep, s.Name(), st.Sent, st.SentPerS, st.Started, st.P50MS, st.P99MS, st.MaxMS)
	}
	if id, err := s.Idle(ctx, cfg.IdleSettle, cfg.IdleWindow); err != nil {
		fail("idle", err)
	} else {
		r.Idle = id
		ops := "n/a"
		if id.BrokerOpsPerS != nil {
			ops = fmt.Sprintf("%.1f", *id.BrokerOpsPerS)
		}
		logf("rep %d %s: idle %s %s, CPU %.2f%%", rep, s.Name(), ops, id.BrokerUnit, id.CPUPercent)
	}
	// After Idle, so that Idle still measures the worker of the 1,000/s run
	// and this run starts its own worker on an empty broker.
	if cfg.HighRate > 0 {
		if st, err := s.Steady(ctx, cfg.HighRate, cfg.HighDuration, cfg.HighDrain); err != nil {
			fail(fmt.Sprintf("steady %d/s", cfg.HighRate), err)
		} else {
			r.SteadyHigh = st
			logf("rep %d %s: steady %d/s: %d sent at %.0f/s, %d started: p50 %.2fms p99 %.2fms max %.2fms", rep, s.Name(), cfg.HighRate, st.Sent, st.SentPerS, st.Started, st.P50MS, st.P99MS, st.MaxMS)
		}
	}
	return r
}

// latencies collects enqueue→start gaps from handlers running concurrently.
type latencies struct {
	ch chan float64
}

func newLatencies(capacity int) *latencies {
	return &latencies{ch: make(chan float64, capacity+1024)}
}

// add never blocks a handler: a full buffer would mean more starts than
// sends, which the count check reports anyway.
func (l *latencies) add(d time.Duration) {
	select {
	case l.ch <- float64(d) / float64(time.Millisecond):
	default:
	}
}

func (l *latencies) count() int { return len(l.ch) }

func (l *latencies) drain() []float64 {
	out := make([]float64, 0, len(l.ch))
	for {
		select {
		case v := <-l.ch:
			out = append(out, v)
		default:
			return out
		}
	}
}

// steadyDeadline is when a paced producer that fell behind stops sending:
// 10 % past the planned duration, so that a system that cannot enqueue at
// the rate costs bounded time and shows its achieved rate instead.
func steadyDeadline(start time.Time, d time.Duration) time.Time {
	return start.Add(d + d/10)
}

// waitCount waits until have() reaches want or timeout passes.
func waitCount(ctx context.Context, want int, timeout time.Duration, have func() (int, error)) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := have()
		if err != nil {
			return n, err
		}
		if n >= want || time.Now().After(deadline) {
			return n, nil
		}
		if !clock.Sleep(ctx, 20*time.Millisecond) {
			return n, ctx.Err()
		}
	}
}

func steadyResult(lat []float64, sent int, sentPerS float64, producers string) (*SteadyResult, error) {
	if len(lat) == 0 {
		return nil, errors.New("no task started")
	}
	slices.Sort(lat)
	res := &SteadyResult{Sent: sent, SentPerS: round(sentPerS, 1), Started: len(lat), Producers: producers,
		P50MS: round(percentile(lat, 0.50), 3), P99MS: round(percentile(lat, 0.99), 3), MaxMS: round(lat[len(lat)-1], 3)}
	// Fewer starts than sends (a system that fell behind by more than
	// SteadyDrain) stay visible in Started; the percentiles cover the tasks
	// that did start, so such a row must be read with Started beside it.
	return res, nil
}

// percentile of sorted values, nearest-rank (as ebb bench does).
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func ptr[T any](v T) *T { return &v }
