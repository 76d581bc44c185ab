// Package testpg gives tests a PostgreSQL to talk to: the shared server named
// by EBB_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test) with a
// schema of their own per test, so tests run in parallel without seeing each
// other's tables, and private postgres servers on free ports for tests that
// stop or restart the database. It never skips: a test that needs Postgres
// and cannot reach it fails with what to do.
package testpg

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// URLDefault is the shared test server when EBB_TEST_PG_URL is unset.
const URLDefault = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// URL returns the shared test server's URL.
func URL() string {
	if u := os.Getenv("EBB_TEST_PG_URL"); u != "" {
		return u
	}
	return URLDefault
}

var seq atomic.Int64

// Schema returns the name of a schema no other test uses (not yet created:
// the driver's migration creates it) and drops it, with everything in it,
// when t ends.
func Schema(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("ebbtest_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, seq.Add(1))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, URL())
		if err != nil {
			t.Errorf("testpg: dropping schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("testpg: dropping schema %s: %v", name, err)
		}
	})
	return name
}

// SchemaURL returns URL() with a fresh Schema in its schema parameter.
func SchemaURL(t testing.TB) string {
	t.Helper()
	return WithSchema(t, URL(), Schema(t))
}

// WithSchema sets the schema parameter of a postgres URL.
func WithSchema(t testing.TB, raw, schema string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("testpg: bad URL %q: %v", raw, err)
	}
	q := u.Query()
	q.Set("schema", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Check fails t unless the shared server answers.
func Check(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, URL())
	if err != nil {
		t.Fatalf("testpg: cannot reach PostgreSQL at %s: %v (run the tests through scripts/test, which starts it, or set EBB_TEST_PG_URL)",
			redact(URL()), err)
	}
	conn.Close(ctx)
}

func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return strings.SplitN(raw, "@", 2)[0]
}
