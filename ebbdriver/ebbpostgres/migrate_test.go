package ebbpostgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ebbq/ebb/ebbdriver/ebbpostgres"
	"github.com/ebbq/ebb/internal/testpg"
)

func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	testpg.Check(t)
	pool, err := pgxpool.New(t.Context(), testpg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// tables lists the tables of schema.
func tables(t *testing.T, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestMigrateReplicasStartingTogether opens many drivers on one new schema
// at once, as replicas of a deployment starting together would: the
// advisory lock lets exactly one migrate, and every one opens.
func TestMigrateReplicasStartingTogether(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	schema := testpg.Schema(t)
	const replicas = 8
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	start := make(chan struct{})
	for i := range replicas {
		wg.Go(func() {
			<-start
			d, err := ebbpostgres.New(context.Background(), pool, &ebbpostgres.Config{Schema: schema})
			if err == nil {
				d.Close()
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
	var versions int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM `+pgx.Identifier{schema, "ebb_migrations"}.Sanitize()).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if versions != ebbpostgres.SchemaVersion {
		t.Errorf("%d migration rows, want %d (each version applied once)", versions, ebbpostgres.SchemaVersion)
	}
}

// TestMigrateDownAndUp reverts every migration (no ebb table is left),
// then applies them again, and a driver opens on the result.
func TestMigrateDownAndUp(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	schema := testpg.Schema(t)
	m := ebbpostgres.NewMigrator(pool, schema)
	ctx := t.Context()
	if up, err := m.Up(ctx, 0); err != nil || len(up) != ebbpostgres.SchemaVersion {
		t.Fatalf("Up = %v, %v; want every version", up, err)
	}
	if up, err := m.Up(ctx, 0); err != nil || len(up) != 0 {
		t.Fatalf("second Up = %v, %v; want nothing to do", up, err)
	}
	if got := tables(t, pool, schema); !contains(got, "ebb_tasks") {
		t.Fatalf("after Up the tables are %v", got)
	}
	// An application table beside ebb's is left alone.
	if _, err := pool.Exec(ctx, `CREATE TABLE `+pgx.Identifier{schema, "app"}.Sanitize()+` (id int)`); err != nil {
		t.Fatal(err)
	}
	down, err := m.Down(ctx, 0)
	if err != nil || len(down) != ebbpostgres.SchemaVersion {
		t.Fatalf("Down = %v, %v", down, err)
	}
	if got := tables(t, pool, schema); len(got) != 1 || got[0] != "app" {
		t.Errorf("after Down the tables are %v, want only the application's", got)
	}
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Applied {
			t.Errorf("after Down migration %d is applied", s.Version)
		}
	}
	if _, err := ebbpostgres.New(ctx, pool, &ebbpostgres.Config{Schema: schema, NoMigrate: true}); !errors.Is(err, ebbpostgres.ErrSchemaMissing) {
		t.Errorf("Open with NoMigrate after Down: %v, want ErrSchemaMissing", err)
	}
	d, err := ebbpostgres.New(ctx, pool, &ebbpostgres.Config{Schema: schema})
	if err != nil {
		t.Fatalf("Open after Down migrating again: %v", err)
	}
	d.Close()
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestOpenSchemaErrors: a schema that was never migrated with migrate=false
// says what to run; one migrated by a newer ebb says to upgrade.
func TestOpenSchemaErrors(t *testing.T) {
	t.Parallel()
	testpg.Check(t)
	url := testpg.SchemaURL(t)
	_, err := ebbpostgres.Open(t.Context(), url+"&migrate=false", nil)
	if !errors.Is(err, ebbpostgres.ErrSchemaMissing) || !strings.Contains(err.Error(), "ebb migrate up") || !ebbpostgres.IsPermanent(err) {
		t.Errorf("missing schema: %v; want ErrSchemaMissing, permanent, saying to run ebb migrate up", err)
	}
	d, err := ebbpostgres.Open(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pool().Exec(t.Context(), fmt.Sprintf(`INSERT INTO %s (version) VALUES (999)`,
		pgx.Identifier{d.Schema(), "ebb_migrations"}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	d.Close()
	for _, u := range []string{url, url + "&migrate=false"} {
		if _, err := ebbpostgres.Open(t.Context(), u, nil); !errors.Is(err, ebbpostgres.ErrSchemaNewer) || !strings.Contains(err.Error(), "upgrade ebb") {
			t.Errorf("%s on a newer schema: %v; want ErrSchemaNewer saying to upgrade", u, err)
		}
	}
	if _, err := ebbpostgres.Open(t.Context(), url+"&migrate=maybe", nil); !errors.Is(err, ebbpostgres.ErrBadURL) {
		t.Errorf("migrate=maybe: %v, want ErrBadURL", err)
	}
}

// TestOpenConnectionErrors: nothing listening and a wrong password each
// fail at once with what to do, and only the first is worth waiting for.
func TestOpenConnectionErrors(t *testing.T) {
	t.Parallel()
	s := testpg.StartServer(t)
	closed := fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", testpg.Password, freePort(t))
	_, err := ebbpostgres.Open(t.Context(), closed, nil)
	if err == nil || !ebbpostgres.IsUnreachable(err) || ebbpostgres.IsPermanent(err) || !strings.Contains(err.Error(), "is PostgreSQL running") {
		t.Errorf("closed port: %v; want unreachable, not permanent, asking whether PostgreSQL runs", err)
	}
	if strings.Contains(fmt.Sprint(err), testpg.Password) {
		t.Errorf("the error shows the password: %v", err)
	}
	wrong := strings.Replace(s.URL(), testpg.Password, "wrong", 1)
	_, err = ebbpostgres.Open(t.Context(), wrong, nil)
	if err == nil || !ebbpostgres.IsPermanent(err) || !strings.Contains(err.Error(), "refused the credentials") {
		t.Errorf("wrong password: %v; want permanent, saying the credentials were refused", err)
	}
	noDB := strings.Replace(s.URL(), "/postgres?", "/nosuchdb?", 1)
	if _, err = ebbpostgres.Open(t.Context(), noDB, nil); err == nil || !ebbpostgres.IsPermanent(err) || !strings.Contains(err.Error(), "createdb") {
		t.Errorf("missing database: %v; want permanent, saying to create it", err)
	}
	d, err := ebbpostgres.Open(t.Context(), s.URL()+"&schema=app_ebb", nil)
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	d.Close()
}
