package compare

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

const asynqKind = "ebb.bench.noop"

// asynqBackend runs asynq's Client and Server with its defaults, apart from
// Concurrency (the same for every Go system) and the queue name.
type asynqBackend struct {
	cfg    Config
	opt    asynq.RedisClientOpt
	client *asynq.Client
	insp   *asynq.Inspector
	admin  *redis.Client
}

// NewAsynq is asynq on DB cfg.RedisDB of cfg.RedisAddr.
func NewAsynq(cfg Config) System {
	return &goSystem{b: &asynqBackend{cfg: cfg, opt: asynq.RedisClientOpt{Addr: cfg.RedisAddr, DB: cfg.RedisDB}}, cfg: cfg}
}

func (b *asynqBackend) name() string   { return "asynq" }
func (b *asynqBackend) broker() string { return "redis" }

func (b *asynqBackend) open(ctx context.Context) error {
	b.admin = redis.NewClient(&redis.Options{Addr: b.cfg.RedisAddr, DB: b.cfg.RedisDB})
	return b.reset(ctx)
}

func (b *asynqBackend) closeClients() error {
	var errs []error
	if b.client != nil {
		errs = append(errs, b.client.Close())
		b.client = nil
	}
	if b.insp != nil {
		errs = append(errs, b.insp.Close())
		b.insp = nil
	}
	return errors.Join(errs...)
}

func (b *asynqBackend) reset(ctx context.Context) error {
	if err := b.closeClients(); err != nil {
		return err
	}
	if err := b.admin.FlushDB(ctx).Err(); err != nil {
		return err
	}
	b.client = asynq.NewClient(b.opt)
	b.insp = asynq.NewInspector(b.opt)
	return nil
}

type asynqPayload struct {
	T int64 `json:"t,omitempty"`
}

func (b *asynqBackend) enqueue(ctx context.Context, ts int64) error {
	payload, err := json.Marshal(asynqPayload{T: ts})
	if err != nil {
		return err
	}
	_, err = b.client.EnqueueContext(ctx, asynq.NewTask(asynqKind, payload), asynq.Queue(benchQueue))
	return err
}

// fill: asynq has no batch enqueue, so the backlog goes in through 16
// concurrent single-task calls, its fastest public path.
func (b *asynqBackend) fill(ctx context.Context, n int) (string, error) {
	const producers = 16
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for p := range producers {
		share := n/producers + btoi(p < n%producers)
		wg.Go(func() {
			for range share {
				if err := b.enqueue(ctx, 0); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return "Client.Enqueue from 16 goroutines (no batch API)", firstErr
}

func (b *asynqBackend) startWorker(_ context.Context, onStart func(ts int64)) (func() error, error) {
	srv := asynq.NewServer(b.opt, asynq.Config{
		Concurrency: b.cfg.Concurrency,
		Queues:      map[string]int{benchQueue: 1},
		Logger:      asynqQuiet{},
		LogLevel:    asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(asynqKind, func(_ context.Context, t *asynq.Task) error {
		var p asynqPayload
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return err
		}
		onStart(p.T)
		return nil
	})
	if err := srv.Start(mux); err != nil {
		return nil, err
	}
	return func() error { srv.Shutdown(); return nil }, nil
}

// completed is asynq's cumulative processed counter, which its completion
// script increments in the same step that removes the task from the active
// list.
func (b *asynqBackend) completed(context.Context) (int64, error) {
	info, err := b.insp.GetQueueInfo(benchQueue)
	if err != nil {
		return 0, err
	}
	return int64(info.ProcessedTotal - info.FailedTotal), nil
}

func (b *asynqBackend) idle(ctx context.Context, window time.Duration) (*IdleResult, error) {
	return redisIdle(ctx, b.cfg.RedisAddr, window)
}

func (b *asynqBackend) close(ctx context.Context) error {
	err := b.closeClients()
	if b.admin != nil {
		err = errors.Join(err, b.admin.FlushDB(ctx).Err(), b.admin.Close())
		b.admin = nil
	}
	return err
}

type asynqQuiet struct{}

func (asynqQuiet) Debug(...any) {}
func (asynqQuiet) Info(...any)  {}
func (asynqQuiet) Warn(...any)  {}
func (asynqQuiet) Error(...any) {}
func (asynqQuiet) Fatal(...any) {}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func cmpErr(old, err error) error {
	if old != nil {
		return old
	}
	return err
}
