package compare

import (
	"fmt"
	"strings"
)

// Reference is the system every ratio divides by (cmd/compare's
// -reference sets it).
var Reference = "ebb-redis"

// Report is the JSON output; Markdown renders it.
type Report struct {
	Generated string            `json:"generated"`
	RunS      float64           `json:"run_s"`
	Machine   Machine           `json:"machine"`
	Versions  map[string]string `json:"versions"`
	Setup     map[string]string `json:"setup"`
	Config    ReportConfig      `json:"config"`
	Reference string            `json:"reference"`
	Systems   []SystemReport    `json:"systems"`
	Notes     []string          `json:"notes"`
}

// ReportConfig is the run's shape as the report states it.
type ReportConfig struct {
	Reps             int     `json:"reps"`
	BurnTasks        int     `json:"burn_tasks"`
	CeleryBurnTasks  int     `json:"celery_burn_tasks"`
	Producers        int     `json:"producers"`
	EnqueueWindowS   float64 `json:"enqueue_window_s"`
	SteadyRate       int     `json:"steady_rate"`
	SteadyDurationS  float64 `json:"steady_duration_s"`
	IdleSettleS      float64 `json:"idle_settle_s"`
	IdleWindowS      float64 `json:"idle_window_s"`
	GoConcurrency    int     `json:"go_worker_concurrency"`
	CeleryPoolProcs  int     `json:"celery_prefork_processes"`
	SteadyProducersG int     `json:"steady_producer_goroutines"`
	HighRate         int     `json:"steady_high_rate"`
	HighDurationS    float64 `json:"steady_high_duration_s"`
	HighDrainS       float64 `json:"steady_high_drain_s"`
}

// SystemReport is one system: medians over its successful repetitions,
// ratios to Reference, and every repetition.
type SystemReport struct {
	Name    string             `json:"name"`
	Broker  string             `json:"broker"`
	Medians map[string]float64 `json:"medians"`
	Ratios  map[string]float64 `json:"ratios_to_reference"`
	Reps    []RepResult        `json:"reps"`
}

type metric struct {
	key, title string
	digits     int
	get        func(*RepResult) *float64
}

// noRatio are metrics read as they are: a ratio of shares says nothing.
var noRatio = map[string]bool{"steady_high_started_pct": true}

// steadyGet reads a field of one of a repetition's steady runs.
func steadyGet(run func(*RepResult) *SteadyResult, field func(*SteadyResult) float64) func(*RepResult) *float64 {
	return func(r *RepResult) *float64 {
		st := run(r)
		if st == nil {
			return nil
		}
		return ptr(field(st))
	}
}

func startedPct(run func(*RepResult) *SteadyResult) func(*RepResult) *float64 {
	return func(r *RepResult) *float64 {
		st := run(r)
		if st == nil || st.Sent == 0 {
			return nil
		}
		return ptr(100 * float64(st.Started) / float64(st.Sent))
	}
}

func steadyRun(r *RepResult) *SteadyResult { return r.Steady }
func highRun(r *RepResult) *SteadyResult   { return r.SteadyHigh }

// titleFor fills in the rates a steady metric's title names: {rate} is
// SteadyRate, {high} HighRate (titles also hold a literal %).
func (m metric) titleFor(c ReportConfig) string {
	return strings.NewReplacer("{rate}", fmt.Sprint(c.SteadyRate), "{high}", fmt.Sprint(c.HighRate)).Replace(m.title)
}

var metrics = []metric{
	{"burn_down_per_s", "burn-down tasks/s", 0, func(r *RepResult) *float64 {
		if r.Burn == nil {
			return nil
		}
		return &r.Burn.PerS
	}},
	{"enqueue_1_per_s", "enqueue tasks/s, 1 producer", 0, func(r *RepResult) *float64 { return r.Enqueue1 }},
	{"enqueue_many_per_s", "enqueue tasks/s, 16 producers", 0, func(r *RepResult) *float64 { return r.EnqueueMany }},
	{"steady_p50_ms", "steady {rate}/s: enqueue→start p50 ms", 2, func(r *RepResult) *float64 {
		if r.Steady == nil {
			return nil
		}
		return &r.Steady.P50MS
	}},
	{"steady_p99_ms", "p99 ms", 2, func(r *RepResult) *float64 {
		if r.Steady == nil {
			return nil
		}
		return &r.Steady.P99MS
	}},
	{key: "steady_high_p50_ms", title: "steady {high}/s: p50 ms", digits: 2, get: steadyGet(highRun, func(s *SteadyResult) float64 { return s.P50MS })},
	{key: "steady_high_p99_ms", title: "p99 ms", digits: 2, get: steadyGet(highRun, func(s *SteadyResult) float64 { return s.P99MS })},
	{key: "steady_high_started_pct", title: "started %", digits: 1, get: startedPct(highRun)},
	{"idle_broker_ops_per_s", "idle: broker ops/s", 1, func(r *RepResult) *float64 {
		if r.Idle == nil {
			return nil
		}
		return r.Idle.BrokerOpsPerS
	}},
	{"idle_worker_cpu_pct", "idle: worker CPU %", 2, func(r *RepResult) *float64 {
		if r.Idle == nil {
			return nil
		}
		return &r.Idle.CPUPercent
	}},
}

// detail metrics: in the JSON and the second table, not ratioed.
var details = []metric{
	{"burn_down_tasks", "burn-down backlog", 0, func(r *RepResult) *float64 {
		if r.Burn == nil {
			return nil
		}
		return ptr(float64(r.Burn.Tasks))
	}},
	{"fill_per_s", "backlog fill tasks/s", 0, func(r *RepResult) *float64 {
		if r.Burn == nil {
			return nil
		}
		return &r.Burn.FillPerS
	}},
	{"steady_sent_per_s", "steady: achieved send rate/s", 0, func(r *RepResult) *float64 {
		if r.Steady == nil {
			return nil
		}
		return &r.Steady.SentPerS
	}},
	{key: "steady_started_pct", title: "steady: tasks started %", digits: 2, get: startedPct(steadyRun)},
	{"steady_max_ms", "steady: max ms", 1, func(r *RepResult) *float64 {
		if r.Steady == nil {
			return nil
		}
		return &r.Steady.MaxMS
	}},
	{key: "steady_high_sent_per_s", title: "steady {high}/s: achieved send rate/s", get: steadyGet(highRun, func(s *SteadyResult) float64 { return s.SentPerS })},
	{key: "steady_high_max_ms", title: "steady {high}/s: max ms", digits: 1, get: steadyGet(highRun, func(s *SteadyResult) float64 { return s.MaxMS })},
	{"idle_pg_xacts_per_s", "idle: pg_stat_database transactions/s (River; lags, see below)", 1, func(r *RepResult) *float64 {
		if r.Idle == nil {
			return nil
		}
		return r.Idle.PgXactsPerS
	}},
}

// Summarize turns the repetitions into a report's system list.
func Summarize(order []System, runs map[string][]RepResult) []SystemReport {
	var out []SystemReport
	for _, s := range order {
		reps := runs[s.Name()]
		sr := SystemReport{Name: s.Name(), Broker: s.Broker(), Medians: map[string]float64{}, Ratios: map[string]float64{}, Reps: reps}
		for _, m := range append(append([]metric{}, metrics...), details...) {
			var vs []float64
			for i := range reps {
				if v := m.get(&reps[i]); v != nil {
					vs = append(vs, *v)
				}
			}
			if len(vs) > 0 {
				sr.Medians[m.key] = round(median(vs), m.digits+1)
			}
		}
		out = append(out, sr)
	}
	var ref *SystemReport
	for i := range out {
		if out[i].Name == Reference {
			ref = &out[i]
		}
	}
	if ref == nil {
		return out
	}
	refUnit := idleUnit(ref)
	for i := range out {
		for _, m := range metrics {
			v, ok := out[i].Medians[m.key]
			r, rok := ref.Medians[m.key]
			if !ok || !rok || r == 0 || noRatio[m.key] {
				continue
			}
			// Postgres transactions and Redis commands are different units.
			if m.key == "idle_broker_ops_per_s" && idleUnit(&out[i]) != refUnit {
				continue
			}
			out[i].Ratios[m.key] = round(v/r, 2)
		}
	}
	return out
}

func idleUnit(s *SystemReport) string {
	for _, r := range s.Reps {
		if r.Idle != nil {
			return r.Idle.BrokerUnit
		}
	}
	return ""
}

// Markdown renders the report as a section body for docs/benchmarks.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	w("Measured %s on %d cores (%s), %.0f GiB RAM, Linux %s; load average %s at the start and %s at the end (the machine may be shared). ",
		r.Generated[:10], m.Cores, m.CPU, m.RAMGiB, m.Kernel, m.LoadStart, m.LoadEnd)
	w("%s; Redis %s; PostgreSQL %s; ebb %s; asynq %s; River %s (riverpgxv5, pgx %s); Celery %s (kombu %s, redis-py %s, Python %s). ",
		r.Versions["go"], r.Versions["redis"], r.Versions["postgres"], r.Versions["ebb"], r.Versions["asynq"], r.Versions["river"],
		r.Versions["pgx"], r.Versions["celery"], r.Versions["kombu"], r.Versions["redis-py"], r.Versions["python"])
	w("The whole comparison took %.0f s.\n\n", r.RunS)
	c := r.Config
	reps := fmt.Sprintf("%d repetitions", c.Reps)
	if c.Reps == 1 {
		reps = "1 repetition"
	}
	command := "bash bench/run"
	if Reference == "river" {
		command = "bash bench/run --postgres"
	}
	w("Command: `%s` (`go run ./cmd/compare` in `bench/`). %s; each repetition runs every system in turn "+
		"(so drift on the machine hits all alike) and the table shows the median, with the ratio to **%s** in parentheses "+
		"(for tasks/s higher is better, for ms, ops/s and CPU lower is better). %s\n\n", command, reps, r.Reference, r.Setup["brokers"])
	w("| system | broker |")
	for _, mt := range metrics {
		w(" %s |", mt.titleFor(c))
	}
	w("\n|---|---|")
	for range metrics {
		w("---:|")
	}
	w("\n")
	for _, s := range r.Systems {
		w("| %s | %s |", s.Name, s.Broker)
		for _, mt := range metrics {
			v, ok := s.Medians[mt.key]
			if !ok {
				if mt.key == "idle_broker_ops_per_s" && s.Broker == "sqlite" {
					w(" n/a (no server) |")
				} else {
					w(" n/a |")
				}
				continue
			}
			var extra []string
			if ratio, ok := s.Ratios[mt.key]; ok && s.Name != r.Reference {
				extra = append(extra, fmt.Sprintf("×%.2f", ratio))
			}
			if mt.key == "idle_broker_ops_per_s" && strings.HasPrefix(idleUnit(&s), "SQL statements") {
				extra = append(extra, "SQL statements")
			}
			if n, ok := s.Medians["burn_down_tasks"]; ok && mt.key == "burn_down_per_s" && int(n) != c.BurnTasks {
				extra = append(extra, fmt.Sprintf("**%d tasks**", int(n)))
			}
			w(" %s", fmtNum(v, mt.digits))
			if len(extra) > 0 {
				w(" (%s)", strings.Join(extra, ", "))
			}
			w(" |")
		}
		w("\n")
	}
	w("\nDetails (medians):\n\n| system |")
	for _, mt := range details {
		w(" %s |", mt.titleFor(c))
	}
	w(" backlog fill API |\n|---|")
	for range details {
		w("---:|")
	}
	w("---|\n")
	for _, s := range r.Systems {
		w("| %s |", s.Name)
		for _, mt := range details {
			if v, ok := s.Medians[mt.key]; ok {
				w(" %s |", fmtNum(v, mt.digits))
			} else {
				w(" n/a |")
			}
		}
		api := ""
		for _, rep := range s.Reps {
			if rep.Burn != nil {
				api = rep.Burn.FillAPI
			}
		}
		w(" %s |\n", api)
	}
	var errs []string
	for _, s := range r.Systems {
		for _, rep := range s.Reps {
			for _, e := range rep.Errors {
				errs = append(errs, fmt.Sprintf("%s rep %d: %s", s.Name, rep.Rep, e))
			}
		}
	}
	if len(errs) > 0 {
		w("\nFailures (left out of the medians):\n\n")
		for _, e := range errs {
			w("- %s\n", e)
		}
	}
	w("\nHow each workload runs:\n\n")
	for _, n := range r.Notes {
		w("- %s\n", n)
	}
	return b.String()
}

func fmtNum(v float64, digits int) string {
	if digits == 0 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.*f", digits, v)
}

// Notes explains the workloads and the choices behind them; they are part of
// every report because the numbers mean nothing without them.
func Notes(cfg Config) []string {
	return []string{
		"**ebb on PostgreSQL** (`ebb-postgres`) runs in a database of its own (`ebb_bench_ebb`) on the server River uses, created and migrated per repetition and dropped after it, its tables truncated before every workload; its pgx pools have 32 connections, as River's, and its worker pool's statements are counted with the same pgx tracer. Everything else is the driver's default (claims and completions commit with `synchronous_commit` off, enqueues synchronously; see docs/postgres.md).",
		fmt.Sprintf("**Burn-down**: %d no-op tasks (Celery: %d, see below) are enqueued with no worker running (ebb and River with their batch APIs, asynq and Celery, which have none, with 16 concurrent single-task producers; not timed), then one worker starts; the clock runs from starting it until the system's own record has every task done: ebb's succeeded count (QueueStats), asynq's processed total (Inspector), River's `completed` rows, Celery's broker holding neither queued nor unacknowledged messages (with `task_acks_late`, the ack follows the task). Celery's clock starts at its `worker_ready` signal, after interpreter and pool start-up.", cfg.BurnTasks, cfg.CeleryBurnTasks),
		fmt.Sprintf("**Celery's backlog is %d, not %d**: the whole of `bench/run` must fit in 15 minutes on this 2-core machine, and Celery's burn-down and its backlog fill are the slowest of all (their rates in this run are in the tables: 100,000 tasks would take the sum of 100,000/rate for both, per repetition). Its tasks/s over %d tasks is still its steady burn rate: the clock starts when the worker is ready, so there is no start-up transient for a longer run to amortize.", cfg.CeleryBurnTasks, cfg.BurnTasks, cfg.CeleryBurnTasks),
		fmt.Sprintf("**Enqueue**: single-task calls (ebb `Client.Enqueue`, asynq `Client.EnqueueContext`, River `Client.Insert`, Celery `apply_async`) for %g s from 1 and from %d concurrent producers (goroutines; for Celery, processes, since Python threads share one interpreter lock); each producer makes one call before the clock starts. No worker runs meanwhile. Batch enqueue (ebb, River) is faster: see \"backlog fill\" in the details.", cfg.EnqueueWindow.Seconds(), cfg.Producers),
		fmt.Sprintf("**Steady**: %d tasks/s for %g s, paced (Go systems: %d goroutines share the sends; Celery: one producer process), each task carrying its enqueue time (taken when the enqueue call starts); the handler records its start time minus that. All tasks count, including the first after an idle worker. The worker started 0.5 s before the first send; a system has %g s after the last send for stragglers.", cfg.SteadyRate, cfg.SteadyDuration.Seconds(), steadyProducers, cfg.SteadyDrain.Seconds()),
		fmt.Sprintf("**Steady %d/s**: the same workload at %d tasks/s for %g s, after Idle, with a fresh worker on an empty broker (Celery: a fresh worker process); producers that cannot keep the rate stop at 1.1 × %g s, so a system's achieved send rate is in the details, and a system has %g s after the last send for stragglers: \"started %%\" is the share of sent tasks whose start was recorded by then, and the percentiles cover only those. Celery's one Python producer cannot send 10,000/s, nor its 2-process pool run them: its row measures what it reaches.", cfg.HighRate, cfg.HighRate, cfg.HighDuration.Seconds(), cfg.HighDuration.Seconds(), cfg.HighDrain.Seconds()),
		fmt.Sprintf("**Idle**: the steady workload's worker, %g s after its last task, over %g s with nothing enqueued (short because of the time budget; it spans ebb's 5 s poll backstop, asynq's and Celery's 1 s checks and River's 1 s fetch poll, while which of the 5–10 s heartbeats fall inside varies, which the median over repetitions smooths). Redis systems: the delta of INFO `total_commands_processed` minus the one INFO of the measurement (commands inside Lua scripts count one each); the count is server-wide, which is why `bench/run` gives the comparison a Redis of its own. River: the SQL statements its worker's pgx pool sent, counted exactly by a pgx tracer. Postgres' own count, `pg_stat_database` xact_commit + xact_rollback of River's database, is in the details, but it lags: backends publish their counts up to 10 s late once idle, so a window this soon after the steady workload also counts some of its transactions (pg_stat_statements is not preloaded on this server). River's ratio is left out: a SQL statement and a Redis command are different units. ebb on SQLite: n/a, SQLite is a library inside the worker, there is no server to count commands at; its cost shows as worker CPU. Worker CPU: user+system time of the harness process (only the measured system runs in it then) or, for Celery, of the worker and its pool processes.", cfg.IdleSettle.Seconds(), cfg.IdleWindow.Seconds()),
		fmt.Sprintf("**Configuration**: every system runs with its defaults except: worker concurrency %d for ebb, asynq and River: a no-op handler never blocks, so concurrency only caps how many tasks a worker holds, and River fetches at most MaxWorkers jobs per 100 ms FetchCooldown, so its cap binds (at ebb's default of 100 River could never pass 1,000 tasks/s; at 1,000 it burned at its 10,000/s cap; 10,000 is its maximum), and the same cap for all keeps it nobody's bottleneck (asynq's default would be the core count); Celery's prefork pool has one process per core (%d) and `task_acks_late` (at-least-once like the others; its default acknowledges before running), prefetch multiplier at its default 4 (64 burned no faster here), no result backend. asynq's default `TaskCheckInterval` (1 s) is kept: after its queue runs empty its fetcher sleeps 0.5–1.5 s, which its steady latency shows. River's pgx pools have 32 connections (pgxpool's default of 4 on 2 cores would throttle 16 producers). Producers and workers of the Go systems run in this process but never share a client or connection pool, as if they were separate processes (for ebb on SQLite this means the worker learns of new tasks by polling `PRAGMA data_version`, as a separate producer process would make it).", cfg.Concurrency, cfg.CeleryProcs),
		"**River on SQLite: not run.** The Go module proxy serves riversqlite only at v0.31.0, and River v0.51.0 (the latest release, measured here on Postgres) cannot be built with it: riversqlite v0.31.0's executor does not implement v0.51.0's `riverdriver.Executor` (it lacks `IndexReindexArtifacts`, among others). Measuring River on SQLite would mean River v0.31.0, a different release than the one in the table, in a module of its own.",
		"**Shared dependencies**: the bench module builds every system into one binary, so Go's minimal version selection builds each with the newest version any of them requires of a shared dependency: asynq v0.26.0 asks for go-redis v9.14.1 and runs here on ebb's v9.23.0.",
		"Raw numbers of every repetition: `bench/results/compare.json` (written by `bench/run`).",
	}
}
