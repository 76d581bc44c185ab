package compare

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ebbq/ebb"
	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbredis"
	"github.com/ebbq/ebb/ebbdriver/ebbsqlite"
	"github.com/ebbq/ebb/internal/clock"
	"github.com/redis/go-redis/v9"
)

const benchQueue = "ebb-bench"

// ebbArgs is the no-op task; T is the enqueue time in unix ns (steady only).
type ebbArgs struct {
	T int64 `json:"t,omitempty"`
}

func (ebbArgs) Kind() string { return "ebb.bench.noop" }

// ebbBackend runs ebb through its public API (ebb.NewClient, ebb.NewWorker)
// on one of its drivers.
type ebbBackend struct {
	cfg    Config
	sqlite bool
	path   string // SQLite file
	pg     *ebbPG // Postgres

	drv    ebbdriver.Driver // the producer's
	client *ebb.Client
	admin  *redis.Client // FLUSHDB
}

// NewEbbRedis is ebb on Redis (DB cfg.RedisDB of cfg.RedisAddr).
func NewEbbRedis(cfg Config) System {
	return &goSystem{b: &ebbBackend{cfg: cfg}, cfg: cfg}
}

// NewEbbSQLite is ebb on a fresh SQLite file in cfg.WorkDir.
func NewEbbSQLite(cfg Config) System {
	return &goSystem{b: &ebbBackend{cfg: cfg, sqlite: true, path: filepath.Join(cfg.WorkDir, "ebb-bench.db")}, cfg: cfg}
}

func (b *ebbBackend) name() string { return "ebb-" + b.broker() }

func (b *ebbBackend) broker() string {
	switch {
	case b.sqlite:
		return "sqlite"
	case b.pg != nil:
		return "postgres"
	}
	return "redis"
}

var quiet = slog.New(slog.DiscardHandler)

func (b *ebbBackend) openDriver(ctx context.Context) (ebbdriver.Driver, error) {
	if b.pg != nil {
		return b.pg.openDriver(ctx, nil)
	}
	if b.sqlite {
		return ebbsqlite.Open(ctx, b.path, &ebbsqlite.Config{Logger: quiet})
	}
	return ebbredis.Open(ctx, fmt.Sprintf("redis://%s/%d", b.cfg.RedisAddr, b.cfg.RedisDB), nil)
}

func (b *ebbBackend) open(ctx context.Context) error {
	if b.pg != nil {
		if err := b.pg.open(ctx); err != nil {
			return err
		}
	} else if !b.sqlite {
		b.admin = redis.NewClient(&redis.Options{Addr: b.cfg.RedisAddr, DB: b.cfg.RedisDB})
	}
	return b.reset(ctx)
}

func (b *ebbBackend) closeProducer() error {
	if b.drv == nil {
		return nil
	}
	err := b.drv.Close()
	b.drv, b.client = nil, nil
	return err
}

// reset reopens the producer's driver after the flush: the Redis driver
// caches which queues it has registered, which a FLUSHDB silently undoes.
func (b *ebbBackend) reset(ctx context.Context) error {
	if err := b.closeProducer(); err != nil {
		return err
	}
	if b.pg != nil {
		if err := b.pg.reset(ctx); err != nil {
			return err
		}
	} else if b.sqlite {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(b.path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	} else if err := b.admin.FlushDB(ctx).Err(); err != nil {
		return err
	}
	drv, err := b.openDriver(ctx)
	if err != nil {
		return err
	}
	b.drv = drv
	b.client, err = ebb.NewClient(drv, &ebb.ClientConfig{Logger: quiet})
	return err
}

func (b *ebbBackend) enqueue(ctx context.Context, ts int64) error {
	_, err := b.client.Enqueue(ctx, ebbArgs{T: ts}, &ebb.EnqueueOpts{Queue: benchQueue})
	return err
}

func (b *ebbBackend) fill(ctx context.Context, n int) (string, error) {
	const batch = 1000
	opts := &ebb.EnqueueOpts{Queue: benchQueue}
	for done := 0; done < n; {
		k := min(batch, n-done)
		params := make([]ebb.EnqueueParams, k)
		for i := range params {
			params[i] = ebb.EnqueueParams{Args: ebbArgs{}, Opts: opts}
		}
		if _, err := b.client.EnqueueMany(ctx, params); err != nil {
			return "", err
		}
		done += k
	}
	return "Client.EnqueueMany, 1,000 per call", nil
}

func (b *ebbBackend) startWorker(ctx context.Context, onStart func(ts int64)) (func() error, error) {
	var drv ebbdriver.Driver
	var err error
	if b.pg != nil {
		drv, err = b.pg.openDriver(ctx, b.pg.countWorker())
	} else {
		drv, err = b.openDriver(ctx)
	}
	if err != nil {
		return nil, err
	}
	handlers := ebb.NewHandlers()
	ebb.Handle(handlers, func(_ context.Context, t *ebb.Task[ebbArgs]) (any, error) {
		onStart(t.Args.T)
		return nil, nil
	})
	w, err := ebb.NewWorker(drv, &ebb.WorkerConfig{
		Handlers:    handlers,
		Queues:      []ebb.QueueConfig{{Name: benchQueue}},
		Concurrency: b.cfg.Concurrency,
		Logger:      quiet,
	})
	if err != nil {
		_ = drv.Close()
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	return func() error {
		cancel()
		err := <-done
		return errors.Join(err, drv.Close())
	}, nil
}

func (b *ebbBackend) completed(ctx context.Context) (int64, error) {
	stats, err := b.drv.QueueStats(ctx, time.Now())
	if err != nil {
		return 0, err
	}
	for _, s := range stats {
		if s.Name == benchQueue {
			return s.Succeeded, nil
		}
	}
	return 0, nil
}

func (b *ebbBackend) idle(ctx context.Context, window time.Duration) (*IdleResult, error) {
	if b.pg != nil {
		return b.pg.idle(ctx, window)
	}
	if b.sqlite {
		if !clock.Sleep(ctx, window) {
			return nil, ctx.Err()
		}
		return &IdleResult{BrokerUnit: "n/a: SQLite is a library inside the worker process, there is no broker server whose commands could be counted; see worker CPU"}, nil
	}
	return redisIdle(ctx, b.cfg.RedisAddr, window)
}

func (b *ebbBackend) close(ctx context.Context) error {
	err := b.closeProducer()
	if b.pg != nil {
		err = errors.Join(err, b.pg.close(ctx))
	}
	if b.admin != nil {
		err = errors.Join(err, b.admin.FlushDB(ctx).Err(), b.admin.Close())
		b.admin = nil
	}
	if b.sqlite {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			_ = os.Remove(b.path + suffix)
		}
	}
	return err
}
