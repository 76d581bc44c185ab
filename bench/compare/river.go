package compare

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ebbq/ebb/internal/clock"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

type riverArgs struct {
	T int64 `json:"t,omitempty"`
}

func (riverArgs) Kind() string { return "ebb_bench_noop" }

// riverBackend runs River on Postgres through pgx in a database of its own
// (created, migrated with rivermigrate and dropped per repetition). River is
// configured with its defaults apart from the queue's MaxWorkers (the same
// concurrency as every Go system).
type riverBackend struct {
	cfg Config

	admin  *pgx.Conn     // on cfg.PostgresURL's database: creates/drops cfg.PostgresDB and reads its stats
	pool   *pgxpool.Pool // the producer's
	client *river.Client[pgx.Tx]
	stmts  *stmtCounter // on the worker's pool, for idle
}

// NewRiver is River on Postgres, in database cfg.PostgresDB.
func NewRiver(cfg Config) System {
	return &goSystem{b: &riverBackend{cfg: cfg}, cfg: cfg}
}

func (b *riverBackend) name() string   { return "river" }
func (b *riverBackend) broker() string { return "postgres" }

func (b *riverBackend) dbURL() (string, error) {
	cc, err := pgx.ParseConfig(b.cfg.PostgresURL)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cc.User, cc.Host, cc.Port, b.cfg.PostgresDB), nil
}

func (b *riverBackend) newPool(ctx context.Context, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	url, err := b.dbURL()
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	// pgxpool's default (4 connections on 2 cores) would serialize 16
	// producers behind 4 connections, which measures the pool, not River;
	// go-redis' default pool for the Redis systems is 20.
	pc.MaxConns = 32
	if tracer != nil {
		pc.ConnConfig.Tracer = tracer
	}
	return pgxpool.NewWithConfig(ctx, pc)
}

func (b *riverBackend) open(ctx context.Context) error {
	var err error
	b.admin, err = pgx.Connect(ctx, b.cfg.PostgresURL)
	if err != nil {
		return err
	}
	db := pgx.Identifier{b.cfg.PostgresDB}.Sanitize()
	if _, err := b.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
		return err
	}
	if _, err := b.admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		return err
	}
	if b.pool, err = b.newPool(ctx, nil); err != nil {
		return err
	}
	m, err := rivermigrate.New(riverpgxv5.New(b.pool), nil)
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	// An insert-only client: no queues, no workers.
	b.client, err = river.NewClient(riverpgxv5.New(b.pool), &river.Config{Logger: quiet})
	return err
}

func (b *riverBackend) reset(ctx context.Context) error {
	_, err := b.pool.Exec(ctx, "TRUNCATE river_job")
	return err
}

func (b *riverBackend) enqueue(ctx context.Context, ts int64) error {
	_, err := b.client.Insert(ctx, riverArgs{T: ts}, &river.InsertOpts{Queue: benchQueue})
	return err
}

func (b *riverBackend) fill(ctx context.Context, n int) (string, error) {
	const batch = 1000
	opts := &river.InsertOpts{Queue: benchQueue}
	for done := 0; done < n; {
		k := min(batch, n-done)
		params := make([]river.InsertManyParams, k)
		for i := range params {
			params[i] = river.InsertManyParams{Args: riverArgs{}, InsertOpts: opts}
		}
		if _, err := b.client.InsertMany(ctx, params); err != nil {
			return "", err
		}
		done += k
	}
	return "Client.InsertMany, 1,000 per call", nil
}

func (b *riverBackend) startWorker(ctx context.Context, onStart func(ts int64)) (func() error, error) {
	b.stmts = &stmtCounter{}
	pool, err := b.newPool(ctx, b.stmts)
	if err != nil {
		return nil, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(_ context.Context, job *river.Job[riverArgs]) error {
		onStart(job.Args.T)
		return nil
	}))
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:  map[string]river.QueueConfig{benchQueue: {MaxWorkers: b.cfg.Concurrency}},
		Workers: workers,
		Logger:  quiet,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		pool.Close()
		return nil, err
	}
	return func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := client.Stop(sctx)
		pool.Close()
		return err
	}, nil
}

// completed counts the rows River has marked completed; its completer
// writes them in batches after the handlers return.
func (b *riverBackend) completed(ctx context.Context) (int64, error) {
	var n int64
	err := b.pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE state = 'completed'").Scan(&n)
	return n, err
}

// idle counts the SQL statements River's worker pool sends, with a pgx
// tracer: exact, and the same kind of count as Redis' (requests the broker
// served). pg_stat_database's transaction count, which the server keeps, is
// reported beside it but is not the headline: backends publish their counts
// at most once a second while busy and up to 10 s late once idle, so a 5 s
// window that starts 1.5 s after the steady workload also counts a second's
// worth of its transactions (tens per second here, against 2-3 at rest).
// pg_stat_statements is installed on the reference machine but not
// preloaded, and preloading it needs a server restart.
func (b *riverBackend) idle(ctx context.Context, window time.Duration) (*IdleResult, error) {
	x0, err := pgXacts(ctx, b.admin, b.cfg.PostgresDB)
	if err != nil {
		return nil, err
	}
	s0 := b.stmts.n.Load()
	t0 := time.Now()
	if !clock.Sleep(ctx, window) {
		return nil, ctx.Err()
	}
	s1 := b.stmts.n.Load()
	el := time.Since(t0).Seconds()
	x1, err := pgXacts(ctx, b.admin, b.cfg.PostgresDB)
	if err != nil {
		return nil, err
	}
	return &IdleResult{
		BrokerOpsPerS: ptr(round(float64(s1-s0)/el, 2)),
		BrokerUnit:    pgStatementsUnit,
		PgXactsPerS:   ptr(round(float64(x1-x0)/el, 2)),
	}, nil
}

func (b *riverBackend) close(ctx context.Context) error {
	var errs []error
	if b.pool != nil {
		b.pool.Close()
		b.pool = nil
	}
	b.client = nil
	if b.admin != nil {
		_, err := b.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{b.cfg.PostgresDB}.Sanitize()+" WITH (FORCE)")
		errs = append(errs, err, b.admin.Close(ctx))
		b.admin = nil
	}
	return errors.Join(errs...)
}
