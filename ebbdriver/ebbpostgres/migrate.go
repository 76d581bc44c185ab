package ebbpostgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one schema version: up brings the schema from Version-1 to
// Version, down back.
type migration struct {
	Version int
	Name    string
	up      string
	down    string
}

// migrations are read once from the embedded files NNN_name.up.sql and
// NNN_name.down.sql. Append only: a released migration never changes.
var migrations = mustLoadMigrations()

func mustLoadMigrations() []migration {
	ents, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		panic(err)
	}
	byVersion := map[int]*migration{}
	for _, e := range ents {
		name := e.Name()
		base, dir, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), ".")
		num, label, ok2 := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || !ok2 || err != nil || (dir != "up" && dir != "down") {
			panic("ebbpostgres: badly named migration " + name)
		}
		b, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			panic(err)
		}
		m := byVersion[v]
		if m == nil {
			m = &migration{Version: v, Name: label}
			byVersion[v] = m
		}
		if dir == "up" {
			m.up = string(b)
		} else {
			m.down = string(b)
		}
	}
	out := make([]migration, 0, len(byVersion))
	for _, m := range byVersion {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 || m.up == "" || m.down == "" {
			panic(fmt.Sprintf("ebbpostgres: migration %d needs an up and a down file and no gaps", m.Version))
		}
	}
	return out
}

// SchemaVersion is the schema version this code reads and writes.
var SchemaVersion = len(migrations)

// MigrationState is one migration's status in a schema.
type MigrationState struct {
	Version   int
	Name      string
	Applied   bool
	AppliedAt time.Time // zero when not applied
}

// ErrSchemaMissing means ebb's tables are not (or not all) in the schema:
// migrations have not been applied. Run `ebb migrate up`, or open with
// migration on (the default).
var ErrSchemaMissing = errors.New("ebb's tables are missing or out of date")

// ErrSchemaNewer means the schema was migrated by a newer ebb.
var ErrSchemaNewer = errors.New("the schema was migrated by a newer ebb")

// lockKey is the advisory lock that serialises migrations of one schema,
// so replicas starting together migrate it once.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("ebb-migrate:" + schema))
	return int64(h.Sum64())
}

// Migrator applies and reverts ebb's migrations in one schema.
type Migrator struct {
	pool   *pgxpool.Pool
	schema string
	q      string // quoted schema
}

// NewMigrator returns a Migrator for schema ("" means public) in the
// database pool connects to.
func NewMigrator(pool *pgxpool.Pool, schema string) *Migrator {
	if schema == "" {
		schema = SchemaDefault
	}
	return &Migrator{pool: pool, schema: schema, q: pgx.Identifier{schema}.Sanitize()}
}

func (m *Migrator) sql(s string) string { return strings.ReplaceAll(s, "{s}", m.q) }

// locked runs fn on one connection holding the schema's migration lock.
func (m *Migrator) locked(ctx context.Context, fn func(conn *pgxpool.Conn) error) error {
	conn, err := m.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lockKey(m.schema)); err != nil {
		return fmt.Errorf("taking the migration lock: %w", err)
	}
	defer func() {
		// A fresh context: the lock must go even if ctx ended, or the
		// connection goes back to the pool still holding it.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, lockKey(m.schema)); err != nil {
			conn.Conn().Close(uctx) // closing the session releases it
		}
	}()
	return fn(conn)
}

// applied reads the applied versions; none when the table is absent.
func (m *Migrator) applied(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (map[int]time.Time, error) {
	absent := func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") // undefined table, schema
	}
	out := map[int]time.Time{}
	rows, err := q.Query(ctx, m.sql(`SELECT version, applied_at FROM {s}.ebb_migrations`))
	if err != nil {
		if absent(err) {
			return out, nil
		}
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		var at time.Time
		if err := rows.Scan(&v, &at); err != nil {
			return nil, err
		}
		out[v] = at
	}
	if err := rows.Err(); err != nil {
		if absent(err) {
			return map[int]time.Time{}, nil
		}
		return nil, err
	}
	return out, nil
}

// Up applies every pending migration (to the latest version when target is
// 0), each in its own transaction, under the schema's advisory lock. It
// creates the schema if missing and returns the versions it applied.
func (m *Migrator) Up(ctx context.Context, target int) ([]int, error) {
	if target <= 0 || target > SchemaVersion {
		target = SchemaVersion
	}
	var done []int
	err := m.locked(ctx, func(conn *pgxpool.Conn) error {
		if _, err := conn.Exec(ctx, m.sql(`CREATE SCHEMA IF NOT EXISTS {s}`)); err != nil {
			return fmt.Errorf("creating schema %s: %w", m.schema, err)
		}
		if _, err := conn.Exec(ctx, m.sql(`CREATE TABLE IF NOT EXISTS {s}.ebb_migrations (
			version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)); err != nil {
			return fmt.Errorf("creating the migrations table: %w", err)
		}
		have, err := m.applied(ctx, conn)
		if err != nil {
			return err
		}
		for v := range have {
			if v > SchemaVersion {
				return fmt.Errorf("%w: schema %s has version %d, this ebb knows up to %d; upgrade ebb", ErrSchemaNewer, m.schema, v, SchemaVersion)
			}
		}
		for _, mig := range migrations[:target] {
			if _, ok := have[mig.Version]; ok {
				continue
			}
			if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, m.sql(mig.up)); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, m.sql(`INSERT INTO {s}.ebb_migrations (version) VALUES ($1)`), mig.Version)
				return err
			}); err != nil {
				return fmt.Errorf("applying migration %d (%s): %w", mig.Version, mig.Name, err)
			}
			done = append(done, mig.Version)
		}
		return nil
	})
	return done, err
}

// Down reverts applied migrations above target (0 reverts all, dropping
// every ebb table and the tasks in them), newest first, under the lock. It
// returns the versions it reverted.
func (m *Migrator) Down(ctx context.Context, target int) ([]int, error) {
	target = max(target, 0)
	var done []int
	err := m.locked(ctx, func(conn *pgxpool.Conn) error {
		have, err := m.applied(ctx, conn)
		if err != nil {
			return err
		}
		for i := len(migrations) - 1; i >= target; i-- {
			mig := migrations[i]
			if mig.Version <= target {
				break
			}
			if _, ok := have[mig.Version]; !ok {
				continue
			}
			if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, m.sql(mig.down)); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, m.sql(`DELETE FROM {s}.ebb_migrations WHERE version = $1`), mig.Version)
				return err
			}); err != nil {
				return fmt.Errorf("reverting migration %d (%s): %w", mig.Version, mig.Name, err)
			}
			done = append(done, mig.Version)
		}
		if target == 0 && len(done) > 0 {
			if _, err := conn.Exec(ctx, m.sql(`DROP TABLE IF EXISTS {s}.ebb_migrations`)); err != nil {
				return fmt.Errorf("dropping the migrations table: %w", err)
			}
		}
		return nil
	})
	return done, err
}

// Status lists every migration this ebb knows and whether it is applied.
func (m *Migrator) Status(ctx context.Context) ([]MigrationState, error) {
	have, err := m.applied(ctx, m.pool)
	if err != nil {
		return nil, err
	}
	out := make([]MigrationState, 0, len(migrations))
	for _, mig := range migrations {
		at, ok := have[mig.Version]
		out = append(out, MigrationState{Version: mig.Version, Name: mig.Name, Applied: ok, AppliedAt: at})
	}
	return out, nil
}

// check fails unless the schema is at exactly SchemaVersion.
func (m *Migrator) check(ctx context.Context) error {
	have, err := m.applied(ctx, m.pool)
	if err != nil {
		return err
	}
	latest := 0
	for v := range have {
		latest = max(latest, v)
	}
	switch {
	case latest > SchemaVersion:
		return fmt.Errorf("%w: schema %s has version %d, this ebb knows up to %d; upgrade ebb", ErrSchemaNewer, m.schema, latest, SchemaVersion)
	case len(have) < SchemaVersion:
		return fmt.Errorf("%w in schema %s (version %d of %d): run `ebb migrate up` with this broker URL, or drop migrate=false from it so ebb migrates at start",
			ErrSchemaMissing, m.schema, len(have), SchemaVersion)
	}
	return nil
}

// Schema returns the schema the Migrator works on.
func (m *Migrator) Schema() string { return m.schema }
