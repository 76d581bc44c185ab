package compare

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Machine names the hardware.
type Machine struct {
	Cores  int     `json:"cores"`
	CPU    string  `json:"cpu"`
	RAMGiB float64 `json:"ram_gib"`
	Kernel string  `json:"kernel"`
	// Load averages (1, 5, 15 min) before and after the run: other work on
	// the machine moves the numbers, and this is the only trace of it.
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
}

// LoadAvg is /proc/loadavg's first three fields.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// MachineInfo reads the machine's description from /proc.
func MachineInfo() Machine {
	m := Machine{Cores: runtime.NumCPU(), LoadStart: LoadAvg()}
	if lines, err := readLines("/proc/cpuinfo"); err == nil {
		for _, l := range lines {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if lines, err := readLines("/proc/meminfo"); err == nil {
		for _, l := range lines {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				m.RAMGiB = round(kb/(1<<20), 1)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// Versions collects the version of everything measured. Failures leave
// "unknown" rather than stopping the run.
func Versions(ctx context.Context, cfg Config) map[string]string {
	v := map[string]string{"go": runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/hibiken/asynq":
				v["asynq"] = d.Version
			case "github.com/riverqueue/river":
				v["river"] = d.Version
			case "github.com/jackc/pgx/v5":
				v["pgx"] = d.Version
			case "github.com/redis/go-redis/v9":
				v["go-redis"] = d.Version
			case "modernc.org/sqlite":
				v["modernc-sqlite"] = d.Version
			}
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr})
	defer rdb.Close()
	if info, err := rdb.Info(ctx, "server").Result(); err == nil {
		v["redis"] = infoField(info, "redis_version")
	}
	if conn, err := pgx.Connect(ctx, cfg.PostgresURL); err == nil {
		var s string
		if conn.QueryRow(ctx, "SHOW server_version").Scan(&s) == nil {
			v["postgres"] = strings.Fields(s)[0]
		}
		_ = conn.Close(ctx)
	}
	out, err := exec.CommandContext(ctx, cfg.Python, "-c",
		"import sys, celery, kombu, redis; print(celery.__version__, kombu.__version__, redis.__version__, sys.version.split()[0])").Output()
	if f := strings.Fields(string(out)); err == nil && len(f) == 4 {
		v["celery"], v["kombu"], v["redis-py"], v["python"] = f[0], f[1], f[2], f[3]
	}
	v["ebb"] = ebbCommit(ctx)
	for _, k := range []string{"asynq", "river", "pgx", "redis", "postgres", "celery", "kombu", "redis-py", "python"} {
		if v[k] == "" {
			v[k] = "unknown"
		}
	}
	return v
}

// ebbCommit is HEAD, marked when files outside bench/ and
// docs/benchmarks.md differ from it: the numbers are then of code that is
// not in any commit.
func ebbCommit(ctx context.Context) string {
	top, err := exec.CommandContext(ctx, "git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "unknown"
	}
	dir := strings.TrimSpace(string(top))
	head, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(head))
	st, err := exec.CommandContext(ctx, "git", "-C", dir, "status", "--porcelain", "--", ".",
		":(exclude)bench", ":(exclude)docs/benchmarks.md", ":(exclude)docs/img").Output()
	if err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += " with uncommitted changes"
	}
	return c
}

// RedisSetup describes the Redis the run uses, persistence included.
func RedisSetup(ctx context.Context, cfg Config) string {
	rdb := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr})
	defer rdb.Close()
	save, _ := rdb.ConfigGet(ctx, "save").Result()
	aof, _ := rdb.ConfigGet(ctx, "appendonly").Result()
	persist := "RDB save \"" + save["save"] + "\", appendonly " + aof["appendonly"]
	desc := cfg.RedisDesc
	if desc == "" {
		desc = "Redis at " + cfg.RedisAddr
	}
	return desc + " (" + persist + ")"
}

func infoField(info, key string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}
