// Package ebbsqlite is ebb's SQLite broker driver: one database file holds the
// queues, and any number of worker and client processes on the same machine
// share it.
//
// It is pure Go (modernc.org/sqlite, no cgo). The file runs in WAL mode so
// readers never block the writer; every write is a BEGIN IMMEDIATE transaction
// so concurrent processes queue on SQLite's lock (with a busy timeout) instead
// of failing half-way through a transaction with SQLITE_BUSY. Inside one
// process all writes go through a single connection, so goroutines wait in
// database/sql's pool rather than spinning in SQLite's busy handler.
//
// Notifications (Listen, TaskAwait) are immediate between goroutines of one
// process. Commits made by other processes are noticed by polling PRAGMA
// data_version on one dedicated connection every Config.PollInterval, which
// costs a memory read of the shared WAL index, not a query of the tasks.
package ebbsqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/ebbq/ebb/ebbdriver"
)

var _ ebbdriver.Driver = (*Driver)(nil)

// Defaults for Config's zero fields.
const (
	// BusyTimeoutDefault is how long a write waits for another process's
	// write transaction before failing with "database is locked".
	BusyTimeoutDefault = 10 * time.Second
	// PollIntervalDefault is how often the driver checks whether another
	// process committed, to wake listeners and awaiters. The check is a
	// PRAGMA data_version on a dedicated connection: a shared-memory read.
	PollIntervalDefault = 5 * time.Millisecond
	// MaxReadConnsDefault is the size of the read connection pool.
	MaxReadConnsDefault = 4
	// AwaitBackstopDefault is how often TaskAwait re-reads its task even
	// without a change notification, in case one was missed.
	AwaitBackstopDefault = 2 * time.Second
)

// Config tunes a Driver. The zero value (or nil) uses the defaults above.
type Config struct {
	// BusyTimeout bounds how long a write waits for the database lock held
	// by another process. Default BusyTimeoutDefault.
	BusyTimeout time.Duration
	// PollInterval is how often commits by other processes are looked for.
	// It bounds the extra latency of a cross-process notification. Default
	// PollIntervalDefault.
	PollInterval time.Duration
	// MaxReadConns is the number of connections used for reads (TaskGet,
	// QueueStats, …), besides the single write connection and the
	// notification poller's connection. Default MaxReadConnsDefault.
	MaxReadConns int
	// AwaitBackstop is TaskAwait's fallback re-read interval. Default
	// AwaitBackstopDefault.
	AwaitBackstop time.Duration
	// Logger receives errors of background work (the notification poller).
	// Default slog.Default().
	Logger *slog.Logger
}

// Driver is an ebbdriver.Driver on one SQLite database file. It is safe for
// concurrent use, and several Drivers (in one or many processes) may share a
// file.
type Driver struct {
	path   string
	cfg    Config
	log    *slog.Logger
	wdb    *sql.DB // exactly one connection: all writes
	rdb    *sql.DB // reads, plus the poller's pinned connection
	stmts  *stmts
	notify *notifier

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
}

// Open opens the database at path, creating the file and its schema if
// missing and migrating an older schema. config may be nil.
func Open(ctx context.Context, path string, config *Config) (*Driver, error) {
	var cfg Config
	if config != nil {
		cfg = *config
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = BusyTimeoutDefault
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = PollIntervalDefault
	}
	if cfg.MaxReadConns <= 0 {
		cfg.MaxReadConns = MaxReadConnsDefault
	}
	if cfg.AwaitBackstop <= 0 {
		cfg.AwaitBackstop = AwaitBackstopDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if path == "" || path == ":memory:" || (len(path) >= 5 && path[:5] == "file:") {
		return nil, fmt.Errorf("ebbsqlite: cannot open SQLite database at %q: need a plain file path (ebb shares the file between connections and processes, so in-memory databases and URIs are not supported)", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("ebbsqlite: cannot open SQLite database at %q: %w; check the path", path, err)
	}

	d := &Driver{path: abs, cfg: cfg, log: cfg.Logger, closed: make(chan struct{})}
	fail := func(err error) (*Driver, error) {
		if d.wdb != nil {
			d.wdb.Close()
		}
		if d.rdb != nil {
			d.rdb.Close()
		}
		return nil, fmt.Errorf("ebbsqlite: cannot open SQLite database at %s: %w; check the path and permissions", abs, err)
	}

	// One writer per process: SQLite allows one write transaction per file
	// at a time anyway, and queueing on database/sql's pool is fair and
	// cheap where queueing on the busy handler means sleeping and retrying.
	d.wdb, err = sql.Open("sqlite", dsn(abs, cfg, true))
	if err != nil {
		return fail(err)
	}
	d.wdb.SetMaxOpenConns(1)
	d.wdb.SetMaxIdleConns(1)
	d.wdb.SetConnMaxIdleTime(0)
	d.wdb.SetConnMaxLifetime(0)

	if err := migrate(ctx, d.wdb); err != nil {
		return fail(err)
	}

	// The read pool is opened after migration so that the file is already
	// in WAL mode (persistent) when read connections attach to it.
	d.rdb, err = sql.Open("sqlite", dsn(abs, cfg, false))
	if err != nil {
		return fail(err)
	}
	d.rdb.SetMaxOpenConns(cfg.MaxReadConns + 1) // +1: the poller's pinned connection
	d.rdb.SetMaxIdleConns(cfg.MaxReadConns + 1)
	if err := d.rdb.PingContext(ctx); err != nil {
		return fail(err)
	}

	if d.stmts, err = prepare(ctx, d.wdb, d.rdb); err != nil {
		return fail(err)
	}
	d.notify = newNotifier(d)
	return d, nil
}

// dsn builds a modernc.org/sqlite data source name. A file: URI lets the
// path hold any character ('?', '#', '%') without being mistaken for
// parameters; SQLite ignores the driver's own underscore parameters.
func dsn(path string, cfg Config, write bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10))
	// synchronous=NORMAL in WAL mode: a commit is durable once it is in the
	// WAL (the OS has it), so it survives any process crash; only a power
	// loss or kernel crash can roll back the last commits. Processes
	// crashing is what a task queue must survive; FULL would cost an fsync
	// per transaction.
	q.Set("_synchronous", "NORMAL")
	q.Add("_pragma", "foreign_keys(OFF)")
	q.Add("_pragma", "cache_size(-16000)") // 16 MB: keeps the task indexes hot
	q.Add("_pragma", "temp_store(MEMORY)")
	if write {
		q.Set("_journal_mode", "WAL")
		// BEGIN IMMEDIATE takes the write lock up front, so a transaction
		// that reads then writes never fails with SQLITE_BUSY on upgrade
		// (which the busy timeout cannot help with).
		q.Set("_txlock", "immediate")
	} else {
		q.Set("_query_only", "1")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	if u.Path[0] != '/' { // Windows drive letter: file:///C:/…
		u.Path = "/" + u.Path
	}
	return u.String()
}

// Name returns "sqlite".
func (d *Driver) Name() string { return "sqlite" }

// Path returns the absolute path of the database file.
func (d *Driver) Path() string { return d.path }

// Close stops the notification poller, closes every listener's channel and
// wakes awaiters, and closes the database connections.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() {
		close(d.closed)
		d.notify.stop()
		d.stmts.close()
		d.closeErr = errors.Join(d.rdb.Close(), d.wdb.Close())
		if d.closeErr != nil {
			d.closeErr = fmt.Errorf("ebbsqlite: closing %s: %w", d.path, d.closeErr)
		}
	})
	return d.closeErr
}

var errClosed = errors.New("ebbsqlite: driver is closed")

// writeTx runs fn in one BEGIN IMMEDIATE transaction on the write connection.
func (d *Driver) writeTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := d.wdb.BeginTx(ctx, nil)
	if err != nil {
		return d.wrap(op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return d.wrap(op, err)
	}
	if err := tx.Commit(); err != nil {
		return d.wrap(op, err)
	}
	return nil
}

// wrap adds the operation and, for errors that are not ebb's own sentinels
// or the caller's context, what to check.
func (d *Driver) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-d.closed:
		return fmt.Errorf("ebbsqlite: %s: %w", op, errClosed)
	default:
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ebbdriver.ErrTaskNotFound) || errors.Is(err, ebbdriver.ErrLeaseLost) ||
		errors.Is(err, ebbdriver.ErrWorkerNotFound) || errors.Is(err, errBadInput) {
		return fmt.Errorf("ebbsqlite: %s: %w", op, err)
	}
	return fmt.Errorf("ebbsqlite: %s on %s: %w (if the database is locked, another process holds a write transaction longer than the busy timeout %s; if it is malformed or read-only, check the file and its permissions)", op, d.path, err, d.cfg.BusyTimeout)
}

var errBadInput = errors.New("invalid argument")
