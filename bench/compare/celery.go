package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebbq/ebb/internal/clock"
	"github.com/redis/go-redis/v9"
)

// celerySystem drives real Celery as subprocesses: a worker
// (`python3 -m celery -A bench_tasks worker`, prefork pool with one process
// per core) and producers (bench/celery/produce.py), on DB cfg.RedisDB of
// cfg.RedisAddr.
type celerySystem struct {
	cfg    Config
	admin  *redis.Client
	dir    string // scratch: ready file, latency files, worker log
	worker *exec.Cmd
	wdone  chan error
}

// NewCelery is Celery with a Redis broker.
func NewCelery(cfg Config) System { return &celerySystem{cfg: cfg} }

func (c *celerySystem) Name() string   { return "celery" }
func (c *celerySystem) Broker() string { return "redis" }

func (c *celerySystem) brokerURL() string {
	return fmt.Sprintf("redis://%s/%d", c.cfg.RedisAddr, c.cfg.RedisDB)
}

func (c *celerySystem) env(extra ...string) []string {
	return append(os.Environ(), append([]string{
		"EBB_BENCH_CELERY_BROKER=" + c.brokerURL(),
		"EBB_BENCH_CELERY_QUEUE=" + benchQueue,
		"PYTHONDONTWRITEBYTECODE=1",
	}, extra...)...)
}

func (c *celerySystem) Setup(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, c.cfg.Python, "-c", "import celery").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s cannot import celery (apt-get install -y python3-celery python3-redis): %v: %s", c.cfg.Python, err, out)
	}
	c.dir, err = os.MkdirTemp(c.cfg.WorkDir, "celery-")
	if err != nil {
		return err
	}
	if err := os.Mkdir(c.latDir(), 0o755); err != nil {
		return err
	}
	c.admin = redis.NewClient(&redis.Options{Addr: c.cfg.RedisAddr, DB: c.cfg.RedisDB})
	return c.admin.FlushDB(ctx).Err()
}

func (c *celerySystem) Teardown(ctx context.Context) error {
	err := c.stopWorker()
	if c.admin != nil {
		err = errors.Join(err, c.admin.FlushDB(ctx).Err(), c.admin.Close())
		c.admin = nil
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
		c.dir = ""
	}
	return err
}

// latDir receives the steady workload's latencies; burn-down tasks carry no
// enqueue time and write nothing there.
func (c *celerySystem) latDir() string { return filepath.Join(c.dir, "lat") }

type produced struct {
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`
}

func (c *celerySystem) produce(ctx context.Context, args ...string) (*produced, error) {
	cmd := exec.CommandContext(ctx, c.cfg.Python, append([]string{"produce.py"}, args...)...)
	cmd.Dir = c.cfg.CeleryDir
	cmd.Env = c.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("produce.py %s: %v: %s", strings.Join(args, " "), err, tail(stderr.String()))
	}
	var p produced
	if err := json.Unmarshal(out, &p); err != nil {
		return nil, fmt.Errorf("produce.py %s printed %q: %w", strings.Join(args, " "), out, err)
	}
	return &p, nil
}

func (c *celerySystem) EnqueueRate(ctx context.Context, producers int, window time.Duration) (float64, error) {
	if err := c.admin.FlushDB(ctx).Err(); err != nil {
		return 0, err
	}
	p, err := c.produce(ctx, "rate", "--producers", strconv.Itoa(producers), "--seconds", fmt.Sprint(window.Seconds()))
	if err != nil {
		return 0, err
	}
	return float64(p.Count) / p.Seconds, nil
}

// startWorker starts the worker and returns the time it reported ready.
func (c *celerySystem) startWorker(ctx context.Context, latDir string) (time.Time, error) {
	ready := filepath.Join(c.dir, "ready")
	_ = os.Remove(ready)
	logf, err := os.Create(filepath.Join(c.dir, "worker.log"))
	if err != nil {
		return time.Time{}, err
	}
	defer logf.Close()
	cmd := exec.Command(c.cfg.Python, "-m", "celery", "-A", "bench_tasks", "worker",
		"--pool", "prefork", "--concurrency", strconv.Itoa(c.cfg.CeleryProcs),
		"--queues", benchQueue, "--loglevel", "WARNING", "--hostname", "ebb-bench@%h")
	cmd.Dir = c.cfg.CeleryDir
	cmd.Env = c.env("EBB_BENCH_CELERY_READY_FILE="+ready, "EBB_BENCH_CELERY_LAT_DIR="+latDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that a stuck pool can be killed as a whole
	// without touching anything this harness did not start.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return time.Time{}, err
	}
	c.worker = cmd
	c.wdone = make(chan error, 1)
	go func() { c.wdone <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil {
			f, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("ready file: %w", err)
			}
			return time.Unix(0, int64(f*1e9)), nil
		}
		select {
		case err := <-c.wdone:
			c.worker = nil
			log, _ := os.ReadFile(filepath.Join(c.dir, "worker.log"))
			return time.Time{}, fmt.Errorf("celery worker exited before ready: %v: %s", err, tail(string(log)))
		case <-ctx.Done():
			return time.Time{}, errors.Join(ctx.Err(), c.stopWorker())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return time.Time{}, errors.Join(errors.New("celery worker not ready after 60s"), c.stopWorker())
		}
	}
}

// stopWorker asks for Celery's warm shutdown (SIGTERM), then kills the
// worker's process group if it is still there after 20 s.
func (c *celerySystem) stopWorker() error {
	if c.worker == nil {
		return nil
	}
	pid := c.worker.Process.Pid
	c.worker = nil
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-c.wdone:
		return nil
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-c.wdone
		return errors.New("celery worker ignored SIGTERM for 20s; killed")
	}
}

// pending is what the broker still holds: queued messages plus delivered,
// unacknowledged ones (kombu's Redis transport keeps those in the "unacked"
// hash until the ack, which task_acks_late defers until the task returned).
func (c *celerySystem) pending(ctx context.Context) (int64, error) {
	pipe := c.admin.Pipeline()
	l := pipe.LLen(ctx, benchQueue)
	u := pipe.HLen(ctx, "unacked")
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	return l.Val() + u.Val(), nil
}

func (c *celerySystem) BurnDown(ctx context.Context, n int) (*BurnResult, error) {
	if err := c.admin.FlushDB(ctx).Err(); err != nil {
		return nil, err
	}
	p, err := c.produce(ctx, "fill", "--producers", "16", "--count", strconv.Itoa(n))
	if err != nil {
		return nil, err
	}
	if left, err := c.pending(ctx); err != nil || left != int64(n) {
		return nil, fmt.Errorf("after fill the queue holds %d tasks, want %d (err %v)", left, n, err)
	}
	// The worker stays up for Steady and Idle: a Python interpreter and its
	// pool take seconds to start and stop, which the time budget of
	// bench/run cannot spare three times per repetition.
	t0, err := c.startWorker(ctx, c.latDir())
	if err != nil {
		return nil, err
	}
	// kombu pops a message and records it as unacked in two steps; two
	// empty readings 5 ms apart rule out having looked in between.
	var done time.Time
	deadline := time.Now().Add(15 * time.Minute)
	for {
		left, err := c.pending(ctx)
		if err != nil {
			return nil, err
		}
		if left == 0 {
			at := time.Now()
			if !clock.Sleep(ctx, 5*time.Millisecond) {
				return nil, ctx.Err()
			}
			if again, err := c.pending(ctx); err == nil && again == 0 {
				done = at
				break
			}
		}
		if time.Now().After(deadline) {
			_ = c.stopWorker()
			return nil, fmt.Errorf("%d tasks left after 15 minutes", left)
		}
		if !clock.Sleep(ctx, 5*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	el := done.Sub(t0).Seconds()
	return &BurnResult{Tasks: n, Seconds: round(el, 3), PerS: round(float64(n)/el, 0),
		FillAPI: "apply_async from 16 processes (no batch API)", FillPerS: round(float64(p.Count)/p.Seconds, 0),
		ClockStarts: "worker_ready signal (after interpreter and pool start-up)"}, nil
}

func (c *celerySystem) Steady(ctx context.Context, rate int, d, drain time.Duration) (*SteadyResult, error) {
	// The burn-down's worker is reused when it is still up: it left the
	// broker empty (that is when its clock stopped). A FLUSHDB under a
	// running worker would also delete kombu's queue bindings.
	if c.worker == nil {
		if err := c.admin.FlushDB(ctx).Err(); err != nil {
			return nil, err
		}
		// An earlier steady run's latencies must not count in this one.
		if err := clearLatencies(c.latDir()); err != nil {
			return nil, err
		}
		if _, err := c.startWorker(ctx, c.latDir()); err != nil {
			return nil, err
		}
	}
	latDir := c.latDir()
	if !clock.Sleep(ctx, 500*time.Millisecond) {
		return nil, ctx.Err()
	}
	p, err := c.produce(ctx, "steady", "--rate", strconv.Itoa(rate), "--seconds", fmt.Sprint(d.Seconds()))
	if err != nil {
		return nil, err
	}
	if _, err := waitCount(ctx, p.Count, drain, func() (int, error) {
		lat, err := readLatencies(latDir)
		return len(lat), err
	}); err != nil {
		return nil, err
	}
	lat, err := readLatencies(latDir)
	if err != nil {
		return nil, err
	}
	return steadyResult(lat, p.Count, float64(p.Count)/p.Seconds, "1 process, paced")
}

func clearLatencies(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "lat-*.txt"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	return nil
}

// readLatencies reads the pool processes' files (microseconds per line).
// A line being written may be cut short; it is skipped now and counted on
// the final read.
func readLatencies(dir string) ([]float64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "lat-*.txt"))
	if err != nil {
		return nil, err
	}
	var out []float64
	for _, f := range files {
		lines, err := readLines(f)
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			if us, err := strconv.ParseInt(l, 10, 64); err == nil {
				out = append(out, float64(us)/1000)
			}
		}
	}
	return out, nil
}

func (c *celerySystem) Idle(ctx context.Context, settle, window time.Duration) (*IdleResult, error) {
	if c.worker == nil {
		if err := c.admin.FlushDB(ctx).Err(); err != nil {
			return nil, err
		}
		if _, err := c.startWorker(ctx, c.latDir()); err != nil {
			return nil, err
		}
	}
	defer c.stopWorker()
	if !clock.Sleep(ctx, settle) {
		return nil, ctx.Err()
	}
	pid := c.worker.Process.Pid
	cpu0 := treeCPU(pid)
	t0 := time.Now()
	res, err := redisIdle(ctx, c.cfg.RedisAddr, window)
	if err != nil {
		return nil, err
	}
	res.CPUPercent = round(100*(treeCPU(pid)-cpu0).Seconds()/time.Since(t0).Seconds(), 2)
	res.CPUScope = "worker process and its pool processes (/proc schedstat)"
	res.WindowS = window.Seconds()
	return res, nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}
