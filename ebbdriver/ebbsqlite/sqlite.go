// Package ebbsqlite is ebb's SQLite broker driver: one database file holds the
// queues, and any number of worker and client processes on the same machine
// share it.
//
// It is pure Go (modernc.org/sqlite, no cgo). The file runs in WAL mode so
// readers never block the writer; every write is a BEGIN IMMEDIATE transaction
// so concurrent processes wait for SQLite's lock (up to a busy timeout) instead
// of failing half-way through a transaction with SQLITE_BUSY. Inside one
// process all writes go through a single connection, so goroutines wait in
// database/sql's pool; between processes the driver retries BEGIN every few
// hundred microseconds (see writeTx) rather than using SQLite's busy
// handler, whose sleeps grow to 100 ms and let one busy process starve the
// others.
//
// Notifications (Listen, TaskAwait) are immediate between goroutines of one
// process. Commits made by other processes are noticed by polling: the
// header of the shared WAL index (the -shm file) is read with one pread, and
// only when it changed does PRAGMA data_version run on one dedicated
// connection, followed by what listeners need. Every Config.PollInterval
// while tasks move, backing off to Config.PollIntervalMax when nothing has
// for a second, so an idle process costs next to nothing.
package ebbsqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/ebbq/ebb/ebbdriver"
	"github.com/ebbq/ebb/ebbdriver/internal/groupcommit"
)

var _ ebbdriver.Driver = (*Driver)(nil)

// Defaults for Config's zero fields.
const (
	// BusyTimeoutDefault is how long a write waits for another process's
	// write transaction before failing with "database is locked".
	BusyTimeoutDefault = 10 * time.Second
	// PollIntervalDefault is how often the driver checks whether another
	// process committed, to wake listeners and awaiters, while tasks are
	// moving. The check is a PRAGMA data_version on a dedicated connection:
	// a shared-memory read.
	PollIntervalDefault = 5 * time.Millisecond
	// PollIntervalMaxDefault is the longest interval between those checks,
	// reached when nothing happened for a while.
	PollIntervalMaxDefault = 100 * time.Millisecond
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
	// PollInterval is how often commits by other processes are looked for
	// while tasks are moving: it bounds the extra latency of a cross-process
	// notification then. Default PollIntervalDefault.
	PollInterval time.Duration
	// PollIntervalMax caps the check interval when things are quiet. After
	// a second without anything to announce (tasks becoming Queued, cancel
	// or drain requests, awaited tasks finishing, in this process or
	// another), the interval doubles per check up to PollIntervalMax; the
	// next such change, or a Listen/TaskAwait/enqueue in this process, brings
	// it back to PollInterval at once. So the first cross-process
	// notification after a quiet spell may take up to PollIntervalMax (the
	// ones after it PollInterval). Commits that announce nothing (worker
	// heartbeats, leader renewals) do not end the quiet. Default
	// PollIntervalMaxDefault; a value below PollInterval means PollInterval
	// (no back-off).
	PollIntervalMax time.Duration
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
	path    string
	cfg     Config
	log     *slog.Logger
	wdb     *sql.DB // exactly one connection: all writes
	rdb     *sql.DB // reads, plus the poller's pinned connection
	stmts   *stmts
	notify  *notifier
	enqueue *groupcommit.Group[*enqueueCall]

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
	if cfg.PollIntervalMax <= 0 {
		cfg.PollIntervalMax = PollIntervalMaxDefault
	}
	cfg.PollIntervalMax = max(cfg.PollIntervalMax, cfg.PollInterval)
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
	d.enqueue = groupcommit.New(enqueueGroupMax, d.commitGroup)
	fail := func(err error) (*Driver, error) {
		if d.wdb != nil {
			d.wdb.Close()
		}
		if d.rdb != nil {
			d.rdb.Close()
		}
		hint := d.hint(err)
		if hint == "" {
			hint = "check the path and permissions"
		}
		return nil, fmt.Errorf("ebbsqlite: cannot open SQLite database at %s: %w; %s", abs, err, hint)
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

	if err := retryBusy(ctx, cfg.BusyTimeout, func() error {
		if err := d.wdb.PingContext(ctx); err != nil {
			return err
		}
		return migrate(ctx, d.wdb)
	}); errors.Is(err, errSchemaNewer) {
		d.wdb.Close()
		return nil, fmt.Errorf("ebbsqlite: cannot open SQLite database at %s: %w", abs, err)
	} else if err != nil {
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

// retryBusy runs fn until it does not fail with SQLITE_BUSY, for at most
// timeout: writeTx's wait, for Open. Besides the migration's write lock,
// connections racing to create a new file can get SQLITE_BUSY from the
// switch to WAL mode, which no busy handler covers.
func retryBusy(ctx context.Context, timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		err := fn()
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// dsn builds a modernc.org/sqlite data source name. A file: URI lets the
// path hold any character ('?', '#', '%') without being mistaken for
// parameters; SQLite ignores the driver's own underscore parameters.
func dsn(path string, cfg Config, write bool) string {
	q := url.Values{}
	if !write { // the writer waits in writeTx instead
		q.Set("_busy_timeout", strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10))
	}
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

// writeTx runs fn in one BEGIN IMMEDIATE transaction on the write
// connection. fn may run more than once (after SQLITE_BUSY), so it must
// reset whatever it reports.
//
// The write connection has no busy handler: SQLite's backs off to 100 ms
// sleeps, so a process in a tight fetch loop would keep the lock while the
// others sleep, starving them and adding tens of milliseconds to every
// handoff. Instead BEGIN fails at once and this loop retries every few
// hundred microseconds (with jitter, so waiting processes do not retry in
// step) until Config.BusyTimeout, or ctx, ends.
func (d *Driver) writeTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	var deadline time.Time
	wait := 100 * time.Microsecond
	for {
		err := d.tryWriteTx(ctx, fn)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			// database/sql closes a transaction's statements when its
			// context ends, so the statement running then fails with "sql:
			// statement is closed"; the cause is the context.
			return d.wrap(op, fmt.Errorf("%w (%v)", ctx.Err(), err))
		}
		if !isBusy(err) {
			return d.wrap(op, err)
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(d.cfg.BusyTimeout)
		} else if now.After(deadline) {
			return d.wrap(op, err)
		}
		t := time.NewTimer(wait/2 + rand.N(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return d.wrap(op, fmt.Errorf("waiting for another connection's write transaction: %w", ctx.Err()))
		case <-d.closed:
			t.Stop()
			return d.wrap(op, errClosed)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Millisecond)
	}
}

func (d *Driver) tryWriteTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// wrap adds the operation and, for SQLite failures, what to do about them.
func (d *Driver) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-d.closed:
		return fmt.Errorf("ebbsqlite: %s: %w", op, errClosed)
	default:
	}
	if hint := d.hint(err); hint != "" {
		return fmt.Errorf("ebbsqlite: %s on %s: %w; %s", op, d.path, err, hint)
	}
	return fmt.Errorf("ebbsqlite: %s: %w", op, err)
}

// hint says what to do about an SQLite error, or "" when the error speaks
// for itself (ebb's own sentinels, the caller's context).
func (d *Driver) hint(err error) string {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return ""
	}
	code := se.Code() & 0xff
	switch code {
	case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_IOERR:
		if readOnlyFS(d.path) {
			return "the file system holding it is mounted read-only: remount it read-write or move the database"
		}
	}
	switch code {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return fmt.Sprintf("another connection held a write transaction longer than the busy timeout (%s): "+
			"raise Config.BusyTimeout, or look for a process keeping the database locked", d.cfg.BusyTimeout)
	case sqlite3.SQLITE_CANTOPEN:
		return "check the path and permissions: the directory must exist and this process must be able to create " +
			"and write the database file and its -wal and -shm files in it"
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
		return "check the permissions: this process must be able to write the database file, its -wal and -shm files and their directory"
	case sqlite3.SQLITE_FULL:
		return "the disk is full: free space"
	case sqlite3.SQLITE_IOERR:
		return "the file system reported an I/O error: check the disk (and do not put the database on a network file system)"
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return "the file is damaged or not an ebb database: restore it from a backup or point ebb at another path"
	}
	return ""
}

var errBadInput = errors.New("invalid argument")
