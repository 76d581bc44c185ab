// Package ebbpostgres is ebb's PostgreSQL broker driver, on pgx v5.
//
// One table holds the tasks; partial indexes keep each state's work apart
// so a fetch, a count or a rescue touches only the rows of its state, never
// the finished tasks kept for their retention. A fetch claims a batch in
// one UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n), so
// any number of workers fetch at once without waiting for each other; a
// batch of completions is one statement over unnest arrays.
//
// Wake-ups travel by LISTEN/NOTIFY on one channel per schema, at most one
// notification per statement and queue (a batch of 1,000 enqueues sends
// one); each Driver holds one listening connection for all its listeners.
// NOTIFY is transactional, so a task enqueued inside an application's
// transaction (EnqueueTx) wakes workers only when that transaction commits.
//
// Tables live in one schema (Config.Schema, ?schema= in a URL; public by
// default), each named ebb_…, so they can sit beside an application's own.
// The schema is created and migrated at Open under an advisory lock unless
// Config.NoMigrate is set; Migrator applies and reverts migrations
// explicitly (`ebb migrate`).
package ebbpostgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/internal/groupcommit"
)

var (
	_ ebbdriver.Driver            = (*Driver)(nil)
	_ ebbdriver.TxDriver[pgx.Tx]  = (*Driver)(nil)
	_ ebbdriver.TxDriver[*sql.Tx] = (*SQLDriver)(nil)
)

// Defaults for Config's zero fields.
const (
	// SchemaDefault is the schema ebb's tables go in.
	SchemaDefault = "public"
	// AwaitBackstopDefault is how often TaskAwait re-reads its task even
	// without a notification.
	AwaitBackstopDefault = 2 * time.Second
	// counterShards is how many rows each queue's running totals are
	// spread over.
	counterShards = 16
)

// Config tunes a Driver. The zero value (or nil) uses the defaults.
type Config struct {
	// Schema holds ebb's tables; default SchemaDefault. It is created by
	// the migration if missing.
	Schema string
	// NoMigrate skips migrating at Open: Open then fails with
	// ErrSchemaMissing unless the schema is already at SchemaVersion (for
	// teams that run `ebb migrate up` in their deploy pipeline).
	NoMigrate bool
	// SyncCommit makes fetches, completions and leader elections wait for
	// their commit to be flushed, as enqueues always do. By default they do
	// not (they commit
	// with synchronous_commit off), which takes a disk flush off every
	// task's path: if the database server crashes (the operating system
	// or the machine, not a process) it may forget the last fraction of a
	// second of claims and completions, and those tasks run again, which
	// at-least-once delivery allows. A task whose enqueue returned is never
	// lost either way. Completions inside a caller's transaction
	// (CompleteTx) follow that transaction's own setting.
	SyncCommit bool
	// AwaitBackstop is TaskAwait's fallback re-read interval. Default
	// AwaitBackstopDefault.
	AwaitBackstop time.Duration
	// Logger receives errors of background work (the listener). Default
	// slog.Default().
	Logger *slog.Logger
}

// Driver is an ebbdriver.Driver on a PostgreSQL database, and an
// ebbdriver.TxDriver[pgx.Tx]: EnqueueTx and CompleteTx take part in the
// caller's pgx transaction. For database/sql transactions use SQL(). It is
// safe for concurrent use; any number of Drivers, in any number of
// processes, may share a schema.
type Driver struct {
	pool    *pgxpool.Pool
	ownPool bool
	cfg     Config
	log     *slog.Logger
	schema  string
	channel string
	s       *stmts
	notify  *notifier
	waker   *waker

	enqueueGroup *groupcommit.Group[*enqueueCall]

	closeOnce sync.Once
	closed    chan struct{}
}

// Open connects to the database named by a postgres:// (or postgresql://)
// URL and returns a driver on it. Besides pgx's own parameters the URL may
// carry schema=NAME (Config.Schema) and migrate=false (Config.NoMigrate);
// config fields set explicitly win over them. config may be nil.
func Open(ctx context.Context, rawURL string, config *Config) (*Driver, error) {
	var cfg Config
	if config != nil {
		cfg = *config
	}
	connURL, schema, noMigrate, err := splitURL(rawURL)
	if err != nil {
		return nil, err
	}
	if cfg.Schema == "" {
		cfg.Schema = schema
	}
	cfg.NoMigrate = cfg.NoMigrate || noMigrate
	pool, err := newPool(ctx, connURL)
	if err != nil {
		return nil, err
	}
	d, err := newDriver(ctx, pool, true, cfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return d, nil
}

// newPool makes a pool for a URL without ebb's parameters. A connect
// timeout bounds how long an unreachable server takes to report.
func newPool(ctx context.Context, connURL string) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(connURL)
	if err != nil {
		return nil, fmt.Errorf("ebbpostgres: %w: %v; use postgres://user:password@host:5432/dbname?schema=NAME", ErrBadURL, redactErr(err))
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("ebbpostgres: %w", err)
	}
	return pool, nil
}

// OpenMigrator connects to the database of a postgres URL and returns a
// Migrator for its schema (the schema parameter), without migrating
// anything, and a function that closes the connections.
func OpenMigrator(ctx context.Context, rawURL string) (*Migrator, func(), error) {
	connURL, schema, _, err := splitURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	pool, err := newPool(ctx, connURL)
	if err != nil {
		return nil, nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("ebbpostgres: cannot connect to PostgreSQL at %s: %w; %s", describe(pool.Config().ConnConfig), err, Hint(err))
	}
	return NewMigrator(pool, schema), pool.Close, nil
}

// New returns a driver on a pool the caller owns: Close does not close it.
// The pool's connections should not change search_path in ways ebb depends
// on: every statement names ebb's schema explicitly. config may be nil.
func New(ctx context.Context, pool *pgxpool.Pool, config *Config) (*Driver, error) {
	var cfg Config
	if config != nil {
		cfg = *config
	}
	return newDriver(ctx, pool, false, cfg)
}

func newDriver(ctx context.Context, pool *pgxpool.Pool, own bool, cfg Config) (*Driver, error) {
	if cfg.Schema == "" {
		cfg.Schema = SchemaDefault
	}
	if cfg.AwaitBackstop <= 0 {
		cfg.AwaitBackstop = AwaitBackstopDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Driver{pool: pool, ownPool: own, cfg: cfg, log: cfg.Logger, schema: cfg.Schema,
		channel: channelName(cfg.Schema), closed: make(chan struct{})}
	d.enqueueGroup = groupcommit.New(enqueueGroupCalls, d.commitEnqueues)
	where := describe(pool.Config().ConnConfig)
	if err := pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("ebbpostgres: cannot connect to PostgreSQL at %s: %w; %s", where, err, Hint(err))
	}
	m := NewMigrator(pool, cfg.Schema)
	if cfg.NoMigrate {
		if err := m.check(ctx); err != nil {
			return nil, fmt.Errorf("ebbpostgres: %s: %w", where, err)
		}
	} else if _, err := m.Up(ctx, 0); err != nil {
		if errors.Is(err, ErrSchemaNewer) {
			return nil, fmt.Errorf("ebbpostgres: %s: %w", where, err)
		}
		return nil, fmt.Errorf("ebbpostgres: migrating schema %s at %s: %w; %s", cfg.Schema, where, err, Hint(err))
	}
	d.s = newStmts(pgx.Identifier{cfg.Schema}.Sanitize())
	d.notify = newNotifier(d)
	d.waker = &waker{d: d}
	return d, nil
}

// splitURL takes ebb's own parameters out of a postgres URL, which pgx
// would otherwise send to the server as settings.
func splitURL(raw string) (conn, schema string, noMigrate bool, err error) {
	u, perr := url.Parse(raw)
	if perr != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", "", false, fmt.Errorf("ebbpostgres: %w %q: use postgres://user:password@host:5432/dbname?schema=NAME", ErrBadURL, redactURL(raw))
	}
	q := u.Query()
	schema = q.Get("schema")
	if v := q.Get("migrate"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return "", "", false, fmt.Errorf("ebbpostgres: %w %q: migrate=%q: use migrate=true or migrate=false", ErrBadURL, redactURL(raw), v)
		}
		noMigrate = !b
	}
	q.Del("schema")
	q.Del("migrate")
	u.RawQuery = q.Encode()
	return u.String(), schema, noMigrate, nil
}

// channelName is the NOTIFY channel of a schema; channel names are
// identifiers, at most 63 bytes.
func channelName(schema string) string {
	c := "ebb_" + schema
	if len(c) <= 63 {
		return c
	}
	h := fnv.New64a()
	h.Write([]byte(schema))
	return fmt.Sprintf("ebb_%x", h.Sum64())
}

func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// redactErr keeps pgx's parse errors, which can quote the whole URL, from
// showing a password.
func redactErr(err error) string {
	s := err.Error()
	if i := strings.Index(s, "://"); i >= 0 {
		if j := strings.LastIndex(s, "@"); j > i {
			return s[:i+3] + "xxxxx" + s[j:]
		}
	}
	return s
}

// Hint says what to do about a connection or server error, or "" when the
// error speaks for itself.
func Hint(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "28P01" || pe.Code == "28000":
			return "the server refused the credentials: fix the user and password in --broker/EBB_BROKER"
		case pe.Code == "3D000":
			return "the database does not exist: create it (createdb NAME) or fix the database name in --broker/EBB_BROKER"
		case pe.Code == "3F000" || pe.Code == "42P01":
			return "ebb's tables are missing: run `ebb migrate up` with this broker URL"
		case pe.Code == "42501":
			return "the user lacks a privilege ebb needs (creating the schema and tables, or using them): grant it or use another user"
		case strings.HasPrefix(pe.Code, "57P"):
			return "the server is shutting down or restarting: ebb reconnects when it is back"
		}
		return ""
	}
	if IsUnreachable(err) {
		return "is PostgreSQL running and listening there? start it or fix the host and port in --broker/EBB_BROKER"
	}
	return ""
}

// IsPermanent reports whether err is a failure that waiting cannot fix:
// rejected credentials, a missing database, a missing schema with
// migration off, a schema from a newer ebb.
func IsPermanent(err error) bool {
	if errors.Is(err, ErrSchemaMissing) || errors.Is(err, ErrSchemaNewer) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "28") || pe.Code == "3D000" || pe.Code == "42501"
	}
	return false
}

// IsUnreachable reports whether err means the server could not be reached
// (nothing listens, the network is down) rather than that it answered.
func IsUnreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return false
	}
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}

// Name returns "postgres".
func (d *Driver) Name() string { return "postgres" }

// fetchBatchMax is the fetch cap a worker takes from this driver: the
// fastest of 500, 1,000, 2,000 and 4,000 in a 100,000-task burn-down at
// concurrency 10,000 (BenchmarkBurnDownFetchBatch in the root package;
// figures in docs/decisions.md), and the claim holds up no other session.
const fetchBatchMax = 4000

// FetchBatchMax implements ebbdriver.FetchBatcher.
func (d *Driver) FetchBatchMax() int { return fetchBatchMax }

// Schema returns the schema holding ebb's tables.
func (d *Driver) Schema() string { return d.schema }

// Pool returns the driver's connection pool, e.g. to begin the
// transactions handed to EnqueueTx.
func (d *Driver) Pool() *pgxpool.Pool { return d.pool }

// Close stops the listener, closes every listener's channel and, if Open
// made the pool, closes it.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() {
		close(d.closed)
		d.notify.stop()
		d.waker.stop()
		if d.ownPool {
			d.pool.Close()
		}
	})
	return nil
}

// ErrBadURL means a URL is not one Open understands.
var ErrBadURL = errors.New("bad URL")

var (
	errClosed   = errors.New("ebbpostgres: driver is closed")
	errBadInput = errors.New("invalid argument")
)

// wrap adds the operation and, for server failures, what to do.
func (d *Driver) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-d.closed:
		return fmt.Errorf("ebbpostgres: %s: %w", op, errClosed)
	default:
	}
	if h := Hint(err); h != "" {
		return fmt.Errorf("ebbpostgres: %s: %w; %s", op, err, h)
	}
	return fmt.Errorf("ebbpostgres: %s: %w", op, err)
}

// shardSeq makes consecutive statements of a process add to different
// counter rows. A counter row stays locked until its statement's commit is
// flushed, so concurrent enqueues that picked the same row at random
// committed one flush after the other; in turn, the statements in flight
// at once (rarely more than the shard count) never share a row. The start
// is random so that processes do not all begin on the same row.
var shardSeq atomic.Uint32

func init() { shardSeq.Store(rand.Uint32()) }

// shard picks the counter row a statement adds to.
func shard() int32 { return int32(shardSeq.Add(1) % counterShards) }

// inTx runs fn in a transaction on the pool.
func (d *Driver) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, d.pool, fn)
}
