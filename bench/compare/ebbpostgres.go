package compare

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
	"github.com/ebbq/ebb/internal/clock"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ebbPG is the Postgres part of ebb-postgres: a database of its own on the
// server River runs on (cfg.PostgresDB + "_ebb", created per repetition and
// dropped after it), pools sized as River's, and the worker pool's
// statements counted with the same pgx tracer.
type ebbPG struct {
	cfg   Config
	admin *pgx.Conn
	pool  *pgxpool.Pool // the producer's and the resets'
	stmts *stmtCounter  // on the worker's pool, for idle
}

// pgStatementsUnit is the idle unit of both Postgres systems, so their
// ratio is computed.
const pgStatementsUnit = "SQL statements/s sent by the worker's pgx pool (pgx tracer)"

// NewEbbPostgres is ebb on Postgres, on the server River uses.
func NewEbbPostgres(cfg Config) System {
	return &goSystem{b: &ebbBackend{cfg: cfg, pg: &ebbPG{cfg: cfg}}, cfg: cfg}
}

func (p *ebbPG) db() string { return p.cfg.PostgresDB + "_ebb" }

func (p *ebbPG) newPool(ctx context.Context, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	cc, err := pgx.ParseConfig(p.cfg.PostgresURL)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cc.User, cc.Host, cc.Port, p.db()))
	if err != nil {
		return nil, err
	}
	pc.MaxConns = 32 // as River's
	if tracer != nil {
		pc.ConnConfig.Tracer = tracer
	}
	return pgxpool.NewWithConfig(ctx, pc)
}

func (p *ebbPG) open(ctx context.Context) error {
	var err error
	if p.admin, err = pgx.Connect(ctx, p.cfg.PostgresURL); err != nil {
		return err
	}
	db := pgx.Identifier{p.db()}.Sanitize()
	if _, err := p.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
		return err
	}
	if _, err := p.admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		return err
	}
	p.pool, err = p.newPool(ctx, nil)
	return err
}

// openDriver opens a driver; Close closes its pool too.
func (p *ebbPG) openDriver(ctx context.Context, tracer pgx.QueryTracer) (ebbdriver.Driver, error) {
	pool := p.pool
	own := tracer != nil
	if own {
		var err error
		if pool, err = p.newPool(ctx, tracer); err != nil {
			return nil, err
		}
	}
	d, err := ebbpostgres.New(ctx, pool, &ebbpostgres.Config{Logger: quiet})
	if err != nil {
		if own {
			pool.Close()
		}
		return nil, err
	}
	if own {
		return closingPool{d, pool}, nil
	}
	return d, nil
}

// closingPool closes the worker's own pool with its driver.
type closingPool struct {
	*ebbpostgres.Driver
	pool *pgxpool.Pool
}

func (c closingPool) Close() error {
	err := c.Driver.Close()
	c.pool.Close()
	return err
}

func (p *ebbPG) countWorker() pgx.QueryTracer {
	p.stmts = &stmtCounter{}
	return p.stmts
}

func (p *ebbPG) reset(ctx context.Context) error {
	// The first reset runs before the migration: nothing to truncate yet.
	var migrated bool
	if err := p.pool.QueryRow(ctx, "SELECT to_regclass('public.ebb_tasks') IS NOT NULL").Scan(&migrated); err != nil || !migrated {
		return err
	}
	_, err := p.pool.Exec(ctx, "TRUNCATE ebb_tasks, ebb_queue_counters, ebb_unique_keys, ebb_awaiters, ebb_workers")
	return err
}

// idle counts the statements the worker's pool sent, as River's idle does.
func (p *ebbPG) idle(ctx context.Context, window time.Duration) (*IdleResult, error) {
	x0, err := pgXacts(ctx, p.admin, p.db())
	if err != nil {
		return nil, err
	}
	s0 := p.stmts.n.Load()
	t0 := time.Now()
	if !clock.Sleep(ctx, window) {
		return nil, ctx.Err()
	}
	s1 := p.stmts.n.Load()
	el := time.Since(t0).Seconds()
	x1, err := pgXacts(ctx, p.admin, p.db())
	if err != nil {
		return nil, err
	}
	return &IdleResult{
		BrokerOpsPerS: ptr(round(float64(s1-s0)/el, 2)),
		BrokerUnit:    pgStatementsUnit,
		PgXactsPerS:   ptr(round(float64(x1-x0)/el, 2)),
	}, nil
}

func (p *ebbPG) close(ctx context.Context) error {
	var errs []error
	if p.pool != nil {
		p.pool.Close()
		p.pool = nil
	}
	if p.admin != nil {
		_, err := p.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{p.db()}.Sanitize()+" WITH (FORCE)")
		errs = append(errs, err, p.admin.Close(ctx))
		p.admin = nil
	}
	return errors.Join(errs...)
}
