// Command soak-postgres pushes a million tasks through ebb on PostgreSQL
// with a short retention and retention cleanup running, and records the
// tasks table's size, its indexes' size and its live and dead tuples before,
// during and after, to show that cleanup keeps them bounded.
//
//	go run ./cmd/soak-postgres [-tasks 1000000] [-pg URL] [-out-md file]
//
// It works in a schema of its own (ebb_soak), dropped at the start and the
// end. scripts/soak-postgres runs it and writes its section of
// docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
	"github.com/jackc/pgx/v5"
)

type noop struct{}

func (noop) Kind() string { return "soak.noop" }

const schema = "ebb_soak"

type sample struct {
	phase                       string
	done                        int64
	heap, indexes, live, dead   int64
	autovacuums, rowsCleanedNow int64
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak-postgres:", err)
		os.Exit(1)
	}
}

func run() error {
	tasks := flag.Int("tasks", 1_000_000, "tasks to push through")
	pgURL := flag.String("pg", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL (a schema ebb_soak is made in it)")
	retention := flag.Duration("retention", 5*time.Second, "retention of succeeded tasks")
	outMD := flag.String("out-md", "", "write the markdown section here (stdout if empty)")
	serverDesc := flag.String("server-desc", "the server at -pg", "how the server came to be, for the report")
	flag.Parse()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)

	admin, err := pgx.Connect(ctx, *pgURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	drop := func() { _, _ = admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE") }
	drop()
	defer drop()
	url := *pgURL + map[bool]string{true: "&", false: "?"}[strings.Contains(*pgURL, "?")] + "schema=" + schema
	d, err := ebbpostgres.Open(ctx, url, &ebbpostgres.Config{Logger: quiet})
	if err != nil {
		return err
	}
	defer d.Close()
	client, err := ebb.NewClient(d, &ebb.ClientConfig{Logger: quiet})
	if err != nil {
		return err
	}

	measure := func(phase string, done int64, cleaned int64) (sample, error) {
		s := sample{phase: phase, done: done, rowsCleanedNow: cleaned}
		err := admin.QueryRow(ctx, `SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid),
			coalesce(st.n_live_tup, 0), coalesce(st.n_dead_tup, 0), coalesce(st.autovacuum_count, 0)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			LEFT JOIN pg_stat_user_tables st ON st.relid = c.oid
			WHERE n.nspname = $1 AND c.relname = 'ebb_tasks'`, schema).Scan(&s.heap, &s.indexes, &s.live, &s.dead, &s.autovacuums)
		return s, err
	}
	var samples []sample
	s, err := measure("start (empty)", 0, 0)
	if err != nil {
		return err
	}
	samples = append(samples, s)

	var started atomic.Int64
	h := ebb.NewHandlers()
	ebb.Handle(h, func(context.Context, *ebb.Task[noop]) (any, error) {
		started.Add(1)
		return nil, nil
	})
	w, err := ebb.NewWorker(d, &ebb.WorkerConfig{Handlers: h, Concurrency: 2000, Logger: quiet, DisableMaintenance: true})
	if err != nil {
		return err
	}
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(wctx) }()

	// Retention cleanup as the maintenance loop runs it, more often:
	// bounded batches until a batch comes back short.
	var cleaned atomic.Int64
	cleanup := func() error {
		for {
			n, err := d.Cleanup(ctx, ebbdriver.CleanupParams{Now: time.Now(), DeadRetention: time.Hour, Limit: 10_000})
			if err != nil {
				return err
			}
			cleaned.Add(n)
			if n < 10_000 {
				return nil
			}
		}
	}
	cctx, stopCleanup := context.WithCancel(ctx)
	defer stopCleanup()
	cleanupDone := make(chan error, 1)
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-cctx.Done():
				cleanupDone <- nil
				return
			case <-t.C:
				if err := cleanup(); err != nil {
					cleanupDone <- err
					return
				}
			}
		}
	}()

	start := time.Now()
	opts := &ebb.EnqueueOpts{Retention: *retention}
	const batch = 1000
	next := int64(*tasks / 10)
	for done := 0; done < *tasks; {
		k := min(batch, *tasks-done)
		params := make([]ebb.EnqueueParams, k)
		for i := range params {
			params[i] = ebb.EnqueueParams{Args: noop{}, Opts: opts}
		}
		if _, err := client.EnqueueMany(ctx, params); err != nil {
			return err
		}
		done += k
		// Keep the backlog bounded: the soak is about what finished tasks
		// leave behind, not about a million queued rows.
		for int64(done)-started.Load() > 50_000 {
			time.Sleep(10 * time.Millisecond)
		}
		if int64(done) >= next {
			s, err := measure(fmt.Sprintf("during, %d enqueued", done), started.Load(), cleaned.Load())
			if err != nil {
				return err
			}
			samples = append(samples, s)
			next += int64(*tasks / 10)
		}
	}
	for started.Load() < int64(*tasks) {
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	s, err = measure("all succeeded", started.Load(), cleaned.Load())
	if err != nil {
		return err
	}
	samples = append(samples, s)
	// Past the retention, one more cleanup, then what autovacuum does
	// (here by hand, so the run need not wait for its naptime).
	time.Sleep(*retention + time.Second)
	stopCleanup()
	if err := <-cleanupDone; err != nil {
		return err
	}
	if err := cleanup(); err != nil {
		return err
	}
	s, err = measure("after retention cleanup", started.Load(), cleaned.Load())
	if err != nil {
		return err
	}
	samples = append(samples, s)
	// With autovacuum on, wait (up to two of its naptimes) for it to
	// visit the table, as it would on a server left alone.
	var av string
	_ = admin.QueryRow(ctx, "SHOW autovacuum").Scan(&av)
	if av == "on" {
		before := s.autovacuums
		for deadline := time.Now().Add(150 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
			if s, err = measure("after autovacuum", started.Load(), cleaned.Load()); err != nil {
				return err
			}
			if s.autovacuums > before {
				break
			}
		}
		samples = append(samples, s)
	}
	if _, err := admin.Exec(ctx, "VACUUM "+schema+".ebb_tasks"); err != nil {
		return err
	}
	time.Sleep(time.Second) // statistics are published asynchronously
	s, err = measure("after a manual VACUUM", started.Load(), cleaned.Load())
	if err != nil {
		return err
	}
	samples = append(samples, s)
	stopWorker()
	if err := <-workerDone; err != nil {
		return err
	}

	var b strings.Builder
	var load string
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(raw))[:3], " ")
	}
	var version, autovacuum string
	_ = admin.QueryRow(ctx, "SHOW server_version").Scan(&version)
	_ = admin.QueryRow(ctx, "SHOW autovacuum").Scan(&autovacuum)
	fmt.Fprintf(&b, "## PostgreSQL soak: %d tasks through retention cleanup\n\n", *tasks)
	fmt.Fprintf(&b, "Measured %s on %d cores, PostgreSQL %s (%s; autovacuum %s), load average %s at the end (the machine may be shared). "+
		"Command: `bash scripts/soak-postgres` (`go run ./cmd/soak-postgres -tasks %d` in `bench/`). "+
		"A producer enqueued %d no-op tasks in batches of 1,000 (retention %s, backlog kept under 50,000) while one worker "+
		"(concurrency 2,000) ran them and a cleanup loop deleted expired tasks every 2 s in batches of 10,000, "+
		"as the maintenance loop does; it took %s (%.0f tasks/s end to end). Sizes are of `ebb_tasks`: "+
		"`pg_relation_size` (heap) and `pg_indexes_size` (its six indexes); tuples from `pg_stat_user_tables`, "+
		"which the server publishes with a delay.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), version, *serverDesc, autovacuum, load, *tasks, *tasks, *retention,
		elapsed.Round(time.Second), float64(*tasks)/elapsed.Seconds())
	b.WriteString("| phase | tasks run | rows deleted by cleanup | heap MiB | indexes MiB | live tuples | dead tuples | autovacuums so far |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "| %s | %d | %d | %.1f | %.1f | %d | %d | %d |\n", s.phase, s.done, s.rowsCleanedNow,
			float64(s.heap)/(1<<20), float64(s.indexes)/(1<<20), s.live, s.dead, s.autovacuums)
	}
	if *outMD == "" {
		fmt.Print(b.String())
		return nil
	}
	return os.WriteFile(*outMD, []byte(b.String()), 0o644)
}
