package compare

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ebbq/ebb/internal/clock"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// redisIdle counts the commands a Redis server processed during window,
// from INFO stats' total_commands_processed. The count is server-wide, so
// nothing else may use this Redis meanwhile (bench/run gives the comparison a
// private redis-server for that reason). The reader has one connection,
// opened before the first INFO, so its own traffic in the window is exactly
// the first INFO: Redis counts a command after running it, so the second
// INFO's figure does not include itself.
func redisIdle(ctx context.Context, addr string, window time.Duration) (*IdleResult, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MinIdleConns: 0})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, err
	}
	c0, err := redisCommands(ctx, rdb)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if !clock.Sleep(ctx, window) {
		return nil, ctx.Err()
	}
	c1, err := redisCommands(ctx, rdb)
	if err != nil {
		return nil, err
	}
	el := time.Since(t0).Seconds()
	return &IdleResult{BrokerOpsPerS: ptr(round(float64(c1-c0-1)/el, 2)),
		BrokerUnit: "Redis commands/s (INFO total_commands_processed)"}, nil
}

func redisCommands(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "stats").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO stats has no total_commands_processed")
}

// pgXacts reads committed plus rolled-back transactions of database db from
// pg_stat_database. conn must be connected to another database, so that
// reading the counter does not move it.
func pgXacts(ctx context.Context, conn *pgx.Conn, db string) (int64, error) {
	var n int64
	err := conn.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1`, db).Scan(&n)
	return n, err
}

// stmtCounter is a pgx tracer that counts the statements a pool sends:
// queries, each query of a batch, and COPYs.
type stmtCounter struct{ n atomic.Int64 }

func (c *stmtCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *stmtCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *stmtCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (c *stmtCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	c.n.Add(1)
}
func (c *stmtCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
func (c *stmtCounter) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *stmtCounter) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

// selfCPU is this process's user plus system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTicks is USER_HZ, 100 on every Linux this runs on (reading it needs
// sysconf, i.e. cgo). Only the fallback below uses it.
const clockTicks = 100

// treeCPU is the CPU time of pid and its descendants now alive, from /proc.
func treeCPU(pid int) time.Duration {
	var total time.Duration
	seen := map[int]bool{}
	var walk func(int)
	walk = func(p int) {
		if seen[p] {
			return
		}
		seen[p] = true
		total += procCPU(p)
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", p, t.Name()))
			if err != nil {
				continue
			}
			for f := range strings.FieldsSeq(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					walk(c)
				}
			}
		}
	}
	walk(pid)
	return total
}

// procCPU is a process's CPU time: the sum of its threads' schedstat
// on-CPU nanoseconds, because /proc/PID/stat counts in 10 ms ticks and an
// idle Celery worker spends less than one tick in a 5 s window. Without
// schedstat it falls back to stat's utime+stime.
func procCPU(pid int) time.Duration {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err == nil {
		var ns int64
		ok := false
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
			if err != nil {
				continue
			}
			if f := strings.Fields(string(b)); len(f) > 0 {
				if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					ns += v
					ok = true
				}
			}
		}
		if ok {
			return time.Duration(ns)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces and parentheses: fields count from
	// after the last ')'. utime and stime are fields 14 and 15 of the line.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// readLines reads a small text file's lines.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}
