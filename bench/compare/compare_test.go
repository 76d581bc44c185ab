package compare

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestQuickGoSystems runs a tiny version of every workload on each Go system.
// It needs Redis and Postgres (EBB_BENCH_REDIS, EBB_BENCH_PG_URL, defaulting
// to the local ones; scripts/test passes its Redis) and fails, naming the
// broker, when one is not there.
func TestQuickGoSystems(t *testing.T) {
	cfg := QuickConfig()
	cfg.BurnTasks = 500
	cfg.EnqueueWindow = 100 * time.Millisecond
	cfg.SteadyRate = 100
	cfg.SteadyDuration = time.Second
	cfg.HighRate = 1000
	cfg.HighDuration = time.Second
	cfg.IdleSettle = 100 * time.Millisecond
	cfg.IdleWindow = 500 * time.Millisecond
	cfg.RedisAddr = envOr("EBB_BENCH_REDIS", "127.0.0.1:6379")
	cfg.RedisDB = 13 // not bench/run's 12, so a test never flushes a running comparison
	cfg.PostgresURL = envOr("EBB_BENCH_PG_URL", cfg.PostgresURL)
	cfg.PostgresDB = "ebb_bench_test"
	cfg.WorkDir = t.TempDir()

	redisUp := reachable(cfg.RedisAddr)
	pgUp := false
	if conn, err := pgx.Connect(context.Background(), cfg.PostgresURL); err == nil {
		pgUp = true
		_ = conn.Close(context.Background())
	}
	for _, tc := range []struct {
		mk   func(Config) System
		need bool
	}{
		{NewEbbRedis, redisUp},
		{NewEbbSQLite, true},
		{NewAsynq, redisUp},
		{NewRiver, pgUp},
		{NewEbbPostgres, pgUp},
	} {
		s := tc.mk(cfg)
		t.Run(s.Name(), func(t *testing.T) {
			if !tc.need {
				t.Fatalf("%s's broker is not reachable: start Redis (EBB_BENCH_REDIS) and PostgreSQL (EBB_BENCH_PG_URL)", s.Name())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			runs, err := Run(ctx, cfg, []System{s})
			if err != nil {
				t.Fatal(err)
			}
			r := runs[s.Name()][0]
			if len(r.Errors) > 0 {
				t.Fatalf("errors: %s", strings.Join(r.Errors, "; "))
			}
			if r.Burn == nil || r.Burn.Tasks != cfg.BurnTasks || r.Burn.PerS <= 0 {
				t.Errorf("burn-down: %+v", r.Burn)
			}
			if r.Enqueue1 == nil || *r.Enqueue1 <= 0 || r.EnqueueMany == nil || *r.EnqueueMany <= 0 {
				t.Errorf("enqueue rates: %v %v", r.Enqueue1, r.EnqueueMany)
			}
			if r.Steady == nil || r.Steady.Started != r.Steady.Sent || r.Steady.Sent == 0 {
				t.Errorf("steady: %+v", r.Steady)
			}
			if r.Idle == nil {
				t.Errorf("idle: missing")
			}
			// How many the producers reach depends on the machine's load;
			// that each one sent starts, and that the run is bounded by its
			// plan, does not.
			planned := int(float64(cfg.HighRate) * cfg.HighDuration.Seconds())
			if h := r.SteadyHigh; h == nil || h.Sent == 0 || h.Sent > planned || h.Started != h.Sent {
				t.Errorf("steady %d/s: %+v", cfg.HighRate, h)
			}
			rep := Report{Generated: time.Now().UTC().Format(time.RFC3339), Versions: map[string]string{}, Setup: map[string]string{},
				Reference: Reference, Systems: Summarize([]System{s}, runs), Notes: Notes(cfg),
				Config: ReportConfig{SteadyRate: cfg.SteadyRate, HighRate: cfg.HighRate}}
			md := rep.Markdown()
			if !strings.Contains(md, "| "+s.Name()+" |") {
				t.Errorf("markdown has no row for %s:\n%s", s.Name(), md)
			}
			if strings.Contains(md, "%!") {
				t.Errorf("markdown has a formatting error:\n%s", md)
			}
			if !strings.Contains(md, "steady 1000/s: p50 ms") {
				t.Errorf("markdown has no column for the high-rate steady run:\n%s", md)
			}
			if _, ok := rep.Systems[0].Medians["steady_high_started_pct"]; !ok {
				t.Errorf("no median of the high-rate run's share started: %v", rep.Systems[0].Medians)
			}
		})
	}
}

func TestTreeCPU(t *testing.T) {
	// A shell whose busy child counts only if the walk finds descendants;
	// its own process group lets the test kill both.
	cmd := exec.Command("sh", "-c", "sh -c 'while :; do :; done' & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a busy shell: %v", err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	// The parent shell only waits; CPU time reaching 200 ms can only come
	// from the child. Poll rather than sleep a fixed time, so a loaded
	// machine delays the test instead of failing it.
	deadline := time.Now().Add(30 * time.Second)
	for got := treeCPU(cmd.Process.Pid); got < 200*time.Millisecond; got = treeCPU(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("treeCPU = %s after 30 s of a busy child", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
