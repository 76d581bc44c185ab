// Command compare runs the side-by-side comparison of ebb (Redis, SQLite),
// asynq, River and Celery and writes a markdown table and a JSON file.
//
//	go run ./cmd/compare [-quick] [-reps 3] [-systems ebb-redis,asynq] [-out-json f] [-out-md f]
//
// Run it from bench/ (Celery's scripts are found at ./celery); bench/run
// gives it a private Redis. Progress goes to stderr.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ebbq/ebb/bench/compare"
)

var constructors = map[string]func(compare.Config) compare.System{
	"ebb-redis":    compare.NewEbbRedis,
	"ebb-sqlite":   compare.NewEbbSQLite,
	"ebb-postgres": compare.NewEbbPostgres,
	"asynq":        compare.NewAsynq,
	"river":        compare.NewRiver,
	"celery":       compare.NewCelery,
}

const allSystems = "ebb-redis,ebb-sqlite,ebb-postgres,asynq,river,celery"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run() error {
	quick := flag.Bool("quick", false, "tiny smoke run: 1 rep, small numbers")
	reps := flag.Int("reps", 0, "repetitions (default 3, or 1 with -quick)")
	systems := flag.String("systems", allSystems, "comma-separated subset of "+allSystems)
	outJSON := flag.String("out-json", "", "write the JSON report here")
	outMD := flag.String("out-md", "", "write the markdown section here (stdout if empty)")
	redisAddr := flag.String("redis", "", "Redis host:port (default 127.0.0.1:6379)")
	redisDB := flag.Int("redis-db", -1, "Redis DB number, flushed before every workload (default 12)")
	redisDesc := flag.String("redis-desc", "", "how that Redis was set up, for the report")
	pgURL := flag.String("pg", "", "Postgres URL of an existing database, used to create and drop -pg-db")
	pgDB := flag.String("pg-db", "", "database River runs in; dropped and created per repetition (default ebb_bench)")
	python := flag.String("python", "", "Python interpreter with celery (default /usr/bin/python3)")
	celeryDir := flag.String("celery-dir", "", "directory of bench_tasks.py and produce.py (default ./celery)")
	burn := flag.Int("burn-tasks", 0, "burn-down backlog (default 100000)")
	celeryBurn := flag.Int("celery-burn-tasks", 0, "Celery's burn-down backlog (default 20000)")
	steady := flag.Duration("steady", 0, "steady workload duration (default 30s)")
	idle := flag.Duration("idle", 0, "idle window (default 5s)")
	highRate := flag.Int("high-rate", -1, "rate of the second steady workload (default 10000; 0 leaves it out)")
	high := flag.Duration("high", 0, "duration of the second steady workload (default 10s)")
	reference := flag.String("reference", compare.Reference, "the system every ratio divides by")
	flag.Parse()

	compare.Reference = *reference
	cfg := compare.DefaultConfig()
	if *quick {
		cfg = compare.QuickConfig()
	}
	setIf(&cfg.Reps, *reps, *reps > 0)
	setIf(&cfg.RedisAddr, *redisAddr, *redisAddr != "")
	setIf(&cfg.RedisDB, *redisDB, *redisDB >= 0)
	setIf(&cfg.RedisDesc, *redisDesc, true)
	setIf(&cfg.PostgresURL, *pgURL, *pgURL != "")
	setIf(&cfg.PostgresDB, *pgDB, *pgDB != "")
	setIf(&cfg.Python, *python, *python != "")
	setIf(&cfg.CeleryDir, *celeryDir, *celeryDir != "")
	setIf(&cfg.BurnTasks, *burn, *burn > 0)
	setIf(&cfg.CeleryBurnTasks, *celeryBurn, *celeryBurn > 0)
	setIf(&cfg.SteadyDuration, *steady, *steady > 0)
	setIf(&cfg.IdleWindow, *idle, *idle > 0)
	setIf(&cfg.HighRate, *highRate, *highRate >= 0)
	setIf(&cfg.HighDuration, *high, *high > 0)
	cfg.Log = os.Stderr
	var err error
	if cfg.CeleryDir, err = filepath.Abs(cfg.CeleryDir); err != nil {
		return err
	}
	if cfg.WorkDir, err = os.MkdirTemp("", "ebb-compare-"); err != nil {
		return err
	}
	defer os.RemoveAll(cfg.WorkDir)

	var sys []compare.System
	for _, name := range strings.Split(*systems, ",") {
		mk, ok := constructors[strings.TrimSpace(name)]
		if !ok {
			return fmt.Errorf("unknown system %q; choose from %s", name, allSystems)
		}
		sys = append(sys, mk(cfg))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	rep := &compare.Report{
		Generated: start.UTC().Format(time.RFC3339),
		Machine:   compare.MachineInfo(),
		Versions:  compare.Versions(ctx, cfg),
		Setup: map[string]string{
			"brokers": fmt.Sprintf("Redis: %s, DB %d, flushed before every workload; Postgres: database `%s` created, migrated with rivermigrate and dropped per repetition, `river_job` truncated before every workload; SQLite: a fresh file per workload in a temporary directory (%s).",
				compare.RedisSetup(ctx, cfg), cfg.RedisDB, cfg.PostgresDB, fsType(cfg.WorkDir)),
		},
		Config: compare.ReportConfig{Reps: cfg.Reps, BurnTasks: cfg.BurnTasks, CeleryBurnTasks: cfg.CeleryBurnTasks, Producers: cfg.Producers,
			EnqueueWindowS: cfg.EnqueueWindow.Seconds(), SteadyRate: cfg.SteadyRate, SteadyDurationS: cfg.SteadyDuration.Seconds(),
			IdleSettleS: cfg.IdleSettle.Seconds(), IdleWindowS: cfg.IdleWindow.Seconds(), GoConcurrency: cfg.Concurrency,
			CeleryPoolProcs: cfg.CeleryProcs, SteadyProducersG: 8,
			HighRate: cfg.HighRate, HighDurationS: cfg.HighDuration.Seconds(), HighDrainS: cfg.HighDrain.Seconds()},
		Reference: compare.Reference,
		Notes:     compare.Notes(cfg),
	}
	fmt.Fprintf(os.Stderr, "compare: %d reps of %s on %s; versions %v\n", cfg.Reps, *systems, rep.Machine.CPU, rep.Versions)
	runs, err := compare.Run(ctx, cfg, sys)
	if err != nil {
		return err
	}
	rep.RunS = time.Since(start).Round(time.Second).Seconds()
	rep.Machine.LoadEnd = compare.LoadAvg()
	rep.Systems = compare.Summarize(sys, runs)

	if *outJSON != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFile(*outJSON, append(b, '\n')); err != nil {
			return err
		}
	}
	md := rep.Markdown()
	if *outMD == "" {
		fmt.Print(md)
	} else if err := writeFile(*outMD, []byte(md)); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "compare: done in %s\n", time.Since(start).Round(time.Second))
	return nil
}

func setIf[T any](dst *T, v T, ok bool) {
	if ok {
		*dst = v
	}
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// fsType names the file system under dir (SQLite's fsyncs depend on it).
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "file system unknown"
	}
	switch st.Type {
	case 0xEF53:
		return "ext4"
	case 0x01021994:
		return "tmpfs"
	case 0x58465342:
		return "xfs"
	case 0x794c7630:
		return "overlayfs"
	case 0x9123683E:
		return "btrfs"
	}
	return fmt.Sprintf("file system 0x%x", st.Type)
}
